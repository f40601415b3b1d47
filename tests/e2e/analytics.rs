//! Stats and trends agree with what was posted.

use serde_json::{json, Value};

use crate::support::{wait_for, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_trends_match_what_was_posted() {
    let app = TestApp::spawn().await;
    // Three groups: 4 errors, 2 criticals, 1 warning = 7 occurrences.
    let mut batch: Vec<Value> = Vec::new();
    for i in 0..4 {
        batch.push(
            json!({"level": "error", "message": format!("timeout after {i} ms"), "source": "s"}),
        );
    }
    for _ in 0..2 {
        batch.push(json!({"level": "critical", "message": "primary unreachable", "source": "s"}));
    }
    batch.push(json!({"level": "warning", "message": "replica lag high", "source": "s"}));
    let r = app
        .post("/api/errors/batch")
        .json(&batch)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"]["accepted"], 7);
    wait_for("7 occurrences stored", || async {
        (app.total_count().await == 7).then_some(())
    })
    .await;

    let warn_id = v["data"]["results"][6]["id"].as_str().unwrap().to_string();
    let r = app
        .put(&format!("/api/errors/{warn_id}/resolve"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let (s, stats) = app.get_json("/api/stats").await;
    assert_eq!(s, 200);
    let d = &stats["data"];
    let mut keys: Vec<&String> = d.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "avg_resolution_time",
            "error_rate_24h",
            "errors_this_month",
            "errors_this_week",
            "errors_today",
            "resolution_rate",
            "resolved_errors",
            "total_errors"
        ],
        "exactly the contract's fields"
    );
    assert_eq!(d["total_errors"], 3);
    assert_eq!(d["resolved_errors"], 1);
    // One unit: error groups (README), so the windows nest under the total.
    assert_eq!(d["errors_today"], 3);
    assert_eq!(d["errors_this_week"], 3);
    assert_eq!(d["errors_this_month"], 3);
    assert_eq!(d["resolution_rate"], 33.3);
    assert_eq!(d["error_rate_24h"], 0.29);
    assert!(d["avg_resolution_time"].as_str().unwrap().ends_with('m'));

    let (s, t) = app
        .get_json("/api/analytics/trends?period=day&group_by=hour")
        .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["data"]["period"], "day");
    let points = t["data"]["data_points"].as_array().unwrap();
    assert!(
        points.len() >= 24 && points.len() <= 26,
        "{} points",
        points.len()
    );
    let sum = |f: &str| points.iter().map(|p| p[f].as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum("error_count"), 7);
    assert_eq!(sum("critical_count"), 2);
    assert_eq!(sum("resolved_count"), 1);
    let last = points.last().unwrap();
    assert_eq!(last["error_count"], 7, "all in the current hour: {last}");
    assert!(last["timestamp"].as_str().unwrap().ends_with(":00:00Z"));

    let (_, w) = app.get_json("/api/analytics/trends?period=week").await;
    let wp = w["data"]["data_points"].as_array().unwrap();
    assert!(wp.len() >= 7 && wp.len() <= 8);
    assert_eq!(wp.last().unwrap()["error_count"], 7);
    let (_, y) = app
        .get_json("/api/analytics/trends?period=year&group_by=month")
        .await;
    let yp = y["data"]["data_points"].as_array().unwrap();
    assert!(yp.len() >= 12 && yp.len() <= 13);
    assert_eq!(
        yp.iter()
            .map(|p| p["error_count"].as_u64().unwrap())
            .sum::<u64>(),
        7
    );

    for bad in [
        "period=decade",
        "group_by=minute",
        "period=year&group_by=hour",
    ] {
        let (s, v) = app.get_json(&format!("/api/analytics/trends?{bad}")).await;
        assert_eq!(s, 400, "{bad}");
        assert_eq!(v["status"], "error");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_are_cached_for_a_minute_when_configured() {
    let app = TestApp::spawn_with(sluice::app::Mode::ALL, |c| c.analytics_cache_secs = 60).await;
    let (_, before) = app.get_json("/api/stats").await;
    assert_eq!(before["data"]["total_errors"], 0);
    let e = app
        .post_error(json!({"message": "after the first stats call"}))
        .await;
    app.wait_count(e["id"].as_str().unwrap(), 1).await;
    let r = app.get("/api/stats").send().await.unwrap();
    assert_eq!(r.headers()["cache-control"], "private, max-age=60");
    let cached: Value = r.json().await.unwrap();
    assert_eq!(
        cached["data"]["total_errors"], 0,
        "served from the one-minute cache"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics() {
    let app = TestApp::spawn().await;
    let r = app.http.get(app.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    assert!(chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str().unwrap()).is_ok());

    let e = app
        .post_error(json!({"message": "counted in metrics"}))
        .await;
    app.wait_count(e["id"].as_str().unwrap(), 1).await;
    let _ = app
        .http
        .post(app.url("/api/errors"))
        .json(&json!({"message": "no key"}))
        .send()
        .await
        .unwrap();
    let text = app.metrics_text().await;
    for metric in [
        "sluice_ingest_events_total",
        "sluice_ingest_rejected_total{reason=\"unauthorized\"}",
        "sluice_stream_backlog",
        "sluice_worker_batch_entries",
        "sluice_worker_lag_seconds",
    ] {
        assert!(text.contains(metric), "{metric} missing from /metrics");
    }
    app.stop().await;
}
