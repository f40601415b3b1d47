//! Ingest's edges: batches with bad items, compression, auth, size caps,
//! validation, rate limits and overload.

use serde_json::{json, Value};
use sluice::app::Mode;
use sluice_storage::pg::api_keys;

use crate::support::{gzip, wait_for, TestApp};

async fn body(r: reqwest::Response) -> (u16, Value) {
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn assert_error_envelope(v: &Value, contains: &str) {
    assert_eq!(v["status"], "error", "{v}");
    let msg = v["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains(contains),
        "{msg:?} should mention {contains:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_with_bad_items_keeps_the_good_ones() {
    let app = TestApp::spawn().await;
    let batch = json!([
        {"message": "good one", "source": "batch"},
        {"level": "error"},
        {"message": "bad level", "level": "loud"},
        {"message": "good two", "level": "warning", "source": "batch"}
    ]);
    let (s, v) = body(
        app.post("/api/errors/batch")
            .json(&batch)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["accepted"], 2);
    assert_eq!(v["data"]["rejected"], 2);
    let results = v["data"]["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], "accepted");
    assert!(results[0]["id"].is_string());
    assert_eq!(results[1]["error"], "message is required");
    assert!(results[2]["error"]
        .as_str()
        .unwrap()
        .contains("unknown level"));
    assert_eq!(results[3]["index"], 3);

    // NDJSON: a malformed line fails alone.
    let nd = "{\"message\":\"good three\",\"source\":\"batch\"}\n{not json\n{\"message\":\"good one\",\"source\":\"batch\"}\n";
    let (s, v) = body(app.post("/api/errors/batch").body(nd).send().await.unwrap()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["accepted"], 2);
    assert!(v["data"]["results"][1]["error"]
        .as_str()
        .unwrap()
        .contains("malformed JSON"));

    wait_for("four accepted events stored", || async {
        (app.total_count().await == 4).then_some(())
    })
    .await;
    let (_, list) = app.get_json("/api/errors").await;
    assert_eq!(list["data"]["total"], 3);

    // Nothing valid: 400 with the per-item reasons.
    let (s, v) = body(
        app.post("/api/errors/batch")
            .json(&json!([{"x": 1}]))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert_error_envelope(&v, "no valid events");
    assert_eq!(v["details"][0]["error"], "message is required");
    // A broken array fails whole.
    let (s, v) = body(
        app.post("/api/errors/batch")
            .body("[{\"message\":\"a\"},")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert_error_envelope(&v, "malformed JSON");
    // Over 1,000 events.
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"message": format!("m{i}")}))
        .collect();
    let (s, v) = body(
        app.post("/api/errors/batch")
            .json(&many)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 413);
    assert_error_envelope(&v, "at most 1000");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_and_zstd_bodies_are_accepted() {
    let app = TestApp::spawn().await;
    let single =
        serde_json::to_vec(&json!({"message": "gzipped single", "source": "enc"})).unwrap();
    let (s, v) = body(
        app.post("/api/errors")
            .header("Content-Encoding", "gzip")
            .body(gzip(&single))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["data"]["message"], "gzipped single");

    let batch: Vec<Value> = (0..50)
        .map(|i| json!({"message": format!("zstd batch item {i}"), "source": "enc"}))
        .collect();
    let raw = serde_json::to_vec(&batch).unwrap();
    let (s, v) = body(
        app.post("/api/errors/batch")
            .header("Content-Encoding", "zstd")
            .body(zstd::encode_all(&raw[..], 3).unwrap())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["accepted"], 50);
    let (s, v) = body(
        app.post("/api/errors/batch")
            .header("Content-Encoding", "gzip")
            .body(gzip(&raw))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");

    wait_for("101 events stored", || async {
        (app.total_count().await == 101).then_some(())
    })
    .await;
    let (_, list) = app.get_json("/api/errors?source=enc").await;
    assert_eq!(
        list["data"]["total"], 2,
        "numbers normalise: one batch group, one single"
    );

    let (s, v) = body(
        app.post("/api/errors")
            // gzip, deflate, br and zstd are taken; others are refused
            .header("Content-Encoding", "compress")
            .body(single.clone())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 415);
    assert_error_envelope(&v, "Content-Encoding");
    let (s, v) = body(
        app.post("/api/errors")
            .header("Content-Encoding", "gzip")
            .body(single)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert_error_envelope(&v, "decompress");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_oversized_and_invalid_requests_are_refused() {
    let app = TestApp::spawn().await;
    let ok_body = json!({"message": "m"});

    let (s, v) = body(
        app.http
            .post(app.url("/api/errors"))
            .json(&ok_body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401);
    assert_error_envelope(&v, "X-API-Key");
    let (s, v) = body(
        app.http
            .post(app.url("/api/errors"))
            .header("X-API-Key", "sk_live_not_a_real_key")
            .json(&ok_body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401);
    assert_error_envelope(&v, "invalid");
    let (s, _) = body(app.http.get(app.url("/api/errors")).send().await.unwrap()).await;
    assert_eq!(s, 401);
    let (s, _) = body(
        app.http
            .get(app.url("/api/stats"))
            .header("X-API-Key", "nope")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401);

    // 1 MiB per event.
    let big = "x".repeat((1 << 20) + 10);
    let (s, v) = body(
        app.post("/api/errors")
            .json(&json!({"message": big}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 413);
    assert_error_envelope(&v, "exceeds");
    // 20 MiB per request after decompression: a small gzip bomb.
    let bomb = gzip(&vec![b' '; 21 << 20]);
    assert!(bomb.len() < 1 << 20);
    let (s, v) = body(
        app.post("/api/errors/batch")
            .header("Content-Encoding", "gzip")
            .body(bomb)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 413);
    assert_error_envelope(&v, "decompressed");

    for (payload, expect) in [
        (b"{\"message\": ".to_vec(), "malformed JSON"),
        (b"{\"level\": \"error\"}".to_vec(), "message is required"),
        (
            b"{\"message\": \"m\", \"level\": \"fatalistic\"}".to_vec(),
            "unknown level",
        ),
        (b"{\"message\": \"caf\xe9\"}".to_vec(), "UTF-8"),
        (b"[1,2]".to_vec(), "invalid event"),
    ] {
        let (s, v) = body(app.post("/api/errors").body(payload).send().await.unwrap()).await;
        assert_eq!(s, 400, "{v}");
        assert_error_envelope(&v, expect);
    }
    let (s, v) = body(app.get("/api/nope").send().await.unwrap()).await;
    assert_eq!(s, 404);
    assert_error_envelope(&v, "not found");

    // A revoked key stops working within seconds.
    let (key_id, key) = api_keys::create(
        &app.running.pg,
        &api_keys::NewKey {
            tenant_id: app.tenant_id,
            name: "short-lived",
            permissions: &["write".to_string()],
            rate_limit_per_min: None,
            expires_at: None,
        },
    )
    .await
    .unwrap();
    let post_with = |k: String| {
        let req = app
            .http
            .post(app.url("/api/errors"))
            .header("X-API-Key", k)
            .json(&ok_body);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    wait_for("new key accepted", || async {
        (post_with(key.clone()).await == 201).then_some(())
    })
    .await;
    // A write-only key is a Developer (conventions, Roles): it may read too.
    let (s, _) = body(
        app.http
            .get(app.url("/api/errors"))
            .header("X-API-Key", &key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert!(api_keys::revoke(&app.running.pg, app.tenant_id, key_id)
        .await
        .unwrap());
    wait_for("revoked key refused", || async {
        (post_with(key.clone()).await == 401).then_some(())
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_retry_after() {
    let app = TestApp::spawn_with(Mode::ALL, |c| {
        c.ingest_rate_limit = 3;
        c.analytics_rate_limit = 2;
    })
    .await;
    for i in 0..3 {
        app.post_error(json!({"message": format!("burst {i}")}))
            .await;
    }
    let r = app
        .post("/api/errors")
        .json(&json!({"message": "one too many"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    let v: Value = r.json().await.unwrap();
    assert_error_envelope(&v, "rate limit");
    // Batches count against the same key.
    let r = app
        .post("/api/errors/batch")
        .json(&json!([{"message": "x"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);

    // Analytics has its own, smaller, limit.
    for _ in 0..2 {
        assert_eq!(app.get("/api/stats").send().await.unwrap().status(), 200);
    }
    let r = app.get("/api/stats").send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_backlog_answers_503_and_keeps_what_was_accepted() {
    // No workers: the stream only grows, past a bound of 3 entries.
    let app = TestApp::spawn_with(
        Mode {
            worker: false,
            ..Mode::ALL
        },
        |c| c.max_backlog = 3,
    )
    .await;
    let mut accepted = 0u64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let refused = loop {
        assert!(std::time::Instant::now() < deadline, "no 503 within 20 s");
        let r = app
            .post("/api/errors")
            .json(&json!({"message": "fill"}))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            201 => accepted += 1,
            503 => break r,
            other => panic!("unexpected {other}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(refused.headers().contains_key("retry-after"));
    let v: Value = refused.json().await.unwrap();
    assert_error_envelope(&v, "backlog");
    assert!(accepted >= 3);
    // Everything accepted is in the stream, waiting for a worker.
    let mut conn = app.running.redis.get().await.unwrap();
    let backlog = app.running.layout.backlog(&mut conn).await.unwrap();
    assert_eq!(backlog, accepted);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_memory_budget_answer_503() {
    let app = TestApp::spawn_with(Mode::ALL, |c| c.ingest_inflight_mb = 1).await;
    // 1,000 events of about 2 KiB, well under the 20 MiB request cap but
    // more than the 1 MiB of request bytes ingest may hold
    let big: Vec<Value> = (0..1000)
        .map(|i| json!({"message": format!("budget {i} {}", "x".repeat(2000)), "source": "budget"}))
        .collect();
    let gz = gzip(serde_json::to_vec(&big).unwrap().as_slice());
    let r = app
        .post("/api/errors/batch")
        .header("content-encoding", "gzip")
        .body(gz)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let (_, v) = body(r).await;
    assert_error_envelope(&v, "overloaded");
    // what fits is accepted as before, and stored
    let small: Vec<Value> = (0..10)
        .map(|i| json!({"message": format!("fits {i}"), "source": "budget"}))
        .collect();
    let (s, v) = body(
        app.post("/api/errors/batch")
            .json(&small)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    wait_for("the small batch stored", || async {
        (app.total_count().await == 10).then_some(())
    })
    .await;
    app.stop().await;
}
