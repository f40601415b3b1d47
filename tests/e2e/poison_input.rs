//! Input the stores cannot hold as sent (issue 8, findings 1-4): ingest
//! refuses or normalises it, what it accepts is stored and reads back, old
//! rows the readers once choked on read back, and bad query input is a 400.

use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{status_json, wait_for, TestApp};

fn nested(depth: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

async fn post_raw(app: &TestApp, path: &str, body: String) -> (u16, Value) {
    status_json(
        app.post(path)
            .header("content-type", "application/json")
            .body(body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_events_are_refused_or_stored_and_read_back() {
    let app = TestApp::spawn().await;

    // A context nested 30,000 deep once overflowed the stack and aborted
    // the process: now a 400, here and as a batch item.
    let deep = format!(r#"{{"message":"deep","context":{}}}"#, nested(30_000));
    let (s, v) = post_raw(&app, "/api/errors", deep.clone()).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["status"], "error");
    assert!(
        v["error"].as_str().unwrap().contains("nested deeper"),
        "{v}"
    );
    let long_source = format!(r#"{{"message":"x","source":"{}"}}"#, "s".repeat(3000));
    let (s, v) = post_raw(&app, "/api/errors", long_source.clone()).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("source"), "{v}");

    let batch =
        format!("[{deep},{long_source},{{\"message\":\"batch good\",\"source\":\"poison-test\"}}]");
    let (s, v) = post_raw(&app, "/api/errors/batch", batch).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["accepted"], 1, "{v}");
    assert_eq!(v["data"]["rejected"], 2, "{v}");

    // Accepted and normalised: NUL in text and in jsonb, a number no f64
    // holds, the deepest context allowed.
    let nul_msg = app
        .post_error(json!({"message": "nul \u{0} here", "source": "poison-test"}))
        .await;
    let nul_ctx = post_raw(
        &app,
        "/api/errors",
        r#"{"message":"nul ctx","context":{"k":"a\u0000b"},"source":"poison-test"}"#.into(),
    )
    .await;
    assert_eq!(nul_ctx.0, 201, "{}", nul_ctx.1);
    let big = post_raw(
        &app,
        "/api/errors",
        r#"{"message":"big number","context":{"n":1e400},"source":"poison-test"}"#.into(),
    )
    .await;
    assert_eq!(big.0, 201, "{}", big.1);
    let deepest = post_raw(
        &app,
        "/api/errors",
        format!(
            r#"{{"message":"deepest","context":{},"source":"poison-test"}}"#,
            nested(63)
        ),
    )
    .await;
    assert_eq!(deepest.0, 201, "{}", deepest.1);

    // Everything accepted is stored (the worker did not stall) and reads back.
    let id = |v: &Value| v["id"].as_str().unwrap().to_string();
    let ids = [
        id(&nul_msg),
        id(&nul_ctx.1["data"]),
        id(&big.1["data"]),
        id(&deepest.1["data"]),
    ];
    for i in &ids {
        app.wait_count(i, 1).await;
    }
    let (s, v) = app.get_json(&format!("/api/errors/{}", ids[0])).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["message"], "nul \u{FFFD} here");
    let (_, v) = app.get_json(&format!("/api/errors/{}", ids[1])).await;
    assert_eq!(v["data"]["context"], json!({"k": "a\u{FFFD}b"}));
    let (_, v) = app.get_json(&format!("/api/errors/{}", ids[2])).await;
    assert_eq!(v["data"]["context"], json!({"n": "1e400"}));
    let (s, v) = app
        .get_json("/api/errors?source=poison-test&limit=100")
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["total"], 5, "{v}");

    // Rows written before these limits (deeper than a JSON reader's
    // recursion limit, a number past f64) still read back, alone and in
    // a page.
    let old = Uuid::new_v4();
    let ctx = format!(r#"{{"deep":{},"n":1e400}}"#, nested(200));
    sqlx::query(
        "INSERT INTO error_groups (id, tenant_id, fingerprint, level, message, context, source, count, first_seen, last_seen)
         VALUES ($1, $2, $3, 'error', 'old row', $4::jsonb, 'poison-test', 1, now(), now())",
    )
    .bind(old)
    .bind(app.tenant_id)
    .bind(format!("old-{old}"))
    .bind(&ctx)
    .execute(&app.running.pg)
    .await
    .unwrap();
    let r = app.get(&format!("/api/errors/{old}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("\"message\":\"old row\""), "{text}");
    assert!(
        text.contains(&"{\"a\": ".repeat(150)),
        "context served as stored"
    );
    let r = app
        .get("/api/errors?source=poison-test&limit=100")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("old row"), "{text}");

    // Bad query input is a 400 in the contract's envelope, not a 503.
    for q in [
        "search=%00",
        "source=a%00b",
        "level=%00",
        &format!("search={}", "x".repeat(501)),
        &format!("source={}", "s".repeat(300)),
    ] {
        let (s, v) = app.get_json(&format!("/api/errors?{q}")).await;
        assert_eq!(s, 400, "{q}: {v}");
        assert_eq!(v["status"], "error", "{q}: {v}");
    }
    let (s, _) = app.get_json("/api/errors?search=nul").await;
    assert_eq!(s, 200);

    // JSON read on other routes is bounded too: the tracking contract.
    let user = app.register_user().await;
    let tenant = user.tenant_id.to_string();
    let (s, v) = status_json(
        app.bearer(
            Method::POST,
            "/api/v1/tracking/operations/start",
            &user.token,
            &tenant,
        )
        .header("content-type", "application/json")
        .body(format!(r#"{{"script_name":"x","extra":{}}}"#, nested(100))),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["success"], false, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("nested deeper"),
        "{v}"
    );

    // Still serving after all of it.
    wait_for("the app to answer", || async {
        let (s, _) = app.get_json("/api/errors?limit=1").await;
        (s == 200).then_some(())
    })
    .await;
    app.stop().await;
}
