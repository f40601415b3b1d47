//! The Database Tracking contract over HTTP, and automatic DDL tracking of a
//! real scratch PostgreSQL database.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use sluice::app::Mode;
use uuid::Uuid;

use crate::openapi::documented;
use crate::support::{wait_for, TestApp};

const START: &str = "/api/v1/tracking/operations/start";
const COMPLETE: &str = "/api/v1/tracking/operations/complete";

async fn start_op(app: &TestApp, token: &str, tenant: &str, name: &str, kind: &str) -> String {
    let (s, v) = documented(
        app,
        app.bearer(Method::POST, START, token, tenant)
            .json(&json!({"script_name": name, "script_type": kind})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["success"], true);
    v["data"]["operation_id"].as_str().unwrap().to_string()
}

async fn complete_op(app: &TestApp, token: &str, tenant: &str, id: &str, ok: bool) -> (u16, Value) {
    let body = if ok {
        json!({"operation_id": id, "success": true})
    } else {
        json!({"operation_id": id, "success": false, "error_message": "Database connection timeout"})
    };
    documented(
        app,
        app.bearer(Method::POST, COMPLETE, token, tenant)
            .json(&body),
    )
    .await
}

/// Waits until history (last day) holds `n` operations and returns them.
async fn history(app: &TestApp, token: &str, tenant: &str, query: &str, n: u64) -> Value {
    wait_for(&format!("{n} operations in history?{query}"), || async {
        let (s, v) = documented(
            app,
            app.bearer(
                Method::GET,
                &format!("/api/v1/tracking/history?{query}"),
                token,
                tenant,
            ),
        )
        .await;
        let p = &v["data"]["pagination"];
        (s == 200 && p["total_records"] == n && p["returned_records"] == n).then_some(v)
    })
    .await
}

fn assert_tracking_error(v: &Value, code: &str) {
    assert_eq!(v["success"], false, "{v}");
    assert_eq!(v["error_code"], code, "{v}");
    assert!(v["error"].as_str().unwrap().len() > 3);
    assert!(chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str().unwrap()).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contracts_usage_patterns() {
    let app = TestApp::spawn().await;
    let u = app.register_user().await;
    let (token, tenant) = (u.token.as_str(), u.tenant_id.to_string());

    // Pattern 1: track a manual operation.
    let (s, v) = documented(
        &app,
        app.bearer(Method::POST, START, token, &tenant)
            .json(&json!({"script_name": "Data Migration Script", "script_type": "MIGRATION"})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["message"], "Operation tracking started");
    let d = &v["data"];
    let op = d["operation_id"].as_str().unwrap().to_string();
    assert_eq!(op.len(), 32);
    assert!(op.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(d["script_name"], "Data Migration Script");
    assert_eq!(d["script_type"], "MIGRATION");
    assert_eq!(d["status"], "RUNNING");
    let started = chrono::DateTime::parse_from_rfc3339(d["started_at"].as_str().unwrap()).unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    let (s, v) = complete_op(&app, token, &tenant, &op, true).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["message"], "Operation completed successfully");
    assert_eq!(v["data"]["status"], "COMPLETED");
    assert_eq!(v["data"]["operation_id"], op.as_str());
    let dur = v["data"]["duration_ms"].as_i64().unwrap();
    assert!((120..5000).contains(&dur), "duration {dur}");
    let done =
        chrono::DateTime::parse_from_rfc3339(v["data"]["completed_at"].as_str().unwrap()).unwrap();
    assert_eq!((done - started).num_milliseconds(), dur);

    // A failure, with its message.
    let failed = start_op(&app, token, &tenant, "User Data Export", "reporting").await;
    let (s, v) = complete_op(&app, token, &tenant, &failed, false).await;
    assert_eq!(s, 200);
    assert_eq!(v["data"]["status"], "FAILED");

    // Pattern 3: recent errors.
    let h = history(&app, token, &tenant, "status=FAILED&days=1", 1).await;
    let f = &h["data"]["operations"][0];
    assert_eq!(f["script_name"], "User Data Export");
    assert_eq!(f["script_type"], "REPORTING");
    assert_eq!(f["execution_status"], "FAILED");
    assert_eq!(f["error_message"], "Database connection timeout");
    assert!(f["affected_objects"].is_array());

    // Pattern 2: the dashboard.
    history(&app, token, &tenant, "days=1", 2).await;
    let (s, dash) = documented(
        &app,
        app.bearer(Method::GET, "/api/v1/tracking/dashboard", token, &tenant),
    )
    .await;
    assert_eq!(s, 200, "{dash}");
    assert_eq!(dash["message"], "Dashboard data retrieved");
    let sum = &dash["data"]["summary"];
    assert_eq!(sum["total_operations"], 2);
    assert_eq!(sum["failed_operations"], 1);
    assert_eq!(sum["success_rate"], 50.0);
    assert_eq!(sum["system_health"], "CRITICAL");
    let metrics = dash["data"]["metrics"].as_array().unwrap();
    let m = |name: &str| {
        metrics
            .iter()
            .find(|m| m["metric_name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(m("total_operations_24h")["metric_value"], 2);
    assert_eq!(m("total_operations_24h")["metric_unit"], "count");
    assert_eq!(m("success_rate_24h")["metric_unit"], "percentage");
    assert_eq!(m("success_rate_24h")["status"], "CRITICAL");
    let avg = m("avg_duration_ms")["metric_value"].as_f64().unwrap();
    assert!(avg >= dur as f64 / 2.0, "avg {avg}");
    let (_, d48) = documented(
        &app,
        app.bearer(
            Method::GET,
            "/api/v1/tracking/dashboard?hours=48",
            token,
            &tenant,
        ),
    )
    .await;
    assert_eq!(
        m("total_operations_24h")["metric_value"],
        d48["data"]["summary"]["total_operations"]
    );
    assert!(d48["data"]["metrics"][0]["metric_name"] == "total_operations_48h");
    let _ = sluice_storage::pg::tenants::delete(&app.running.pg, u.tenant_id).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_filters_and_pagination() {
    let app = TestApp::spawn().await;
    let (key, tenant) = (app.key.clone(), app.tenant_id.to_string());
    for (name, kind, ok) in [
        ("a", "MAINTENANCE", true),
        ("b", "MAINTENANCE", true),
        ("c", "MIGRATION", false),
        ("d", "BACKUP", true),
    ] {
        let id = start_op(&app, &key, &tenant, name, kind).await;
        let (s, _) = complete_op(&app, &key, &tenant, &id, ok).await;
        assert_eq!(s, 200);
        // times have millisecond precision: keep the four apart
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let all = history(&app, &key, &tenant, "", 4).await;
    let names: Vec<&str> = all["data"]["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["script_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["d", "c", "b", "a"], "newest first");
    assert_eq!(
        all["data"]["pagination"],
        json!({"total_records": 4, "returned_records": 4, "has_more": false})
    );
    let (_, v) = documented(
        &app,
        app.bearer(
            Method::GET,
            "/api/v1/tracking/history?type=maintenance",
            &key,
            &tenant,
        ),
    )
    .await;
    assert_eq!(v["data"]["pagination"]["total_records"], 2);
    let (_, v) = documented(
        &app,
        app.bearer(
            Method::GET,
            "/api/v1/tracking/history?status=COMPLETED&type=MAINTENANCE&limit=1",
            &key,
            &tenant,
        ),
    )
    .await;
    assert_eq!(
        v["data"]["pagination"],
        json!({"total_records": 2, "returned_records": 1, "has_more": true})
    );
    let (_, v) = documented(
        &app,
        app.bearer(
            Method::GET,
            "/api/v1/tracking/history?status=FAILED",
            &key,
            &tenant,
        ),
    )
    .await;
    assert_eq!(v["data"]["operations"][0]["script_name"], "c");
    for bad in ["days=0", "days=x", "limit=0", "limit=1001", "status=BOGUS"] {
        let (s, v) = documented(
            &app,
            app.bearer(
                Method::GET,
                &format!("/api/v1/tracking/history?{bad}"),
                &key,
                &tenant,
            ),
        )
        .await;
        assert_eq!(s, 400, "{bad}");
        assert_tracking_error(&v, "INVALID_REQUEST");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_tenants_and_operation_ids() {
    let app = TestApp::spawn_with(Mode::ALL, |c| c.access_token_secs = 1).await;
    let u = app.register_user().await;
    let other = app.register_user().await;
    let tenant = u.tenant_id.to_string();

    // Wrong tenant for the token, and an API key naming another tenant.
    let (s, v) = documented(
        &app,
        app.bearer(Method::POST, START, &u.token, &other.tenant_id.to_string())
            .json(&json!({"script_name": "x"})),
    )
    .await;
    assert_eq!(s, 403);
    assert_tracking_error(&v, "AUTH_FAILED");
    let (s, v) = documented(
        &app,
        app.bearer(Method::GET, "/api/v1/tracking/history", &app.key, &tenant),
    )
    .await;
    assert_eq!(s, 403);
    assert_tracking_error(&v, "AUTH_FAILED");
    // Bad token, no token.
    let (s, v) = documented(
        &app,
        app.bearer(Method::POST, START, "sk_live_nothing", &tenant)
            .json(&json!({"script_name": "x"})),
    )
    .await;
    assert_eq!(s, 401);
    assert_tracking_error(&v, "AUTH_FAILED");
    let (s, v) = documented(
        &app,
        app.http
            .get(app.url("/api/v1/tracking/dashboard"))
            .header("X-Tenant-ID", &tenant),
    )
    .await;
    assert_eq!(s, 401);
    assert_tracking_error(&v, "AUTH_FAILED");

    // Bodies and ids.
    let (s, v) = documented(
        &app,
        app.bearer(Method::POST, START, &u.token, &tenant)
            .json(&json!({"script_type": "MANUAL"})),
    )
    .await;
    assert_eq!(s, 400);
    assert_tracking_error(&v, "INVALID_REQUEST");
    let (s, v) = documented(
        &app,
        app.bearer(Method::POST, START, &u.token, &tenant)
            .body("{not json"),
    )
    .await;
    assert_eq!(s, 400);
    assert_tracking_error(&v, "INVALID_REQUEST");
    let (s, v) = documented(
        &app,
        app.bearer(Method::POST, START, &u.token, &tenant)
            .json(&json!({"script_name": "x", "script_type": "drop table;"})),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = complete_op(&app, &u.token, &tenant, "not-hex", true).await;
    assert_eq!(s, 400);
    assert_tracking_error(&v, "INVALID_REQUEST");
    let (s, v) = complete_op(
        &app,
        &u.token,
        &tenant,
        &Uuid::new_v4().simple().to_string(),
        true,
    )
    .await;
    assert_eq!(s, 404);
    assert_tracking_error(&v, "OPERATION_NOT_FOUND");

    // Default type, completing twice, and another tenant's operation.
    let (s, v) = documented(
        &app,
        app.bearer(Method::POST, START, &u.token, &tenant)
            .json(&json!({"script_name": "Nightly vacuum"})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["data"]["script_type"], "MANUAL");
    let id = v["data"]["operation_id"].as_str().unwrap().to_string();
    let (s, v) = complete_op(&app, &other.token, &other.tenant_id.to_string(), &id, true).await;
    assert_eq!(s, 404, "another tenant cannot complete it: {v}");
    assert_eq!(complete_op(&app, &u.token, &tenant, &id, true).await.0, 200);
    let (s, v) = complete_op(&app, &u.token, &tenant, &id, true).await;
    assert_eq!(s, 400);
    assert_tracking_error(&v, "INVALID_REQUEST");
    assert!(v["error"].as_str().unwrap().contains("already finished"));

    // The access token expires after a second.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, v) = documented(
        &app,
        app.bearer(Method::GET, "/api/v1/tracking/dashboard", &u.token, &tenant),
    )
    .await;
    assert_eq!(s, 401, "expired token: {v}");
    assert_tracking_error(&v, "AUTH_FAILED");
    for t in [u.tenant_id, other.tenant_id] {
        let _ = sluice_storage::pg::tenants::delete(&app.running.pg, t).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_rate_limits_answer_rate_limited() {
    let app = TestApp::spawn_with(Mode::ALL, |c| c.tracking_rate_limits = true).await;
    let tenant = app.tenant_id.to_string();
    for _ in 0..10 {
        let (s, _) = documented(
            &app,
            app.bearer(Method::GET, "/api/v1/tracking/health", &app.key, &tenant),
        )
        .await;
        assert_eq!(s, 200);
    }
    let r = app
        .bearer(Method::GET, "/api/v1/tracking/health", &app.key, &tenant)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_tracking_error(&r.json().await.unwrap(), "RATE_LIMITED");
    // Other endpoints have their own budgets.
    let (s, _) = documented(
        &app,
        app.bearer(Method::GET, "/api/v1/tracking/dashboard", &app.key, &tenant),
    )
    .await;
    assert_eq!(s, 200);
    for _ in 0..100 {
        start_op(&app, &app.key, &tenant, "burst", "MANUAL").await;
    }
    let (s, v) = documented(
        &app,
        app.bearer(Method::POST, START, &app.key, &tenant)
            .json(&json!({"script_name": "one too many"})),
    )
    .await;
    assert_eq!(s, 429);
    assert_tracking_error(&v, "RATE_LIMITED");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_left_running_time_out() {
    let app = TestApp::spawn_with(Mode::ALL, |c| c.operation_timeout_secs = 1).await;
    let (key, tenant) = (app.key.clone(), app.tenant_id.to_string());
    let id = start_op(&app, &key, &tenant, "forgotten script", "MAINTENANCE").await;
    let h = history(&app, &key, &tenant, "status=TIMEOUT", 1).await;
    let op = &h["data"]["operations"][0];
    assert_eq!(op["operation_id"], id.as_str());
    assert_eq!(op["execution_status"], "TIMEOUT");
    assert!(op["error_message"].as_str().unwrap().contains("timed out"));
    assert!(op["execution_duration_ms"].as_u64().unwrap() >= 1000);
    let (s, v) = complete_op(&app, &key, &tenant, &id, true).await;
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("TIMEOUT"), "{v}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_status_reflect_real_measurements() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant_id.to_string();
    let (s, v) = documented(
        &app,
        app.bearer(Method::GET, "/api/v1/tracking/health", &app.key, &tenant),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["message"], "System health retrieved");
    let checks = v["data"]["health_checks"].as_array().unwrap();
    for store in ["Redis", "PostgreSQL", "ClickHouse"] {
        let c = checks
            .iter()
            .find(|c| c["health_metric"] == store)
            .unwrap_or_else(|| panic!("{store} check"));
        assert_eq!(c["health_category"], "AVAILABILITY");
        assert_eq!(c["current_status"], "EXCELLENT");
        assert!(c["details"].as_str().unwrap().contains("ms round trip"));
    }
    let perf = checks
        .iter()
        .find(|c| c["health_category"] == "PERFORMANCE")
        .unwrap();
    assert!(perf["details"]
        .as_str()
        .unwrap()
        .ends_with("ms average store round trip"));
    assert!(checks
        .iter()
        .any(|c| c["health_metric"] == "Stream Backlog"));
    assert!(checks.iter().any(|c| c["health_metric"] == "Worker Lag"));
    let rel = checks
        .iter()
        .find(|c| c["health_metric"] == "Success Rate")
        .unwrap();
    assert_eq!(rel["current_status"], "NORMAL", "no operations yet");
    let score = v["data"]["system_score"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&score));

    let (s, st) = documented(&app, app.http.get(app.url("/api/v1/tracking/status"))).await;
    assert_eq!(s, 200);
    assert_eq!(st["service"], "Database Tracking API");
    assert_eq!(st["status"], "operational");
    assert_eq!(st["version"], "1.0.0");
    assert!(st["features"]
        .as_array()
        .unwrap()
        .contains(&json!("automatic_ddl_tracking")));
    app.stop().await;
}

/// A scratch database on the local server, dropped by `drop_scratch`.
async fn scratch_db(admin: &sqlx::PgPool) -> (String, String) {
    let name = format!("sluice_e2e_ddl_{}", Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(admin)
        .await
        .unwrap();
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/sluice".into());
    let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
    (name, url)
}

async fn drop_scratch(admin: &sqlx::PgPool, name: &str) {
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(admin)
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_of_an_attached_database_appears_in_history() {
    let app = TestApp::spawn().await;
    let u = app.register_user().await;
    let tenant = u.tenant_id.to_string();
    let (db, url) = scratch_db(&app.running.pg).await;

    let attach = |name: &str, url: &str| {
        documented(
            &app,
            app.bearer(
                Method::POST,
                "/api/v1/tracking/databases",
                &u.token,
                &tenant,
            )
            .json(&json!({"name": name, "connection_url": url})),
        )
    };
    let (s, v) = attach("orders-db", &url).await;
    assert_eq!(s, 201, "{v}");
    let db_id = v["data"]["id"].as_str().unwrap().to_string();
    let (s, v) = attach("x", "mysql://nope").await;
    assert_eq!(s, 400);
    assert_tracking_error(&v, "INVALID_REQUEST");
    // A name no store can hold, with a URL that works: refused, not a 503.
    let (s, v) = attach("orders\u{0}db", &url).await;
    assert_eq!(s, 400, "{v}");
    assert_tracking_error(&v, "INVALID_REQUEST");
    let (_, list) = documented(
        &app,
        app.bearer(Method::GET, "/api/v1/tracking/databases", &u.token, &tenant),
    )
    .await;
    assert_eq!(list["data"]["databases"][0]["name"], "orders-db");
    assert_eq!(list["data"]["databases"].as_array().unwrap().len(), 1);
    assert!(
        !list.to_string().contains("postgres://"),
        "the URL is never shown"
    );

    let target = sqlx::PgPool::connect(&url).await.unwrap();
    for stmt in [
        "CREATE TABLE accounts (id serial PRIMARY KEY, email text)",
        "ALTER TABLE accounts ADD COLUMN name text",
        "CREATE INDEX accounts_email_idx ON accounts (email)",
        "DROP TABLE accounts",
    ] {
        sqlx::query(stmt).execute(&target).await.unwrap();
    }
    let h = history(&app, &u.token, &tenant, "type=DDL&days=1", 4).await;
    let ops: Vec<Value> = h["data"]["operations"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .cloned()
        .collect();
    let expect = [
        ("CREATE TABLE", "public.accounts"),
        ("ALTER TABLE", "public.accounts"),
        ("CREATE INDEX", "public.accounts_email_idx"),
        ("DROP TABLE", "public.accounts"),
    ];
    for (op, (tag, object)) in ops.iter().zip(expect) {
        assert!(op["script_name"].as_str().unwrap().starts_with(tag), "{op}");
        assert_eq!(op["script_type"], "DDL");
        assert_eq!(op["execution_status"], "COMPLETED");
        assert_eq!(op["db_session_user"], "postgres");
        let objects: Vec<&str> = op["affected_objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_str().unwrap())
            .collect();
        assert!(objects.contains(&object), "{tag}: {objects:?}");
    }
    assert!(ops[1]["statement"]
        .as_str()
        .unwrap()
        .contains("ADD COLUMN name"));

    let (s, v) = documented(
        &app,
        app.bearer(
            Method::DELETE,
            &format!("/api/v1/tracking/databases/{db_id}"),
            &u.token,
            &tenant,
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let left: (i64,) = sqlx::query_as(
        "SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'sluice_tracking%'",
    )
    .fetch_one(&target)
    .await
    .unwrap();
    assert_eq!(left.0, 0, "no trigger left behind");
    let schema: (i64,) =
        sqlx::query_as("SELECT count(*) FROM pg_namespace WHERE nspname = 'sluice_tracking'")
            .fetch_one(&target)
            .await
            .unwrap();
    assert_eq!(schema.0, 0, "no queue left behind");
    sqlx::query("CREATE TABLE after_detach (id int)")
        .execute(&target)
        .await
        .unwrap();
    let (s, _) = documented(
        &app,
        app.bearer(
            Method::DELETE,
            &format!("/api/v1/tracking/databases/{db_id}"),
            &u.token,
            &tenant,
        ),
    )
    .await;
    assert_eq!(s, 404);
    target.close().await;
    drop_scratch(&app.running.pg, &db).await;
    let _ = sluice_storage::pg::tenants::delete(&app.running.pg, u.tenant_id).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn track_db_subcommand_attaches_and_detaches() {
    let app = TestApp::spawn_with(
        Mode {
            worker: false,
            ..Mode::ALL
        },
        |_| {},
    )
    .await;
    let (db, url) = scratch_db(&app.running.pg).await;
    let tenant = format!("cli-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .env("DATABASE_URL", &app.cfg.database_url)
            .env("CLICKHOUSE_URL", &app.cfg.clickhouse_url)
            .env("SLUICE_DEV", "true")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(
        run(&["track-db", "attach", "--tenant", &tenant, "--name", "cli-db", "--url", &url])
            .contains("attached cli-db")
    );
    assert!(run(&["track-db", "list", "--tenant", &tenant]).contains("cli-db"));
    let target = sqlx::PgPool::connect(&url).await.unwrap();
    let installed: (i64,) = sqlx::query_as(
        "SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'sluice_tracking%'",
    )
    .fetch_one(&target)
    .await
    .unwrap();
    assert_eq!(installed.0, 2);
    sqlx::query("CREATE TABLE queued_then_drained (id int)")
        .execute(&target)
        .await
        .unwrap();
    assert!(
        run(&["track-db", "detach", "--tenant", &tenant, "--name", "cli-db"]).contains("detached")
    );
    let left: (i64,) = sqlx::query_as(
        "SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'sluice_tracking%'",
    )
    .fetch_one(&target)
    .await
    .unwrap();
    assert_eq!(left.0, 0);
    assert!(!run(&["track-db", "list", "--tenant", &tenant]).contains("cli-db"));
    // Detaching drained the queued statement into history.
    let t = sluice_storage::pg::tenants::ensure(&app.running.pg, &tenant, &tenant)
        .await
        .unwrap();
    let (rows, total) = sluice_storage::ch::operations::history(
        &app.running.ch,
        t.id,
        chrono::Utc::now() - chrono::Duration::hours(1),
        &Default::default(),
        10,
        0,
    )
    .await
    .unwrap();
    assert_eq!(total, 1);
    assert_eq!(
        rows[0].affected_objects,
        vec!["public.queued_then_drained".to_string()]
    );
    target.close().await;
    drop_scratch(&app.running.pg, &db).await;
    let _ = sluice_storage::pg::tenants::delete(&app.running.pg, t.id).await;
    app.stop().await;
}
