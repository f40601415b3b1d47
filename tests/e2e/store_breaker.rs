//! Postgres down behind a TCP proxy this test cuts (the shared Postgres is
//! never stopped): once its circuit opens, routes that need Postgres answer
//! 503 with Retry-After at once, routes that need only ClickHouse keep
//! answering, and everything recovers within seconds of the proxy's return.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use sluice::app::Mode;

use crate::outage::Proxy;
use crate::support::{status_json, test_config, wait_for, TestApp};

/// `url` with its `host:port` replaced by `addr`, and the `host:port` it had.
fn through(url: &str, addr: &str) -> (String, String) {
    let at = url
        .rfind('@')
        .map_or(url.find("://").unwrap() + 3, |i| i + 1);
    let end = url[at..].find('/').map_or(url.len(), |i| at + i);
    (
        format!("{}{}{}", &url[..at], addr, &url[end..]),
        url[at..end].to_string(),
    )
}

#[test]
fn urls_are_rerouted_through_the_proxy() {
    assert_eq!(
        through("postgres://u:p@127.0.0.1:5432/sluice", "127.0.0.1:9"),
        (
            "postgres://u:p@127.0.0.1:9/sluice".to_string(),
            "127.0.0.1:5432".to_string()
        )
    );
}

async fn health(app: &TestApp) -> Value {
    let r = app.http.get(app.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200, "/health answers while a store is down");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_is_refused_at_once_and_clickhouse_routes_keep_serving() {
    let direct = test_config().database_url;
    let (_, target) = through(&direct, "");
    let proxy = Proxy::start(&target).await;
    let (url, _) = through(&direct, &proxy.addr.to_string());
    let app = TestApp::spawn_with(Mode::API, |c| {
        c.database_url = url;
        c.breaker_probe_ms = 200;
    })
    .await;
    let tenant = app.tenant_id.to_string();
    let dashboard =
        || status_json(app.bearer(Method::GET, "/api/v1/tracking/dashboard", &app.key, &tenant));
    assert_eq!(app.get_json("/api/errors").await.0, 200);
    assert_eq!(
        health(&app).await["stores"]["postgres"]["circuit"],
        "closed"
    );

    proxy.cut();
    // The first requests find out the slow way (the pool's acquire timeout),
    // together: three in a row open the circuit.
    let first = futures::future::join_all((0..3).map(|_| app.get_json("/api/errors"))).await;
    for (s, _) in &first {
        assert_eq!(*s, 503);
    }
    wait_for("the postgres circuit to open", || async {
        (health(&app).await["stores"]["postgres"]["circuit"] == "open").then_some(())
    })
    .await;

    let t = Instant::now();
    let r = app.get("/api/errors").send().await.unwrap();
    let took = t.elapsed();
    assert_eq!(r.status(), 503);
    assert!(
        took < Duration::from_millis(300),
        "answered in {took:?}, not after a timeout"
    );
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "error");
    assert!(v["error"].as_str().unwrap().contains("postgres"), "{v}");
    // The Tracking envelope for the same refusal.
    let (s, v) =
        status_json(app.bearer(Method::GET, "/api/v1/tracking/databases", &app.key, &tenant)).await;
    assert_eq!(s, 503);
    assert_eq!(v["success"], false);

    // What needs only ClickHouse (and the in-memory key directory) serves.
    let t = Instant::now();
    let (s, v) = dashboard().await;
    assert_eq!(s, 200, "{v}");
    assert!(t.elapsed() < Duration::from_secs(2));
    let h = health(&app).await;
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["stores"]["clickhouse"]["circuit"], "closed");
    // The gauge is process-wide: another test's app scraping at the same
    // moment sets it from its own (closed) breaker, so ask again.
    wait_for("the open circuit on /metrics", || async {
        let metrics = app.metrics_text().await;
        metrics
            .contains("sluice_store_circuit_open{store=\"postgres\"} 1")
            .then_some(())
    })
    .await;

    proxy.restore();
    let t = Instant::now();
    wait_for("postgres routes to recover", || async {
        (app.get_json("/api/errors").await.0 == 200).then_some(())
    })
    .await;
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "recovered in {:?}",
        t.elapsed()
    );
    let h = health(&app).await;
    assert_eq!(h["status"], "ok");
    assert_eq!(h["stores"]["postgres"]["circuit"], "closed");
    assert_eq!(dashboard().await.0, 200);
    app.stop().await;
}
