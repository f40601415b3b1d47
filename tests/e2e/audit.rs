//! The audit log over HTTP: entries written by state-changing requests
//! (who, what, which resource, details, client address), filters and
//! paging, CSV/JSON export, append-only, readers and tenant isolation.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{status_json, TestApp, User};

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

async fn server(app: &TestApp, user: &User, name: &str) -> i64 {
    let (s, v) = call(
        app,
        user,
        Method::POST,
        "/api/v1/servers",
        Some(json!({"name": name, "type": "local",
            "database": {"type": "postgresql", "host": "127.0.0.1", "port": 5432, "username": "postgres"}})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_i64().unwrap()
}

async fn my_user_id(app: &TestApp, user: &User) -> i64 {
    let (s, v) = call(app, user, Method::GET, "/api/v1/users", None).await;
    assert_eq!(s, 200, "{v}");
    v.as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == user.username.as_str())
        .unwrap()["id"]
        .as_i64()
        .unwrap()
}

async fn logs(app: &TestApp, user: &User, query: &str) -> (u16, Value) {
    call(
        app,
        user,
        Method::GET,
        &format!("/api/v1/audit/logs?{query}"),
        None,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_server_and_a_backup_is_recorded() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let me = my_user_id(&app, &user).await;
    let sid = server(&app, &user, "audited").await;
    let (s, b) = call(
        &app,
        &user,
        Method::POST,
        "/api/v1/backups",
        Some(json!({"server_id": sid, "database_name": "audit_no_such_db", "backup_type": "full"})),
    )
    .await;
    assert!(s == 201 || s == 202, "{b}");
    let bid = b["id"].as_i64().unwrap();

    let (s, v) = logs(&app, &user, "action=server_create").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["total"], 1, "{v}");
    let e = &v["items"][0];
    assert_eq!(e["action"], "server_create");
    assert_eq!(e["resource_type"], "server");
    assert_eq!(e["resource_id"], sid);
    assert_eq!(e["user_id"], me);
    assert_eq!(e["username"], user.username.as_str());
    assert_eq!(e["ip_address"], "127.0.0.1");
    assert!(e["id"].is_i64());
    assert!(e["details"].is_object());
    assert!(chrono::DateTime::parse_from_rfc3339(e["created_at"].as_str().unwrap()).is_ok());

    let (_, v) = logs(&app, &user, "action=backup_create").await;
    assert_eq!(v["total"], 1, "{v}");
    let e = &v["items"][0];
    assert_eq!(e["resource_type"], "backup");
    assert_eq!(e["resource_id"], bid);
    assert_eq!(e["details"]["database"], "audit_no_such_db");
    assert_eq!(e["details"]["backup_type"], "full");
    assert_eq!(e["user_id"], me);
    assert_eq!(e["ip_address"], "127.0.0.1");

    // a state-changing request without a handler's note gets a generic entry
    let (s, _) = call(
        &app,
        &user,
        Method::POST,
        &format!("/api/v1/servers/{sid}/test-connection"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (_, v) = logs(&app, &user, "action=http_post").await;
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(v["items"][0]["resource_type"], "server");
    assert_eq!(v["items"][0]["resource_id"], sid);
    // the login was recorded too; reads are not
    let (_, v) = logs(&app, &user, "action=login").await;
    assert_eq!(v["total"], 1, "{v}");
    let (_, v) = logs(&app, &user, "").await;
    assert!(v["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["action"] != "http_get"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_combine_dates_are_inclusive_and_total_precedes_paging() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let me = my_user_id(&app, &user).await;
    let ids = [
        server(&app, &user, "one").await,
        server(&app, &user, "two").await,
        server(&app, &user, "three").await,
    ];
    let today = chrono::Utc::now().date_naive();
    let yesterday = today.pred_opt().unwrap();
    let tomorrow = today.succ_opt().unwrap();

    let (_, v) = logs(&app, &user, "action=server_create&limit=2").await;
    assert_eq!(v["total"], 3, "{v}");
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["resource_id"], ids[2], "newest first");
    assert_eq!(items[1]["resource_id"], ids[1]);
    let (_, v) = logs(&app, &user, "action=server_create&limit=2&offset=2").await;
    assert_eq!(v["total"], 3);
    assert_eq!(v["items"][0]["resource_id"], ids[0]);

    let q = format!("action=server_create&resource_type=server&user_id={me}&start_date={today}&end_date={today}");
    let (_, v) = logs(&app, &user, &q).await;
    assert_eq!(v["total"], 3, "one day, both ends inclusive: {v}");
    let (_, v) = logs(
        &app,
        &user,
        &format!("action=server_create&end_date={yesterday}"),
    )
    .await;
    assert_eq!(v["total"], 0, "{v}");
    let (_, v) = logs(
        &app,
        &user,
        &format!("action=server_create&start_date={tomorrow}"),
    )
    .await;
    assert_eq!(v["total"], 0, "{v}");
    let (_, v) = logs(&app, &user, &format!("user_id={}", me + 1_000_000)).await;
    assert_eq!(v, json!({"total": 0, "items": []}));
    let (_, v) = logs(&app, &user, "action=server_create&resource_type=backup").await;
    assert_eq!(v["total"], 0);

    let (s, v) = logs(&app, &user, "start_date=2024-13-01").await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["detail"][0]["loc"], json!(["query", "start_date"]));
    let (s, _) = logs(&app, &user, "end_date=yesterday").await;
    assert_eq!(s, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_streams_csv_and_json() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let tricky = "a, \"quoted\" name";
    let sid = server(&app, &user, tricky).await;
    server(&app, &user, "plain").await;

    let r = app
        .http
        .get(app.url("/api/v1/audit/export?format=csv&action=server_create"))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = r.text().await.unwrap();
    let mut rd = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = rd.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(
        header,
        [
            "id",
            "user_id",
            "username",
            "action",
            "resource_type",
            "resource_id",
            "details",
            "ip_address",
            "created_at"
        ]
    );
    let rows: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2, "{text}");
    let oldest = &rows[1];
    assert_eq!(&oldest[3], "server_create");
    assert_eq!(&oldest[4], "server");
    assert_eq!(&oldest[5], sid.to_string());
    assert_eq!(&oldest[2], user.username.as_str());
    assert_eq!(&oldest[7], "127.0.0.1");
    let details: Value = serde_json::from_str(&oldest[6]).unwrap();
    assert_eq!(details["name"], tricky, "a comma and a quote round-trip");
    assert!(rows[0][0].parse::<i64>().unwrap() > oldest[0].parse::<i64>().unwrap());

    // an empty range: the header alone
    let r = app
        .http
        .get(app.url("/api/v1/audit/export?format=csv&start_date=2001-01-01&end_date=2001-01-31"))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert_eq!(
        text.trim_end(),
        "id,user_id,username,action,resource_type,resource_id,details,ip_address,created_at"
    );

    let (s, v) = status_json(
        app.http
            .get(app.url("/api/v1/audit/export?format=json&action=server_create"))
            .bearer_auth(&user.token),
    )
    .await;
    assert_eq!(s, 200);
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[1]["details"]["name"], tricky);
    let (s, v) =
        status_json(
            app.http
                .get(app.url(
                    "/api/v1/audit/export?format=json&start_date=2001-01-01&end_date=2001-01-01",
                ))
                .bearer_auth(&user.token),
        )
        .await;
    assert_eq!((s, v), (200, json!([])));
    let (s, _) = call(
        &app,
        &user,
        Method::GET,
        "/api/v1/audit/export?format=xml",
        None,
    )
    .await;
    assert_eq!(s, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_cannot_be_changed_and_stay_in_their_tenant() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let other = app.register_user().await;
    server(&app, &user, "mine").await;
    let (_, v) = logs(&app, &user, "action=server_create").await;
    let id = v["items"][0]["id"].as_i64().unwrap();
    for m in [Method::PUT, Method::DELETE, Method::PATCH] {
        let (s, _) = call(
            &app,
            &user,
            m.clone(),
            &format!("/api/v1/audit/logs/{id}"),
            Some(json!({"action": "x"})),
        )
        .await;
        assert!(s == 404 || s == 405, "{m} answered {s}");
        let (s, _) = call(
            &app,
            &user,
            m.clone(),
            "/api/v1/audit/logs",
            Some(json!({})),
        )
        .await;
        assert!(s == 404 || s == 405, "{m} answered {s}");
    }
    let (_, v) = logs(&app, &user, "action=server_create").await;
    assert_eq!(v["items"][0]["id"], id);
    assert_eq!(v["items"][0]["action"], "server_create");

    // the table itself refuses edits
    let pool = sqlx::PgPool::connect(&app.cfg.database_url).await.unwrap();
    assert!(
        sqlx::query("UPDATE audit_logs SET action = 'x' WHERE id = $1")
            .bind(id)
            .execute(&pool)
            .await
            .is_err()
    );
    assert!(sqlx::query("DELETE FROM audit_logs WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .is_err());

    // another tenant sees none of it
    let (s, v) = logs(&app, &other, "").await;
    assert_eq!(s, 200);
    assert!(
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["username"] == other.username.as_str()),
        "{v}"
    );
    let (_, v) = call(
        &app,
        &other,
        Method::GET,
        "/api/v1/audit/logs?action=server_create",
        None,
    )
    .await;
    assert_eq!(v["total"], 0);
    let r = app
        .http
        .get(app.url("/api/v1/audit/export?format=csv&action=server_create"))
        .bearer_auth(&other.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap().lines().count(), 1);
}
