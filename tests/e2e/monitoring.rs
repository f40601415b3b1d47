//! Monitoring (`/api/monitoring/services`, `metrics`, `uptime`) and
//! `/api/analytics/performance`: shapes and envelopes, figures that come
//! from real requests and real probes, a stopped tier seen as down with
//! `service_status_change` on `/ws`, and uptime computed from stored probe
//! history.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use sluice::app::{self, Mode};
use sluice_storage::ch::monitoring::{insert_probes, ProbeRow};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{status_json, wait_for, TestApp};

const NAMES: [&str; 5] = [
    "Database",
    "Cache Service",
    "Analytics Store",
    "Ingest",
    "Workers",
];

fn fast(cfg: &mut sluice::config::Config) {
    cfg.monitor_sample_secs = 1;
    cfg.monitor_probe_secs = 1;
}

fn assert_error_envelope(v: &Value) {
    assert_eq!(v["status"], "error", "{v}");
    assert!(v["error"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
}

fn service<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["data"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} listed: {v}"))
}

fn is_iso(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_answer_real_figures_in_envelopes() {
    let app = TestApp::spawn_with(Mode::ALL, fast).await;

    // no key: 401 in the error envelope, on every endpoint
    for path in [
        "/api/monitoring/services",
        "/api/monitoring/metrics",
        "/api/monitoring/uptime",
        "/api/analytics/performance",
    ] {
        let (s, v) = status_json(app.http.get(app.url(path))).await;
        assert_eq!(s, 401, "{path}");
        assert_error_envelope(&v);
    }

    // services: every one probed; with every tier running, all healthy
    let v = wait_for("every service healthy", || async {
        let (s, v) = app.get_json("/api/monitoring/services").await;
        assert_eq!(s, 200, "{v}");
        (v["data"]["overall_health"] == "healthy").then_some(v)
    })
    .await;
    assert_eq!(v["status"], "success");
    for name in NAMES {
        let s = service(&v, name);
        assert_eq!(s["status"], "healthy", "{s}");
        let u = s["uptime_percent"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&u), "{s}");
        assert!(s["response_time_ms"].as_f64().unwrap() > 0.0, "{s}");
        assert!(is_iso(&s["last_checked"]), "{s}");
        assert!(s["details"].is_object(), "{s}");
    }
    let db = service(&v, "Database");
    assert!(db["details"]["connections"].as_u64().unwrap() >= 1, "{db}");
    assert!(
        db["details"]["max_connections"].as_u64().unwrap() >= 1,
        "{db}"
    );
    // measured, so it changes from one probe to the next
    let first = db["response_time_ms"].as_f64().unwrap();
    let first_checked = db["last_checked"].clone();
    wait_for("a newer probe with another round trip", || async {
        let (_, v) = app.get_json("/api/monitoring/services").await;
        let db = service(&v, "Database");
        (db["last_checked"] != first_checked && db["response_time_ms"].as_f64() != Some(first))
            .then_some(())
    })
    .await;

    // requests served make throughput and rates real
    for _ in 0..20 {
        let (s, _) = app.get_json("/api/errors?limit=1").await;
        assert_eq!(s, 200);
    }
    app.post_error(
        serde_json::json!({"level": "error", "message": "monitoring probe", "source": "e2e"}),
    )
    .await;

    let v = wait_for("requests_per_minute > 0 and network counted", || async {
        let (s, v) = app.get_json("/api/monitoring/metrics").await;
        assert_eq!(s, 200, "{v}");
        let d = &v["data"];
        (d["requests_per_minute"].as_f64().unwrap() > 0.0
            && d["network_io"]["bytes_in"].as_u64().unwrap() > 0
            && d["network_io"]["bytes_out"].as_u64().unwrap() > 0)
            .then_some(v)
    })
    .await;
    assert_eq!(v["status"], "success");
    let d = &v["data"];
    for f in [
        "cpu_usage_percent",
        "memory_usage_percent",
        "disk_usage_percent",
    ] {
        let x = d[f].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&x), "{f}: {d}");
    }
    assert!(d["memory_usage_percent"].as_f64().unwrap() > 0.0);
    assert!(d["disk_usage_percent"].as_f64().unwrap() > 0.0);
    // this very request's connection is open
    assert!(d["active_connections"].as_u64().unwrap() >= 1, "{d}");
    // rpm over the hour: at least the 21 requests above / 60
    assert!(
        d["requests_per_minute"].as_f64().unwrap() >= 21.0 / 60.0,
        "{d}"
    );

    for tf in ["1h", "6h", "24h", "7d", "30d"] {
        let (s, v) = app
            .get_json(&format!("/api/monitoring/metrics?timeframe={tf}"))
            .await;
        assert_eq!(s, 200, "{tf}: {v}");
        assert!(v["data"]["requests_per_minute"].as_f64().unwrap() > 0.0);
    }
    for bad in ["2h", "1d", "", "1H"] {
        let (s, v) = app
            .get_json(&format!("/api/monitoring/metrics?timeframe={bad}"))
            .await;
        if bad.is_empty() {
            assert_eq!(s, 200, "empty means the default");
            continue;
        }
        assert_eq!(s, 400, "{bad}: {v}");
        assert_error_envelope(&v);
    }

    // performance: the same requests, last hour
    let p = wait_for("throughput and latency measured", || async {
        let (s, v) = app.get_json("/api/analytics/performance").await;
        assert_eq!(s, 200, "{v}");
        let d = &v["data"];
        (d["throughput_rpm"].as_f64().unwrap() > 0.0
            && d["avg_response_time"].as_f64().unwrap() > 0.0)
            .then_some(v)
    })
    .await;
    assert_eq!(p["status"], "success");
    let d = &p["data"];
    let err = d["error_rate_percent"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&err), "{d}");
    let score = d["performance_score"].as_f64().unwrap();
    assert!((0.0..=10.0).contains(&score), "{d}");
    assert!(score > 0.0, "a healthy, fast deployment scores: {d}");

    // uptime, and availability is its 30-day figure
    let (s, u) = app.get_json("/api/monitoring/uptime").await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["status"], "success");
    let ud = &u["data"];
    for f in [
        "uptime_percent_24h",
        "uptime_percent_7d",
        "uptime_percent_30d",
    ] {
        let x = ud[f].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&x), "{f}: {ud}");
    }
    assert_eq!(ud["uptime_percent_30d"], 100.0, "nothing was down: {ud}");
    assert_eq!(ud["incidents_count"], 0, "{ud}");
    assert!(ud["last_downtime"].is_null(), "{ud}");
    assert_eq!(
        d["availability_percent"], ud["uptime_percent_30d"],
        "{d} vs {ud}"
    );
    let h1 = ud["current_uptime_hours"].as_f64().unwrap();
    assert!(h1 > 0.0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (_, u2) = app.get_json("/api/monitoring/uptime").await;
    assert!(
        u2["data"]["current_uptime_hours"].as_f64().unwrap() > h1,
        "advances"
    );

    app.stop().await;
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next `service_status_change` for `service` on the socket.
async fn next_change(ws: &mut Ws, service: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("service_status_change for {service} within 20 s"))
            .expect("socket open")
            .expect("frame");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] == "service_status_change" && v["data"]["service"] == service {
                return v;
            }
        }
    }
}

/// An API process alone: no ingest and no worker runs in its deployment,
/// so those are probed down, not assumed up. A worker process starting
/// and stopping changes Workers' status, published on `/ws`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_tier_is_down_and_changes_are_published() {
    let app = TestApp::spawn_with(Mode::API, fast).await;
    let url = format!(
        "{}/ws?token={}",
        app.base.replacen("http://", "ws://", 1),
        app.key
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();

    let v = wait_for("the first round", || async {
        let (s, v) = app.get_json("/api/monitoring/services").await;
        (s == 200).then_some(v)
    })
    .await;
    for name in ["Ingest", "Workers"] {
        assert_eq!(service(&v, name)["status"], "unhealthy", "{v}");
        assert!(service(&v, name)["response_time_ms"].as_f64().unwrap() > 0.0);
    }
    for name in ["Database", "Cache Service", "Analytics Store"] {
        assert_eq!(service(&v, name)["status"], "healthy", "{v}");
    }
    assert_eq!(v["data"]["overall_health"], "degraded", "{v}");

    // a worker joins the deployment: Workers turns healthy, once, on /ws
    let worker = app::start(&app.cfg, Mode::WORKER).await.expect("worker");
    let e = next_change(&mut ws, "Workers").await;
    assert_eq!(e["data"]["status"], "healthy", "{e}");
    wait_for("services shows the worker", || async {
        let (_, v) = app.get_json("/api/monitoring/services").await;
        (service(&v, "Workers")["status"] == "healthy").then_some(())
    })
    .await;

    // it stops: Workers is down again
    worker.stop().await;
    let e = next_change(&mut ws, "Workers").await;
    assert_eq!(e["data"]["status"], "unhealthy", "{e}");
    wait_for("services shows the worker gone", || async {
        let (_, v) = app.get_json("/api/monitoring/services").await;
        (service(&v, "Workers")["status"] == "unhealthy").then_some(())
    })
    .await;

    app.stop().await;
}

/// Uptime, incidents and per-service uptime come from the probe history
/// in ClickHouse: stored downtime shows. Performance is an analytics
/// query for rate limiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uptime_is_computed_from_stored_probes() {
    let app = TestApp::spawn_with(Mode::ALL, |c| {
        fast(c);
        c.analytics_rate_limit = 3;
    })
    .await;
    let deployment = app.cfg.redis_prefix.clone();
    let now_ms = chrono::Utc::now().timestamp_millis() as u64;
    let row = |ago_ms: u64, service: &str, status: &str| {
        let ms = now_ms - ago_ms;
        ProbeRow {
            deployment: deployment.clone(),
            instance: "history".into(),
            ts: (ms / 1000) as u32,
            ts_ms: ms,
            service: service.into(),
            status: status.into(),
            response_ms: 1.5,
        }
    };
    let hour = 3_600_000;
    let mut rows = Vec::new();
    // one downtime two minutes long, 3 hours ago; another 1 hour ago;
    // healthy rounds around them
    for (ago, overall, db) in [
        (3 * hour + 300_000, "healthy", "healthy"),
        (3 * hour + 60_000, "unhealthy", "unhealthy"),
        (3 * hour, "unhealthy", "unhealthy"),
        (3 * hour - 300_000, "degraded", "healthy"),
        (hour, "unhealthy", "unhealthy"),
        (hour - 300_000, "healthy", "healthy"),
    ] {
        rows.push(row(ago, "overall", overall));
        rows.push(row(ago, "Database", db));
    }
    insert_probes(&app.running.ch, &rows).await.unwrap();
    let last_down = chrono::DateTime::from_timestamp_millis((now_ms - hour) as i64).unwrap();

    let (s, u) = app.get_json("/api/monitoring/uptime").await;
    assert_eq!(s, 200, "{u}");
    let d = &u["data"];
    assert_eq!(d["incidents_count"], 2, "{d}");
    let got = chrono::DateTime::parse_from_rfc3339(d["last_downtime"].as_str().unwrap()).unwrap();
    assert_eq!(got.timestamp_millis(), last_down.timestamp_millis(), "{d}");
    for f in [
        "uptime_percent_24h",
        "uptime_percent_7d",
        "uptime_percent_30d",
    ] {
        let x = d[f].as_f64().unwrap();
        assert!(x < 100.0 && x > 0.0, "{f} counts the stored downtime: {d}");
    }

    let (_, v) = app.get_json("/api/monitoring/services").await;
    let db = service(&v, "Database");
    assert!(db["uptime_percent"].as_f64().unwrap() < 100.0, "{db}");
    assert_eq!(db["status"], "healthy", "{db}");

    // availability is the same 30-day figure
    let (s, p) = app.get_json("/api/analytics/performance").await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(
        p["data"]["availability_percent"], d["uptime_percent_30d"],
        "{p}"
    );
    assert!(
        p["data"]["performance_score"].as_f64().unwrap() < 10.0,
        "{p}"
    );

    // analytics limit: 3 a minute for this key, cached answers count too
    for _ in 0..2 {
        let (s, _) = app.get_json("/api/analytics/performance").await;
        assert_eq!(s, 200);
    }
    let r = app.get("/api/analytics/performance").send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r
        .headers()
        .get("retry-after")
        .and_then(|h| h.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok())
        .is_some());
    assert_error_envelope(&r.json().await.unwrap());
    // monitoring is not an analytics query
    let (s, _) = app.get_json("/api/monitoring/uptime").await;
    assert_eq!(s, 200);

    app.stop().await;
}

/// Rows of `table` of one deployment within a second range.
async fn rows_of(
    ch: &clickhouse::Client,
    table: &str,
    deployment: &str,
    from: i64,
    to: i64,
) -> u64 {
    ch.query(&format!(
        "SELECT count() FROM {table} WHERE deployment = ? AND ts >= toDateTime(?) AND ts < toDateTime(?)"
    ))
    .bind(deployment)
    .bind(from)
    .bind(to)
    .fetch_one::<u64>()
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_history_older_than_the_keep_period_is_dropped_by_partition() {
    use sluice_storage::ch::monitoring::{insert_samples, SampleRow};
    use sluice_storage::ch::retention::table_days;
    let app = TestApp::spawn().await;
    let ch = &app.running.ch;
    let deployment = format!("keep-test-{}", uuid::Uuid::new_v4().simple());
    let now = chrono::Utc::now();
    let noon = |back: i64| {
        let d = (now - chrono::Duration::days(back)).date_naive();
        d.and_hms_opt(12, 0, 0).unwrap().and_utc()
    };
    // A day wholly before the 30-day keep period, one inside it, and now.
    let (old, kept) = (noon(31), noon(29));
    let times = [old, kept, now];
    let samples: Vec<SampleRow> = times
        .iter()
        .map(|t| SampleRow {
            deployment: deployment.clone(),
            instance: "keep".into(),
            host: "keep".into(),
            ts: t.timestamp() as u32,
            ts_ms: t.timestamp_millis() as u64,
            cpu_percent: 1.0,
            memory_percent: 1.0,
            disk_percent: 1.0,
            net_rx_bytes: 1,
            net_tx_bytes: 1,
            connections: 0,
            requests: 1,
            errors_5xx: 0,
            latency_us: 1,
            ingest_requests: 0,
            api_requests: 1,
        })
        .collect();
    let probes: Vec<ProbeRow> = times
        .iter()
        .map(|t| ProbeRow {
            deployment: deployment.clone(),
            instance: "keep".into(),
            ts: t.timestamp() as u32,
            ts_ms: t.timestamp_millis() as u64,
            service: "Database".into(),
            status: "healthy".into(),
            response_ms: 1.0,
        })
        .collect();
    insert_samples(ch, &samples).await.unwrap();
    insert_probes(ch, &probes).await.unwrap();
    let day = |t: chrono::DateTime<chrono::Utc>| -> u32 {
        t.format("%Y%m%d").to_string().parse().unwrap()
    };
    for table in ["monitor_samples", "service_probes"] {
        assert!(table_days(ch, table).await.unwrap().contains(&day(old)));
    }

    let dropped = sluice_workers::error_retention::sweep_monitoring(ch, now, 30)
        .await
        .unwrap();
    let span = |t: chrono::DateTime<chrono::Utc>| (t.timestamp() - 60, t.timestamp() + 60);
    for table in ["monitor_samples", "service_probes"] {
        assert!(dropped.contains(&(table, day(old))), "{dropped:?}");
        assert!(!dropped.contains(&(table, day(kept))), "{dropped:?}");
        let days = table_days(ch, table).await.unwrap();
        assert!(!days.contains(&day(old)), "{table}: {days:?}");
        assert!(
            days.contains(&day(kept)) && days.contains(&day(now)),
            "{table}: {days:?}"
        );
        let (a, b) = span(old);
        assert_eq!(rows_of(ch, table, &deployment, a, b).await, 0, "{table}");
        for t in [kept, now] {
            let (a, b) = span(t);
            assert_eq!(rows_of(ch, table, &deployment, a, b).await, 1, "{table}");
        }
    }
    // A second pass finds nothing more to drop of those days.
    let again = sluice_workers::error_retention::sweep_monitoring(ch, now, 30)
        .await
        .unwrap();
    assert!(again.iter().all(|(_, d)| *d < day(kept)), "{again:?}");
    app.stop().await;
}
