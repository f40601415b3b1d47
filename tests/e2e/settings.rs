//! Health Monitor settings over HTTP (contract section 6, conventions "API
//! keys", "Roles", "Team", "Integrations"): keys created, listed masked,
//! used at once on ingest (`POST /api/errors`) and the API, `last_used`
//! flushed, revoked, expired and rotated with a grace period; roles checked
//! before body validation, for keys and Bearer tokens; team invitations;
//! integrations configured, masked and tested against a real local webhook
//! receiver; tenant isolation throughout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{status_json, wait_for, TestApp, User};

const KEYS: &str = "/api/settings/api-keys";
const TEAM: &str = "/api/settings/team";
const INTEGRATIONS: &str = "/api/settings/integrations";

/// A credential: an API key or a Bearer token.
#[derive(Clone)]
enum Cred {
    Key(String),
    Bearer(String),
}

async fn call(
    app: &TestApp,
    cred: &Cred,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = app.http.request(method, app.url(path));
    r = match cred {
        Cred::Key(k) => r.header("X-API-Key", k),
        Cred::Bearer(t) => r.bearer_auth(t),
    };
    if let Some(b) = body {
        r = r.json(&b);
    }
    status_json(r).await
}

/// Sends a raw (possibly invalid) body.
async fn call_raw(
    app: &TestApp,
    cred: &Cred,
    method: Method,
    path: &str,
    body: &str,
) -> (u16, Value) {
    let mut r = app
        .http
        .request(method, app.url(path))
        .header("Content-Type", "application/json")
        .body(body.to_string());
    r = match cred {
        Cred::Key(k) => r.header("X-API-Key", k),
        Cred::Bearer(t) => r.bearer_auth(t),
    };
    status_json(r).await
}

fn assert_error(s: u16, want: u16, v: &Value) {
    assert_eq!(s, want, "{v}");
    assert_eq!(v["status"], "error", "{v}");
    assert!(v["error"].is_string(), "{v}");
}

/// Creates a key through the API; answers the created object.
async fn create_key(app: &TestApp, admin: &Cred, perms: &[&str], extra: Value) -> Value {
    let mut body = json!({"name": format!("key {}", perms.join("+")), "permissions": perms});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (s, v) = call(app, admin, Method::POST, KEYS, Some(body)).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["status"], "success");
    v["data"].clone()
}

/// The status `POST /api/errors` answers for a key.
async fn ingest_status(app: &TestApp, key: &str) -> u16 {
    app.http
        .post(app.url("/api/errors"))
        .header("X-API-Key", key)
        .json(&json!({"message": "settings e2e", "source": "settings-test", "level": "error"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The status `GET /api/errors` answers for a key.
async fn api_status(app: &TestApp, key: &str) -> u16 {
    app.http
        .get(app.url("/api/errors"))
        .header("X-API-Key", key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Waits until the key gets 401 on both ingest and the API.
async fn wait_refused(app: &TestApp, key: &str, what: &str) {
    wait_for(what, || async {
        (ingest_status(app, key).await == 401 && api_status(app, key).await == 401).then_some(())
    })
    .await;
}

async fn listed(app: &TestApp, cred: &Cred) -> Vec<Value> {
    let (s, v) = call(app, cred, Method::GET, KEYS, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "success");
    v["data"]["api_keys"].as_array().unwrap().clone()
}

/// The owner of a fresh tenant, as a Bearer credential, with the user.
async fn owner(app: &TestApp) -> (Cred, User) {
    let u = app.register_user().await;
    (Cred::Bearer(u.token.clone()), u)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_created_listed_masked_used_and_revoked() {
    let app = TestApp::spawn().await;
    let (owner, _) = owner(&app).await;
    let made = create_key(&app, &owner, &["read", "write"], json!({})).await;
    let key = made["key"].as_str().unwrap().to_string();
    assert!(key.len() >= 32, "{key}");
    let id = made["id"].as_str().unwrap().to_string();
    assert_eq!(made["permissions"], json!(["read", "write"]));
    assert!(made["last_used"].is_null());
    assert!(made["expires_at"].is_null());
    assert!(made["created_at"].as_str().unwrap().ends_with('Z'));
    let preview = made["key_preview"].as_str().unwrap();
    assert!(preview.ends_with(&key[key.len() - 4..]), "{preview}");
    assert!(preview.contains("****") && !preview.contains(&key[8..key.len() - 4]));

    // Works at once, on ingest and the API.
    assert_eq!(ingest_status(&app, &key).await, 201);
    assert_eq!(api_status(&app, &key).await, 200);

    // Listed without the secret or its hash; last_used flushed within 60 s.
    let items = listed(&app, &owner).await;
    let item = items
        .iter()
        .find(|k| k["id"] == id.as_str())
        .expect("listed");
    let obj = item.as_object().unwrap();
    assert!(!obj.contains_key("key"), "{item}");
    assert!(obj.keys().all(|k| !k.contains("hash")), "{item}");
    assert!(!item.to_string().contains(&key), "{item}");
    for f in [
        "id",
        "name",
        "key_preview",
        "permissions",
        "last_used",
        "created_at",
        "expires_at",
    ] {
        assert!(obj.contains_key(f), "{f} missing: {item}");
    }
    let used = wait_for("last_used", || async {
        let items = listed(&app, &owner).await;
        items
            .iter()
            .find(|k| k["id"] == id.as_str())
            .and_then(|k| k["last_used"].as_str().map(str::to_string))
    })
    .await;
    assert!(
        chrono::DateTime::parse_from_rfc3339(&used).is_ok(),
        "{used}"
    );

    // Validation: 400 in the envelope.
    for body in [
        json!({"permissions": ["read"]}),
        json!({"name": "", "permissions": ["read"]}),
        json!({"name": "x"}),
        json!({"name": "x", "permissions": []}),
        json!({"name": "x", "permissions": ["root"]}),
        json!({"name": "x", "permissions": "read"}),
        json!({"name": "x", "permissions": ["read"], "expires_at": "tomorrow"}),
        json!({"name": "x", "permissions": ["read"], "expires_at": "2001-01-01T00:00:00Z"}),
    ] {
        let (s, v) = call(&app, &owner, Method::POST, KEYS, Some(body.clone())).await;
        assert_error(s, 400, &v);
    }
    let (s, v) = call_raw(&app, &owner, Method::POST, KEYS, "{not json").await;
    assert_error(s, 400, &v);

    // Revocation: 204, then 401 everywhere within 5 s, unlisted, 404 again.
    let r = app
        .http
        .delete(app.url(&format!("{KEYS}/{id}")))
        .bearer_auth(match &owner {
            Cred::Bearer(t) => t,
            Cred::Key(k) => k,
        })
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.bytes().await.unwrap().is_empty());
    let t0 = std::time::Instant::now();
    wait_refused(&app, &key, "revoked key refused").await;
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert!(listed(&app, &owner)
        .await
        .iter()
        .all(|k| k["id"] != id.as_str()));
    let (s, v) = call(&app, &owner, Method::DELETE, &format!("{KEYS}/{id}"), None).await;
    assert_error(s, 404, &v);
    let (s, v) = call(
        &app,
        &owner,
        Method::DELETE,
        &format!("{KEYS}/not-a-uuid"),
        None,
    )
    .await;
    assert_error(s, 404, &v);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_the_old_key_for_the_grace_period() {
    let app = TestApp::spawn().await;
    let (owner, _) = owner(&app).await;
    let made = create_key(&app, &owner, &["write"], json!({})).await;
    let id = made["id"].as_str().unwrap().to_string();
    let old = made["key"].as_str().unwrap().to_string();
    assert_eq!(ingest_status(&app, &old).await, 201);

    let path = format!("{KEYS}/{id}/rotate");
    let (s, v) = call(
        &app,
        &owner,
        Method::POST,
        &path,
        Some(json!({"grace_seconds": -1})),
    )
    .await;
    assert_error(s, 400, &v);
    let (s, v) = call(
        &app,
        &owner,
        Method::POST,
        &path,
        Some(json!({"grace_seconds": "soon"})),
    )
    .await;
    assert_error(s, 400, &v);
    let unknown = format!("{KEYS}/{}/rotate", uuid::Uuid::new_v4());
    let (s, v) = call(&app, &owner, Method::POST, &unknown, None).await;
    assert_error(s, 404, &v);

    let (s, v) = call(
        &app,
        &owner,
        Method::POST,
        &path,
        Some(json!({"grace_seconds": 3})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "success");
    let d = &v["data"];
    assert_eq!(d["id"], id.as_str());
    assert_eq!(d["name"], made["name"]);
    assert_eq!(d["permissions"], made["permissions"]);
    let new = d["key"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert!(d["key_preview"]
        .as_str()
        .unwrap()
        .ends_with(&new[new.len() - 4..]));
    // The new key works at once; the old one still does, during the grace.
    assert_eq!(ingest_status(&app, &new).await, 201);
    assert_eq!(api_status(&app, &new).await, 200);
    assert_eq!(ingest_status(&app, &old).await, 201);
    assert_eq!(api_status(&app, &old).await, 200);
    let item = listed(&app, &owner)
        .await
        .into_iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap();
    assert_eq!(item["key_preview"], d["key_preview"]);
    // After the grace: the old key is refused, the new one is not.
    wait_refused(&app, &old, "old key refused after the grace period").await;
    assert_eq!(ingest_status(&app, &new).await, 201);
    assert_eq!(api_status(&app, &new).await, 200);

    // Default grace (an hour, no body): the old key keeps working, until
    // the key is revoked, which ends the grace too.
    let (s, v) = call(&app, &owner, Method::POST, &path, None).await;
    assert_eq!(s, 200, "{v}");
    let newer = v["data"]["key"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(api_status(&app, &new).await, 200);
    assert_eq!(api_status(&app, &newer).await, 200);
    let (s, _) = call(&app, &owner, Method::DELETE, &format!("{KEYS}/{id}"), None).await;
    assert_eq!(s, 204);
    wait_refused(&app, &new, "grace key refused after revoke").await;
    wait_refused(&app, &newer, "rotated key refused after revoke").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_key_is_refused() {
    let app = TestApp::spawn().await;
    let (owner, _) = owner(&app).await;
    let at = chrono::Utc::now() + chrono::Duration::seconds(3);
    let made = create_key(
        &app,
        &owner,
        &["read", "write"],
        json!({"expires_at": at.to_rfc3339()}),
    )
    .await;
    assert!(made["expires_at"].is_string(), "{made}");
    let key = made["key"].as_str().unwrap().to_string();
    assert_eq!(ingest_status(&app, &key).await, 201);
    assert_eq!(api_status(&app, &key).await, 200);
    wait_refused(&app, &key, "expired key refused").await;
    assert!(chrono::Utc::now() >= at);
    app.stop().await;
}

/// A user with `role` in the owner's tenant, logged in.
async fn member(app: &TestApp, owner: &User, role: &str) -> Cred {
    Cred::Bearer(app.member_token(owner, role).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_checked_before_the_body() {
    let app = TestApp::spawn().await;
    let (owner, owner_user) = owner(&app).await;
    let viewer_key = Cred::Key(
        create_key(&app, &owner, &["read"], json!({})).await["key"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let dev_key = Cred::Key(
        create_key(&app, &owner, &["read", "write"], json!({})).await["key"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let admin_key = Cred::Key(
        create_key(&app, &owner, &["admin"], json!({})).await["key"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let viewer_token = member(&app, &owner_user, "viewer").await;
    let dev_token = member(&app, &owner_user, "developer").await;
    let admin_token = member(&app, &owner_user, "admin").await;
    let victim = create_key(&app, &owner, &["read"], json!({})).await;
    let victim_id = victim["id"].as_str().unwrap();

    // Settings writes, each with an invalid body: 403 for viewers and
    // developers (the role is checked first), 400 for admins.
    let writes = [
        (Method::POST, KEYS.to_string()),
        (Method::POST, format!("{KEYS}/{victim_id}/rotate")),
        (Method::POST, format!("{TEAM}/invite")),
        (Method::PUT, format!("{INTEGRATIONS}/webhook")),
    ];
    for cred in [&viewer_key, &dev_key, &viewer_token, &dev_token] {
        for (m, p) in &writes {
            let (s, v) = call_raw(&app, cred, m.clone(), p, "{broken").await;
            assert_error(s, 403, &v);
        }
        let (s, v) = call(
            &app,
            cred,
            Method::DELETE,
            &format!("{KEYS}/{victim_id}"),
            None,
        )
        .await;
        assert_error(s, 403, &v);
        let (s, v) = call(
            &app,
            cred,
            Method::POST,
            &format!("{INTEGRATIONS}/webhook/test"),
            None,
        )
        .await;
        assert_error(s, 403, &v);
    }
    for cred in [&admin_key, &admin_token, &owner] {
        for (m, p) in &writes {
            let (s, v) = call_raw(&app, cred, m.clone(), p, "{broken").await;
            assert_error(s, 400, &v);
        }
    }
    // Every role reads.
    for cred in [
        &viewer_key,
        &dev_key,
        &admin_key,
        &viewer_token,
        &dev_token,
        &owner,
    ] {
        for p in [KEYS, TEAM, INTEGRATIONS, "/api/errors", "/api/stats"] {
            let (s, v) = call(&app, cred, Method::GET, p, None).await;
            assert_eq!(s, 200, "{p}: {v}");
            assert_eq!(v["status"], "success");
        }
    }
    // Errors: a viewer may not post, resolve or delete; a developer may post.
    let id = app
        .post_error(json!({"message": "role check", "source": "roles"}))
        .await["id"]
        .clone();
    let id = id
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| id.to_string());
    let (s, v) = call(
        &app,
        &viewer_key,
        Method::POST,
        "/api/errors",
        Some(json!({"message": "m"})),
    )
    .await;
    assert_error(s, 403, &v);
    let (s, v) = call(
        &app,
        &viewer_token,
        Method::PUT,
        &format!("/api/errors/{id}/resolve"),
        None,
    )
    .await;
    assert_error(s, 403, &v);
    let (s, v) = call(
        &app,
        &viewer_key,
        Method::DELETE,
        &format!("/api/errors/{id}"),
        None,
    )
    .await;
    assert_error(s, 403, &v);
    let (s, v) = call(
        &app,
        &dev_key,
        Method::POST,
        "/api/errors",
        Some(json!({"message": "m"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    // Bearer tokens on the ingest path too.
    let (s, v) = call(
        &app,
        &viewer_token,
        Method::POST,
        "/api/errors",
        Some(json!({"message": "m"})),
    )
    .await;
    assert_error(s, 403, &v);
    let (s, v) = call(
        &app,
        &dev_token,
        Method::POST,
        "/api/errors",
        Some(json!({"message": "m"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    // Admins write settings.
    let (s, v) = call(
        &app,
        &admin_key,
        Method::POST,
        KEYS,
        Some(json!({"name": "by admin", "permissions": ["read"]})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = call(
        &app,
        &admin_key,
        Method::POST,
        &format!("{TEAM}/invite"),
        Some(json!({"email": "a@example.com", "role": "viewer"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = call(
        &app,
        &admin_token,
        Method::POST,
        &format!("{TEAM}/invite"),
        Some(json!({"email": "o@example.com", "role": "owner"})),
    )
    .await;
    // Only an owner invites an owner (as on /api/v1/users).
    assert_error(s, 403, &v);
    let (s, v) = call(
        &app,
        &owner,
        Method::POST,
        &format!("{TEAM}/invite"),
        Some(json!({"email": "o@example.com", "role": "owner"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    // Missing, unknown credentials: 401.
    let (s, v) = status_json(app.http.get(app.url(KEYS))).await;
    assert_error(s, 401, &v);
    for cred in [
        Cred::Key("sk_live_nope".into()),
        Cred::Bearer("not.a.token".into()),
    ] {
        let (s, v) = call(&app, &cred, Method::GET, KEYS, None).await;
        assert_error(s, 401, &v);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_tenants_never_see_or_change_keys_team_or_integrations() {
    let app = TestApp::spawn().await;
    let (a, _) = owner(&app).await;
    let (b, _) = owner(&app).await;
    let made = create_key(&app, &a, &["read", "write"], json!({})).await;
    let id = made["id"].as_str().unwrap();
    let key = made["key"].as_str().unwrap();
    let (s, _) = call(
        &app,
        &a,
        Method::POST,
        &format!("{TEAM}/invite"),
        Some(json!({"email": "only-a@example.com", "role": "developer"})),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = call(&app, &a, Method::PUT, &format!("{INTEGRATIONS}/slack"), Some(json!({"config": {"webhook_url": "https://hooks.slack.com/services/T000/B000/abcdefghijkl", "channel": "#a"}}))).await;
    assert_eq!(s, 200);

    assert!(listed(&app, &b).await.iter().all(|k| k["id"] != id));
    let (s, v) = call(&app, &b, Method::DELETE, &format!("{KEYS}/{id}"), None).await;
    assert_error(s, 404, &v);
    let (s, v) = call(&app, &b, Method::POST, &format!("{KEYS}/{id}/rotate"), None).await;
    assert_error(s, 404, &v);
    let (s, team) = call(&app, &b, Method::GET, TEAM, None).await;
    assert_eq!(s, 200);
    assert!(!team.to_string().contains("only-a@example.com"), "{team}");
    let (s, ints) = call(&app, &b, Method::GET, INTEGRATIONS, None).await;
    assert_eq!(s, 200);
    let slack = ints["data"]["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "slack")
        .unwrap()
        .clone();
    assert_eq!(slack["status"], "disconnected", "{slack}");
    // B's own invite of A's invitee's email is fine: emails are per tenant.
    let (s, _) = call(
        &app,
        &b,
        Method::POST,
        &format!("{TEAM}/invite"),
        Some(json!({"email": "only-a@example.com", "role": "viewer"})),
    )
    .await;
    assert_eq!(s, 201);
    // A's key untouched, still working.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(api_status(&app, key).await, 200);
    assert!(listed(&app, &a).await.iter().any(|k| k["id"] == id));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_lists_members_and_invitations() {
    let app = TestApp::spawn().await;
    let (owner, user) = owner(&app).await;
    let (s, v) = call(&app, &owner, Method::GET, TEAM, None).await;
    assert_eq!(s, 200, "{v}");
    let members = v["data"]["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{v}");
    let me = &members[0];
    assert_eq!(me["role"], "owner");
    assert_eq!(me["status"], "active");
    assert!(me["id"].is_string() && me["created_at"].is_string());
    assert_eq!(me["email"], format!("{}@example.com", user.username));
    assert!(me.as_object().unwrap().contains_key("last_active"));

    let invite = format!("{TEAM}/invite");
    let (s, v) = call(
        &app,
        &owner,
        Method::POST,
        &invite,
        Some(json!({"email": "New.User@Company.com", "role": "viewer"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let d = &v["data"];
    assert_eq!(d["status"], "invited");
    assert_eq!(d["role"], "viewer");
    assert!(d["name"].is_null() && d["last_active"].is_null());
    assert!(d["id"].is_string());
    for (body, want) in [
        (
            json!({"email": "new.user@company.com", "role": "admin"}),
            409,
        ),
        (
            json!({"email": user.username.clone() + "@EXAMPLE.com", "role": "admin"}),
            409,
        ),
        (json!({"email": "not-an-email", "role": "viewer"}), 400),
        (json!({"email": "x@example.com", "role": "superuser"}), 400),
        (json!({"email": "x@example.com"}), 400),
        (json!({"role": "viewer"}), 400),
    ] {
        let (s, v) = call(&app, &owner, Method::POST, &invite, Some(body.clone())).await;
        assert_error(s, want, &v);
    }
    let (_, v) = call(&app, &owner, Method::GET, TEAM, None).await;
    let members = v["data"]["members"].as_array().unwrap();
    assert_eq!(members.len(), 2, "{v}");
    assert!(members
        .iter()
        .any(|m| m["email"] == "New.User@Company.com" && m["status"] == "invited"));
    app.stop().await;
}

/// Invites `email` as `role`; answers the invitation's data (with its token).
async fn invite(app: &TestApp, owner: &Cred, email: &str, role: &str) -> Value {
    let (s, v) = call(
        app,
        owner,
        Method::POST,
        &format!("{TEAM}/invite"),
        Some(json!({"email": email, "role": role})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    v["data"].clone()
}

/// `POST /api/settings/team/accept` without credentials, or with a Bearer.
async fn accept(app: &TestApp, bearer: Option<&str>, body: Value) -> (u16, Value) {
    let mut r = app
        .http
        .post(app.url(&format!("{TEAM}/accept")))
        .json(&body);
    if let Some(t) = bearer {
        r = r.bearer_auth(t);
    }
    status_json(r).await
}

fn team_member(v: &Value, email: &str) -> Option<Value> {
    v["data"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"].as_str().map(str::to_lowercase) == Some(email.to_lowercase()))
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_are_accepted_once_before_expiry_and_activity_is_tracked() {
    let app = TestApp::spawn().await;
    let (owner, owner_user) = owner(&app).await;
    let tenant = owner_user.tenant_id.to_string();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..10];

    // The token is shown once: in the invite's answer, never in the list.
    let email = format!("Invitee.{suffix}@Example.com");
    let inv = invite(&app, &owner, &email, "viewer").await;
    let token = inv["invite_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("inv_") && token.len() >= 36, "{token}");
    let expires = chrono::DateTime::parse_from_rfc3339(inv["expires_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let left = expires - chrono::Utc::now();
    assert!(left > chrono::Duration::days(6) && left <= chrono::Duration::days(7));
    let (_, listed) = call(&app, &owner, Method::GET, TEAM, None).await;
    assert!(!listed.to_string().contains(&token), "{listed}");
    assert!(!listed.to_string().contains("invite_token"), "{listed}");

    // Bad requests, unknown tokens.
    let username = format!("inv-{suffix}");
    let good = json!({"token": token, "username": username, "password": "invitee-pass-1",
        "full_name": "In Vitee"});
    for (body, want) in [
        (
            json!({"username": username, "password": "invitee-pass-1"}),
            400,
        ),
        (
            json!({"token": token, "username": username, "password": "short"}),
            400,
        ),
        (
            json!({"token": token, "username": "x", "password": "invitee-pass-1"}),
            400,
        ),
        (
            json!({"token": "inv_unknownunknownunknownunknownunkn", "username": username,
                "password": "invitee-pass-1"}),
            404,
        ),
    ] {
        let (s, v) = accept(&app, None, body).await;
        assert_error(s, want, &v);
    }
    let (s, v) = accept(&app, Some("not.a.token"), json!({"token": token})).await;
    assert_error(s, 401, &v);
    // A taken username: 409, and the invitation is still there.
    let (s, v) = accept(
        &app,
        None,
        json!({"token": token, "username": owner_user.username, "password": "invitee-pass-1"}),
    )
    .await;
    assert_error(s, 409, &v);

    // Accepted: a member with the invited role, once.
    let (s, v) = accept(&app, None, good.clone()).await;
    assert_eq!(s, 201, "{v}");
    let m = &v["data"];
    assert_eq!(m["role"], "viewer");
    assert_eq!(m["status"], "active");
    assert_eq!(m["email"], email.as_str());
    assert_eq!(m["name"], "In Vitee");
    assert_eq!(m["tenant_id"], tenant.as_str());
    let (s, v) = accept(&app, None, good.clone()).await;
    assert_error(s, 404, &v);

    // The new member logs in and acts as a viewer in the owner's tenant.
    let viewer = Cred::Bearer(app.login(&username, "invitee-pass-1").await);
    let (s, v) = call(&app, &viewer, Method::GET, "/api/errors", None).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = call(
        &app,
        &viewer,
        Method::POST,
        "/api/alerts/rules",
        Some(json!({"name": "x", "condition": "new_error"})),
    )
    .await;
    assert_error(s, 403, &v);

    // last_active: set for members who acted (flushed in a batch with the
    // keys' last_used), null for invitees.
    let before = chrono::Utc::now() - chrono::Duration::seconds(60);
    let v = wait_for("the invitee's last_active", || async {
        let (_, v) = call(&app, &owner, Method::GET, TEAM, None).await;
        team_member(&v, &email)
            .filter(|m| m["last_active"].is_string())
            .map(|_| v)
    })
    .await;
    let me = team_member(&v, &format!("{}@example.com", owner_user.username)).unwrap();
    for m in [team_member(&v, &email).unwrap(), me] {
        assert_eq!(m["status"], "active", "{m}");
        let t = chrono::DateTime::parse_from_rfc3339(m["last_active"].as_str().unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert!(t > before && t <= chrono::Utc::now(), "{m}");
    }
    let pending = invite(
        &app,
        &owner,
        &format!("later-{suffix}@example.com"),
        "admin",
    )
    .await;
    let (_, v) = call(&app, &owner, Method::GET, TEAM, None).await;
    let p = team_member(&v, pending["email"].as_str().unwrap()).unwrap();
    assert_eq!(p["status"], "invited");
    assert!(p["last_active"].is_null(), "{p}");

    // An expired invitation is refused, no longer listed, and may be sent again.
    let late = format!("late-{suffix}@example.com");
    let stale = invite(&app, &owner, &late, "developer").await;
    sqlx::query(
        "UPDATE team_invitations SET expires_at = now() - interval '1 minute' WHERE id = $1",
    )
    .bind(uuid::Uuid::parse_str(stale["id"].as_str().unwrap()).unwrap())
    .execute(&app.running.pg)
    .await
    .unwrap();
    let (s, v) = accept(
        &app,
        None,
        json!({"token": stale["invite_token"], "username": format!("late-{suffix}"),
            "password": "invitee-pass-1"}),
    )
    .await;
    assert_error(s, 404, &v);
    let (_, v) = call(&app, &owner, Method::GET, TEAM, None).await;
    assert!(team_member(&v, &late).is_none(), "{v}");
    let again = invite(&app, &owner, &late, "developer").await;
    assert_ne!(again["invite_token"], stale["invite_token"]);

    // Someone with an account accepts with their Bearer token and, after
    // logging in again, acts in the owner's tenant with the invited role.
    let other = app.register_user().await;
    let (s, v) = accept(
        &app,
        Some(&other.token),
        json!({"token": again["invite_token"]}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["data"]["role"], "developer");
    let fresh = app.login(&other.username, "s3cret-passw0rd").await;
    let (s, v) = status_json(
        app.bearer(Method::POST, "/api/alerts/rules", &fresh, &tenant)
            .json(&json!({"name": "by invitee", "condition": "new_error"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = status_json(
        app.bearer(Method::POST, KEYS, &fresh, &tenant)
            .json(&json!({"name": "nope", "permissions": ["read"]})),
    )
    .await;
    assert_error(s, 403, &v);
    // Already a member: 409.
    let third = invite(
        &app,
        &owner,
        &format!("third-{suffix}@example.com"),
        "viewer",
    )
    .await;
    let (s, v) = accept(&app, Some(&fresh), json!({"token": third["invite_token"]})).await;
    assert_error(s, 409, &v);
    let _ = sluice_storage::pg::tenants::delete(&app.running.pg, owner_user.tenant_id).await;
    let _ = sluice_storage::pg::tenants::delete(&app.running.pg, other.tenant_id).await;
    app.stop().await;
}

/// The requests a receiver got: headers and body.
type Received = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

/// A local webhook receiver's state.
#[derive(Clone, Default)]
struct Receiver {
    got: Received,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.got.lock().unwrap().push((headers, body.to_vec()));
    StatusCode::OK
}

async fn start_receiver() -> (String, Receiver) {
    let r = Receiver::default();
    let app = axum::Router::new()
        .fallback(axum::routing::post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}/hook"), r)
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn find(v: &Value, name: &str) -> Value {
    v["data"]["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrations_are_configured_masked_and_tested() {
    let app = TestApp::spawn().await;
    let (owner, _) = owner(&app).await;
    let (s, v) = call(&app, &owner, Method::GET, INTEGRATIONS, None).await;
    assert_eq!(s, 200, "{v}");
    for name in ["slack", "webhook", "email"] {
        let i = find(&v, name);
        assert_eq!(i["status"], "disconnected", "{i}");
        assert!(i["last_test"].is_null());
        assert!(i["config"].is_object());
    }
    // Unknown names, bad configs.
    let (s, v) = call(
        &app,
        &owner,
        Method::PUT,
        &format!("{INTEGRATIONS}/pagerduty"),
        Some(json!({"config": {}})),
    )
    .await;
    assert_error(s, 404, &v);
    let (s, v) = call(
        &app,
        &owner,
        Method::POST,
        &format!("{INTEGRATIONS}/pagerduty/test"),
        None,
    )
    .await;
    assert_error(s, 404, &v);
    for body in [
        json!({"config": {"url": "ftp://example.com/x"}}),
        json!({"config": {"url": "not a url"}}),
        json!({"config": {}}),
        json!({"url": "http://example.com"}),
    ] {
        let (s, v) = call(
            &app,
            &owner,
            Method::PUT,
            &format!("{INTEGRATIONS}/webhook"),
            Some(body),
        )
        .await;
        assert_error(s, 400, &v);
    }

    // Slack and email: secrets masked to their last 4 characters.
    let hook = "https://hooks.slack.com/services/T000/B000/XyZsecretWXYZ";
    let (s, v) = call(
        &app,
        &owner,
        Method::PUT,
        &format!("{INTEGRATIONS}/slack"),
        Some(json!({"config": {"webhook_url": hook, "channel": "#alerts"}})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let d = &v["data"];
    assert_eq!(d["status"], "connected");
    assert_eq!(d["config"]["channel"], "#alerts");
    let shown = d["config"]["webhook_url"].as_str().unwrap();
    assert!(!shown.contains("XyZsecret") && shown.len() <= 8, "{shown}");
    let (s, v) = call(&app, &owner, Method::PUT, &format!("{INTEGRATIONS}/email"), Some(json!({"config": {
        "smtp_host": "127.0.0.1", "smtp_port": 2525, "username": "u", "password": "smtp-pass-Bn42Vc",
        "from": "alerts@example.com", "to": ["ops@example.com"]}}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["config"]["smtp_host"], "127.0.0.1");
    assert_eq!(v["data"]["config"]["password"], "****42Vc");
    let (_, all) = call(&app, &owner, Method::GET, INTEGRATIONS, None).await;
    let text = all.to_string();
    assert!(
        !text.contains("XyZsecret") && !text.contains("smtp-pass"),
        "{text}"
    );
    assert_eq!(find(&all, "slack")["status"], "connected");
    assert_eq!(
        find(&all, "email")["config"]["to"],
        json!(["ops@example.com"])
    );

    // Webhook test into a real local receiver.
    let (url, rx) = start_receiver().await;
    let (s, v) = call(
        &app,
        &owner,
        Method::PUT,
        &format!("{INTEGRATIONS}/webhook"),
        Some(json!({"config": {"url": url}})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["config"]["url"], url.as_str());
    assert_eq!(v["data"]["status"], "connected");
    let (s, v) = call(
        &app,
        &owner,
        Method::POST,
        &format!("{INTEGRATIONS}/webhook/test"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["success"], true);
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert!(got[0].0["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: Value = serde_json::from_slice(&got[0].1).unwrap();
    assert_eq!(body["type"], "test", "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    let (_, all) = call(&app, &owner, Method::GET, INTEGRATIONS, None).await;
    assert!(find(&all, "webhook")["last_test"].is_string());
    assert_eq!(find(&all, "webhook")["status"], "connected");

    // A failing delivery: 502, and the integration shows `error`.
    let dead = format!("http://127.0.0.1:{}/hook", closed_port());
    let (s, _) = call(
        &app,
        &owner,
        Method::PUT,
        &format!("{INTEGRATIONS}/webhook"),
        Some(json!({"config": {"url": dead}})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = call(
        &app,
        &owner,
        Method::POST,
        &format!("{INTEGRATIONS}/webhook/test"),
        None,
    )
    .await;
    assert_error(s, 502, &v);
    let (_, all) = call(&app, &owner, Method::GET, INTEGRATIONS, None).await;
    assert_eq!(find(&all, "webhook")["status"], "error");
    assert!(find(&all, "webhook")["last_test"].is_string());
    app.stop().await;
}
