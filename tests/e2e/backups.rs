//! The Backup platform's backups over HTTP, run by the real job workers
//! (apalis on Postgres) against the machine's PostgreSQL and MariaDB:
//! backups with each compression and encryption, progress on `/ws`, signed
//! downloads checked with SHA-256, restores compared row by row, masking,
//! verification, a corrupt object refused before the target is touched,
//! readable failures, validation, tenant isolation, and a worker killed in
//! the middle of a backup.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sluice::app::Mode;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::support::{status_json, TestApp, User};

// --- the databases, through their command line clients -------------------

fn run(mut c: Command, what: &str) -> Vec<u8> {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub(crate) fn pg(db: &str, sql: &str) -> Vec<u8> {
    let mut c = Command::new("psql");
    c.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", db, "-c", sql]);
    run(c, sql)
}

fn pg_text(db: &str, sql: &str) -> String {
    String::from_utf8(pg(db, sql)).unwrap().trim().to_string()
}

fn pg_exists(db: &str) -> bool {
    pg_text(
        "postgres",
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{db}'"),
    ) == "1"
}

/// A table's rows, exactly as COPY writes them, in id order.
fn pg_rows(db: &str, table: &str) -> Vec<u8> {
    pg(
        db,
        &format!("COPY (SELECT * FROM {table} ORDER BY id) TO STDOUT"),
    )
}

fn my(db: Option<&str>, sql: &str) -> Vec<u8> {
    let mut c = Command::new("mariadb");
    c.args([
        "--protocol=TCP",
        "-h",
        "127.0.0.1",
        "-P",
        "3306",
        "-u",
        "root",
    ])
    .args([
        "--batch",
        "--skip-column-names",
        "--default-character-set=utf8mb4",
    ]);
    if let Some(db) = db {
        c.arg(db);
    }
    c.args(["-e", sql]);
    run(c, sql)
}

pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", &Uuid::new_v4().simple().to_string()[..10])
}

/// Drops the databases it names when the test ends, passed or failed.
pub(crate) struct Cleanup {
    pub(crate) pg: Vec<String>,
    pub(crate) my: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for db in &self.pg {
            let _ = Command::new("psql")
                .args([
                    "-X",
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-c",
                ])
                .arg(format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
                .output();
        }
        for db in &self.my {
            let _ = Command::new("mariadb")
                .args(["--protocol=TCP", "-h", "127.0.0.1", "-u", "root", "-e"])
                .arg(format!("DROP DATABASE IF EXISTS `{db}`"))
                .output();
        }
    }
}

/// A PostgreSQL database of two related tables, 10,000 rows in all, with
/// text full of tabs, newlines and non-ASCII, numeric, jsonb, bytea,
/// timestamps and NULLs.
fn seed_pg(db: &str) {
    pg("postgres", &format!("CREATE DATABASE \"{db}\""));
    pg(
        db,
        "CREATE TABLE customers (id serial PRIMARY KEY, email text, phone text, ssn text, \
           name text NOT NULL, note text); \
         CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int REFERENCES customers(id), \
           amount numeric(12,2), payload jsonb, blob bytea, created_at timestamptz); \
         INSERT INTO customers (email, phone, ssn, name, note) \
           SELECT 'user' || (g % 500) || '@example.com', '+1-555-' || lpad(g::text, 4, '0'), \
                  CASE WHEN g % 10 = 0 THEN NULL ELSE lpad((g * 7)::text, 9, '0') END, \
                  'Name ' || g, E'tab\\there\\nnew line ü ✓ ' || g \
           FROM generate_series(1, 2000) g; \
         INSERT INTO orders (customer_id, amount, payload, blob, created_at) \
           SELECT 1 + (g % 2000), g * 1.25, jsonb_build_object('g', g, 'tags', jsonb_build_array('a', E'b\\\\c')), \
                  decode(md5(g::text), 'hex'), '2024-01-01T00:00:00Z'::timestamptz + g * interval '1 minute' \
           FROM generate_series(1, 8000) g;",
    );
}

fn assert_same_pg(a: &str, b: &str) {
    for t in ["customers", "orders"] {
        assert_eq!(pg_rows(a, t), pg_rows(b, t), "table {t} differs");
    }
}

// --- the API ---------------------------------------------------------------

pub(crate) async fn call(
    app: &TestApp,
    user: &User,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = app
        .http
        .request(method, app.url(path))
        .bearer_auth(&user.token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    status_json(r).await
}

pub(crate) async fn pg_server(app: &TestApp, user: &User) -> i64 {
    let (s, v) = call(app, user, Method::POST, "/api/v1/servers", Some(json!({
        "name": "local pg", "type": "local",
        "database": {"type": "postgresql", "host": "127.0.0.1", "port": 5432, "username": "postgres"}
    }))).await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_i64().unwrap()
}

async fn my_server(app: &TestApp, user: &User) -> i64 {
    let (s, v) = call(
        app,
        user,
        Method::POST,
        "/api/v1/servers",
        Some(json!({
            "name": "local mariadb", "type": "local",
            "database": {"type": "mysql", "host": "127.0.0.1", "port": 3306, "username": "root"}
        })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_i64().unwrap()
}

/// Polls a task until it ends (completed or failed), for at most `secs`.
async fn wait_task(app: &TestApp, user: &User, task: &str, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (s, v) = call(
            app,
            user,
            Method::GET,
            &format!("/api/v1/tasks/{task}"),
            None,
        )
        .await;
        assert_eq!(s, 200, "{v}");
        if v["status"] == "completed" || v["status"] == "failed" {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "task {task} still {v} after {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Takes a backup and waits for its job; answers the backup object.
pub(crate) async fn backup(
    app: &TestApp,
    user: &User,
    server: i64,
    db: &str,
    body: Value,
) -> Value {
    let mut b = json!({"server_id": server, "database_name": db, "backup_type": "full"});
    for (k, v) in body.as_object().unwrap() {
        b[k] = v.clone();
    }
    let (s, v) = call(app, user, Method::POST, "/api/v1/backups", Some(b)).await;
    assert!(s == 201 || s == 202, "{s} {v}");
    assert_eq!(v["status"], "pending");
    let task = v["task_id"].as_str().unwrap().to_string();
    assert!(!task.is_empty());
    let t = wait_task(app, user, &task, 120).await;
    assert_eq!(t["type"], "backup");
    let (s, got) = call(
        app,
        user,
        Method::GET,
        &format!("/api/v1/backups/{}", v["id"]),
        None,
    )
    .await;
    assert_eq!(s, 200);
    got
}

async fn restore(app: &TestApp, user: &User, backup_id: i64, body: Value) -> Value {
    let (s, v) = call(
        app,
        user,
        Method::POST,
        &format!("/api/v1/backups/{backup_id}/restore"),
        Some(body),
    )
    .await;
    assert!(matches!(s, 200..=202), "{s} {v}");
    assert_eq!(v["status"], "pending");
    let t = wait_task(app, user, v["task_id"].as_str().unwrap(), 120).await;
    assert_eq!(t["type"], "restore");
    t
}

/// The stored object's bytes, fetched through a signed download URL
/// without any Authorization header.
async fn download(app: &TestApp, user: &User, id: i64) -> (String, Vec<u8>) {
    let (s, d) = call(
        app,
        user,
        Method::POST,
        &format!("/api/v1/backups/{id}/download"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{d}");
    let url = d["download_url"].as_str().unwrap().to_string();
    let expires = chrono::DateTime::parse_from_rfc3339(d["expires_at"].as_str().unwrap()).unwrap();
    assert!(expires > chrono::Utc::now());
    assert!(expires < chrono::Utc::now() + chrono::Duration::days(7));
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 200);
    (url, r.bytes().await.unwrap().to_vec())
}

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn assert_completed(b: &Value, compression: &str, encrypted: bool) {
    assert_eq!(b["status"], "completed", "{b}");
    assert_eq!(b["compression_type"], compression);
    assert_eq!(b["is_compressed"], compression != "none");
    assert_eq!(b["is_encrypted"], encrypted);
    assert!(b["error_message"].is_null());
    let checksum = b["checksum"].as_str().unwrap();
    assert!(
        checksum.starts_with("sha256:") && checksum.len() == 71,
        "{checksum}"
    );
    let started = chrono::DateTime::parse_from_rfc3339(b["started_at"].as_str().unwrap()).unwrap();
    let completed =
        chrono::DateTime::parse_from_rfc3339(b["completed_at"].as_str().unwrap()).unwrap();
    assert!(started <= completed);
    let d = b["duration_seconds"].as_f64().unwrap();
    let diff = (completed - started).num_microseconds().unwrap() as f64 / 1e6;
    assert!((d - diff).abs() < 0.01, "{d} vs {diff}");
    let path = b["storage_path"].as_str().unwrap();
    let file = path.strip_prefix("file://").unwrap();
    assert_eq!(
        std::fs::metadata(file).unwrap().len(),
        b["size_bytes"].as_u64().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_backup_progress_download_restore_and_verify() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let src = unique("bk_src");
    let dst = unique("bk_dst");
    let _c = Cleanup {
        pg: vec![src.clone(), dst.clone()],
        my: vec![],
    };
    seed_pg(&src);
    let server = pg_server(&app, &user).await;

    // Progress arrives on /ws while the job runs.
    let ws_url = format!(
        "{}/ws?token={}",
        app.base.replacen("http://", "ws://", 1),
        user.token
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();

    let b = backup(
        &app,
        &user,
        server,
        &src,
        json!({"compression_type": "zstd", "encrypt": true}),
    )
    .await;
    assert_completed(&b, "zstd", true);
    let id = b["id"].as_i64().unwrap();
    assert_eq!(b["database_name"], src.as_str());
    assert_eq!(b["db_type"], "postgresql");

    let mut last = -1.0;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("progress events")
            .unwrap()
            .unwrap();
        let Message::Text(t) = msg else { continue };
        let e: Value = serde_json::from_str(t.as_str()).unwrap();
        if e["type"] != "backup_progress" || e["backup_id"] != id {
            continue;
        }
        let p = e["progress"].as_f64().unwrap();
        assert!(p >= last, "progress went down: {last} then {p}");
        last = p;
        if e["status"] == "completed" {
            assert_eq!(p, 100.0);
            break;
        }
        assert_ne!(e["status"], "failed", "{e}");
    }

    // The object through its signed URL: the recorded length and SHA-256,
    // and no plaintext of the dump in it.
    let (url, bytes) = download(&app, &user, id).await;
    assert_eq!(bytes.len() as u64, b["size_bytes"].as_u64().unwrap());
    assert_eq!(sha256(&bytes), b["checksum"].as_str().unwrap());
    assert!(
        !bytes.windows(9).any(|w| w == b"customers"),
        "plaintext in an encrypted object"
    );
    assert!(
        !bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
        "a zstd frame is visible"
    );
    // An altered signature, or no query string, is refused.
    let bad = if url.ends_with('0') {
        format!("{}1", &url[..url.len() - 1])
    } else {
        format!("{}0", &url[..url.len() - 1])
    };
    assert!(matches!(
        reqwest::get(&bad).await.unwrap().status().as_u16(),
        401 | 403 | 404
    ));
    let bare = url.split('?').next().unwrap();
    assert!(matches!(
        reqwest::get(bare).await.unwrap().status().as_u16(),
        401 | 403 | 404
    ));

    // Restore into a new database: every row equal.
    let t = restore(
        &app,
        &user,
        id,
        json!({"target_server_id": server, "target_database": dst}),
    )
    .await;
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(t["progress"], 100.0);
    assert!(t["error"].is_null());
    assert_same_pg(&src, &dst);
    // The source is untouched by any of it.
    assert_eq!(pg_text(&src, "SELECT count(*) FROM orders"), "8000");

    // Verify: restored into a scratch database, counted, dropped.
    let (s, v) = call(
        &app,
        &user,
        Method::POST,
        &format!("/api/v1/backups/{id}/verify"),
        None,
    )
    .await;
    assert!(matches!(s, 200..=202), "{v}");
    let t = wait_task(&app, &user, v["task_id"].as_str().unwrap(), 120).await;
    assert_eq!(t["status"], "completed", "{t}");
    let (_, b) = call(
        &app,
        &user,
        Method::GET,
        &format!("/api/v1/backups/{id}"),
        None,
    )
    .await;
    assert!(b["verified_at"].is_string(), "{b}");
    assert_eq!(b["verification"]["status"], "passed", "{b}");
    assert_eq!(b["verification"]["details"]["rows"], 10000);
    assert_eq!(
        pg_text(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname LIKE 'sluice_verify_{id}_%'")
        ),
        "0"
    );

    // Delete: the object goes with the record; old URLs stop serving.
    let (s, _) = call(
        &app,
        &user,
        Method::DELETE,
        &format!("/api/v1/backups/{id}"),
        None,
    )
    .await;
    assert!(s == 200 || s == 204);
    assert!(!std::path::Path::new(
        b["storage_path"]
            .as_str()
            .unwrap()
            .strip_prefix("file://")
            .unwrap()
    )
    .exists());
    assert!(matches!(
        reqwest::get(&url).await.unwrap().status().as_u16(),
        401 | 403 | 404 | 410
    ));
    let (s, _) = call(
        &app,
        &user,
        Method::POST,
        &format!("/api/v1/backups/{id}/download"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unencrypted_gzip_is_a_gzip_of_a_custom_format_dump() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let src = unique("bk_gz");
    let dst = unique("bk_gz_dst");
    let _c = Cleanup {
        pg: vec![src.clone(), dst.clone()],
        my: vec![],
    };
    seed_pg(&src);
    let server = pg_server(&app, &user).await;
    let b = backup(
        &app,
        &user,
        server,
        &src,
        json!({"compress": true, "compression_type": "gzip", "encrypt": false}),
    )
    .await;
    assert_completed(&b, "gzip", false);
    let id = b["id"].as_i64().unwrap();
    let (_, bytes) = download(&app, &user, id).await;
    assert_eq!(sha256(&bytes), b["checksum"].as_str().unwrap());
    let mut dump = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut dump)
        .unwrap();
    assert!(dump.starts_with(b"PGDMP"), "not a pg_dump custom archive");
    let t = restore(&app, &user, id, json!({"target_database": dst})).await;
    assert_eq!(t["status"], "completed", "{t}");
    assert_same_pg(&src, &dst);

    let b = backup(
        &app,
        &user,
        server,
        &src,
        json!({"compress": false, "encrypt": false}),
    )
    .await;
    assert_completed(&b, "none", false);
    let (_, bytes) = download(&app, &user, b["id"].as_i64().unwrap()).await;
    assert!(bytes.starts_with(b"PGDMP"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_backup_and_restore_round_trip() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let src = unique("bk_my");
    let dst = unique("bk_my_dst");
    let _c = Cleanup {
        pg: vec![],
        my: vec![src.clone(), dst.clone()],
    };
    my(None, &format!("CREATE DATABASE `{src}`"));
    my(Some(&src), "CREATE TABLE people (id INT PRIMARY KEY AUTO_INCREMENT, email VARCHAR(200), note TEXT, \
        amount DECIMAL(12,2), doc JSON, raw VARBINARY(64), at DATETIME(6)) ENGINE=InnoDB; \
        INSERT INTO people (email, note, amount, doc, raw, at) \
        SELECT CONCAT('p', seq, '@example.com'), CONCAT('tab\there\nline ü ', seq), seq * 1.5, \
               JSON_OBJECT('n', seq), UNHEX(MD5(seq)), TIMESTAMP('2024-01-01') + INTERVAL seq SECOND \
        FROM seq_1_to_3000; \
        INSERT INTO people (email) VALUES (NULL);");
    let server = my_server(&app, &user).await;
    let b = backup(
        &app,
        &user,
        server,
        &src,
        json!({"compression_type": "zstd", "encrypt": true, "db_type": "mysql"}),
    )
    .await;
    assert_completed(&b, "zstd", true);
    assert_eq!(b["db_type"], "mysql");
    let t = restore(
        &app,
        &user,
        b["id"].as_i64().unwrap(),
        json!({"target_database": dst}),
    )
    .await;
    assert_eq!(t["status"], "completed", "{t}");
    let q = "SELECT id, email, note, amount, doc, HEX(raw), at FROM people ORDER BY id";
    assert_eq!(my(Some(&src), q), my(Some(&dst), q));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_restore_changes_exactly_the_named_columns() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let src = unique("bk_mask");
    let dst = unique("bk_mask_dst");
    let _c = Cleanup {
        pg: vec![src.clone(), dst.clone()],
        my: vec![],
    };
    seed_pg(&src);
    let server = pg_server(&app, &user).await;
    let b = backup(&app, &user, server, &src, json!({})).await;
    assert_completed(&b, "zstd", true);

    // An unknown strategy is a 422 naming the rule.
    let (s, v) = call(&app, &user, Method::POST, &format!("/api/v1/backups/{}/restore", b["id"]),
        Some(json!({"target_database": dst, "mask_sensitive_data": true, "masking_rules": {"email": "scramble"}}))).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(
        v["detail"][0]["loc"],
        json!(["body", "masking_rules", "email"])
    );

    let t = restore(
        &app,
        &user,
        b["id"].as_i64().unwrap(),
        json!({
            "target_database": dst, "mask_sensitive_data": true,
            "masking_rules": {"email": "hash", "phone": "randomize", "ssn": "null"}
        }),
    )
    .await;
    assert_eq!(t["status"], "completed", "{t}");
    let rows = |db: &str| {
        pg_text(db, "SELECT id || '|' || coalesce(email, '~') || '|' || coalesce(phone, '~') || '|' || coalesce(ssn, '~') || '|' || name || '|' || md5(note) FROM customers ORDER BY id")
    };
    let (before, after) = (rows(&src), rows(&dst));
    let mut by_email = std::collections::HashMap::new();
    for (a, b) in before.lines().zip(after.lines()) {
        let a: Vec<&str> = a.splitn(6, '|').collect();
        let b: Vec<&str> = b.splitn(6, '|').collect();
        assert_eq!(
            (a[0], a[4], a[5]),
            (b[0], b[4], b[5]),
            "an unnamed column changed"
        );
        assert!(
            b[1].len() >= 16
                && b[1]
                    .bytes()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "{}",
            b[1]
        );
        assert_ne!(a[1], b[1]);
        // hash: equal inputs, equal outputs; distinct inputs, distinct outputs
        let prev = by_email
            .entry(a[1].to_string())
            .or_insert_with(|| b[1].to_string());
        assert_eq!(prev, b[1]);
        assert_ne!(a[2], b[2]);
        assert_eq!(a[2].len(), b[2].len());
        assert!(a[2]
            .chars()
            .zip(b[2].chars())
            .all(|(x, y)| x.is_ascii_digit() == y.is_ascii_digit()));
        assert_eq!(b[3], "~", "ssn not null");
    }
    let distinct: std::collections::HashSet<&String> = by_email.values().collect();
    assert_eq!(distinct.len(), by_email.len());
    assert_eq!(pg_rows(&src, "orders"), pg_rows(&dst, "orders"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_object_fails_on_its_checksum_and_touches_nothing() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let src = unique("bk_bad");
    let existing = unique("bk_bad_keep");
    let missing = unique("bk_bad_new");
    let _c = Cleanup {
        pg: vec![src.clone(), existing.clone(), missing.clone()],
        my: vec![],
    };
    seed_pg(&src);
    pg("postgres", &format!("CREATE DATABASE \"{existing}\""));
    pg(
        &existing,
        "CREATE TABLE sentinel (v text); INSERT INTO sentinel VALUES ('before')",
    );
    let server = pg_server(&app, &user).await;
    let b = backup(
        &app,
        &user,
        server,
        &src,
        json!({"compression_type": "none", "encrypt": false}),
    )
    .await;
    let file = b["storage_path"]
        .as_str()
        .unwrap()
        .strip_prefix("file://")
        .unwrap()
        .to_string();
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();

    for target in [&existing, &missing] {
        let t = restore(
            &app,
            &user,
            b["id"].as_i64().unwrap(),
            json!({"target_database": target}),
        )
        .await;
        assert_eq!(t["status"], "failed", "{t}");
        assert!(t["error"].as_str().unwrap().contains("checksum"), "{t}");
    }
    assert_eq!(pg_text(&existing, "SELECT v FROM sentinel"), "before");
    assert!(!pg_exists(&missing));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_database_fails_with_a_readable_error() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let server = pg_server(&app, &user).await;
    let b = backup(&app, &user, server, &unique("no_such_db"), json!({})).await;
    assert_eq!(b["status"], "failed", "{b}");
    assert!(
        b["error_message"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{b}"
    );
    let (_, t) = call(
        &app,
        &user,
        Method::GET,
        &format!("/api/v1/tasks/{}", b["task_id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(t["status"], "failed");
    assert!(t["error"].as_str().unwrap().contains("does not exist"));
    // Permanent: tried once, not retried.
    assert_eq!(t["attempts"], 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_listing_and_tenant_isolation() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let other = app.register_user().await;
    let src = unique("bk_iso");
    let _c = Cleanup {
        pg: vec![src.clone()],
        my: vec![],
    };
    seed_pg(&src);
    let server = pg_server(&app, &user).await;

    for (body, field) in [
        (json!({"database_name": src}), "server_id"),
        (
            json!({"server_id": "abc", "database_name": src}),
            "server_id",
        ),
        (json!({"server_id": server}), "database_name"),
        (
            json!({"server_id": server, "database_name": src, "compression_type": "rar"}),
            "compression_type",
        ),
        (
            json!({"server_id": server, "database_name": src, "db_type": "oracle"}),
            "db_type",
        ),
        (
            json!({"server_id": server, "database_name": src, "encrypt": "yes"}),
            "encrypt",
        ),
    ] {
        let (s, v) = call(&app, &user, Method::POST, "/api/v1/backups", Some(body)).await;
        assert_eq!(s, 422, "{v}");
        assert_eq!(v["detail"][0]["loc"], json!(["body", field]), "{v}");
    }
    let (s, v) = call(
        &app,
        &user,
        Method::POST,
        "/api/v1/backups",
        Some(json!({"server_id": 999_999_999, "database_name": src})),
    )
    .await;
    assert_eq!(s, 404, "{v}");
    // Another tenant's server is unknown here.
    let (s, _) = call(
        &app,
        &other,
        Method::POST,
        "/api/v1/backups",
        Some(json!({"server_id": server, "database_name": src})),
    )
    .await;
    assert_eq!(s, 404);

    let b = backup(
        &app,
        &user,
        server,
        &src,
        json!({"compression_type": "gzip"}),
    )
    .await;
    let id = b["id"].as_i64().unwrap();
    let task = b["task_id"].as_str().unwrap();
    let (s, l) = call(
        &app,
        &user,
        Method::GET,
        &format!("/api/v1/backups?server_id={server}&status=completed&db_type=postgresql"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(l["total"], 1);
    assert_eq!(l["items"][0]["id"], id);
    let (_, l) = call(
        &app,
        &user,
        Method::GET,
        "/api/v1/backups?status=failed",
        None,
    )
    .await;
    assert_eq!(l, json!({"total": 0, "items": []}));

    // The other tenant sees nothing and changes nothing.
    let (_, l) = call(&app, &other, Method::GET, "/api/v1/backups", None).await;
    assert_eq!(l["total"], 0);
    for (m, path, body) in [
        (Method::GET, format!("/api/v1/backups/{id}"), None),
        (Method::DELETE, format!("/api/v1/backups/{id}"), None),
        (Method::POST, format!("/api/v1/backups/{id}/download"), None),
        (
            Method::POST,
            format!("/api/v1/backups/{id}/restore"),
            Some(json!({"target_database": "x_never"})),
        ),
        (Method::POST, format!("/api/v1/backups/{id}/verify"), None),
        (Method::GET, format!("/api/v1/tasks/{task}"), None),
    ] {
        let (s, v) = call(&app, &other, m, &path, body).await;
        assert_eq!(s, 404, "{path}: {v}");
        assert_eq!(v["code"], "NOT_FOUND", "{v}");
    }
    let (s, again) = call(
        &app,
        &user,
        Method::GET,
        &format!("/api/v1/backups/{id}"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(again["status"], "completed");
    assert!(std::path::Path::new(
        again["storage_path"]
            .as_str()
            .unwrap()
            .strip_prefix("file://")
            .unwrap()
    )
    .exists());
    // No token: 401 in the contract's envelope.
    let (s, v) = status_json(app.http.get(app.url("/api/v1/backups"))).await;
    assert_eq!(s, 401);
    assert!(v["detail"].is_string() && v["code"].is_string());
    app.stop().await;
}

pub(crate) fn job_worker(app: &TestApp, name: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("worker")
        .env("DATABASE_URL", &app.cfg.database_url)
        .env("REDIS_URL", &app.cfg.redis_url)
        .env("CLICKHOUSE_URL", &app.cfg.clickhouse_url)
        .env("CLICKHOUSE_DATABASE", &app.cfg.clickhouse_database)
        .env("SLUICE_REDIS_PREFIX", &app.cfg.redis_prefix)
        .env("SLUICE_STREAM_SHARDS", app.cfg.stream_shards.to_string())
        .env(
            "SLUICE_BACKUP_STORE",
            app.cfg.backup_store.as_deref().unwrap(),
        )
        .env("SLUICE_JOB_HEARTBEAT_SECS", "1")
        .env("SLUICE_SCHEDULE_TICK_MS", "100")
        .env("SLUICE_WORKER_NAME", name)
        .env("SLUICE_PG_POOL_SIZE", "4")
        .env("SLUICE_DEV", "true")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the sluice worker binary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_backup_never_completes_it_and_another_finishes_it() {
    let app = TestApp::spawn_with(
        Mode {
            worker: false,
            ..Mode::ALL
        },
        |_| {},
    )
    .await;
    let user = app.register_user().await;
    let src = unique("bk_crash");
    let _c = Cleanup {
        pg: vec![src.clone()],
        my: vec![],
    };
    pg("postgres", &format!("CREATE DATABASE \"{src}\""));
    // About 130 MB of rows: a backup that takes a few seconds.
    pg(
        &src,
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g + 1)::text) AS a, \
              repeat(md5((g * 3)::text), 2) AS b FROM generate_series(1, 1000000) g",
    );
    let server = pg_server(&app, &user).await;
    let (s, v) = call(&app, &user, Method::POST, "/api/v1/backups",
        Some(json!({"server_id": server, "database_name": src, "compression_type": "zstd", "encrypt": true}))).await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_i64().unwrap();
    let task = v["task_id"].as_str().unwrap().to_string();

    let mut first = job_worker(
        &app,
        &format!("crash-a-{}", &Uuid::new_v4().simple().to_string()[..6]),
    );
    // Kill it once the dump is under way.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, t) = call(
            &app,
            &user,
            Method::GET,
            &format!("/api/v1/tasks/{task}"),
            None,
        )
        .await;
        if t["status"] == "running" && t["progress"].as_f64().unwrap_or(0.0) >= 1.0 {
            break;
        }
        assert_ne!(
            t["status"], "completed",
            "the backup finished before the kill: make it bigger"
        );
        assert!(
            Instant::now() < deadline,
            "the first worker never started the backup: {t}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let (_, b) = call(
        &app,
        &user,
        Method::GET,
        &format!("/api/v1/backups/{id}"),
        None,
    )
    .await;
    assert_eq!(b["status"], "running", "{b}");
    assert!(b["checksum"].is_null() && b["size_bytes"].is_null());
    // Nothing under the object's name: a half-written upload stays staged.
    let store = app.cfg.backup_store.clone().unwrap();
    let named: Vec<_> = walk(std::path::Path::new(&store))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".dump.zst.enc"))
        .collect();
    assert!(
        named.is_empty(),
        "an object appeared under its final name: {named:?}"
    );

    // Another worker takes the job up once the dead one's lease lapsed.
    let mut second = job_worker(
        &app,
        &format!("crash-b-{}", &Uuid::new_v4().simple().to_string()[..6]),
    );
    let t = wait_task(&app, &user, &task, 180).await;
    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!(t["status"], "completed", "{t}");
    assert!(t["attempts"].as_i64().unwrap() >= 2, "{t}");
    let (_, b) = call(
        &app,
        &user,
        Method::GET,
        &format!("/api/v1/backups/{id}"),
        None,
    )
    .await;
    assert_eq!(b["status"], "completed");
    let file = b["storage_path"]
        .as_str()
        .unwrap()
        .strip_prefix("file://")
        .unwrap()
        .to_string();
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(sha256(&bytes), b["checksum"].as_str().unwrap());
    app.stop().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_health_check_updates_servers_and_publishes() {
    let app = TestApp::spawn_with(Mode::ALL, |c| c.health_check_secs = 1).await;
    let user = app.register_user().await;
    let ws_url = format!(
        "{}/ws?token={}",
        app.base.replacen("http://", "ws://", 1),
        user.token
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let good = pg_server(&app, &user).await;
    let (s, v) = call(&app, &user, Method::POST, "/api/v1/servers", Some(json!({
        "name": "closed port", "type": "local",
        "database": {"type": "postgresql", "host": "127.0.0.1", "port": 1, "username": "postgres"}
    }))).await;
    assert_eq!(s, 201);
    let bad = v["id"].as_i64().unwrap();

    let mut seen = std::collections::HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < 2 {
        assert!(Instant::now() < deadline, "server_health events: {seen:?}");
        let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_secs(30), ws.next()).await
        else {
            continue;
        };
        let e: Value = serde_json::from_str(t.as_str()).unwrap();
        if e["type"] == "server_health" {
            assert!(chrono::DateTime::parse_from_rfc3339(e["timestamp"].as_str().unwrap()).is_ok());
            seen.insert(
                e["server_id"].as_i64().unwrap(),
                e["health_status"].as_str().unwrap().to_string(),
            );
        }
    }
    assert_eq!(seen[&good], "healthy");
    assert_eq!(seen[&bad], "unhealthy");
    let (_, g) = call(
        &app,
        &user,
        Method::GET,
        &format!("/api/v1/servers/{good}"),
        None,
    )
    .await;
    assert_eq!(g["health_status"], "healthy");
    assert!(g["last_heartbeat"].is_string(), "{g}");
    let (_, b) = call(
        &app,
        &user,
        Method::GET,
        &format!("/api/v1/servers/{bad}"),
        None,
    )
    .await;
    assert_eq!(b["health_status"], "unhealthy");
    assert!(b["last_heartbeat"].is_null(), "{b}");
    app.stop().await;
}

/// The backup crate's throwaway OpenSSH server, shared rather than copied.
#[path = "../../backup/tests/support/sshd.rs"]
#[allow(dead_code)]
mod sshd;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssh_server_backs_up_and_restores_with_its_host_key_pinned() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let sshd = sshd::Sshd::start("");
    let src = unique("bk_ssh");
    let dst = unique("bk_ssh_dst");
    let _c = Cleanup {
        pg: vec![src.clone(), dst.clone()],
        my: vec![],
    };
    seed_pg(&src);
    let (s, v) = call(&app, &user, Method::POST, "/api/v1/servers", Some(json!({
        "name": "over ssh", "type": "ssh", "host": "127.0.0.1", "port": sshd.port,
        "credentials": {"username": "root", "ssh_key": sshd.client_key()},
        "database": {"type": "postgresql", "host": "127.0.0.1", "port": 5432, "username": "postgres"}
    }))).await;
    assert_eq!(s, 201, "{v}");
    let server = v["id"].as_i64().unwrap();

    // First use records the host key; the tools ran over SSH.
    let (s, t) = call(
        &app,
        &user,
        Method::POST,
        &format!("/api/v1/servers/{server}/test-connection"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(t["success"], true, "{t}");
    let pinned: Option<String> =
        sqlx::query_scalar("SELECT ssh_host_key FROM servers WHERE id = $1")
            .bind(server)
            .fetch_one(&app.running.pg)
            .await
            .unwrap();
    assert_eq!(pinned.as_deref(), Some(sshd.host_fingerprint().as_str()));

    let b = backup(
        &app,
        &user,
        server,
        &src,
        json!({"compression_type": "zstd", "encrypt": true}),
    )
    .await;
    assert_completed(&b, "zstd", true);
    let t = restore(
        &app,
        &user,
        b["id"].as_i64().unwrap(),
        json!({"target_database": dst}),
    )
    .await;
    assert_eq!(t["status"], "completed", "{t}");
    assert_same_pg(&src, &dst);

    // A server presenting another key than the pinned one is refused.
    sqlx::query("UPDATE servers SET ssh_host_key = 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' WHERE id = $1")
        .bind(server)
        .execute(&app.running.pg)
        .await
        .unwrap();
    let (_, t) = call(
        &app,
        &user,
        Method::POST,
        &format!("/api/v1/servers/{server}/test-connection"),
        None,
    )
    .await;
    assert_eq!(t["success"], false, "{t}");
    assert!(t["message"].as_str().unwrap().contains("mismatch"), "{t}");
    let b = backup(&app, &user, server, &src, json!({})).await;
    assert_eq!(b["status"], "failed", "{b}");
    assert!(
        b["error_message"].as_str().unwrap().contains("mismatch"),
        "{b}"
    );
    app.stop().await;
}
