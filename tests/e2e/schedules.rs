//! Backup schedules over HTTP: CRUD, the 422s of bad cron expressions and
//! zones, `next_run` in UTC and in Europe/Berlin, tenant isolation, and the
//! scheduler in two worker processes sharing one database: a due tick
//! queues exactly one backup, and ticks missed while no worker ran queue
//! one backup, not one each.

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use reqwest::Method;
use serde_json::{json, Value};
use sluice::app::Mode;

use crate::backups::{call, pg, pg_server, unique, Cleanup};
use crate::support::{wait_for, TestApp};

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_crud_next_run_validation_and_isolation() {
    let app = TestApp::spawn_with(Mode::API, |_| {}).await;
    let user = app.register_user().await;
    let other = app.register_user().await;
    let server = pg_server(&app, &user).await;
    let other_server = pg_server(&app, &other).await;

    // Create: 201, the contract's fields, next_run the next 02:00 UTC.
    let (s, v) = call(
        &app,
        &user,
        Method::POST,
        "/api/v1/schedules",
        Some(json!({
            "name": "Daily", "description": "nightly", "server_id": server,
            "database_name": "myapp_production", "cron_expression": "0 2 * * *",
            "timezone": "UTC", "backup_type": "full", "enabled": true,
            "notify_on_success": false, "notify_on_failure": true
        })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    for f in [
        "id",
        "name",
        "server_id",
        "database_name",
        "cron_expression",
        "timezone",
        "backup_type",
        "enabled",
        "last_run",
        "next_run",
        "created_at",
    ] {
        assert!(v.get(f).is_some(), "{f} missing from {v}");
    }
    assert!(v["id"].is_i64());
    assert_eq!(v["server_id"], server);
    assert!(v["last_run"].is_null());
    assert_eq!(v["retention_policy_id"], Value::Null);
    let next = time(&v["next_run"]);
    let now = Utc::now();
    assert!(v["next_run"].as_str().unwrap().ends_with('Z'));
    assert_eq!((next.hour(), next.minute(), next.second()), (2, 0, 0));
    assert!(
        next > now && next - now <= chrono::Duration::hours(24),
        "{next}"
    );
    let id = v["id"].as_i64().unwrap();

    // Europe/Berlin 09:30: 08:30 UTC in winter (CET), 07:30 in summer.
    let (s, b) = call(
        &app,
        &user,
        Method::POST,
        "/api/v1/schedules",
        Some(json!({
            "name": "Berlin", "server_id": server, "database_name": "db1",
            "cron_expression": "30 9 * * *", "timezone": "Europe/Berlin"
        })),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let next = time(&b["next_run"]);
    let now = Utc::now();
    assert!(
        next > now && next - now <= chrono::Duration::hours(24),
        "{next}"
    );
    let local = next.with_timezone(&chrono::FixedOffset::east_opt(0).unwrap());
    assert_eq!(local.minute(), 30);
    assert!(local.hour() == 8 || local.hour() == 7, "{next}");
    assert_eq!(b["enabled"], true);
    assert_eq!(b["backup_type"], "full");

    // 422s, each at its field.
    let base = json!({"name": "x", "server_id": server, "database_name": "db1",
                      "cron_expression": "0 2 * * *", "timezone": "UTC"});
    let cases = [
        ("cron_expression", json!("0 2 * *")),
        ("cron_expression", json!("0 0 2 * * *")),
        ("cron_expression", json!("61 2 * * *")),
        ("cron_expression", json!("0 25 * * *")),
        ("cron_expression", json!("0 0 * 13 *")),
        ("cron_expression", json!("every day please")),
        ("cron_expression", json!(5)),
        ("timezone", json!("Mars/Olympus")),
        ("timezone", json!("")),
        ("server_id", json!("abc")),
        ("compression_type", json!("rar")),
    ];
    for (field, value) in cases {
        let mut body = base.clone();
        body[field] = value.clone();
        let (s, e) = call(&app, &user, Method::POST, "/api/v1/schedules", Some(body)).await;
        assert_eq!(s, 422, "{field}={value}: {e}");
        let locs: Vec<Value> = e["detail"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["loc"].clone())
            .collect();
        assert!(
            locs.contains(&json!(["body", field])),
            "{field}={value}: {e}"
        );
    }
    for missing in ["name", "server_id", "database_name", "cron_expression"] {
        let mut body = base.clone();
        body.as_object_mut().unwrap().remove(missing);
        let (s, e) = call(&app, &user, Method::POST, "/api/v1/schedules", Some(body)).await;
        assert_eq!(s, 422, "{e}");
        assert_eq!(e["detail"][0]["loc"], json!(["body", missing]));
        assert_eq!(e["detail"][0]["type"], "value_error.missing");
    }

    // Unknown or another tenant's server or policy: 404.
    for (field, value) in [
        ("server_id", json!(other_server)),
        ("server_id", json!(999_999_999)),
        ("retention_policy_id", json!(999_999_999)),
    ] {
        let mut body = base.clone();
        body[field] = value;
        let (s, e) = call(&app, &user, Method::POST, "/api/v1/schedules", Some(body)).await;
        assert_eq!(s, 404, "{e}");
        assert_eq!(e["code"], "NOT_FOUND");
    }
    let (_, op) = call(
        &app,
        &other,
        Method::POST,
        "/api/v1/retention-policies",
        Some(json!({"name": "theirs", "keep_last_n": 1})),
    )
    .await;
    let mut body = base.clone();
    body["retention_policy_id"] = op["id"].clone();
    let (s, _) = call(&app, &user, Method::POST, "/api/v1/schedules", Some(body)).await;
    assert_eq!(s, 404);

    // List: both, in creation order, same fields.
    let (s, l) = call(&app, &user, Method::GET, "/api/v1/schedules", None).await;
    assert_eq!(s, 200);
    let l = l.as_array().unwrap();
    assert_eq!(l.len(), 2);
    assert_eq!(l[0]["id"], id);
    assert_eq!(l[0]["next_run"], v["next_run"]);

    // PUT is partial: disable (no next run), then re-enable and move it.
    let path = format!("/api/v1/schedules/{id}");
    let (s, u) = call(
        &app,
        &user,
        Method::PUT,
        &path,
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["enabled"], false);
    assert!(u["next_run"].is_null());
    assert_eq!(u["name"], "Daily");
    assert_eq!(u["cron_expression"], "0 2 * * *");
    let (s, u) = call(
        &app,
        &user,
        Method::PUT,
        &path,
        Some(json!({"enabled": true, "cron_expression": "15 4 * * *"})),
    )
    .await;
    assert_eq!(s, 200, "{u}");
    let next = time(&u["next_run"]);
    assert_eq!((next.hour(), next.minute()), (4, 15));
    assert_eq!(u["description"], "nightly");
    let (s, e) = call(
        &app,
        &user,
        Method::PUT,
        &path,
        Some(json!({"timezone": "Nowhere/Land"})),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(e["detail"][0]["loc"], json!(["body", "timezone"]));
    let (s, e) = call(
        &app,
        &user,
        Method::PUT,
        &path,
        Some(json!({"cron_expression": "* * *"})),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(e["detail"][0]["loc"], json!(["body", "cron_expression"]));
    let (s, _) = call(&app, &user, Method::GET, &path, None).await;
    assert_eq!(s, 200);

    // Another tenant: 404 everywhere, nothing listed, nothing changed.
    let (s, l) = call(&app, &other, Method::GET, "/api/v1/schedules", None).await;
    assert_eq!(s, 200);
    assert_eq!(l, json!([]));
    for (m, body) in [
        (Method::GET, None),
        (Method::PUT, Some(json!({"enabled": false}))),
        (Method::DELETE, None),
    ] {
        let (s, e) = call(&app, &other, m, &path, body).await;
        assert_eq!(s, 404, "{e}");
    }
    let (_, still) = call(&app, &user, Method::GET, &path, None).await;
    assert_eq!(still["enabled"], true);

    // Delete, then 404.
    let (s, _) = call(&app, &user, Method::DELETE, &path, None).await;
    assert!(s == 200 || s == 204);
    for (m, body) in [
        (Method::GET, None),
        (Method::PUT, Some(json!({"enabled": false}))),
        (Method::DELETE, None),
    ] {
        let (s, _) = call(&app, &user, m, &path, body).await;
        assert_eq!(s, 404);
    }
    let (s, _) = call(&app, &user, Method::GET, "/api/v1/schedules/abc", None).await;
    assert_eq!(s, 422);
    app.stop().await;
}

/// The backups of `server`, newest first.
async fn backups_of(app: &TestApp, user: &crate::support::User, server: i64) -> Vec<Value> {
    let (s, v) = call(
        app,
        user,
        Method::GET,
        &format!("/api/v1/backups?server_id={server}"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v["items"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_and_missed_ticks_run_once_with_two_schedulers() {
    let a = TestApp::spawn_with(Mode::ALL, |c| c.schedule_tick_ms = 100).await;
    let (prefix, store) = (a.cfg.redis_prefix.clone(), a.cfg.backup_store.clone());
    // A second worker process: same database, same queues, same store.
    let b = TestApp::spawn_with(Mode::ALL, move |c| {
        c.schedule_tick_ms = 100;
        c.redis_prefix = prefix;
        c.backup_store = store;
    })
    .await;
    let user = a.register_user().await;
    let db = unique("sched_src");
    let _c = Cleanup {
        pg: vec![db.clone()],
        my: vec![],
    };
    pg("postgres", &format!("CREATE DATABASE \"{db}\""));
    pg(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, v text); \
             INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 100) g;",
    );
    let server = pg_server(&a, &user).await;
    let db2 = unique("sched_src");
    let _c2 = Cleanup {
        pg: vec![db2.clone()],
        my: vec![],
    };
    pg("postgres", &format!("CREATE DATABASE \"{db2}\""));
    pg(
        &db2,
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);",
    );
    let server2 = pg_server(&a, &user).await;

    // Yearly and daily schedules, made due by hand: one tick due now, and
    // one whose last five daily ticks were all missed.
    let mut ids = Vec::new();
    for (srv, name, cron) in [(server, &db, "0 0 1 1 *"), (server2, &db2, "0 3 * * *")] {
        let (s, v) = call(&a, &user, Method::POST, "/api/v1/schedules", Some(json!({
            "name": "due", "server_id": srv, "database_name": name,
            "cron_expression": cron, "timezone": "UTC", "compression_type": "gzip", "encrypt": false
        }))).await;
        assert_eq!(s, 201, "{v}");
        ids.push(v["id"].as_i64().unwrap());
    }
    sqlx::query("UPDATE schedules SET next_run = now() - interval '1 second' WHERE id = $1")
        .bind(ids[0])
        .execute(&a.running.pg)
        .await
        .unwrap();
    sqlx::query("UPDATE schedules SET next_run = now() - interval '5 days' WHERE id = $1")
        .bind(ids[1])
        .execute(&a.running.pg)
        .await
        .unwrap();

    for srv in [server, server2] {
        let done = wait_for("the scheduled backup to complete", || async {
            let items = backups_of(&a, &user, srv).await;
            (items.len() == 1 && items[0]["status"] == "completed").then(|| items[0].clone())
        })
        .await;
        assert_eq!(done["compression_type"], "gzip");
        assert_eq!(done["is_encrypted"], false);
    }
    // Many more ticks of both schedulers: still exactly one each.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (srv, id) in [(server, ids[0]), (server2, ids[1])] {
        assert_eq!(backups_of(&a, &user, srv).await.len(), 1);
        let (_, s) = call(
            &a,
            &user,
            Method::GET,
            &format!("/api/v1/schedules/{id}"),
            None,
        )
        .await;
        let last = time(&s["last_run"]);
        let next = time(&s["next_run"]);
        assert!(
            last <= Utc::now() && Utc::now() - last < chrono::Duration::minutes(2),
            "{s}"
        );
        assert!(next > Utc::now(), "{s}");
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM backups WHERE schedule_id = $1")
            .bind(id)
            .fetch_one(&a.running.pg)
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
    let (_, s) = call(
        &a,
        &user,
        Method::GET,
        &format!("/api/v1/schedules/{}", ids[1]),
        None,
    )
    .await;
    let next = time(&s["next_run"]);
    assert_eq!((next.hour(), next.minute()), (3, 0));
    assert!(next - Utc::now() <= chrono::Duration::hours(24));
    b.stop().await;
    a.stop().await;
}

/// Two `sluice worker` processes (real OS processes, each with its own
/// scheduler ticking every 100 ms) and an API without workers: one due
/// tick gives exactly one backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_schedule_fires_once_across_two_worker_processes() {
    let app = TestApp::spawn_with(
        Mode {
            worker: false,
            ..Mode::ALL
        },
        |_| {},
    )
    .await;
    let user = app.register_user().await;
    let db = unique("sched_proc");
    let _c = Cleanup {
        pg: vec![db.clone()],
        my: vec![],
    };
    pg("postgres", &format!("CREATE DATABASE \"{db}\""));
    pg(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2);",
    );
    let server = pg_server(&app, &user).await;
    let (s, v) = call(
        &app,
        &user,
        Method::POST,
        "/api/v1/schedules",
        Some(json!({
            "name": "two processes", "server_id": server, "database_name": db,
            "cron_expression": "0 0 1 1 *", "timezone": "UTC"
        })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_i64().unwrap();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let mut workers = [
        crate::backups::job_worker(&app, &format!("sched-a-{suffix}")),
        crate::backups::job_worker(&app, &format!("sched-b-{suffix}")),
    ];
    // Let both schedulers start ticking, then make the schedule due.
    tokio::time::sleep(Duration::from_secs(2)).await;
    sqlx::query("UPDATE schedules SET next_run = now() - interval '1 second' WHERE id = $1")
        .bind(id)
        .execute(&app.running.pg)
        .await
        .unwrap();
    let done = wait_for("the scheduled backup to complete", || async {
        let items = backups_of(&app, &user, server).await;
        (!items.is_empty() && items.iter().all(|b| b["status"] == "completed")).then_some(items)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = backups_of(&app, &user, server).await;
    for w in &mut workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(after.len(), 1, "{after:?}");
    let (_, s) = call(
        &app,
        &user,
        Method::GET,
        &format!("/api/v1/schedules/{id}"),
        None,
    )
    .await;
    assert!(s["last_run"].is_string(), "{s}");
    app.stop().await;
}
