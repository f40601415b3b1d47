//! The Backup platform's servers over HTTP: CRUD, secrets sealed at rest
//! and never answered, real connection tests and database listings against
//! the machine's PostgreSQL (127.0.0.1:5432) and MariaDB (127.0.0.1:3306),
//! the 422 validation form, roles, and tenant isolation.

use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{status_json, TestApp, User};

const SERVERS: &str = "/api/v1/servers";

const DB_PASSWORD: &str = "db-pass-Zq81xK";
const SSH_PASSWORD: &str = "ssh-pass-Wv27pL";
const SSH_KEY: &str =
    "-----BEGIN OPENSSH PRIVATE KEY-----\nkey-body-Hj55Rt\n-----END OPENSSH PRIVATE KEY-----";

async fn call(
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

/// The SecretBox the app seals with (the same derivation as `app::start`).
fn secrets(app: &TestApp) -> sluice_storage::secrets::SecretBox {
    let secret = sluice_auth::signing_secret(app.cfg.secret_key.as_deref(), app.cfg.dev).unwrap();
    sluice_storage::secrets::SecretBox::new(&secret)
}

fn assert_no_secret(v: &Value) {
    let text = v.to_string();
    for s in [DB_PASSWORD, SSH_PASSWORD, "key-body-Hj55Rt"] {
        assert!(!text.contains(s), "a secret is in the answer: {text}");
    }
    assert!(!text.contains("\"password\""), "{text}");
    assert!(!text.contains("ssh_key"), "{text}");
}

fn assert_backup_error(v: &Value, code: &str) {
    assert_eq!(v["code"], code, "{v}");
    assert!(v["detail"].as_str().unwrap().len() > 3, "{v}");
    assert!(chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str().unwrap()).is_ok());
}

async fn create(app: &TestApp, user: &User, body: Value) -> Value {
    let (s, v) = call(app, user, Method::POST, SERVERS, Some(body)).await;
    assert_eq!(s, 201, "{v}");
    assert_no_secret(&v);
    v
}

fn local_pg(port: u16) -> Value {
    json!({"name": "pg", "type": "local", "environment": "test",
           "database": {"type": "postgresql", "host": "127.0.0.1", "port": port, "username": "postgres"}})
}

fn local_mariadb(password: Option<&str>) -> Value {
    let mut db = json!({"type": "mysql", "host": "127.0.0.1", "port": 3306, "username": "root"});
    if let Some(p) = password {
        db["password"] = json!(p);
    }
    json!({"name": "maria", "type": "local", "database": db})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_round_trip_keeps_secrets_sealed_and_unanswered() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let body = json!({
        "name": "Production DB Server",
        "description": "Main production database",
        "type": "ssh",
        "environment": "production",
        "host": "192.0.2.10",
        "port": 22,
        "credentials": {"username": "admin", "password": SSH_PASSWORD, "ssh_key": SSH_KEY},
        "database": {"type": "postgresql", "host": "127.0.0.1", "port": 5432, "username": "app", "password": DB_PASSWORD},
        "tags": {"region": "us-east-1", "team": "platform"}
    });
    let a = create(&app, &user, body).await;
    assert_eq!(a["name"], "Production DB Server");
    assert_eq!(a["type"], "ssh");
    assert_eq!(a["environment"], "production");
    assert_eq!(a["host"], "192.0.2.10");
    assert_eq!(a["port"], 22);
    assert_eq!(
        a["tags"],
        json!({"region": "us-east-1", "team": "platform"})
    );
    assert_eq!(
        a["database"],
        json!({"type": "postgresql", "host": "127.0.0.1", "port": 5432, "username": "app"})
    );
    assert_eq!(a["credentials"], json!({"username": "admin"}));
    assert_eq!(a["health_status"], "unknown");
    assert!(a["last_heartbeat"].is_null());
    assert!(a["created_at"].as_str().unwrap().ends_with('Z'));
    let id = a["id"].as_i64().unwrap();

    // A second one: ids are integers in creation order.
    let b = create(
        &app,
        &user,
        json!({"name": "second", "type": "docker", "container": "pg16"}),
    )
    .await;
    assert!(b["id"].as_i64().unwrap() > id);
    assert_eq!(b["container"], "pg16");
    assert_eq!(b["tags"], json!({}));

    // The stored secrets are sealed: no plaintext in any column.
    type Sealed = Option<Vec<u8>>;
    let row: (Sealed, Sealed, Sealed) = sqlx::query_as(
        "SELECT ssh_password_sealed, ssh_key_sealed, db_password_sealed FROM servers WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&app.running.pg)
    .await
    .unwrap();
    for (col, secret) in [
        (row.0, SSH_PASSWORD),
        (row.1, "key-body-Hj55Rt"),
        (row.2, DB_PASSWORD),
    ] {
        let col = col.expect("secret stored");
        assert!(!col.windows(secret.len()).any(|w| w == secret.as_bytes()));
        assert!(secrets(&app).open(&col).unwrap().contains(secret));
    }
    let whole: (String,) =
        sqlx::query_as("SELECT row_to_json(s)::text FROM servers s WHERE id = $1")
            .bind(id)
            .fetch_one(&app.running.pg)
            .await
            .unwrap();
    for s in [SSH_PASSWORD, "key-body-Hj55Rt", DB_PASSWORD] {
        assert!(!whole.0.contains(s));
    }

    // Get and list.
    let (s, got) = call(&app, &user, Method::GET, &format!("{SERVERS}/{id}"), None).await;
    assert_eq!(s, 200);
    assert_eq!(got, a);
    let (s, list) = call(&app, &user, Method::GET, SERVERS, None).await;
    assert_eq!(s, 200);
    assert_no_secret(&list);
    let ids: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![id, b["id"].as_i64().unwrap()]);
    assert!(list[0]["last_heartbeat"].is_null());

    // Partial update: name and tags replaced, the rest (secrets too) kept.
    let (s, u) = call(
        &app,
        &user,
        Method::PUT,
        &format!("{SERVERS}/{id}"),
        Some(json!({"name": "Updated Server Name", "tags": {"region": "us-west-2"}, "database": {"port": 5433}})),
    )
    .await;
    assert_eq!(s, 200, "{u}");
    assert_no_secret(&u);
    assert_eq!(u["name"], "Updated Server Name");
    assert_eq!(u["tags"], json!({"region": "us-west-2"}));
    assert_eq!(u["description"], "Main production database");
    assert_eq!(u["database"]["port"], 5433);
    assert_eq!(u["database"]["username"], "app");
    let sealed: (Option<Vec<u8>>, Option<Vec<u8>>) =
        sqlx::query_as("SELECT db_password_sealed, ssh_password_sealed FROM servers WHERE id = $1")
            .bind(id)
            .fetch_one(&app.running.pg)
            .await
            .unwrap();
    assert_eq!(secrets(&app).open(&sealed.0.unwrap()).unwrap(), DB_PASSWORD);
    assert_eq!(
        secrets(&app).open(&sealed.1.unwrap()).unwrap(),
        SSH_PASSWORD
    );

    // An ssh server whose key is not a key: a clear success:false that
    // names no secret.
    let (s, t) = call(
        &app,
        &user,
        Method::POST,
        &format!("{SERVERS}/{id}/test-connection"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(t["success"], false);
    assert!(t["message"].as_str().unwrap().len() > 5, "{t}");
    assert_no_secret(&t);

    // Delete: gone from the list, 404 afterwards on every route.
    let (s, _) = call(
        &app,
        &user,
        Method::DELETE,
        &format!("{SERVERS}/{id}"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (_, list) = call(&app, &user, Method::GET, SERVERS, None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    for (m, p) in [
        (Method::GET, format!("{SERVERS}/{id}")),
        (Method::PUT, format!("{SERVERS}/{id}")),
        (Method::DELETE, format!("{SERVERS}/{id}")),
        (Method::POST, format!("{SERVERS}/{id}/test-connection")),
        (Method::GET, format!("{SERVERS}/{id}/databases")),
        (Method::GET, format!("{SERVERS}/987654321")),
    ] {
        let (s, v) = call(&app, &user, m, &p, Some(json!({"name": "x"}))).await;
        assert_eq!(s, 404, "{p}: {v}");
        assert_backup_error(&v, "NOT_FOUND");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_connection_and_databases_against_real_postgres_and_mariadb() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;

    // PostgreSQL: a real round trip, then a wrong port.
    let pg = create(&app, &user, local_pg(5432)).await;
    let (s, t) = call(
        &app,
        &user,
        Method::POST,
        &format!("{SERVERS}/{}/test-connection", pg["id"]),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(t["success"], true, "{t}");
    assert!(t["message"].as_str().unwrap().contains("PostgreSQL"), "{t}");
    let ms = t["latency_ms"].as_f64().unwrap();
    assert!(ms > 0.0 && ms < 20_000.0, "{t}");
    let bad_pg = create(&app, &user, local_pg(1)).await;
    let (s, t) = call(
        &app,
        &user,
        Method::POST,
        &format!("{SERVERS}/{}/test-connection", bad_pg["id"]),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(t["success"], false, "{t}");
    assert!(t["message"].as_str().unwrap().len() > 10, "{t}");

    // Its databases: a scratch one, with a size.
    let scratch = format!(
        "sluice_e2e_srv_{}",
        &Uuid::new_v4().simple().to_string()[..12]
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {scratch}")))
        .execute(&app.running.pg)
        .await
        .unwrap();
    let (s, d) = call(
        &app,
        &user,
        Method::GET,
        &format!("{SERVERS}/{}/databases", pg["id"]),
        None,
    )
    .await;
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {scratch} WITH (FORCE)"
    )))
    .execute(&app.running.pg)
    .await;
    assert_eq!(s, 200, "{d}");
    let found = d["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == scratch.as_str())
        .unwrap_or_else(|| panic!("{scratch} not listed: {d}"))
        .clone();
    assert_eq!(found["type"], "postgresql");
    assert!(found["size_mb"].as_f64().unwrap() > 1.0, "{found}");
    assert!(d["databases"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["name"] != "template0"));
    let (s, v) = call(
        &app,
        &user,
        Method::GET,
        &format!("{SERVERS}/{}/databases", bad_pg["id"]),
        None,
    )
    .await;
    assert!((400..500).contains(&s), "{s} {v}");
    assert!(v["detail"].as_str().is_some(), "{v}");

    // MariaDB: root with an empty password works; a wrong password does not.
    let maria = create(&app, &user, local_mariadb(None)).await;
    let (s, t) = call(
        &app,
        &user,
        Method::POST,
        &format!("{SERVERS}/{}/test-connection", maria["id"]),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(t["success"], true, "{t}");
    assert!(t["message"].as_str().unwrap().contains("MariaDB"), "{t}");
    assert!(t["latency_ms"].as_f64().unwrap() > 0.0);
    let wrong = create(&app, &user, local_mariadb(Some("not-the-password"))).await;
    let (s, t) = call(
        &app,
        &user,
        Method::POST,
        &format!("{SERVERS}/{}/test-connection", wrong["id"]),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(t["success"], false, "{t}");
    let msg = t["message"].as_str().unwrap();
    assert!(msg.contains("Access denied"), "{t}");
    assert!(!msg.contains("not-the-password"));

    let scratch = format!(
        "sluice_e2e_srv_{}",
        &Uuid::new_v4().simple().to_string()[..12]
    );
    let sql = format!(
        "CREATE DATABASE {scratch}; CREATE TABLE {scratch}.t (id INT PRIMARY KEY, v TEXT); \
         INSERT INTO {scratch}.t VALUES (1, REPEAT('x', 1000));"
    );
    let out = std::process::Command::new("mariadb")
        .args([
            "--protocol=TCP",
            "-h127.0.0.1",
            "-P3306",
            "-uroot",
            "-e",
            &sql,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, d) = call(
        &app,
        &user,
        Method::GET,
        &format!("{SERVERS}/{}/databases", maria["id"]),
        None,
    )
    .await;
    let _ = std::process::Command::new("mariadb")
        .args([
            "--protocol=TCP",
            "-h127.0.0.1",
            "-P3306",
            "-uroot",
            "-e",
            &format!("DROP DATABASE IF EXISTS {scratch}"),
        ])
        .output();
    assert_eq!(s, 200, "{d}");
    let found = d["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == scratch.as_str())
        .unwrap_or_else(|| panic!("{scratch} not listed: {d}"))
        .clone();
    assert_eq!(found["type"], "mysql");
    assert!(found["size_bytes"].as_u64().unwrap() > 0, "{found}");
    assert!(found["size_mb"].is_number());
    assert!(d["databases"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["name"] != "information_schema"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_auth_roles_and_tenant_isolation() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;

    let check_422 = |v: &Value, loc: &[&str], kind: &str| {
        let errors = v["detail"].as_array().unwrap_or_else(|| panic!("{v}"));
        let want: Vec<Value> = loc.iter().map(|l| json!(l)).collect();
        let e = errors
            .iter()
            .find(|e| e["loc"].as_array().unwrap() == &want)
            .unwrap_or_else(|| panic!("no error at {loc:?}: {v}"));
        assert_eq!(e["type"], kind, "{v}");
        assert!(e["msg"].as_str().unwrap().len() > 3);
    };
    for (body, loc, kind) in [
        (
            json!({"type": "local"}),
            vec!["body", "name"],
            "value_error.missing",
        ),
        (
            json!({"name": null, "type": "local"}),
            vec!["body", "name"],
            "value_error.missing",
        ),
        (
            json!({"name": 42, "type": "local"}),
            vec!["body", "name"],
            "type_error.str",
        ),
        (
            json!({"name": "a", "type": "ftp"}),
            vec!["body", "type"],
            "type_error.enum",
        ),
        (
            json!({"name": "a"}),
            vec!["body", "type"],
            "value_error.missing",
        ),
        (
            json!({"name": "a", "type": "local", "port": "22"}),
            vec!["body", "port"],
            "type_error.integer",
        ),
        (
            json!({"name": "a", "type": "local", "port": 70000}),
            vec!["body", "port"],
            "value_error.number.not_le",
        ),
        (
            json!({"name": "a", "type": "local", "tags": ["x"]}),
            vec!["body", "tags"],
            "type_error.dict",
        ),
        (
            json!({"name": "a", "type": "local", "database": {"type": "oracle", "host": "h", "username": "u"}}),
            vec!["body", "database", "type"],
            "type_error.enum",
        ),
        (
            json!({"name": "a", "type": "local", "database": {"type": "mysql", "username": "u"}}),
            vec!["body", "database", "host"],
            "value_error.missing",
        ),
    ] {
        let (s, v) = call(&app, &user, Method::POST, SERVERS, Some(body.clone())).await;
        assert_eq!(s, 422, "{body}: {v}");
        check_422(&v, &loc, kind);
    }
    // Not JSON: 422 with a detail, never a 5xx.
    let r = app
        .http
        .post(app.url(SERVERS))
        .bearer_auth(&user.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert!(v["detail"].is_array(), "{v}");

    let a = create(&app, &user, local_pg(5432)).await;
    let id = a["id"].as_i64().unwrap();
    // PUT validates too: a null name and a bad enum.
    let (s, v) = call(
        &app,
        &user,
        Method::PUT,
        &format!("{SERVERS}/{id}"),
        Some(json!({"name": null, "type": "vm"})),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    check_422(&v, &["body", "name"], "value_error.missing");
    check_422(&v, &["body", "type"], "type_error.enum");
    // A non-integer id.
    let (s, _) = call(&app, &user, Method::GET, &format!("{SERVERS}/abc"), None).await;
    assert_eq!(s, 422);

    // No token, or a bad one: 401 in the Backup envelope, on every route.
    for (m, p) in [
        (Method::GET, SERVERS.to_string()),
        (Method::POST, SERVERS.to_string()),
        (Method::GET, format!("{SERVERS}/{id}")),
        (Method::PUT, format!("{SERVERS}/{id}")),
        (Method::DELETE, format!("{SERVERS}/{id}")),
        (Method::POST, format!("{SERVERS}/{id}/test-connection")),
        (Method::GET, format!("{SERVERS}/{id}/databases")),
    ] {
        let (s, v) = status_json(
            app.http
                .request(m.clone(), app.url(&p))
                .json(&json!({"name": "x", "type": "local"})),
        )
        .await;
        assert_eq!(s, 401, "{p}: {v}");
        assert_backup_error(&v, "AUTH_FAILED");
        let (s, _) = status_json(app.http.request(m, app.url(&p)).bearer_auth("not-a-token")).await;
        assert_eq!(s, 401, "{p}");
    }

    // Another tenant: 404 on every route, and the server stays untouched.
    let other = app.register_user().await;
    let (s, list) = call(&app, &other, Method::GET, SERVERS, None).await;
    assert_eq!(s, 200);
    assert_eq!(list, json!([]));
    for (m, p) in [
        (Method::GET, format!("{SERVERS}/{id}")),
        (Method::PUT, format!("{SERVERS}/{id}")),
        (Method::DELETE, format!("{SERVERS}/{id}")),
        (Method::POST, format!("{SERVERS}/{id}/test-connection")),
        (Method::GET, format!("{SERVERS}/{id}/databases")),
    ] {
        let (s, v) = call(&app, &other, m, &p, Some(json!({"name": "stolen"}))).await;
        assert_eq!(s, 404, "{p}: {v}");
        assert_backup_error(&v, "NOT_FOUND");
    }
    let (s, still) = call(&app, &user, Method::GET, &format!("{SERVERS}/{id}"), None).await;
    assert_eq!(s, 200);
    assert_eq!(still, a);

    // Roles: an API key with read/write permissions is a developer: reads, may not write.
    let dev = |m: Method, p: &str| app.http.request(m, app.url(p)).bearer_auth(&app.key);
    let (s, _) = status_json(dev(Method::GET, SERVERS)).await;
    assert_eq!(s, 200);
    let (s, v) = status_json(dev(Method::POST, SERVERS).json(&local_pg(5432))).await;
    assert_eq!(s, 403, "{v}");
    assert_backup_error(&v, "FORBIDDEN");
    app.stop().await;
}
