//! Users (admin only) over HTTP: CRUD with roles, 403 for non-admins, 409
//! and 422, no password fields, self and last-admin protection, locked-out
//! users (login and existing tokens), and login throttling.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use sluice_storage::pg::api_keys;
use uuid::Uuid;

use crate::support::{status_json, wait_for, TestApp, User};

async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    status_json(r).await
}

async fn login(app: &TestApp, username: &str, password: &str) -> (u16, Value, Option<String>) {
    let r = app
        .http
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (s, r.json().await.unwrap_or(Value::Null), retry)
}

fn no_password(v: &Value) {
    assert!(!v.to_string().to_lowercase().contains("password"), "{v}");
}

fn name() -> String {
    format!("op-{}", &Uuid::new_v4().simple().to_string()[..10])
}

async fn create(app: &TestApp, owner: &User, username: &str, role: &str) -> Value {
    let (s, v) = call(
        app,
        &owner.token,
        Method::POST,
        "/api/v1/users",
        Some(
            json!({"username": username, "email": format!("{username}@example.com"),
            "password": "operator-pass-1", "full_name": "Op Erator", "role": role}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    no_password(&v);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_manage_users_and_other_roles_get_403() {
    let app = TestApp::spawn().await;
    let owner = app.register_user().await;
    let op_name = name();
    let op = create(&app, &owner, &op_name, "operator").await;
    assert!(op["id"].is_i64());
    assert_eq!(op["username"], op_name.as_str());
    assert_eq!(op["email"], format!("{op_name}@example.com"));
    assert_eq!(op["full_name"], "Op Erator");
    assert_eq!(op["role"], "operator");
    assert_eq!(op["is_active"], true);
    assert!(chrono::DateTime::parse_from_rfc3339(op["created_at"].as_str().unwrap()).is_ok());
    let id = op["id"].as_i64().unwrap();

    let (s, list) = call(&app, &owner.token, Method::GET, "/api/v1/users", None).await;
    assert_eq!(s, 200);
    no_password(&list);
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (s, v) = call(
        &app,
        &owner.token,
        Method::PUT,
        &format!("/api/v1/users/{id}"),
        Some(json!({"full_name": "Renamed", "password": "another-pass-2"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    no_password(&v);
    assert_eq!(v["full_name"], "Renamed");
    assert_eq!(v["role"], "operator", "absent fields keep their value");

    // the operator logs in (new password) and may not touch /users
    let (s, l, _) = login(&app, &op_name, "another-pass-2").await;
    assert_eq!(s, 200, "{l}");
    let op_token = l["access_token"].as_str().unwrap().to_string();
    for (m, path, body) in [
        (Method::GET, "/api/v1/users".to_string(), None),
        (
            Method::POST,
            "/api/v1/users".to_string(),
            Some(json!({"username": name(), "password": "whatever-123", "role": "viewer"})),
        ),
        (
            Method::PUT,
            format!("/api/v1/users/{id}"),
            Some(json!({"role": "admin"})),
        ),
        (Method::DELETE, format!("/api/v1/users/{id}"), None),
        (Method::GET, "/api/v1/audit/logs".to_string(), None),
        (Method::GET, "/api/v1/audit/export".to_string(), None),
    ] {
        let (s, v) = call(&app, &op_token, m.clone(), &path, body).await;
        assert_eq!(s, 403, "{m} {path}: {v}");
    }

    // duplicates and unknown roles
    let (s, v) = call(
        &app,
        &owner.token,
        Method::POST,
        "/api/v1/users",
        Some(json!({"username": op_name, "password": "operator-pass-1", "role": "viewer"})),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    let (s, v) = call(
        &app,
        &owner.token,
        Method::POST,
        "/api/v1/users",
        Some(json!({"username": name(), "password": "operator-pass-1", "role": "superuser"})),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["detail"][0]["loc"], json!(["body", "role"]));
    let (s, _) = call(
        &app,
        &owner.token,
        Method::PUT,
        &format!("/api/v1/users/{id}"),
        Some(json!({"role": "root"})),
    )
    .await;
    assert_eq!(s, 422);

    // recorded
    let (_, v) = call(
        &app,
        &owner.token,
        Method::GET,
        "/api/v1/audit/logs?action=user_create",
        None,
    )
    .await;
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(v["items"][0]["resource_id"], id);
    assert_eq!(v["items"][0]["resource_type"], "user");
    no_password(&v);

    // another tenant's admin sees a 404
    let other = app.register_user().await;
    let (s, _) = call(
        &app,
        &other.token,
        Method::PUT,
        &format!("/api/v1/users/{id}"),
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = call(
        &app,
        &other.token,
        Method::DELETE,
        &format!("/api/v1/users/{id}"),
        None,
    )
    .await;
    assert_eq!(s, 404);

    let (s, _) = call(
        &app,
        &owner.token,
        Method::DELETE,
        &format!("/api/v1/users/{id}"),
        None,
    )
    .await;
    assert!(s == 200 || s == 204);
    let (s, _) = call(
        &app,
        &owner.token,
        Method::GET,
        &format!("/api/v1/users/{id}"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (s, _, _) = login(&app, &op_name, "another-pass-2").await;
    assert_eq!(s, 401, "a deleted user cannot log in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_locks_the_tenant_out() {
    let app = TestApp::spawn().await;
    let owner = app.register_user().await;
    let (_, list) = call(&app, &owner.token, Method::GET, "/api/v1/users", None).await;
    let owner_id = list[0]["id"].as_i64().unwrap();
    let me = format!("/api/v1/users/{owner_id}");
    for body in [json!({"role": "viewer"}), json!({"is_active": false})] {
        let (s, v) = call(&app, &owner.token, Method::PUT, &me, Some(body)).await;
        assert_eq!(s, 409, "{v}");
        assert!(v["detail"].as_str().unwrap().len() > 5);
    }
    let (s, _) = call(&app, &owner.token, Method::DELETE, &me, None).await;
    assert_eq!(s, 409);

    // an owner API key of the tenant, acting for nobody in particular
    let pool = sqlx::PgPool::connect(&app.cfg.database_url).await.unwrap();
    let perms = vec!["owner".to_string()];
    let (_, key) = api_keys::create(
        &pool,
        &api_keys::NewKey {
            tenant_id: owner.tenant_id,
            name: "owner key",
            permissions: &perms,
            rate_limit_per_min: None,
            expires_at: None,
        },
    )
    .await
    .unwrap();
    let key2 = key.clone();
    wait_for("the key is loaded", || {
        let app = &app;
        let key = key2.clone();
        async move { (call(app, &key, Method::GET, "/api/v1/users", None).await.0 == 200).then_some(()) }
    }).await;
    for body in [json!({"role": "developer"}), json!({"is_active": false})] {
        let (s, v) = call(&app, &key, Method::PUT, &me, Some(body)).await;
        assert_eq!(s, 409, "the last owner: {v}");
        assert!(v["detail"].as_str().unwrap().contains("last"), "{v}");
    }
    let (s, _) = call(&app, &key, Method::DELETE, &me, None).await;
    assert_eq!(s, 409);
    // with a second admin, the owner may go
    create(&app, &owner, &name(), "admin").await;
    let (s, v) = call(&app, &key, Method::PUT, &me, Some(json!({"role": "dba"}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["role"], "dba");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivated_and_deleted_users_are_locked_out_with_their_tokens() {
    let app = TestApp::spawn_with(sluice::app::Mode::ALL, |c| c.member_check_ms = 1000).await;
    let owner = app.register_user().await;
    let n = name();
    let u = create(&app, &owner, &n, "operator").await;
    let path = format!("/api/v1/users/{}", u["id"]);
    let (s, l, _) = login(&app, &n, "operator-pass-1").await;
    assert_eq!(s, 200);
    let token = l["access_token"].as_str().unwrap().to_string();
    let (s, _) = call(&app, &token, Method::GET, "/api/v1/servers", None).await;
    assert_eq!(s, 200);

    let (s, v) = call(
        &app,
        &owner.token,
        Method::PUT,
        &path,
        Some(json!({"is_active": false})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["is_active"], false);
    let (s, _, _) = login(&app, &n, "operator-pass-1").await;
    assert_eq!(s, 401);
    let started = std::time::Instant::now();
    wait_for("the token stops working", || {
        let (app, token) = (&app, token.clone());
        async move {
            (call(app, &token, Method::GET, "/api/v1/servers", None)
                .await
                .0
                == 401)
                .then_some(())
        }
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));

    let (s, _) = call(
        &app,
        &owner.token,
        Method::PUT,
        &path,
        Some(json!({"is_active": true})),
    )
    .await;
    assert_eq!(s, 200);
    wait_for("the token works again", || {
        let (app, token) = (&app, token.clone());
        async move {
            (call(app, &token, Method::GET, "/api/v1/servers", None)
                .await
                .0
                == 200)
                .then_some(())
        }
    })
    .await;
    // deactivated behind the API's back (as another API process would):
    // the cached answer lapses within the configured second
    let pool = sqlx::PgPool::connect(&app.cfg.database_url).await.unwrap();
    sqlx::query("UPDATE users SET is_active = false WHERE username = $1")
        .bind(&n)
        .execute(&pool)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    wait_for("the cached check lapses", || {
        let (app, token) = (&app, token.clone());
        async move {
            (call(app, &token, Method::GET, "/api/v1/servers", None)
                .await
                .0
                == 401)
                .then_some(())
        }
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let (s, _) = call(&app, &owner.token, Method::DELETE, &path, None).await;
    assert_eq!(s, 200);
    let (s, _, _) = login(&app, &n, "operator-pass-1").await;
    assert_eq!(s, 401);
    wait_for("a deleted user's token stops working", || {
        let (app, token) = (&app, token.clone());
        async move {
            (call(app, &token, Method::GET, "/api/v1/servers", None)
                .await
                .0
                == 401)
                .then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_throttled_per_username_and_per_address() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    for _ in 0..5 {
        let (s, _, _) = login(&app, &user.username, "wrong-password").await;
        assert_eq!(s, 401);
    }
    // refused now, even with the right password
    let (s, v, retry) = login(&app, &user.username, "s3cret-passw0rd").await;
    assert_eq!(s, 429, "{v}");
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    // the owner's earlier token still reads the failures
    let (_, v) = call(
        &app,
        &user.token,
        Method::GET,
        "/api/v1/audit/logs?action=login_failed",
        None,
    )
    .await;
    assert!(v["total"].as_i64().unwrap() >= 5, "{v}");
    assert_eq!(v["items"][0]["username"], user.username.as_str());

    // 20 failures from one address (each for a different name) close it
    let mut last = 0;
    for i in 0..21 {
        let (s, _, retry) = login(
            &app,
            &format!("nobody-{i}-{}", Uuid::new_v4().simple()),
            "x-password",
        )
        .await;
        last = s;
        if i < 14 {
            // 6 failures above already came from this address
            assert_eq!(s, 401, "failure {i}");
        }
        if s == 429 {
            assert!(retry.is_some());
            break;
        }
    }
    assert_eq!(last, 429);
    let other = format!("fresh-{}", Uuid::new_v4().simple());
    let (s, _, retry) = login(&app, &other, "whatever-pass").await;
    assert_eq!(s, 429);
    assert!(retry.unwrap().parse::<u64>().unwrap() >= 1);
}

/// Every write route of the Backup platform refuses the roles it names as
/// readers (viewer), with 403 and nothing changed; reads stay open to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_checks_on_every_backup_platform_route() {
    let app = TestApp::spawn().await;
    let owner = app.register_user().await;
    let server = crate::backups::pg_server(&app, &owner).await;
    let viewer_name = name();
    create(&app, &owner, &viewer_name, "viewer").await;
    let (s, v, _) = login(&app, &viewer_name, "operator-pass-1").await;
    assert_eq!(s, 200, "{v}");
    let viewer = v["access_token"].as_str().unwrap().to_string();
    let db =
        json!({"type": "postgresql", "host": "127.0.0.1", "port": 5432, "username": "postgres"});
    let writes = [
        (
            Method::POST,
            "/api/v1/servers".to_string(),
            json!({"name": "x", "type": "local", "database": db}),
        ),
        (
            Method::PUT,
            format!("/api/v1/servers/{server}"),
            json!({"name": "renamed"}),
        ),
        (
            Method::DELETE,
            format!("/api/v1/servers/{server}"),
            json!(null),
        ),
        (
            Method::POST,
            "/api/v1/backups".to_string(),
            json!({"server_id": server, "database_name": "postgres"}),
        ),
        (
            Method::POST,
            "/api/v1/schedules".to_string(),
            json!({"name": "s", "server_id": server, "database_name": "postgres", "cron_expression": "0 2 * * *", "timezone": "UTC"}),
        ),
        (
            Method::POST,
            "/api/v1/retention-policies".to_string(),
            json!({"name": "p", "keep_last_n": 3}),
        ),
        (
            Method::POST,
            "/api/v1/notifications/channels".to_string(),
            json!({"name": "c", "type": "webhook", "config": {"url": "http://127.0.0.1:9/x"}}),
        ),
        (
            Method::POST,
            "/api/v1/commands".to_string(),
            json!({"name": "c", "command_template": "echo hi", "type": "shell"}),
        ),
        (
            Method::POST,
            "/api/v1/users".to_string(),
            json!({"username": "nobody-x", "email": "n@example.com", "password": "pass-word-1", "role": "viewer"}),
        ),
    ];
    for (m, path, body) in writes {
        let body = (!body.is_null()).then_some(body);
        let (s, v) = call(&app, &viewer, m.clone(), &path, body).await;
        assert_eq!(s, 403, "{m} {path}: {v}");
    }
    for path in ["/api/v1/audit/logs", "/api/v1/users"] {
        let (s, _) = call(&app, &viewer, Method::GET, path, None).await;
        assert_eq!(s, 403, "{path}");
    }
    // Reads stay open to a viewer, and nothing above changed anything.
    for path in [
        "/api/v1/servers".to_string(),
        format!("/api/v1/servers/{server}"),
        "/api/v1/backups".to_string(),
        "/api/v1/schedules".to_string(),
        "/api/v1/retention-policies".to_string(),
        "/api/v1/commands".to_string(),
    ] {
        let (s, v) = call(&app, &viewer, Method::GET, &path, None).await;
        assert_eq!(s, 200, "{path}: {v}");
    }
    let (_, s) = call(
        &app,
        &owner.token,
        Method::GET,
        &format!("/api/v1/servers/{server}"),
        None,
    )
    .await;
    assert_eq!(s["name"], "local pg");
    let (_, list) = call(&app, &owner.token, Method::GET, "/api/v1/backups", None).await;
    assert_eq!(list["total"], 0);
    app.stop().await;
}
