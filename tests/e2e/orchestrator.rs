//! The Schema Migration Orchestrator over HTTP, against scratch PostgreSQL
//! databases standing in for a master and three replicas: registration and
//! health, creation with PostgreSQL's own parser and the lint, validation
//! and dry runs, approvals and roles, phased execution by the real job
//! workers, a failing phase and a crossed latency threshold rolling the
//! applied phases back, manual rollback, the per-database execution lock
//! across two API processes, the create limit, the error envelope and
//! tenant isolation. Every change is checked in the databases themselves.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use sluice::app::Mode;
use uuid::Uuid;

use crate::backups::{pg, unique, Cleanup};
use crate::openapi::documented;
use crate::support::{status_json, TestApp, User};

const SECRET: &str = "Pw-never-shown-42";

fn pg_text(db: &str, sql: &str) -> String {
    String::from_utf8(pg(db, sql)).unwrap().trim().to_string()
}

/// Four scratch databases (master, replica-1..3), each with `accounts`.
fn cluster(prefix: &str) -> (Cleanup, Vec<String>) {
    let names: Vec<String> = (0..4).map(|i| unique(&format!("{prefix}{i}"))).collect();
    for n in &names {
        pg("postgres", &format!("CREATE DATABASE {n}"));
        pg(
            n,
            "CREATE TABLE accounts (id int PRIMARY KEY, name text);
             INSERT INTO accounts SELECT g, 'n' || g FROM generate_series(1, 100) g;",
        );
    }
    (
        Cleanup {
            pg: names.clone(),
            my: vec![],
        },
        names,
    )
}

fn ado(db: &str) -> String {
    format!("Host=127.0.0.1;Port=5432;Database={db};Username=postgres;Password={SECRET}")
}

fn url(db: &str) -> String {
    format!("postgresql://postgres:{SECRET}@127.0.0.1:5432/{db}")
}

fn has_column(db: &str, table: &str, column: &str) -> bool {
    pg_text(
        db,
        &format!(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = '{table}' AND column_name = '{column}'"
        ),
    ) == "1"
}

async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = app
        .http
        .request(method, app.url(&format!("/api/v1{path}")))
        .bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    documented(app, r).await
}

async fn login(app: &TestApp, username: &str, password: &str) -> Value {
    let (s, v) = documented(
        app,
        app.http
            .post(app.url("/api/v1/authentication/login"))
            .json(&json!({"username": username, "password": password})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v
}

/// A user of `owner`'s tenant with `role`, logged in through the
/// orchestrator's login: its token.
async fn member(app: &TestApp, owner: &User, role: &str) -> String {
    let username = format!("{role}-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let (s, v) = status_json(
        app.http
            .post(app.url("/api/v1/users"))
            .bearer_auth(&owner.token)
            .json(
                &json!({"username": username, "email": format!("{username}@example.com"),
                         "password": "s3cret-passw0rd", "full_name": role, "role": role}),
            ),
    )
    .await;
    assert!(s == 201 || s == 200, "{s} {v}");
    let l = login(app, &username, "s3cret-passw0rd").await;
    let expected = match role {
        "dba" => "DBA",
        "developer" => "Developer",
        _ => "Viewer",
    };
    assert_eq!(l["user"]["role"], expected);
    l["token"].as_str().unwrap().to_string()
}

/// Registers the cluster (master and replicas, both connection string
/// forms) in `environment`: its databaseId.
async fn register(app: &TestApp, token: &str, env: &str, dbs: &[String]) -> String {
    let replicas: Vec<Value> = dbs[1..]
        .iter()
        .enumerate()
        .map(|(i, d)| {
            json!({"replicaId": format!("replica-{}", i + 1),
                   "connectionString": if i % 2 == 0 { url(d) } else { ado(d) },
                   "role": "AsyncReplica"})
        })
        .collect();
    let (s, v) = call(
        app,
        token,
        Method::POST,
        "/databases",
        Some(
            json!({"name": unique("cluster"), "type": "PostgreSQL", "environment": env,
                    "masterConnectionString": ado(&dbs[0]), "replicas": replicas}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert!(!v.to_string().contains(SECRET));
    v["databaseId"].as_str().unwrap().to_string()
}

async fn create(
    app: &TestApp,
    token: &str,
    db: &str,
    script: &str,
    rollback: Option<&str>,
) -> (u16, Value) {
    let mut body = json!({"name": unique("mig"), "targetDatabaseId": db, "migrationScript": script,
                          "description": "test", "tags": ["t"]});
    if let Some(r) = rollback {
        body["rollbackScript"] = json!(r);
    }
    call(app, token, Method::POST, "/migrations", Some(body)).await
}

async fn created(
    app: &TestApp,
    token: &str,
    db: &str,
    script: &str,
    rollback: Option<&str>,
) -> String {
    let (s, v) = create(app, token, db, script, rollback).await;
    assert_eq!(s, 201, "{v}");
    v["migrationId"].as_str().unwrap().to_string()
}

/// Polls an execution until it is no longer `Running`.
async fn finished(app: &TestApp, token: &str, mig: &str, exec: &str) -> Value {
    let start = Instant::now();
    loop {
        let (s, v) = call(
            app,
            token,
            Method::GET,
            &format!("/migrations/{mig}/executions/{exec}"),
            None,
        )
        .await;
        assert_eq!(s, 200, "{v}");
        if v["status"] != "Running" {
            return v;
        }
        assert!(v["progress"].as_i64().unwrap() < 100, "{v}");
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "still running: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn execute(app: &TestApp, token: &str, mig: &str, body: Value) -> (u16, Value) {
    call(
        app,
        token,
        Method::POST,
        &format!("/migrations/{mig}/execute"),
        Some(body),
    )
    .await
}

fn assert_envelope(v: &Value, code: &str) {
    let e = &v["error"];
    assert_eq!(e["code"], code, "{v}");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e["details"].is_array(), "{v}");
    assert!(e["traceId"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
    assert!(chrono::DateTime::parse_from_rfc3339(e["timestamp"].as_str().unwrap()).is_ok());
}

fn phase_names(v: &Value) -> Vec<(String, String)> {
    v["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_are_registered_with_real_health_and_never_show_their_secrets() {
    let app = TestApp::spawn().await;
    let owner = app.register_user().await;
    let (_c, dbs) = cluster("orch_reg");
    let (s, v) = call(&app, &owner.token, Method::POST, "/databases", Some(json!({
        "name": "main", "type": "PostgreSQL", "environment": "Staging",
        "masterConnectionString": ado(&dbs[0]),
        "replicas": [{"replicaId": "replica-1", "connectionString": url(&dbs[1]), "role": "SyncReplica"}]
    }))).await;
    assert_eq!(s, 201, "{v}");
    assert!(!v.to_string().contains(SECRET));
    assert_eq!(v["health"]["isHealthy"], true, "{v}");
    assert!(
        v["health"]["activeConnections"].as_i64().unwrap() >= 1,
        "{v}"
    );
    // Neither database is a streaming standby: the lag is unknown, not 0.
    assert!(v["health"]["replicationLag"].is_null(), "{v}");
    assert_eq!(
        v["replicas"],
        json!([{"replicaId": "replica-1", "role": "SyncReplica"}])
    );
    let id = v["databaseId"].as_str().unwrap().to_string();

    // activeConnections is a count of the master's sessions: hold three more.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            std::process::Command::new("psql")
                .args([
                    "-X",
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-d",
                    &dbs[0],
                    "-c",
                    "SELECT pg_sleep(6)",
                ])
                .spawn()
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(5500)).await; // past the 5 s health cache
    let (s, got) = call(
        &app,
        &owner.token,
        Method::GET,
        &format!("/databases/{id}"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert!(
        got["health"]["activeConnections"].as_i64().unwrap() >= 3,
        "{got}"
    );
    for mut h in held {
        let _ = h.wait();
    }
    let (s, list) = call(&app, &owner.token, Method::GET, "/databases", None).await;
    assert_eq!(s, 200);
    assert_eq!(list["total"], 1);
    assert!(!list.to_string().contains(SECRET));

    // Bad connection strings and environments: 400 naming the field, no secret echoed.
    let (s, v) = call(&app, &owner.token, Method::POST, "/databases", Some(json!({
        "name": "x", "type": "PostgreSQL", "environment": "Staging",
        "masterConnectionString": format!("Hostname-without-equals;Password={SECRET}"),
        "replicas": [{"replicaId": "r", "connectionString": format!("mysql://u:{SECRET}@h/d"), "role": "AsyncReplica"}]
    }))).await;
    assert_eq!(s, 400, "{v}");
    assert_envelope(&v, "VALIDATION_ERROR");
    let fields: Vec<&str> = v["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"masterConnectionString"), "{v}");
    assert!(fields.contains(&"replicas[0].connectionString"), "{v}");
    assert!(!v.to_string().contains(SECRET), "{v}");
    let (s, v) = call(&app, &owner.token, Method::POST, "/databases", Some(json!({
        "name": "x", "type": "PostgreSQL", "environment": "Prod", "masterConnectionString": ado(&dbs[0])
    }))).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["details"][0]["field"], "environment", "{v}");

    // An unreachable master: 201 with isHealthy false, well within 30 s.
    let t = Instant::now();
    let (s, v) = call(&app, &owner.token, Method::POST, "/databases", Some(json!({
        "name": "gone", "type": "PostgreSQL", "environment": "QA",
        "masterConnectionString": format!("Host=127.0.0.1;Port=1;Database=x;Username=postgres;Password={SECRET}")
    }))).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["health"]["isHealthy"], false);
    assert!(t.elapsed() < Duration::from_secs(30));
    assert!(!v.to_string().contains(SECRET));

    // Stored sealed: the password is nowhere in Sluice's table.
    let sealed = pg_text(
        "sluice",
        &format!("SELECT count(*) FROM orch_databases WHERE tenant_id = '{}' AND (encode(master_sealed, 'escape') LIKE '%{SECRET}%')", owner.tenant_id),
    );
    assert_eq!(sealed, "0");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_are_parsed_linted_and_dry_run_without_changing_anything() {
    let app = TestApp::spawn().await;
    let owner = app.register_user().await;
    let (_c, dbs) = cluster("orch_lint");
    let db = register(&app, &owner.token, "Staging", &dbs).await;

    // A syntax error: 400 naming migrationScript and the line.
    let (s, v) = create(
        &app,
        &owner.token,
        &db,
        "SET lock_timeout = '2s';\nALTER TABLE accounts\n  ADD COLUMN email text\n  NOT NUL;",
        None,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_envelope(&v, "VALIDATION_ERROR");
    assert_eq!(v["error"]["details"][0]["field"], "migrationScript");
    assert!(
        v["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("line 4"),
        "{v}"
    );
    let (s, v) = create(&app, &owner.token, "db-999999999", "SELECT 1", None).await;
    assert!(s == 400 || s == 404, "{v}");

    // The conventions' safe script: no findings, Low, no approval needed.
    let safe = "SET lock_timeout = '2s';\nALTER TABLE accounts ADD COLUMN email text;\nCREATE INDEX CONCURRENTLY idx_accounts_email ON accounts (email);\nALTER TABLE accounts ADD CONSTRAINT name_len CHECK (length(name) < 100) NOT VALID;\nALTER TABLE accounts VALIDATE CONSTRAINT name_len;";
    let (s, v) = create(&app, &owner.token, &db, safe, None).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["status"], "Draft");
    assert_eq!(v["riskLevel"], "Low");
    assert_eq!(v["requiresApproval"], false);
    let safe_id = v["migrationId"].as_str().unwrap().to_string();
    let (s, v) = call(
        &app,
        &owner.token,
        Method::POST,
        &format!("/migrations/{safe_id}/validate"),
        Some(json!({"dryRun": false})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["isValid"], true, "{v}");
    assert_eq!(v["warnings"], json!([]), "{v}");

    // A risky script: findings with rule, line and recommendation; the
    // level derived (Critical for DROP TABLE) and approval required.
    let risky = "CREATE INDEX idx_accounts_name ON accounts (name);\nALTER TABLE accounts ADD COLUMN score int NOT NULL;\nDROP TABLE accounts;";
    let (s, v) = create(&app, &owner.token, &db, risky, None).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["riskLevel"], "Critical");
    assert_eq!(v["requiresApproval"], true);
    let risky_id = v["migrationId"].as_str().unwrap().to_string();
    let (s, v) = call(
        &app,
        &owner.token,
        Method::POST,
        &format!("/migrations/{risky_id}/validate"),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 200);
    let rules: Vec<&str> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["rule"].as_str().unwrap())
        .collect();
    for r in [
        "index-not-concurrent",
        "add-column-not-null-no-default",
        "drop-table",
        "missing-lock-timeout",
    ] {
        assert!(rules.contains(&r), "{r} missing: {v}");
    }
    for w in v["warnings"].as_array().unwrap() {
        assert!(
            !w["message"].as_str().unwrap().is_empty()
                && !w["recommendation"].as_str().unwrap().is_empty()
        );
    }
    let affected = v["dependencyCheck"]["affectedObjects"].to_string();
    assert!(
        affected.contains("accounts") && affected.contains("idx_accounts_name"),
        "{v}"
    );
    // Validation never changes the status.
    let (_, m) = call(
        &app,
        &owner.token,
        Method::GET,
        &format!("/migrations/{risky_id}"),
        None,
    )
    .await;
    assert_eq!(m["status"], "Draft");

    // A dry run: the statements really run, then everything is rolled back.
    let before = pg_text(&dbs[0], "SELECT count(*) FROM pg_class WHERE relname LIKE 'accounts%' OR relname LIKE 'idx_accounts%'");
    let (s, v) = call(
        &app,
        &owner.token,
        Method::POST,
        &format!("/migrations/{risky_id}/validate"),
        Some(json!({"dryRun": true})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // The table has rows, so the NOT NULL column without a default fails:
    // the dry run says so, in PostgreSQL's words.
    assert_eq!(v["isValid"], false, "{v}");
    assert!(v["errors"].to_string().contains("score"), "{v}");
    // One that succeeds (it drops the table) leaves the table where it was.
    let drop = created(
        &app,
        &owner.token,
        &db,
        "CREATE INDEX idx_accounts_name ON accounts (name);\nDROP TABLE accounts;",
        None,
    )
    .await;
    let (s, v) = call(
        &app,
        &owner.token,
        Method::POST,
        &format!("/migrations/{drop}/validate"),
        Some(json!({"dryRun": true})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["isValid"], true, "{v}");
    let touched = v["dependencyCheck"]["affectedObjects"].to_string();
    assert!(
        touched.contains("idx_accounts_name") && touched.contains("accounts"),
        "{v}"
    );
    assert_eq!(
        pg_text(&dbs[0], "SELECT count(*) FROM accounts"),
        "100",
        "the dry run dropped the table"
    );
    assert_eq!(pg_text(&dbs[0], "SELECT count(*) FROM pg_class WHERE relname LIKE 'accounts%' OR relname LIKE 'idx_accounts%'"), before);
    assert!(!has_column(&dbs[0], "accounts", "score"));
    // A statement that fails in the dry run: invalid, PostgreSQL's message.
    let broken = created(
        &app,
        &owner.token,
        &db,
        "ALTER TABLE no_such_table ADD COLUMN x int;",
        None,
    )
    .await;
    let (s, v) = call(
        &app,
        &owner.token,
        Method::POST,
        &format!("/migrations/{broken}/validate"),
        Some(json!({"dryRun": true})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["isValid"], false, "{v}");
    assert!(v["errors"].to_string().contains("no_such_table"), "{v}");
    // CONCURRENTLY inside BEGIN … COMMIT is an error finding.
    let in_tx = created(
        &app,
        &owner.token,
        &db,
        "BEGIN;\nCREATE INDEX CONCURRENTLY i1 ON accounts (name);\nCOMMIT;",
        None,
    )
    .await;
    let (_, v) = call(
        &app,
        &owner.token,
        Method::POST,
        &format!("/migrations/{in_tx}/validate"),
        Some(json!({"dryRun": false})),
    )
    .await;
    assert_eq!(v["isValid"], false, "{v}");
    assert_eq!(v["errors"][0]["rule"], "concurrently-in-transaction", "{v}");

    // The list: filters, pagination, newest first, bad status refused.
    let (s, v) = call(
        &app,
        &owner.token,
        Method::GET,
        &format!("/migrations?database={db}&limit=2&offset=1"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["total"], 5);
    assert_eq!(v["limit"], 2);
    assert_eq!(v["offset"], 1);
    assert_eq!(v["migrations"].as_array().unwrap().len(), 2);
    assert_eq!(v["migrations"][0]["migrationId"], json!(broken));
    assert_eq!(v["migrations"][0]["targetDatabase"], json!(db));
    let (s, v) = call(
        &app,
        &owner.token,
        Method::GET,
        "/migrations?status=Draft&limit=100",
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["total"], 5);
    let (s, v) = call(
        &app,
        &owner.token,
        Method::GET,
        "/migrations?status=Done",
        None,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["details"][0]["field"], "status");
    let (s, _) = call(
        &app,
        &owner.token,
        Method::GET,
        "/migrations?limit=101",
        None,
    )
    .await;
    assert_eq!(s, 400);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_and_roles_gate_every_step() {
    let app = TestApp::spawn().await;
    let owner = app.register_user().await;
    let dba = member(&app, &owner, "dba").await;
    let dev = member(&app, &owner, "developer").await;
    let viewer = member(&app, &owner, "viewer").await;
    let (_c, dbs) = cluster("orch_appr");
    let prod = register(&app, &owner.token, "Production", &dbs).await;
    let script = "SET lock_timeout = '2s';\nALTER TABLE accounts ADD COLUMN note text;";

    // Creation: Developer not on Production, DBA and Viewer never.
    for t in [&dev, &dba, &viewer] {
        let (s, v) = create(&app, t, &prod, script, None).await;
        assert_eq!(s, 403, "{v}");
        assert_envelope(&v, "FORBIDDEN");
    }
    let mig = created(
        &app,
        &owner.token,
        &prod,
        script,
        Some("ALTER TABLE accounts DROP COLUMN note;"),
    )
    .await;
    let (_, m) = call(
        &app,
        &owner.token,
        Method::GET,
        &format!("/migrations/{mig}"),
        None,
    )
    .await;
    assert_eq!(
        m["requiresApproval"], true,
        "a Production target needs approval"
    );
    // An `environment` in a request never decides a permission.
    let (s, _) = execute(&app, &dev, &mig, json!({"environment": "Development"})).await;
    assert_eq!(s, 403);
    // Without approval: 409 APPROVAL_REQUIRED, nothing runs.
    let (s, v) = execute(&app, &owner.token, &mig, json!({})).await;
    assert_eq!(s, 409, "{v}");
    assert_envelope(&v, "APPROVAL_REQUIRED");
    let (s, v) = call(
        &app,
        &viewer,
        Method::POST,
        &format!("/migrations/{mig}/submit-approval"),
        None,
    )
    .await;
    assert_eq!(s, 403, "{v}");
    let (s, a) = call(
        &app,
        &dba,
        Method::POST,
        &format!("/migrations/{mig}/submit-approval"),
        None,
    )
    .await;
    assert_eq!(s, 201, "{a}");
    assert_eq!(a["status"], "Pending");
    let submitted =
        chrono::DateTime::parse_from_rfc3339(a["submittedAt"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(a["expiresAt"].as_str().unwrap()).unwrap();
    assert!(expires > submitted);
    let (_, m) = call(
        &app,
        &owner.token,
        Method::GET,
        &format!("/migrations/{mig}"),
        None,
    )
    .await;
    assert_eq!(m["status"], "PendingApproval");
    let (s, _) = execute(&app, &owner.token, &mig, json!({})).await;
    assert_eq!(s, 409, "pending is not approved");
    // Only an Admin decides.
    for t in [&dba, &dev, &viewer] {
        let (s, _) = call(
            &app,
            t,
            Method::POST,
            &format!("/migrations/{mig}/approve"),
            Some(json!({"notes": "ok"})),
        )
        .await;
        assert_eq!(s, 403);
    }
    let (s, d) = call(
        &app,
        &owner.token,
        Method::POST,
        &format!("/migrations/{mig}/approve"),
        Some(json!({"notes": "Reviewed."})),
    )
    .await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["status"], "Approved");
    assert_eq!(d["reviewedBy"], json!(owner.username));
    assert_eq!(d["approvalId"], a["approvalId"]);
    let (s, v) = call(
        &app,
        &owner.token,
        Method::POST,
        &format!("/migrations/{mig}/reject"),
        Some(json!({"notes": "late"})),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    assert_envelope(&v, "CONFLICT");
    // Approved: a DBA may execute on Production; a Developer may not.
    let (s, _) = execute(&app, &dev, &mig, json!({})).await;
    assert_eq!(s, 403);
    let (s, e) = execute(
        &app,
        &dba,
        &mig,
        json!({"environment": "Production", "strategy": "Immediate"}),
    )
    .await;
    assert_eq!(s, 202, "{e}");
    let done = finished(&app, &dba, &mig, e["executionId"].as_str().unwrap()).await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    assert!(has_column(&dbs[0], "accounts", "note"));
    assert!(
        !has_column(&dbs[1], "accounts", "note"),
        "Immediate runs on the master only"
    );

    // Rejection, and an expired approval that must be renewed.
    let other = created(&app, &owner.token, &prod, "SELECT 1;", None).await;
    call(
        &app,
        &owner.token,
        Method::POST,
        &format!("/migrations/{other}/submit-approval"),
        None,
    )
    .await;
    let (s, r) = call(
        &app,
        &owner.token,
        Method::POST,
        &format!("/migrations/{other}/reject"),
        Some(json!({"notes": "no"})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(r["status"], "Rejected");
    let (s, v) = execute(&app, &owner.token, &other, json!({})).await;
    assert_eq!(s, 409);
    assert_envelope(&v, "APPROVAL_REQUIRED");
    let (s, _) = call(
        &app,
        &owner.token,
        Method::POST,
        &format!("/migrations/{other}/submit-approval"),
        None,
    )
    .await;
    assert_eq!(s, 201, "a rejected migration may be submitted again");
    let n = other.trim_start_matches("mig-");
    pg("sluice", &format!("UPDATE orch_approvals SET expires_at = now() - interval '1 second' WHERE migration_id = {n}"));
    let (s, v) = call(
        &app,
        &owner.token,
        Method::POST,
        &format!("/migrations/{other}/approve"),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("expired"));
    let (_, m) = call(
        &app,
        &owner.token,
        Method::GET,
        &format!("/migrations/{other}"),
        None,
    )
    .await;
    assert_eq!(
        m["status"], "Draft",
        "an expired request goes back to Draft, to be submitted again"
    );

    // Developers work freely outside Production.
    let qa = register(&app, &owner.token, "QA", &[dbs[1].clone()]).await;
    let dev_mig = created(
        &app,
        &dev,
        &qa,
        "SET lock_timeout = '1s';\nALTER TABLE accounts ADD COLUMN dev_col int;",
        None,
    )
    .await;
    let (s, e) = execute(&app, &dev, &dev_mig, json!({})).await;
    assert_eq!(s, 202, "{e}");
    let done = finished(&app, &dev, &dev_mig, e["executionId"].as_str().unwrap()).await;
    assert_eq!(done["status"], "Succeeded");
    assert!(has_column(&dbs[1], "accounts", "dev_col"));

    // Every step is in the audit log.
    let (s, log) = status_json(
        app.http
            .get(app.url("/api/v1/audit/logs?limit=200"))
            .bearer_auth(&owner.token),
    )
    .await;
    assert_eq!(s, 200, "{log}");
    let text = log.to_string();
    for action in [
        "database_register",
        "migration_create",
        "migration_submit_approval",
        "migration_approve",
        "migration_reject",
        "migration_execute",
        "migration_execution_succeeded",
    ] {
        assert!(text.contains(action), "{action} not audited");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phased_run_applies_in_order_and_a_failing_phase_rolls_back_the_applied_ones() {
    let app = TestApp::spawn().await;
    let owner = app.register_user().await;
    let (_c, dbs) = cluster("orch_phase");
    let db = register(&app, &owner.token, "Staging", &dbs).await;
    let mig = created(
        &app, &owner.token, &db,
        "SET lock_timeout = '5s';\nALTER TABLE accounts ADD COLUMN email text;\nCREATE TABLE audit_trail (at timestamptz DEFAULT clock_timestamp());\nINSERT INTO audit_trail DEFAULT VALUES;",
        Some("DROP TABLE audit_trail;\nALTER TABLE accounts DROP COLUMN email;"),
    ).await;
    let ws_url = format!(
        "{}/ws?token={}",
        app.base.replacen("http://", "ws://", 1),
        owner.token
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .unwrap();
    let (s, e) = execute(
        &app,
        &owner.token,
        &mig,
        json!({"phases": ["replica-1", "replica-2", "replica-3", "master"]}),
    )
    .await;
    assert_eq!(s, 202, "{e}");
    assert_eq!(e["status"], "Running");
    assert_eq!(e["currentPhase"], "replica-1");
    let exec = e["executionId"].as_str().unwrap().to_string();
    let done = finished(&app, &owner.token, &mig, &exec).await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    assert_eq!(done["progress"], 100);
    assert!(
        done["performanceMetrics"]["avgQueryLatencyMs"].is_number(),
        "{done}"
    );
    assert!(
        done["performanceMetrics"]["p99QueryLatencyMs"].is_number(),
        "{done}"
    );
    assert!(done["performanceMetrics"]["replicationLagSeconds"].is_null());
    assert_eq!(
        phase_names(&done),
        ["replica-1", "replica-2", "replica-3", "master"]
            .iter()
            .map(|n| (n.to_string(), "Succeeded".to_string()))
            .collect::<Vec<_>>()
    );
    // Applied in order: each database's own clock says so.
    let mut stamps = Vec::new();
    for d in [&dbs[1], &dbs[2], &dbs[3], &dbs[0]] {
        assert!(has_column(d, "accounts", "email"));
        stamps.push(
            pg_text(d, "SELECT extract(epoch FROM at)::text FROM audit_trail")
                .parse::<f64>()
                .unwrap(),
        );
    }
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
    let (_, m) = call(
        &app,
        &owner.token,
        Method::GET,
        &format!("/migrations/{mig}"),
        None,
    )
    .await;
    assert_eq!(m["status"], "Succeeded");
    // Its progress went out on /ws: running phases, then the end.
    let mut seen: Vec<(String, Value)> = Vec::new();
    while !seen.iter().any(|(st, _)| st == "Succeeded") {
        let msg = tokio::time::timeout(Duration::from_secs(20), futures::StreamExt::next(&mut ws))
            .await
            .expect("migration progress on /ws")
            .unwrap()
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            let ev: Value = serde_json::from_str(t.as_str()).unwrap();
            if ev["type"] == "migration_progress" && ev["executionId"] == json!(exec) {
                seen.push((
                    ev["status"].as_str().unwrap().to_string(),
                    ev["currentPhase"].clone(),
                ));
            }
        }
    }
    assert!(
        seen.iter()
            .any(|(st, p)| st == "Running" && p == "replica-2"),
        "{seen:?}"
    );

    // A failing phase: replica-2 already has the column.
    pg(&dbs[2], "ALTER TABLE accounts ADD COLUMN phone text");
    let fail = created(
        &app,
        &owner.token,
        &db,
        "SET lock_timeout = '5s';\nALTER TABLE accounts ADD COLUMN phone text;",
        Some("ALTER TABLE accounts DROP COLUMN phone;"),
    )
    .await;
    let (s, e) = execute(&app, &owner.token, &fail, json!({})).await;
    assert_eq!(s, 202, "{e}");
    let done = finished(
        &app,
        &owner.token,
        &fail,
        e["executionId"].as_str().unwrap(),
    )
    .await;
    assert_eq!(done["status"], "RolledBack", "{done}");
    assert_eq!(
        phase_names(&done),
        [
            ("replica-1", "RolledBack"),
            ("replica-2", "Failed"),
            ("replica-3", "Pending"),
            ("master", "Pending")
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect::<Vec<_>>()
    );
    assert!(
        done["phases"][1]["error"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{done}"
    );
    assert!(done["phases"][2]["startedAt"].is_null());
    assert!(
        !has_column(&dbs[1], "accounts", "phone"),
        "replica-1 rolled back"
    );
    assert!(
        has_column(&dbs[2], "accounts", "phone"),
        "replica-2 kept its own column"
    );
    assert!(
        !has_column(&dbs[3], "accounts", "phone"),
        "replica-3 never touched"
    );
    assert!(
        !has_column(&dbs[0], "accounts", "phone"),
        "master never touched"
    );
    let (_, m) = call(
        &app,
        &owner.token,
        Method::GET,
        &format!("/migrations/{fail}"),
        None,
    )
    .await;
    assert_eq!(m["status"], "RolledBack");

    // Without a rollback script the applied phase keeps its change: Failed.
    let keep = created(
        &app,
        &owner.token,
        &db,
        "SET lock_timeout = '5s';\nALTER TABLE accounts ADD COLUMN phone text;",
        None,
    )
    .await;
    let (_, e) = execute(&app, &owner.token, &keep, json!({})).await;
    let done = finished(
        &app,
        &owner.token,
        &keep,
        e["executionId"].as_str().unwrap(),
    )
    .await;
    assert_eq!(done["status"], "Failed", "{done}");
    assert_eq!(done["phases"][0]["status"], "Succeeded");
    assert!(has_column(&dbs[1], "accounts", "phone"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crossed_latency_threshold_halts_the_run_and_manual_rollback_reverses_a_success() {
    let app = TestApp::spawn().await;
    let owner = app.register_user().await;
    let (_c, dbs) = cluster("orch_slow");
    let db = register(&app, &owner.token, "Staging", &dbs).await;
    // Slow on replica-2 only: it holds the table's lock while it sleeps, so
    // queries on the table (the probe's) wait behind it.
    let slow = created(
        &app, &owner.token, &db,
        &format!("SET lock_timeout = '5s';\nALTER TABLE accounts ADD COLUMN slow int;\nSELECT pg_sleep(CASE WHEN current_database() = '{}' THEN 20 ELSE 0 END);", dbs[2]),
        Some("ALTER TABLE accounts DROP COLUMN slow;"),
    ).await;
    let t = Instant::now();
    let (s, e) = execute(
        &app,
        &owner.token,
        &slow,
        json!({"thresholds": {"maxLatencyIncreasePercent": 100}}),
    )
    .await;
    assert_eq!(s, 202, "{e}");
    let done = finished(
        &app,
        &owner.token,
        &slow,
        e["executionId"].as_str().unwrap(),
    )
    .await;
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "the slow phase was not stopped"
    );
    assert_eq!(done["status"], "RolledBack", "{done}");
    assert!(
        done["haltReason"].as_str().unwrap().contains("latency"),
        "{done}"
    );
    assert_eq!(done["phases"][0]["status"], "RolledBack");
    assert_eq!(done["phases"][1]["status"], "Failed");
    assert!(!has_column(&dbs[1], "accounts", "slow"));
    assert!(!has_column(&dbs[2], "accounts", "slow"));
    assert!(!has_column(&dbs[0], "accounts", "slow"));

    // A success, then a manual rollback: master first, every phase reverted.
    let ok = created(
        &app,
        &owner.token,
        &db,
        "SET lock_timeout = '5s';\nCREATE TABLE feature_flags (id int);",
        Some("DROP TABLE feature_flags;"),
    )
    .await;
    let (_, e) = execute(&app, &owner.token, &ok, json!({})).await;
    let exec = e["executionId"].as_str().unwrap().to_string();
    assert_eq!(
        finished(&app, &owner.token, &ok, &exec).await["status"],
        "Succeeded"
    );
    let path = format!("/migrations/{ok}/executions/{exec}/rollback");
    let (s, v) = call(
        &app,
        &owner.token,
        Method::POST,
        &path,
        Some(json!({"reason": ""})),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["details"][0]["field"], "reason");
    let (s, v) = call(
        &app,
        &owner.token,
        Method::POST,
        &path,
        Some(json!({"reason": "latency up 60%"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "RolledBack");
    assert!(v["rollbackDuration"].is_number() && v["rollbackCompletedAt"].is_string());
    for d in &dbs {
        assert_eq!(
            pg_text(
                d,
                "SELECT count(*) FROM pg_class WHERE relname = 'feature_flags'"
            ),
            "0"
        );
    }
    let (_, got) = call(
        &app,
        &owner.token,
        Method::GET,
        &format!("/migrations/{ok}/executions/{exec}"),
        None,
    )
    .await;
    assert!(
        phase_names(&got).iter().all(|(_, s)| s == "RolledBack"),
        "{got}"
    );
    let (_, m) = call(
        &app,
        &owner.token,
        Method::GET,
        &format!("/migrations/{ok}"),
        None,
    )
    .await;
    assert_eq!(m["status"], "RolledBack");
    let (s, v) = call(
        &app,
        &owner.token,
        Method::POST,
        &path,
        Some(json!({"reason": "again"})),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    // The execution exists only under its own migration.
    let (s, _) = call(
        &app,
        &owner.token,
        Method::GET,
        &format!("/migrations/{slow}/executions/{exec}"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (s, log) = status_json(
        app.http
            .get(app.url("/api/v1/audit/logs?action=migration_rollback"))
            .bearer_auth(&owner.token),
    )
    .await;
    assert_eq!(s, 200);
    assert!(log.to_string().contains("latency up 60%"), "{log}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_api_process_gets_409_while_an_execution_runs_and_dry_runs_change_nothing() {
    let app = TestApp::spawn().await;
    let second = TestApp::spawn_with(
        Mode {
            worker: false,
            ..Mode::ALL
        },
        |c| {
            c.redis_prefix = app.cfg.redis_prefix.clone();
        },
    )
    .await;
    let owner = app.register_user().await;
    let (_c, dbs) = cluster("orch_lock");
    let db = register(&app, &owner.token, "Development", &dbs).await;
    let slow = created(&app, &owner.token, &db, "SELECT pg_sleep(2);", None).await;
    let other = created(
        &app,
        &owner.token,
        &db,
        "CREATE TABLE t_race (id int);",
        None,
    )
    .await;

    // Two executes at once, one through each process: exactly one runs.
    let (a, b) = tokio::join!(
        execute(&app, &owner.token, &slow, json!({"strategy": "Immediate"})),
        execute(
            &second,
            &owner.token,
            &other,
            json!({"strategy": "Immediate"})
        ),
    );
    let mut codes = [a.0, b.0];
    codes.sort();
    assert_eq!(codes, [202, 409], "{a:?} {b:?}");
    let (mig, running) = if a.0 == 202 {
        (&slow, &a.1)
    } else {
        (&other, &b.1)
    };
    let loser = if a.0 == 202 { &b.1 } else { &a.1 };
    assert_envelope(loser, "CONFLICT");
    // While it runs: the same migration, another one, and a dry run all 409.
    if running["status"] == "Running" && mig == &slow {
        let (s, _) = execute(&second, &owner.token, &slow, json!({})).await;
        assert_eq!(s, 409);
        let (s, _) = execute(&second, &owner.token, &other, json!({"dryRun": true})).await;
        assert_eq!(s, 409);
    }
    finished(
        &app,
        &owner.token,
        mig,
        running["executionId"].as_str().unwrap(),
    )
    .await;

    // A dry-run execution: every phase runs and is rolled back, nothing
    // changes. (Its own migration: `other` may have won the race above.)
    let dry = created(
        &app,
        &owner.token,
        &db,
        "SET lock_timeout = '1s';\nCREATE TABLE t_dry (id int);",
        None,
    )
    .await;
    let (s, e) = execute(&second, &owner.token, &dry, json!({"dryRun": true})).await;
    assert_eq!(s, 202, "{e}");
    let done = finished(&app, &owner.token, &dry, e["executionId"].as_str().unwrap()).await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    for d in &dbs {
        assert_eq!(
            pg_text(d, "SELECT count(*) FROM pg_class WHERE relname = 't_dry'"),
            "0"
        );
    }
    let (_, m) = call(
        &app,
        &owner.token,
        Method::GET,
        &format!("/migrations/{dry}"),
        None,
    )
    .await;
    assert_eq!(m["status"], "Draft", "{m}");
    second.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_isolated_and_creates_are_rate_limited_per_user() {
    let app = TestApp::spawn().await;
    let owner = app.register_user().await;
    let stranger = app.register_user().await;
    let (_c, dbs) = cluster("orch_iso");
    let db = register(&app, &owner.token, "QA", &dbs[..1]).await;
    let mig = created(&app, &owner.token, &db, "SELECT 1;", Some("SELECT 2;")).await;
    let (_, e) = execute(&app, &owner.token, &mig, json!({})).await;
    let exec = e["executionId"].as_str().unwrap().to_string();
    finished(&app, &owner.token, &mig, &exec).await;

    for (m, path, body) in [
        (Method::GET, format!("/databases/{db}"), None),
        (Method::GET, format!("/migrations/{mig}"), None),
        (
            Method::POST,
            format!("/migrations/{mig}/validate"),
            Some(json!({"dryRun": true})),
        ),
        (
            Method::POST,
            format!("/migrations/{mig}/submit-approval"),
            None,
        ),
        (
            Method::POST,
            format!("/migrations/{mig}/approve"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/migrations/{mig}/reject"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/migrations/{mig}/execute"),
            Some(json!({})),
        ),
        (
            Method::GET,
            format!("/migrations/{mig}/executions/{exec}"),
            None,
        ),
        (
            Method::POST,
            format!("/migrations/{mig}/executions/{exec}/rollback"),
            Some(json!({"reason": "x"})),
        ),
    ] {
        let (s, v) = call(&app, &stranger.token, m, &path, body).await;
        assert!(s == 404 || s == 403, "{path}: {s} {v}");
        assert!(!v.to_string().contains("SELECT"), "{v}");
    }
    let (_, list) = call(&app, &stranger.token, Method::GET, "/migrations", None).await;
    assert_eq!(list["total"], 0);
    let (_, list) = call(&app, &stranger.token, Method::GET, "/databases", None).await;
    assert_eq!(list["total"], 0);
    let (s, _) = create(&app, &stranger.token, &db, "SELECT 1;", None).await;
    assert!(s == 400 || s == 404);
    let (_, m) = call(
        &app,
        &owner.token,
        Method::GET,
        &format!("/migrations/{mig}"),
        None,
    )
    .await;
    assert_eq!(m["status"], "Succeeded", "nothing changed");

    // No token, or a bad one: 401 in the envelope.
    let (s, v) = documented(&app, app.http.get(app.url("/api/v1/migrations"))).await;
    assert_eq!(s, 401);
    assert_envelope(&v, "UNAUTHORIZED");
    let (s, v) = call(&app, "not.a.token", Method::GET, "/migrations", None).await;
    assert_eq!(s, 401, "{v}");
    let (s, v) = documented(
        &app,
        app.http
            .post(app.url("/api/v1/migrations"))
            .bearer_auth(&owner.token)
            .body("{not json"),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_envelope(&v, "VALIDATION_ERROR");
    let (s, v) = call(
        &app,
        &owner.token,
        Method::POST,
        "/migrations",
        Some(json!({"name": "x", "targetDatabaseId": db})),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["details"][0]["field"], "migrationScript", "{v}");

    // The create limit: 10 a minute per user (the three creates above count).
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..10 {
        let r = app
            .http
            .post(app.url("/api/v1/migrations"))
            .bearer_auth(&owner.token)
            .json(&json!({"name": "n", "targetDatabaseId": db, "migrationScript": "SELECT 1;"}))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        last = Some(r);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        3,
        "{statuses:?}"
    );
    let r = last.unwrap();
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    let v: Value = r.json().await.unwrap();
    assert_envelope(&v, "RATE_LIMIT_EXCEEDED");
    // Another user is not affected.
    let other_db = register(&app, &stranger.token, "QA", &dbs[..1]).await;
    let (s, _) = create(&app, &stranger.token, &other_db, "SELECT 1;", None).await;
    assert_eq!(s, 201);
    app.stop().await;
}

#[tokio::test]
async fn a_nul_byte_in_login_credentials_is_a_400_not_a_store_failure() {
    let app = TestApp::spawn().await;
    let owner = app.register_user().await;
    for body in [
        json!({"username": format!("{}\u{0}", owner.username), "password": "whatever-123"}),
        json!({"username": owner.username, "password": "pass\u{0}word"}),
    ] {
        let (s, v) = documented(
            &app,
            app.http
                .post(app.url("/api/v1/authentication/login"))
                .json(&body),
        )
        .await;
        assert_eq!(s, 400, "{v}");
        assert_envelope(&v, "VALIDATION_ERROR");
    }
    // Postgres' circuit stays closed: the right password still logs in.
    login(&app, &owner.username, "s3cret-passw0rd").await;
    app.stop().await;
}
