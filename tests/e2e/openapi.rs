//! The OpenAPI document (`/openapi.json`), Swagger UI (`/docs`), and
//! schemathesis run against a live Sluice over the whole document: no 5xx
//! for any generated input, every answer in a documented status code,
//! content type and schema.
//!
//! `SLUICE_ST_INCLUDE` (a path regex) narrows the run to some operations
//! while working on them; `SLUICE_ST_EXAMPLES` sets the examples per
//! operation (default 10); CI runs the whole document with a fixed seed.

use std::process::Command;

use serde_json::Value;
use sluice::app::Mode;
use sluice_storage::pg::api_keys;

use crate::support::TestApp;

/// An owner key of the app's tenant, so every route can be reached.
async fn owner_key(app: &TestApp) -> String {
    let pool = sqlx::PgPool::connect(&app.cfg.database_url).await.unwrap();
    let perms = vec!["owner".to_string()];
    let (_, key) = api_keys::create(
        &pool,
        &api_keys::NewKey {
            tenant_id: app.tenant_id,
            name: "schemathesis",
            permissions: &perms,
            rate_limit_per_min: None,
            expires_at: None,
        },
    )
    .await
    .unwrap();
    key
}

#[tokio::test]
async fn document_is_openapi_3_1_and_docs_are_served_from_sluice() {
    let app = TestApp::spawn().await;
    let res = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap_or("").starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert!(doc["components"]["securitySchemes"]["apiKey"].is_object());
    assert!(doc["paths"].as_object().is_some_and(|p| !p.is_empty()));

    let res = app.http.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    // Every asset the page loads is Sluice's own, never a CDN's.
    assert!(!html.contains("https://"), "external asset in {html}");
    let css = app
        .http
        .get(app.url("/docs/swagger-ui.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), 200);
    app.stop().await;
}

/// Operations that revoke or rotate API keys: schemathesis reuses ids it
/// read from earlier answers, so it can reach the key it runs with. They
/// run last, in a pass of their own with a key of their own.
const KEY_CHANGES: &str = r"^/api/settings/api-keys/\{id\}";

/// One schemathesis run over the document (or the part `filter` selects);
/// panics with its report when it finds anything.
async fn schemathesis(app: &TestApp, key: &str, filter: &[&str]) {
    let st = format!(
        "{}/bin/st",
        std::env::var("SLUICE_PY").unwrap_or_else(|_| {
            format!(
                "{}/.cache/sluice-py",
                std::env::var("HOME").unwrap_or_default()
            )
        })
    );
    let examples = std::env::var("SLUICE_ST_EXAMPLES").unwrap_or_else(|_| "10".into());
    let mut cmd = Command::new(&st);
    cmd.arg("run")
        .arg(app.url("/openapi.json"))
        // Every route takes an API key as X-API-Key or as a Bearer token.
        .args(["--header", &format!("X-API-Key: {key}")])
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", &examples])
        .args(["--seed", "1"])
        .args(["--workers", "2"])
        .args(["--request-timeout", "30"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--suppress-health-check", "all"])
        .args(["--max-failures", "50"])
        .args(["--output-truncate", "false"])
        .args(filter);
    if let Ok(include) = std::env::var("SLUICE_ST_INCLUDE") {
        cmd.args(["--include-path-regex", &include]);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{st}: {e} (scripts/services.sh installs schemathesis)"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}"
    );
}

#[tokio::test]
async fn schemathesis_finds_nothing() {
    let app = TestApp::spawn_with(Mode::ALL, |c| {
        c.login_failures_per_user = 0;
        c.login_failures_per_ip = 0;
    })
    .await;
    let key = owner_key(&app).await;
    schemathesis(&app, &key, &["--exclude-path-regex", KEY_CHANGES]).await;
    let key = owner_key(&app).await;
    schemathesis(&app, &key, &["--include-path-regex", KEY_CHANGES]).await;
    app.stop().await;
}
