//! Users, logins on both contracts' paths, tokens and the start-up checks.

use reqwest::Method;
use serde_json::{json, Value};
use sluice::app::{self, Mode};
use uuid::Uuid;

use crate::support::{status_json, test_config, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_from_the_environment_logs_in_on_both_paths() {
    let admin = format!("admin-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let app = TestApp::spawn_with(Mode::ALL, |c| {
        c.admin_user = Some(admin.clone());
        c.admin_password = Some("Admin123!".into());
    })
    .await;

    let (s, v) = status_json(
        app.http
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"username": admin, "password": "Admin123!"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["token_type"], "bearer");
    assert!(v["access_token"].as_str().unwrap().starts_with("eyJ"));
    assert!(v["refresh_token"].as_str().unwrap().starts_with("eyJ"));
    // OAuth2-style form login too.
    let (s, _) = status_json(
        app.http
            .post(app.url("/api/v1/auth/login"))
            .form(&[("username", admin.as_str()), ("password", "Admin123!")]),
    )
    .await;
    assert_eq!(s, 200);
    let (s, bad) = status_json(
        app.http
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"username": admin, "password": "nope"})),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(bad["detail"], "invalid username or password");
    assert!(bad["code"].is_string() && bad["timestamp"].is_string());
    let (s, bad) = status_json(
        app.http
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"username": admin})),
    )
    .await;
    assert_eq!(s, 422);
    assert!(bad["detail"].as_str().unwrap().contains("required"));

    let (s, o) = status_json(
        app.http
            .post(app.url("/api/v1/authentication/login"))
            .json(&json!({"username": admin, "password": "Admin123!"})),
    )
    .await;
    assert_eq!(s, 200, "{o}");
    assert!(o["token"].as_str().unwrap().starts_with("eyJ"));
    assert!(chrono::DateTime::parse_from_rfc3339(o["expiresAt"].as_str().unwrap()).is_ok());
    assert_eq!(o["user"], json!({"username": admin, "role": "Admin"}));
    let (s, e) = status_json(
        app.http
            .post(app.url("/api/v1/authentication/login"))
            .json(&json!({"username": admin, "password": "x"})),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(e["error"]["code"], "UNAUTHORIZED");
    assert!(e["error"]["traceId"].is_string());

    // The orchestrator's token works on the other contracts' routes.
    let token = o["token"].as_str().unwrap();
    let (s, me) = status_json(app.bearer(Method::GET, "/api/v1/auth/me", token, "default")).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["username"], admin.as_str());
    let def = me["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["slug"] == "default")
        .cloned()
        .unwrap();
    assert_eq!(def["role"], "admin");
    assert_eq!(me["current_tenant"]["slug"], "default");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_refresh_and_me() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let tenant = user.tenant_id.to_string();
    let (s, me) =
        status_json(app.bearer(Method::GET, "/api/v1/auth/me", &user.token, &tenant)).await;
    assert_eq!(s, 200);
    assert_eq!(me["tenants"].as_array().unwrap().len(), 1);
    assert_eq!(me["tenants"][0]["role"], "owner");
    assert_eq!(me["current_tenant"]["id"], tenant.as_str());

    // Duplicate and weak registrations.
    let (s, v) = status_json(
        app.http
            .post(app.url("/api/v1/auth/register"))
            .json(&json!({"username": user.username, "password": "another-passw0rd"})),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["code"], "CONFLICT");
    let (s, _) = status_json(
        app.http
            .post(app.url("/api/v1/auth/register"))
            .json(&json!({"username": "shorty-pw", "password": "abc"})),
    )
    .await;
    assert_eq!(s, 422);

    // A refresh token works once; an access token is not a refresh token.
    let (s, pair) = status_json(
        app.http
            .post(app.url("/api/v1/auth/refresh"))
            .json(&json!({"refresh_token": user.refresh})),
    )
    .await;
    assert_eq!(s, 200, "{pair}");
    let new_access = pair["access_token"].as_str().unwrap();
    let (s, _) = status_json(app.bearer(Method::GET, "/api/v1/auth/me", new_access, &tenant)).await;
    assert_eq!(s, 200);
    let (s, v) = status_json(
        app.http
            .post(app.url("/api/v1/auth/refresh"))
            .json(&json!({"refresh_token": user.refresh})),
    )
    .await;
    assert_eq!(s, 401, "a used refresh token is refused: {v}");
    let (s, _) = status_json(
        app.http
            .post(app.url("/api/v1/auth/refresh"))
            .json(&json!({"refresh_token": user.token})),
    )
    .await;
    assert_eq!(s, 401);

    // Someone else's tenant, a bad token, no token.
    let other = app.register_user().await;
    let (s, v) = status_json(app.bearer(
        Method::GET,
        "/api/v1/auth/me",
        &user.token,
        &other.tenant_id.to_string(),
    ))
    .await;
    assert_eq!(s, 403, "{v}");
    let (s, _) = status_json(app.bearer(
        Method::GET,
        "/api/v1/auth/me",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.bad",
        &tenant,
    ))
    .await;
    assert_eq!(s, 401);
    let (s, v) = status_json(app.http.get(app.url("/api/v1/auth/me"))).await;
    assert_eq!(s, 401);
    assert!(v["detail"].as_str().unwrap().contains("Bearer"));

    // An API key is a Bearer credential too.
    let (s, me) = status_json(app.bearer(
        Method::GET,
        "/api/v1/auth/me",
        &app.key,
        &app.tenant_id.to_string(),
    ))
    .await;
    assert_eq!(s, 200);
    assert_eq!(me["type"], "api_key");
    assert_eq!(me["current_tenant"]["role"], "developer");
    for t in [user.tenant_id, other.tenant_id] {
        let _ = sluice_storage::pg::tenants::delete(&app.running.pg, t).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_to_start_without_a_real_secret_outside_dev_mode() {
    let mut cfg = test_config();
    cfg.dev = false;
    cfg.secret_key = None;
    let err = app::start(&cfg, Mode::API)
        .await
        .err()
        .expect("must refuse");
    assert!(format!("{err:#}").contains("SLUICE_SECRET_KEY"), "{err:#}");
    cfg.secret_key = Some(sluice_auth::DEV_SECRET.into());
    assert!(
        app::start(&cfg, Mode::API).await.is_err(),
        "the dev secret is refused"
    );
    cfg.secret_key = Some("short".into());
    assert!(app::start(&cfg, Mode::API).await.is_err());
    cfg.secret_key = Some("k".repeat(48));
    let running = app::start(&cfg, Mode::API)
        .await
        .expect("a real secret starts");
    let r: Value = reqwest::get(format!("http://{}/health", running.addr.unwrap()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "ok");
    running.stop().await;
}

/// A NUL character (no Postgres text holds one) in a login name, a
/// registration field or a task id is answered in the contract's envelope
/// (401, 422, 404), never as a store failure, and the API keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_characters_get_contract_answers_not_store_errors() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let tenant = user.tenant_id.to_string();

    let (s, v) = status_json(app.http.post(app.url("/api/v1/auth/login")).json(
        &json!({"username": format!("{}\u{0}x", user.username), "password": "s3cret-passw0rd"}),
    ))
    .await;
    // Refused as invalid input before any store is asked (the login shared
    // with the orchestrator's checks credentials first).
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["code"], "VALIDATION_ERROR", "{v}");

    let name = format!("nul-{}", &Uuid::new_v4().simple().to_string()[..8]);
    for field in ["email", "full_name"] {
        let mut body =
            json!({"username": name, "password": "s3cret-passw0rd", "email": "a@example.com"});
        body[field] = json!("a@b\u{0}c");
        let (s, v) = status_json(app.http.post(app.url("/api/v1/auth/register")).json(&body)).await;
        assert_eq!(s, 422, "{field}: {v}");
        assert_eq!(v["code"], "VALIDATION_ERROR", "{v}");
    }

    let (s, v) =
        status_json(app.bearer(Method::GET, "/api/v1/tasks/a%00b", &user.token, &tenant)).await;
    assert_eq!(s, 404, "{v}");
    assert_eq!(v["code"], "NOT_FOUND", "{v}");

    // Nothing above reached Postgres as a failure: the API still answers.
    let (s, v) =
        status_json(app.bearer(Method::GET, "/api/v1/auth/me", &user.token, &tenant)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["username"], user.username.as_str());
    app.stop().await;
}
