//! The OpenAPI document (`/openapi.json`), Swagger UI (`/docs`), and
//! schemathesis run against a live Sluice over the whole document: no 5xx
//! for any generated input, every answer in a documented status code,
//! content type and schema.
//!
//! `SLUICE_ST_INCLUDE` (a path regex) narrows the run to some operations
//! while working on them; `SLUICE_ST_EXAMPLES` sets the examples per
//! operation (default 25); CI runs the whole document with a fixed seed.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use reqwest::Method;
use serde_json::Value;
use sluice::app::Mode;
use sluice_storage::pg::api_keys;

use crate::support::TestApp;

/// The document, fetched once (every app serves the same one).
static DOCUMENT: OnceLock<Value> = OnceLock::new();

/// Each answer schema's validator, by the schema's text.
static VALIDATORS: LazyLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> =
    LazyLock::new(Default::default);

async fn document(app: &TestApp) -> &'static Value {
    if let Some(d) = DOCUMENT.get() {
        return d;
    }
    let res = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    let doc: Value = res.json().await.unwrap();
    DOCUMENT.get_or_init(|| doc)
}

/// Whether `path` is an instance of the document's `template`.
fn instance_of(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| t == p || (t.starts_with('{') && t.ends_with('}') && !p.is_empty()))
}

/// Panics unless the answer `status`/`body` to `method path` is one the
/// document describes: its status listed, its JSON body valid against the
/// schema given for that status. Schemathesis cannot reach the answers
/// that need real data (a registered database, a finished execution);
/// the e2e tests that make them check them here.
pub async fn assert_documented(
    app: &TestApp,
    method: &Method,
    path: &str,
    status: u16,
    body: &Value,
) {
    let doc = document(app).await;
    let path = path.split('?').next().unwrap_or(path);
    let method_key = method.as_str().to_ascii_lowercase();
    let op = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(t, item)| instance_of(t, path) && item[&method_key].is_object())
        // a literal segment wins over a parameter
        .min_by_key(|(t, _)| t.matches('{').count())
        .map(|(_, item)| &item[&method_key])
        .unwrap_or_else(|| panic!("{method} {path} is not in the document"));
    let answer = &op["responses"][status.to_string()];
    assert!(
        answer.is_object(),
        "{method} {path} answered {status}, a status the document does not list: {body}"
    );
    let Some(schema) = answer["content"]["application/json"]["schema"].as_object() else {
        return;
    };
    // Built once per schema: checking stays fast enough for tests that
    // time their requests (rate limits).
    let validator = {
        let mut built = VALIDATORS.lock().unwrap();
        let key = Value::Object(schema.clone()).to_string();
        built
            .entry(key)
            .or_insert_with(|| {
                let mut schema = schema.clone();
                schema.insert("components".into(), doc["components"].clone());
                Arc::new(jsonschema::draft202012::new(&Value::Object(schema)).unwrap())
            })
            .clone()
    };
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{e} (at {})", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: the answer does not match the document: {errors:?}\n{body}"
    );
}

/// Sends `req` and checks its answer with [`assert_documented`]: the
/// status and JSON body, as [`crate::support::status_json`] gives them.
pub async fn documented(app: &TestApp, req: reqwest::RequestBuilder) -> (u16, Value) {
    let req = req.build().unwrap();
    let (method, path) = (req.method().clone(), req.url().path().to_string());
    let res = app.http.execute(req).await.unwrap();
    let s = res.status().as_u16();
    let v = res.json().await.unwrap_or(Value::Null);
    assert_documented(app, &method, &path, s, &v).await;
    (s, v)
}

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
    // Every operation has an id of its own (clients generate methods from them).
    let mut ids = std::collections::HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            let id = op["operationId"].as_str().unwrap_or_default().to_string();
            assert!(!id.is_empty(), "{method} {path} has no operationId");
            assert!(
                ids.insert(id.clone()),
                "{method} {path}: operationId {id} twice"
            );
        }
    }

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
    let examples = std::env::var("SLUICE_ST_EXAMPLES").unwrap_or_else(|_| "25".into());
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
        // One worker: Hypothesis on Python 3.11 can fail inside its own
        // lambda-describing code when two threads draw at once.
        .args(["--workers", "1"])
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
    // Shown with `--nocapture`: what was tested, also when nothing failed.
    println!("{stdout}");
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

#[tokio::test]
#[should_panic(expected = "does not match the document")]
async fn an_answer_unlike_the_document_is_caught() {
    let app = TestApp::spawn().await;
    let status = serde_json::json!({"service": "Database Tracking API", "status": 7});
    assert_documented(&app, &Method::GET, "/api/v1/tracking/status", 200, &status).await;
}
