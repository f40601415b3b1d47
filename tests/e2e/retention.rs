//! Retention policies over HTTP: CRUD and its 422s, the dry run, tenant
//! isolation, and the workers' sweep deleting exactly the backups no rule
//! keeps (objects and records), never a failed one.

use reqwest::Method;
use serde_json::{json, Value};
use sluice::app::Mode;

use crate::backups::{backup, call, pg, pg_server, unique, Cleanup};
use crate::support::{wait_for, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_policy_crud_validation_and_isolation() {
    let app = TestApp::spawn_with(Mode::API, |_| {}).await;
    let user = app.register_user().await;
    let other = app.register_user().await;

    let (s, v) = call(
        &app,
        &user,
        Method::POST,
        "/api/v1/retention-policies",
        Some(json!({
            "name": "Long-term Retention", "description": "Keep backups for compliance",
            "keep_days": 2555, "keep_daily": 30, "keep_weekly": 52, "keep_monthly": 84
        })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    for f in [
        "id",
        "name",
        "description",
        "keep_last_n",
        "keep_days",
        "keep_daily",
        "keep_weekly",
        "keep_monthly",
        "created_at",
    ] {
        assert!(v.get(f).is_some(), "{f} missing from {v}");
    }
    assert!(v["id"].is_i64());
    assert_eq!(v["keep_last_n"], Value::Null);
    assert_eq!(v["keep_days"], 2555);
    assert_eq!(v["keep_monthly"], 84);
    assert!(v["created_at"].as_str().unwrap().ends_with('Z'));
    let id = v["id"].as_i64().unwrap();
    let path = format!("/api/v1/retention-policies/{id}");

    // 422s.
    for (body, loc) in [
        (json!({"keep_daily": 7}), "name"),
        (json!({"name": "x", "keep_daily": -1}), "keep_daily"),
        (json!({"name": "x", "keep_last_n": -5}), "keep_last_n"),
        (json!({"name": "x", "keep_weekly": "four"}), "keep_weekly"),
        (json!({"name": "x", "keep_monthly": 1.5}), "keep_monthly"),
        (json!({"name": 7}), "name"),
    ] {
        let (s, e) = call(
            &app,
            &user,
            Method::POST,
            "/api/v1/retention-policies",
            Some(body.clone()),
        )
        .await;
        assert_eq!(s, 422, "{body}: {e}");
        assert_eq!(e["detail"][0]["loc"], json!(["body", loc]), "{body}: {e}");
    }

    // Get, list, partial update.
    let (s, g) = call(&app, &user, Method::GET, &path, None).await;
    assert_eq!(s, 200);
    assert_eq!(g, v);
    let (s, u) = call(
        &app,
        &user,
        Method::PUT,
        &path,
        Some(json!({"keep_daily": 7, "keep_days": null})),
    )
    .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["keep_daily"], 7);
    assert_eq!(u["keep_days"], Value::Null);
    assert_eq!(u["name"], "Long-term Retention");
    assert_eq!(u["keep_monthly"], 84);
    let (s, e) = call(
        &app,
        &user,
        Method::PUT,
        &path,
        Some(json!({"keep_weekly": -2})),
    )
    .await;
    assert_eq!(s, 422, "{e}");
    let (s, l) = call(&app, &user, Method::GET, "/api/v1/retention-policies", None).await;
    assert_eq!(s, 200);
    assert_eq!(l.as_array().unwrap().len(), 1);
    assert_eq!(l[0]["id"], id);

    // Another tenant sees nothing and touches nothing.
    let other_server = pg_server(&app, &other).await;
    let (_, l) = call(
        &app,
        &other,
        Method::GET,
        "/api/v1/retention-policies",
        None,
    )
    .await;
    assert_eq!(l, json!([]));
    for (m, body) in [
        (Method::GET, None),
        (Method::PUT, Some(json!({"name": "mine"}))),
        (Method::DELETE, None),
    ] {
        let (s, e) = call(&app, &other, m, &path, body).await;
        assert_eq!(s, 404, "{e}");
    }
    let (s, _) = call(
        &app,
        &other,
        Method::GET,
        &format!("{path}/dry-run?server_id={other_server}&database_name=x"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    // …nor a server of another tenant in a dry run.
    let (s, _) = call(
        &app,
        &user,
        Method::GET,
        &format!("{path}/dry-run?server_id={other_server}&database_name=x"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (s, e) = call(
        &app,
        &user,
        Method::GET,
        &format!("{path}/dry-run?database_name=x"),
        None,
    )
    .await;
    assert_eq!(s, 422, "{e}");
    let (_, g) = call(&app, &user, Method::GET, &path, None).await;
    assert_eq!(g["name"], "Long-term Retention");

    // Delete, then 404.
    let (s, _) = call(&app, &user, Method::DELETE, &path, None).await;
    assert!(s == 200 || s == 204);
    for (m, body) in [
        (Method::GET, None),
        (Method::PUT, Some(json!({"name": "y"}))),
        (Method::DELETE, None),
    ] {
        let (s, _) = call(&app, &user, m, &path, body).await;
        assert_eq!(s, 404);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_and_sweep_delete_exactly_what_no_rule_keeps() {
    let app = TestApp::spawn_with(Mode::ALL, |c| c.schedule_tick_ms = 100).await;
    let user = app.register_user().await;
    let db = unique("ret_src");
    let _c = Cleanup {
        pg: vec![db.clone()],
        my: vec![],
    };
    pg("postgres", &format!("CREATE DATABASE \"{db}\""));
    pg(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 50);",
    );
    let server = pg_server(&app, &user).await;

    // Five completed backups, then aged: 40, 10, 2, 1 and 0 days old; and
    // a sixth marked failed, 60 days old.
    let mut ids = Vec::new();
    for _ in 0..6 {
        let b = backup(
            &app,
            &user,
            server,
            &db,
            json!({"compression_type": "none", "encrypt": false}),
        )
        .await;
        assert_eq!(b["status"], "completed", "{b}");
        ids.push(b["id"].as_i64().unwrap());
    }
    let files: Vec<String> = {
        let mut f = Vec::new();
        for id in &ids {
            let (_, b) = call(
                &app,
                &user,
                Method::GET,
                &format!("/api/v1/backups/{id}"),
                None,
            )
            .await;
            f.push(
                b["storage_path"]
                    .as_str()
                    .unwrap()
                    .strip_prefix("file://")
                    .unwrap()
                    .to_string(),
            );
        }
        f
    };
    for (id, days) in ids.iter().zip([40, 10, 2, 1, 0, 60]) {
        sqlx::query("UPDATE backups SET created_at = now() - make_interval(days => $2) - interval '1 minute' WHERE id = $1")
            .bind(id).bind(days).execute(&app.running.pg).await.unwrap();
    }
    sqlx::query("UPDATE backups SET status = 'failed', error_message = 'test' WHERE id = $1")
        .bind(ids[5])
        .execute(&app.running.pg)
        .await
        .unwrap();

    let (s, p) = call(
        &app,
        &user,
        Method::POST,
        "/api/v1/retention-policies",
        Some(json!({"name": "short", "keep_last_n": 1, "keep_days": 7})),
    )
    .await;
    assert_eq!(s, 201, "{p}");
    let policy = p["id"].as_i64().unwrap();

    // The dry run: the three newest kept (and by which rule), the two old
    // completed ones to delete, the failed one not a candidate.
    let (s, d) = call(
        &app,
        &user,
        Method::GET,
        &format!(
            "/api/v1/retention-policies/{policy}/dry-run?server_id={server}&database_name={db}"
        ),
        None,
    )
    .await;
    assert_eq!(s, 200, "{d}");
    let keep: Vec<(i64, Value)> = d["keep"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["id"].as_i64().unwrap(), k["kept_by"].clone()))
        .collect();
    assert_eq!(
        keep,
        vec![
            (ids[4], json!(["keep_last_n", "keep_days"])),
            (ids[3], json!(["keep_days"])),
            (ids[2], json!(["keep_days"])),
        ]
    );
    let delete: Vec<i64> = d["delete"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_i64().unwrap())
        .collect();
    assert_eq!(delete, vec![ids[1], ids[0]]);
    // A dry run deletes nothing.
    for id in &ids {
        let (s, _) = call(
            &app,
            &user,
            Method::GET,
            &format!("/api/v1/backups/{id}"),
            None,
        )
        .await;
        assert_eq!(s, 200);
    }

    // A schedule with the policy (disabled: no backups of its own) makes
    // the scheduler sweep the database.
    let (s, v) = call(
        &app,
        &user,
        Method::POST,
        "/api/v1/schedules",
        Some(json!({
            "name": "with retention", "server_id": server, "database_name": db,
            "cron_expression": "0 2 * * *", "timezone": "UTC", "enabled": false,
            "retention_policy_id": policy
        })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["retention_policy_id"], policy);
    wait_for("the sweep to delete the two old backups", || async {
        let mut gone = 0;
        for id in &ids[..2] {
            let (s, _) = call(
                &app,
                &user,
                Method::GET,
                &format!("/api/v1/backups/{id}"),
                None,
            )
            .await;
            gone += usize::from(s == 404);
        }
        (gone == 2).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for (i, id) in ids.iter().enumerate() {
        let (s, b) = call(
            &app,
            &user,
            Method::GET,
            &format!("/api/v1/backups/{id}"),
            None,
        )
        .await;
        let exists = std::path::Path::new(&files[i]).exists();
        if i < 2 {
            assert_eq!(s, 404);
            assert!(!exists, "object of backup {id} still stored");
        } else {
            assert_eq!(s, 200, "backup {id}: {b}");
            assert!(exists, "object of backup {id} gone");
        }
    }
    let (_, b) = call(
        &app,
        &user,
        Method::GET,
        &format!("/api/v1/backups/{}", ids[5]),
        None,
    )
    .await;
    assert_eq!(b["status"], "failed");
    app.stop().await;
}
