//! Health Monitor (issue 12): `/api/stats` in one unit, `search` over
//! stack traces, `GET /api/errors/export` (content, and 100,000 groups in
//! bounded memory), `/api/settings/retention` with the sweep dropping whole
//! ClickHouse partitions and empty groups, and `new_error` /
//! `error_resolved` on the right tenant's `/ws` only.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::{json, Value};
use sluice_storage::ch::events::{self, EventRow};
use sluice_storage::model::{ErrorEvent, Level};
use sluice_storage::pg::api_keys;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::support::{new_tenant, status_json, wait_for, TestApp};

/// Inserts a group straight into Postgres (for dates ingest cannot make).
async fn insert_group(
    pg: &sqlx::PgPool,
    tenant: Uuid,
    last_seen: DateTime<Utc>,
    resolved: bool,
) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO error_groups (id, tenant_id, fingerprint, level, message, source, count,
                                   first_seen, last_seen, resolved, resolved_at)
         VALUES ($1, $2, $3, 'error', 'seeded', 'test', 1, $4, $4, $5,
                 CASE WHEN $5 THEN $4 + interval '1 hour' END)",
    )
    .bind(id)
    .bind(tenant)
    .bind(id.to_string())
    .bind(last_seen)
    .bind(resolved)
    .execute(pg)
    .await
    .unwrap();
    id
}

/// A key of `tenant` with `perms`.
async fn key_with(pg: &sqlx::PgPool, tenant: Uuid, perms: &[&str]) -> String {
    let perms: Vec<String> = perms.iter().map(|p| p.to_string()).collect();
    api_keys::create(
        pg,
        &api_keys::NewKey {
            tenant_id: tenant,
            name: "errx",
            permissions: &perms,
            rate_limit_per_min: None,
            expires_at: None,
        },
    )
    .await
    .unwrap()
    .1
}

/// Waits until the app's key directory knows `key` (it reloads every
/// 200 ms in tests).
async fn usable(app: &TestApp, key: &str) {
    wait_for("a new key to be usable", || async {
        let r = app
            .http
            .get(app.url("/api/errors?limit=1"))
            .header("X-API-Key", key)
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await
}

/// A new tenant with a read/write key the app already accepts.
async fn other_tenant(app: &TestApp) -> (Uuid, String) {
    let (t, key) = new_tenant(&app.running.pg).await;
    usable(app, &key).await;
    (t, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_groups_and_nest_across_days() {
    let app = TestApp::spawn().await;
    let pg = &app.running.pg;
    let now = Utc::now();
    let t = app.tenant_id;
    insert_group(pg, t, now, false).await;
    insert_group(pg, t, now, true).await;
    insert_group(pg, t, now - chrono::Duration::days(3), false).await;
    insert_group(pg, t, now - chrono::Duration::days(15), false).await;
    insert_group(pg, t, now - chrono::Duration::days(60), true).await;
    // One more the real way, with several occurrences: still one error.
    let posted = app
        .post_error(json!({"level": "error", "message": "stats unit", "source": "s"}))
        .await;
    app.post_error(json!({"level": "error", "message": "stats unit", "source": "s"}))
        .await;
    app.wait_count(posted["id"].as_str().unwrap(), 2).await;

    let (s, v) = app.get_json("/api/stats").await;
    assert_eq!(s, 200, "{v}");
    let d = &v["data"];
    assert_eq!(d["total_errors"], 6, "{d}");
    assert_eq!(d["resolved_errors"], 2, "{d}");
    assert_eq!(d["errors_today"], 3, "{d}");
    assert_eq!(d["errors_this_week"], 4, "{d}");
    assert_eq!(d["errors_this_month"], 5, "{d}");
    let n = |k: &str| d[k].as_i64().unwrap();
    assert!(n("total_errors") >= n("errors_this_month"));
    assert!(n("errors_this_month") >= n("errors_this_week"));
    assert!(n("errors_this_week") >= n("errors_today"));
    let rate = d["resolution_rate"].as_f64().unwrap();
    assert!((rate - 33.3).abs() < 0.051, "{rate}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_matches_the_stack_trace() {
    let app = TestApp::spawn().await;
    let tag = Uuid::new_v4().simple().to_string()[..10].to_string();
    let func = format!("chargeCard_{tag}");
    let hit = app
        .post_error(json!({
            "level": "error",
            "message": "payment failed",
            "source": "billing",
            "stack_trace": format!("CardDeclinedError_{tag}: declined\n    at PaymentGateway.{func} (gateway.js:42:7)\n    at main (index.js:1:1)"),
        }))
        .await;
    let miss = app
        .post_error(
            json!({"level": "error", "message": "something else", "source": "billing",
                           "stack_trace": "Error: x\n    at other (a.js:1:1)"}),
        )
        .await;
    app.wait_count(hit["id"].as_str().unwrap(), 1).await;
    app.wait_count(miss["id"].as_str().unwrap(), 1).await;
    for q in [
        func.clone(),
        format!("CardDeclinedError_{tag}"),
        func.to_uppercase(),
    ] {
        let (s, v) = app.get_json(&format!("/api/errors?search={q}")).await;
        assert_eq!(s, 200);
        let ids: Vec<&Value> = v["data"]["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["id"])
            .collect();
        assert_eq!(ids, vec![&hit["id"]], "search {q}: {v}");
        assert_eq!(v["data"]["total"], 1);
    }
    // The message still matches.
    let (_, v) = app.get_json("/api/errors?search=payment%20failed").await;
    assert_eq!(v["data"]["total"], 1);
    app.stop().await;
}

/// RFC 4180 records of a CSV text.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
        } else {
            match c {
                '"' => quoted = true,
                ',' => row.push(std::mem::take(&mut field)),
                '\r' => {}
                '\n' => {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                _ => field.push(c),
            }
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_csv_and_json_carry_every_match() {
    let app = TestApp::spawn().await;
    let tricky = "a, \"quoted\" message\nwith a newline";
    let a = app
        .post_error(json!({"level": "error", "message": tricky, "source": "web",
                           "context": {"k": [1, "x"]}, "stack_trace": "E: 1\n  at f (x.js:1:1)"}))
        .await;
    let b = app
        .post_error(json!({"level": "warning", "message": "plain", "source": "api"}))
        .await;
    app.wait_count(a["id"].as_str().unwrap(), 1).await;
    app.wait_count(b["id"].as_str().unwrap(), 1).await;

    let r = app
        .get("/api/errors/export?format=json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename="));
    let items: Vec<Value> = r.json().await.unwrap();
    assert_eq!(items.len(), 2);
    for item in &items {
        let (_, full) = app
            .get_json(&format!("/api/errors/{}", item["id"].as_str().unwrap()))
            .await;
        assert_eq!(
            item, &full["data"],
            "export item equals GET /api/errors/{{id}}"
        );
    }

    let r = app
        .get("/api/errors/export?format=csv")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename="));
    let rows = parse_csv(&r.text().await.unwrap());
    let header = &rows[0];
    for col in [
        "id",
        "level",
        "message",
        "source",
        "count",
        "resolved",
        "first_seen",
        "last_seen",
        "fingerprint",
    ] {
        assert!(header.iter().any(|h| h == col), "{col} in {header:?}");
    }
    assert_eq!(rows.len(), 3, "{rows:?}");
    for rec in &rows[1..] {
        assert_eq!(rec.len(), header.len());
        let cell = |name: &str| &rec[header.iter().position(|h| h == name).unwrap()];
        let item = items
            .iter()
            .find(|i| i["id"] == cell("id").as_str())
            .unwrap();
        for col in [
            "id",
            "level",
            "message",
            "source",
            "fingerprint",
            "first_seen",
            "last_seen",
        ] {
            assert_eq!(item[col].as_str().unwrap(), cell(col), "{col}");
        }
        assert_eq!(item["count"].to_string(), *cell("count"));
        assert_eq!(item["resolved"].to_string(), *cell("resolved"));
        if item["context"].is_object() {
            let ctx: Value = serde_json::from_str(cell("context")).unwrap();
            assert_eq!(ctx, item["context"]);
        }
    }
    assert!(rows[1..].iter().any(|r| r.contains(&tricky.to_string())));

    // The list's filters apply.
    let r = app
        .get("/api/errors/export?format=json&level=warning")
        .send()
        .await
        .unwrap();
    let only: Vec<Value> = r.json().await.unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["id"], b["id"]);
    let r = app
        .get("/api/errors/export?format=json&search=quoted")
        .send()
        .await
        .unwrap();
    let only: Vec<Value> = r.json().await.unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["id"], a["id"]);

    let (s, v) = status_json(app.get("/api/errors/export?format=xml")).await;
    assert_eq!(s, 400);
    assert_eq!(v["status"], "error");
    assert!(v["error"].is_string());

    // Another tenant's export never includes these.
    let (_, other) = other_tenant(&app).await;
    let r = app
        .http
        .get(app.url("/api/errors/export?format=json"))
        .header("X-API-Key", other)
        .send()
        .await
        .unwrap();
    let none: Vec<Value> = r.json().await.unwrap();
    assert!(none.is_empty());
    app.stop().await;
}

/// Resident bytes of process `pid`.
fn rss_bytes(pid: u32) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// A `sluice api` process of its own (so its memory is the export's, not
/// that of the other tests running in this binary), on a free port, for
/// the same deployment as `app`.
fn api_process(app: &TestApp) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("api")
        .env("SLUICE_ADDR", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", &app.cfg.database_url)
        .env("REDIS_URL", &app.cfg.redis_url)
        .env("CLICKHOUSE_URL", &app.cfg.clickhouse_url)
        .env("CLICKHOUSE_DATABASE", &app.cfg.clickhouse_database)
        .env("SLUICE_REDIS_PREFIX", &app.cfg.redis_prefix)
        .env("SLUICE_PG_POOL_SIZE", "4")
        .env("SLUICE_API_RATE_LIMIT", "0")
        .env("SLUICE_DEV", "true")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the sluice binary");
    (child, format!("http://127.0.0.1:{port}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_streams_100k_groups_in_bounded_memory() {
    const GROUPS: i64 = 100_000;
    let app = TestApp::spawn().await;
    // 100,000 groups of about 1 KiB each: buffered whole, the export
    // would hold over 100 MB.
    sqlx::query(
        "INSERT INTO error_groups (id, tenant_id, fingerprint, level, message, source, count,
                                   first_seen, last_seen)
         SELECT gen_random_uuid(), $1, 'fp-' || i, 'error', 'bulk ' || i || ' ' || repeat('x', 1000),
                'bulk', 1, now(), now() - (i || ' seconds')::interval
         FROM generate_series(1, $2) AS i",
    )
    .bind(app.tenant_id)
    .bind(GROUPS)
    .execute(&app.running.pg)
    .await
    .unwrap();

    let (mut child, base) = api_process(&app);
    let pid = child.id();
    let url = format!("{base}/api/errors/export?format=csv");
    let mut r = crate::support::wait_for("the api process", || {
        let req = app.http.get(&url).header("X-API-Key", &app.key);
        async move { req.send().await.ok().filter(|r| r.status() == 200) }
    })
    .await;
    let base_rss = rss_bytes(pid);
    let mut peak = base_rss;
    let (mut bytes, mut newlines, mut chunks) = (0u64, 0u64, 0u64);
    while let Some(chunk) = r.chunk().await.unwrap() {
        bytes += chunk.len() as u64;
        newlines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        chunks += 1;
        if chunks % 200 == 0 {
            peak = peak.max(rss_bytes(pid));
        }
    }
    peak = peak.max(rss_bytes(pid));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(newlines, GROUPS as u64 + 1, "a header and every group");
    assert!(bytes > 100_000_000, "{bytes} bytes exported");
    let growth = peak.saturating_sub(base_rss);
    eprintln!(
        "export of {bytes} bytes: the API process grew {} MiB",
        growth >> 20
    );
    assert!(
        growth < 48 << 20,
        "the API process grew {} MiB while streaming {} MiB",
        growth >> 20,
        bytes >> 20
    );
    app.stop().await;
}

fn event(tenant: Uuid, group: Uuid, at: DateTime<Utc>) -> ErrorEvent<'static> {
    ErrorEvent {
        tenant_id: tenant,
        group_id: group,
        ts_ms: at.timestamp_millis(),
        level: Level::Error,
        message: "old".into(),
        stack_trace: None,
        context: None,
        source: "retention".into(),
        environment: None,
        url: None,
        user_agent: None,
        ip_address: None,
        fingerprint: group.to_string().into(),
    }
}

async fn rows_between(ch: &clickhouse::Client, tenant: Uuid, from: i64, to: i64) -> u64 {
    ch.query(
        "SELECT count() FROM error_events WHERE tenant_id = toUUID(?)
           AND timestamp >= toDateTime(?) AND timestamp < toDateTime(?)",
    )
    .bind(tenant.to_string())
    .bind(from)
    .bind(to)
    .fetch_one::<u64>()
    .await
    .unwrap()
}

async fn partitions(ch: &clickhouse::Client) -> Vec<String> {
    ch.query(
        "SELECT DISTINCT partition FROM system.parts
         WHERE database = currentDatabase() AND table = 'error_events' AND active",
    )
    .fetch_all::<String>()
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_setting_and_sweep() {
    let app = TestApp::spawn().await;
    let pg = &app.running.pg;
    let ch = &app.running.ch;

    // The setting: default, roles, validation, per tenant.
    let (s, v) = app.get_json("/api/settings/retention").await;
    assert_eq!((s, &v["data"]), (200, &json!({"events_days": 90})), "{v}");
    let (s, v) = status_json(
        app.put("/api/settings/retention")
            .json(&json!({"events_days": 30})),
    )
    .await;
    assert_eq!(s, 403, "a developer key may not set retention: {v}");
    assert_eq!(v["status"], "error");
    let admin = key_with(pg, app.tenant_id, &["read", "write", "admin"]).await;
    usable(&app, &admin).await;
    let put = |body: String| {
        app.http
            .put(app.url("/api/settings/retention"))
            .header("X-API-Key", &admin)
            .header("content-type", "application/json")
            .body(body)
    };
    for bad in [
        r#"{"events_days": 0}"#,
        r#"{"events_days": 3651}"#,
        r#"{"events_days": -1}"#,
        r#"{"events_days": "30"}"#,
        r#"{"events_days": null}"#,
        r#"{"events_days": "#,
    ] {
        let (s, v) = status_json(put(bad.to_string())).await;
        assert_eq!(s, 400, "{bad}: {v}");
        assert_eq!(v["status"], "error");
    }
    let (s, v) = status_json(put(r#"{"events_days": 30}"#.into())).await;
    assert_eq!((s, &v["data"]), (200, &json!({"events_days": 30})), "{v}");
    let (_, v) = app.get_json("/api/settings/retention").await;
    assert_eq!(v["data"], json!({"events_days": 30}));
    let (other, other_key) = other_tenant(&app).await;
    let (_, v) = status_json(
        app.http
            .get(app.url("/api/settings/retention"))
            .header("X-API-Key", &other_key),
    )
    .await;
    assert_eq!(v["data"], json!({"events_days": 90}), "per tenant");

    // Occurrences: this tenant (30 days) alone on a day 45 days back, both
    // tenants on a day 50 days back (the other keeps 90 days), and recent.
    let now = Utc::now();
    let day = |back: i64| {
        let d = (now - chrono::Duration::days(back)).date_naive();
        d.and_hms_opt(12, 0, 0).unwrap().and_utc()
    };
    let (d45, d50) = (day(45), day(50));
    let old_group = insert_group(pg, app.tenant_id, d45, false).await;
    let fresh_group = insert_group(pg, app.tenant_id, now, false).await;
    let other_group = insert_group(pg, other, d50, false).await;
    let evs = [
        event(app.tenant_id, old_group, d45),
        event(app.tenant_id, old_group, d50),
        event(app.tenant_id, fresh_group, now),
        event(other, other_group, d50),
    ];
    let ids: Vec<String> = (0..evs.len())
        .map(|i| format!("retention-test/{}/{i}", Uuid::new_v4()))
        .collect();
    let rows: Vec<EventRow<'_>> = evs
        .iter()
        .zip(&ids)
        .map(|(e, id)| EventRow::new(id, e))
        .collect();
    events::insert(ch, &rows).await.unwrap();
    let p45 = d45.format("%Y%m%d").to_string();
    assert!(partitions(ch).await.contains(&p45));

    let report = sluice_workers::error_retention::sweep(pg, ch, now)
        .await
        .unwrap();
    let p45n: u32 = p45.parse().unwrap();
    let p50n: u32 = d50.format("%Y%m%d").to_string().parse().unwrap();
    assert!(report.dropped_days.contains(&p45n), "{report:?}");
    assert!(report.trimmed_days.contains(&p50n), "{report:?}");
    assert!(!partitions(ch).await.contains(&p45), "day 45 dropped whole");
    let span = |d: DateTime<Utc>| (d.timestamp() - 43_200, d.timestamp() + 43_200);
    let (a, b) = span(d45);
    assert_eq!(rows_between(ch, app.tenant_id, a, b).await, 0);
    let (a, b) = span(d50);
    wait_for("this tenant's rows of day 50 removed", || async {
        (rows_between(ch, app.tenant_id, a, b).await == 0).then_some(())
    })
    .await;
    assert_eq!(
        rows_between(ch, other, a, b).await,
        1,
        "the other keeps its day 50"
    );
    assert_eq!(
        rows_between(
            ch,
            app.tenant_id,
            now.timestamp() - 60,
            now.timestamp() + 60
        )
        .await,
        1
    );
    // Groups: the one with no occurrence left is gone, the others stay.
    let (s, _) = app.get_json(&format!("/api/errors/{old_group}")).await;
    assert_eq!(s, 404);
    let (s, _) = app.get_json(&format!("/api/errors/{fresh_group}")).await;
    assert_eq!(s, 200);
    let kept: (i64,) = sqlx::query_as("SELECT count(*) FROM error_groups WHERE id = $1")
        .bind(other_group)
        .fetch_one(pg)
        .await
        .unwrap();
    assert_eq!(kept.0, 1);
    let _ = sluice_storage::pg::tenants::delete(pg, other).await;
    app.stop().await;
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws(app: &TestApp, key: &str) -> Ws {
    let url = format!(
        "{}/ws?token={key}",
        app.base.replacen("http://", "ws://", 1)
    );
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// The next text frame within `wait`, as JSON; `None` when none came.
async fn next_event(ws: &mut Ws, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next()).await.ok()??;
        match msg.ok()? {
            Message::Text(t) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            _ => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_error_and_error_resolved_reach_their_tenant_only() {
    let app = TestApp::spawn().await;
    let (_, other_key) = other_tenant(&app).await;
    let mut mine = ws(&app, &app.key).await;
    let mut theirs = ws(&app, &other_key).await;
    // Let the hub register both sockets.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let msg = format!("live {}", Uuid::new_v4());
    // The same body each time: the stack trace is part of the fingerprint.
    let body = json!({"level": "error", "message": msg, "source": "live",
                      "stack_trace": "E\n  at f (a.js:1:1)", "context": {"a": 1}});
    let posted = app.post_error(body.clone()).await;
    let id = posted["id"].clone();
    let ev = next_event(&mut mine, Duration::from_secs(10))
        .await
        .expect("new_error within 10 s");
    assert_eq!(ev["type"], "new_error", "{ev}");
    assert_eq!(ev["data"]["id"], id);
    let (_, full) = app
        .get_json(&format!("/api/errors/{}", id.as_str().unwrap()))
        .await;
    for field in [
        "id",
        "level",
        "message",
        "source",
        "fingerprint",
        "stack_trace",
        "context",
        "resolved",
        "count",
        "first_seen",
        "last_seen",
        "created_at",
        "timestamp",
    ] {
        assert_eq!(ev["data"][field], full["data"][field], "{field}");
    }

    // A second occurrence of a known group is not new.
    app.post_error(body.clone()).await;
    app.wait_count(id.as_str().unwrap(), 2).await;

    let (s, _) =
        status_json(app.put(&format!("/api/errors/{}/resolve", id.as_str().unwrap()))).await;
    assert_eq!(s, 200);
    let ev = next_event(&mut mine, Duration::from_secs(10))
        .await
        .expect("error_resolved within 10 s");
    assert_eq!(
        ev["type"], "error_resolved",
        "no new_error for a known group: {ev}"
    );
    assert_eq!(ev["data"], json!({"id": id}));

    // It comes back: a regression is announced again.
    app.post_error(body.clone()).await;
    let ev = next_event(&mut mine, Duration::from_secs(10))
        .await
        .expect("new_error for the regression");
    assert_eq!(ev["type"], "new_error", "{ev}");
    assert_eq!(ev["data"]["id"], id);
    assert_eq!(ev["data"]["resolved"], false);
    assert_eq!(ev["data"]["count"], 3);

    assert!(
        next_event(&mut theirs, Duration::from_secs(2))
            .await
            .is_none(),
        "the other tenant's socket hears nothing"
    );
    app.stop().await;
}
