//! Role-based access on every Health Monitor route (contract section 11,
//! conventions "Roles"), as one table: each route × each role, both as an
//! API key (permissions `read`, `read`+`write`, `admin`, `owner`) and as a
//! logged-in user of that role (Bearer). An allowed request gets anything
//! but 401/403 (ids in paths are unknown, so nothing is destroyed); a
//! denied one gets 403 in the Health Monitor error envelope. Without
//! credentials, or with unknown ones, every route answers 401.

use reqwest::Method;
use serde_json::{json, Value};
use sluice_storage::pg::{api_keys, tenants};
use uuid::Uuid;

use crate::support::{status_json, TestApp, User};

/// The least role a route needs (conventions, "Roles").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Need {
    Viewer,
    Developer,
    Admin,
    Owner,
}

/// An unknown id: allowed callers get 404, never a change.
const NOPE: &str = "00000000-0000-4000-8000-000000000000";

/// One row of the table: method, path, body, the least role allowed.
fn routes() -> Vec<(Method, String, Option<Value>, Need)> {
    use Method as M;
    use Need::*;
    let invite = |role: &str| json!({"email": format!("i-{}@example.com", Uuid::new_v4().simple()), "role": role});
    vec![
        (M::GET, "/api/errors".into(), None, Viewer),
        (
            M::POST,
            "/api/errors".into(),
            Some(json!({"message": "roles table", "source": "roles"})),
            Developer,
        ),
        (M::GET, format!("/api/errors/{NOPE}"), None, Viewer),
        (M::DELETE, format!("/api/errors/{NOPE}"), None, Developer),
        (
            M::PUT,
            format!("/api/errors/{NOPE}/resolve"),
            None,
            Developer,
        ),
        (M::GET, "/api/errors/export?format=csv".into(), None, Viewer),
        (M::GET, "/api/stats".into(), None, Viewer),
        (M::GET, "/api/analytics/trends".into(), None, Viewer),
        (M::GET, "/api/analytics/performance".into(), None, Viewer),
        (M::GET, "/api/monitoring/services".into(), None, Viewer),
        (M::GET, "/api/monitoring/metrics".into(), None, Viewer),
        (M::GET, "/api/monitoring/uptime".into(), None, Viewer),
        (M::GET, "/api/settings/retention".into(), None, Viewer),
        (
            M::PUT,
            "/api/settings/retention".into(),
            Some(json!({"events_days": 30})),
            Admin,
        ),
        (M::GET, "/api/admin/dead-letters".into(), None, Admin),
        (M::DELETE, "/api/admin/dead-letters/1-0".into(), None, Admin),
        (
            M::POST,
            "/api/admin/dead-letters/1-0/replay".into(),
            None,
            Admin,
        ),
        (M::GET, "/api/settings/api-keys".into(), None, Viewer),
        (
            M::POST,
            "/api/settings/api-keys".into(),
            Some(json!({"name": "roles table", "permissions": ["read"]})),
            Admin,
        ),
        (
            M::DELETE,
            format!("/api/settings/api-keys/{NOPE}"),
            None,
            Admin,
        ),
        (
            M::POST,
            format!("/api/settings/api-keys/{NOPE}/rotate"),
            None,
            Admin,
        ),
        (M::GET, "/api/settings/team".into(), None, Viewer),
        (
            M::POST,
            "/api/settings/team/invite".into(),
            Some(invite("developer")),
            Admin,
        ),
        (
            M::POST,
            "/api/settings/team/invite".into(),
            Some(invite("owner")),
            Owner,
        ),
        (M::GET, "/api/settings/integrations".into(), None, Viewer),
        (
            M::PUT,
            "/api/settings/integrations/webhook".into(),
            Some(json!({"config": {"url": "http://127.0.0.1:9/roles"}})),
            Admin,
        ),
        (
            M::POST,
            "/api/settings/integrations/webhook/test".into(),
            None,
            Admin,
        ),
        (M::GET, "/api/alerts/rules".into(), None, Viewer),
        (
            M::POST,
            "/api/alerts/rules".into(),
            Some(json!({"name": "roles", "condition": "new_error", "enabled": false})),
            Developer,
        ),
        (
            M::PUT,
            format!("/api/alerts/rules/{NOPE}"),
            Some(json!({"enabled": false})),
            Developer,
        ),
        (
            M::DELETE,
            format!("/api/alerts/rules/{NOPE}"),
            None,
            Developer,
        ),
        (M::GET, "/api/alerts/incidents".into(), None, Viewer),
        (
            M::POST,
            "/api/alerts/incidents".into(),
            Some(json!({"title": "roles table", "severity": "low"})),
            Developer,
        ),
        (
            M::PUT,
            format!("/api/alerts/incidents/{NOPE}"),
            Some(json!({"status": "monitoring"})),
            Developer,
        ),
    ]
}

/// A credential and the role it acts with.
struct Cred {
    label: String,
    role: Need,
    key: Option<String>,
    bearer: Option<String>,
}

async fn send(
    app: &TestApp,
    cred: Option<&Cred>,
    method: &Method,
    path: &str,
    body: &Option<Value>,
) -> (u16, Value) {
    let mut r = app.http.request(method.clone(), app.url(path));
    if let Some(c) = cred {
        if let Some(k) = &c.key {
            r = r.header("X-API-Key", k);
        }
        if let Some(t) = &c.bearer {
            r = r.bearer_auth(t);
        }
    }
    if let Some(b) = body {
        r = r.json(b);
    }
    status_json(r).await
}

fn envelope(v: &Value) -> bool {
    v["status"] == "error" && v["error"].as_str().is_some_and(|e| !e.is_empty())
}

/// A key with `perms` in the owner's tenant, made through the API.
async fn key_of(app: &TestApp, owner: &User, perms: &[&str]) -> String {
    let (s, v) = status_json(
        app.bearer(
            Method::POST,
            "/api/settings/api-keys",
            &owner.token,
            &owner.tenant_id.to_string(),
        )
        .json(&json!({"name": format!("roles {}", perms.join("+")), "permissions": perms})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    v["data"]["key"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_health_monitor_route_applies_the_role_table() {
    let app = TestApp::spawn().await;
    let owner = app.register_user().await;
    // The owner key is what the bootstrap key is: permission `owner`.
    let owner_perms = vec!["owner".to_string()];
    let (_, owner_key) = api_keys::create(
        &app.running.pg,
        &api_keys::NewKey {
            tenant_id: owner.tenant_id,
            name: "roles owner",
            permissions: &owner_perms,
            rate_limit_per_min: None,
            expires_at: None,
        },
    )
    .await
    .unwrap();
    let key = |label: &str, role, k: String| Cred {
        label: label.into(),
        role,
        key: Some(k),
        bearer: None,
    };
    let user = |label: &str, role, t: String| Cred {
        label: label.into(),
        role,
        key: None,
        bearer: Some(t),
    };
    let creds = vec![
        key(
            "key read",
            Need::Viewer,
            key_of(&app, &owner, &["read"]).await,
        ),
        key(
            "key read+write",
            Need::Developer,
            key_of(&app, &owner, &["read", "write"]).await,
        ),
        key(
            "key write",
            Need::Developer,
            key_of(&app, &owner, &["write"]).await,
        ),
        key(
            "key admin",
            Need::Admin,
            key_of(&app, &owner, &["admin"]).await,
        ),
        key("key owner", Need::Owner, owner_key),
        user(
            "user viewer",
            Need::Viewer,
            app.member_token(&owner, "viewer").await,
        ),
        user(
            "user developer",
            Need::Developer,
            app.member_token(&owner, "developer").await,
        ),
        user(
            "user admin",
            Need::Admin,
            app.member_token(&owner, "admin").await,
        ),
        user("user owner", Need::Owner, owner.token.clone()),
    ];
    // A Bearer API key acts like the same key in X-API-Key.
    let viewer_key_bearer = Cred {
        label: "key read as Bearer".into(),
        role: Need::Viewer,
        key: None,
        bearer: creds[0].key.clone(),
    };

    let mut checked = 0;
    let mut failures = Vec::new();
    for (method, path, body, need) in routes() {
        for cred in creds.iter().chain(std::iter::once(&viewer_key_bearer)) {
            let (s, v) = send(&app, Some(cred), &method, &path, &body).await;
            checked += 1;
            let allowed = cred.role >= need;
            let ok = if allowed {
                // The webhook test delivers to a closed port: 502.
                (s != 401 && s != 403 && s < 500) || (s == 502 && path.ends_with("/test"))
            } else {
                s == 403 && envelope(&v)
            };
            if !ok {
                failures.push(format!(
                    "{method} {path} as {} (allowed: {allowed}): {s} {v}",
                    cred.label
                ));
            }
        }
        // No credential, an unknown key, an unknown Bearer token: 401.
        let none = nobody();
        let bad_key = Cred {
            key: Some("sk_live_00000000000000000000000000000000".into()),
            ..nobody()
        };
        let bad_token = Cred {
            bearer: Some("not.a.token".into()),
            ..nobody()
        };
        for (what, cred) in [
            ("no credential", &none),
            ("unknown key", &bad_key),
            ("unknown token", &bad_token),
        ] {
            let (s, v) = send(&app, Some(cred), &method, &path, &body).await;
            checked += 1;
            if !(s == 401 && envelope(&v)) {
                failures.push(format!("{method} {path} with {what}: {s} {v}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 300, "{checked}");
    let _ = tenants::delete(&app.running.pg, owner.tenant_id).await;
    app.stop().await;
}

/// No credential at all.
fn nobody() -> Cred {
    Cred {
        label: String::new(),
        role: Need::Viewer,
        key: None,
        bearer: None,
    }
}
