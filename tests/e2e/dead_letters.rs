//! Poison events, as an older ingest would have let through, written
//! straight into a stream: the worker isolates them, stores every other
//! event of every tenant, and sets them aside as dead letters that an
//! admin key of their tenant (and only of their tenant) lists, replays and
//! drops.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_storage::model::{ErrorEvent, Level};
use sluice_storage::pg::{api_keys, tenants};
use sluice_storage::{dead_letters, wire};
use uuid::Uuid;

use crate::support::{new_tenant, status_json, wait_for, TestApp};

async fn admin_key(pool: &sqlx::PgPool, tenant_id: Uuid) -> String {
    let perms = vec!["admin".to_string()];
    let (_, key) = api_keys::create(
        pool,
        &api_keys::NewKey {
            tenant_id,
            name: "dead-letter admin",
            permissions: &perms,
            rate_limit_per_min: None,
            expires_at: None,
        },
    )
    .await
    .unwrap();
    key
}

fn event(tenant: Uuid, fingerprint: &str, message: &str) -> ErrorEvent<'static> {
    ErrorEvent {
        tenant_id: tenant,
        group_id: Uuid::new_v4(),
        ts_ms: chrono::Utc::now().timestamp_millis(),
        level: Level::Error,
        message: Cow::Owned(message.to_string()),
        stack_trace: None,
        context: Some(Cow::Borrowed(r#"{"k":"v"}"#)),
        source: Cow::Borrowed("legacy-ingest"),
        environment: None,
        url: None,
        user_agent: Some(Cow::Borrowed("old-sdk/1")),
        ip_address: Some(Cow::Borrowed("10.1.2.3")),
        fingerprint: Cow::Owned(fingerprint.to_string()),
    }
}

/// Text that does not compress: printable ASCII from random bytes, so a
/// btree index entry of it stays over Postgres's 2,704-byte limit.
fn incompressible(len: usize) -> String {
    let mut s = String::with_capacity(len);
    while s.len() < len {
        for b in Uuid::new_v4().as_bytes() {
            s.push(char::from(33 + b % 94));
        }
    }
    s.truncate(len);
    s
}

/// Sum of group counts of the tenant whose key this is.
async fn group_total(app: &TestApp, key: &str) -> i64 {
    let (_, v) = status_json(
        app.http
            .get(app.url("/api/errors?limit=100"))
            .header("X-API-Key", key),
    )
    .await;
    v["data"]["errors"]
        .as_array()
        .map(|a| a.iter().map(|e| e["count"].as_i64().unwrap_or(0)).sum())
        .unwrap_or(0)
}

async fn ch_rows(app: &TestApp, tenant: Uuid) -> u64 {
    sluice_storage::ch::events::count_raw(&app.running.ch, tenant, None)
        .await
        .unwrap()
}

async fn list(app: &TestApp, key: &str) -> (u16, Value) {
    status_json(
        app.http
            .get(app.url("/api/admin/dead-letters"))
            .header("X-API-Key", key),
    )
    .await
}

fn letters(v: &Value) -> Vec<Value> {
    v["data"]["dead_letters"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Runs `sluice dead-letters <args>` against the app's streams; its stdout.
fn cli(app: &TestApp, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("dead-letters")
        .args(args)
        .env("DATABASE_URL", &app.cfg.database_url)
        .env("REDIS_URL", &app.cfg.redis_url)
        .env("SLUICE_REDIS_PREFIX", &app.cfg.redis_prefix)
        .env("SLUICE_STREAM_SHARDS", app.cfg.stream_shards.to_string())
        .output()
        .expect("run the sluice binary");
    assert!(
        out.status.success(),
        "sluice dead-letters {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_events_become_dead_letters_and_nobody_waits() {
    let app = TestApp::spawn().await;
    let pg = app.running.pg.clone();
    let a = app.tenant_id;
    let (b, b_key) = new_tenant(&pg).await;
    let a_admin = admin_key(&pg, a).await;
    let b_admin = admin_key(&pg, b).await;
    // the key directory reloads every 200 ms in tests
    wait_for("the new keys to be known", || async {
        let b_known = status_json(
            app.http
                .get(app.url("/api/errors"))
                .header("X-API-Key", &b_key),
        )
        .await
        .0 == 200;
        (b_known && list(&app, &b_admin).await.0 == 200).then_some(())
    })
    .await;

    // One entry, as an older ingest wrote it: good events of A and B
    // around three events Postgres refuses.
    let mut nul = event(a, "dl-nul", "nul \0 here");
    nul.context = None;
    let mut ctx = event(a, "dl-ctx", "x");
    ctx.context = Some(Cow::Borrowed(r#"{"k":"a\u0000b"}"#));
    let mut long = event(a, "dl-long", "long source");
    long.source = Cow::Owned(incompressible(3000));
    let good_a = event(a, "dl-good-a", "good a");
    let good_b = event(b, "dl-good-b", "good b");
    let mut events = vec![good_a.clone(), good_a.clone(), nul, ctx, long];
    events.extend([good_b.clone(), good_b.clone(), good_b]);
    events.extend([good_a.clone(), good_a]);
    let mut chunk = Vec::new();
    wire::encode_chunks(&events, &mut chunk);
    let mut envelope = wire::Envelope::default();
    envelope.push(&chunk, events.len() as u32);
    let layout = app.running.layout.clone();
    let shard = layout.shard_of(a);
    let started = Instant::now();
    let entry_id: String = {
        let mut conn = app.running.redis.get().await.unwrap();
        let mut pipe = deadpool_redis::redis::pipe();
        // and before it, an entry no worker can decode
        pipe.cmd("XADD")
            .arg(layout.errors_key(shard))
            .arg("*")
            .arg(wire::COUNT_FIELD)
            .arg(1)
            .arg(wire::FIELD)
            .arg(&b"\x09not an envelope"[..])
            .ignore();
        pipe.cmd("INCRBY")
            .arg(layout.backlog_key(shard))
            .arg(1)
            .ignore();
        layout.append(&mut pipe, shard, &envelope);
        let (id,): (String,) = pipe.query_async(&mut conn).await.unwrap();
        id
    };

    // Meanwhile B posts normally.
    let batch: Vec<Value> = (0..20)
        .map(|i| json!({"message": format!("b over http {}", i % 2), "source": "web"}))
        .collect();
    let r = app
        .http
        .post(app.url("/api/errors/batch"))
        .header("X-API-Key", &b_key)
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Every good event is stored: A's 4 and B's 3 + 20 in Postgres; in
    // ClickHouse, which holds NUL and long strings, A's poison too.
    wait_for("good events in Postgres", || async {
        (group_total(&app, &app.key).await == 4 && group_total(&app, &b_key).await == 23)
            .then_some(())
    })
    .await;
    wait_for("good events in ClickHouse", || async {
        (ch_rows(&app, a).await == 7 && ch_rows(&app, b).await == 23).then_some(())
    })
    .await;
    let took = started.elapsed();
    eprintln!("good events of both tenants stored {took:?} after the poison entry");
    assert!(took < Duration::from_secs(10), "took {took:?}");

    // The poison is in A's dead letters, with its reason and origin.
    let (s, v) = wait_for("three dead letters", || async {
        let (s, v) = list(&app, &a_admin).await;
        (s == 200 && letters(&v).len() == 3).then_some((s, v))
    })
    .await;
    assert_eq!(s, 200);
    let found = letters(&v);
    let mut reasons: Vec<&str> = found
        .iter()
        .map(|d| d["reason"].as_str().unwrap())
        .collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["invalid_json", "invalid_text", "too_large"]);
    let mut indexes: Vec<i64> = found.iter().map(|d| d["index"].as_i64().unwrap()).collect();
    indexes.sort_unstable();
    assert_eq!(indexes, [2, 3, 4]);
    for d in &found {
        assert_eq!(d["tenant_id"], a.to_string());
        assert_eq!(d["store"], "postgres");
        assert_eq!(d["kind"], "errors");
        assert_eq!(d["entry_id"], entry_id.as_str());
        assert_eq!(d["stream"], layout.errors_key(shard).as_str());
        assert_eq!(d["stored_in"], json!(["clickhouse"]));
        assert!(d["dead_at"].is_string());
        assert!(d["error"].as_str().unwrap().starts_with("postgres "), "{d}");
        assert_eq!(d["event"]["user_agent"], "old-sdk/1");
    }
    let by_reason = |r: &str| found.iter().find(|d| d["reason"] == r).cloned().unwrap();
    assert!(by_reason("invalid_text")["error"]
        .as_str()
        .unwrap()
        .contains("22021"));
    assert!(by_reason("invalid_json")["error"]
        .as_str()
        .unwrap()
        .contains("22P05"));
    assert!(by_reason("too_large")["error"]
        .as_str()
        .unwrap()
        .contains("54000"));
    assert_eq!(by_reason("invalid_text")["event"]["message"], "nul \0 here");

    // /metrics counts them.
    let metrics = app.metrics_text().await;
    for reason in ["invalid_text", "invalid_json", "too_large", "undecodable"] {
        assert!(
            metrics.contains(&format!(
                "sluice_worker_dead_letters_total{{reason=\"{reason}\"}}"
            )),
            "{reason} missing from /metrics"
        );
    }
    assert!(
        metrics.lines().any(|l| l == "sluice_dead_letters 4"),
        "dead-letter gauge: {}",
        metrics
            .lines()
            .filter(|l| l.contains("dead_letters"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Tenant isolation and permissions.
    let (s, v) = list(&app, &b_admin).await;
    assert_eq!(s, 200);
    assert!(letters(&v).is_empty(), "B sees A's dead letters: {v}");
    let (s, _) = list(&app, &app.key).await;
    assert_eq!(s, 403, "a read/write key is not an admin key");
    let (s, _) = status_json(app.http.get(app.url("/api/admin/dead-letters"))).await;
    assert_eq!(s, 401);
    let long_id = by_reason("too_large")["id"].as_str().unwrap().to_string();
    let nul_id = by_reason("invalid_text")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let json_id = by_reason("invalid_json")["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (method, path) in [
        (
            reqwest::Method::POST,
            format!("/api/admin/dead-letters/{long_id}/replay"),
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/admin/dead-letters/{long_id}"),
        ),
    ] {
        let (s, _) = status_json(
            app.http
                .request(method, app.url(&path))
                .header("X-API-Key", &b_admin),
        )
        .await;
        assert_eq!(s, 404, "B acted on A's dead letter via {path}");
    }

    // Replay: still refused by Postgres, so it comes back with a new id;
    // ClickHouse, which held it, does not get it twice.
    let (s, v) = status_json(
        app.http
            .post(app.url(&format!("/api/admin/dead-letters/{long_id}/replay")))
            .header("X-API-Key", &a_admin),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["status"], "replayed");
    let back = wait_for("the replayed event back in dead letters", || async {
        let (_, v) = list(&app, &a_admin).await;
        let l = letters(&v);
        (l.len() == 3 && l.iter().all(|d| d["id"] != long_id.as_str()))
            .then(|| l.into_iter().find(|d| d["reason"] == "too_large"))
            .flatten()
    })
    .await;
    assert_eq!(
        back["entry_id"],
        entry_id.as_str(),
        "keeps its first origin"
    );
    assert_eq!(back["index"], 4);
    assert_eq!(ch_rows(&app, a).await, 7, "replay stored nothing twice");
    assert_eq!(group_total(&app, &app.key).await, 4);

    // Replay of a NUL that an older ingest let through: replay applies
    // today's rule (U+FFFD, as ingest does), so Postgres takes it now.
    let (s, v) = status_json(
        app.http
            .post(app.url(&format!("/api/admin/dead-letters/{nul_id}/replay")))
            .header("X-API-Key", &a_admin),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    wait_for("the replayed NUL event stored", || async {
        (group_total(&app, &app.key).await == 5).then_some(())
    })
    .await;
    let (_, v) = app.get_json("/api/errors?search=here&limit=10").await;
    assert_eq!(
        v["data"]["errors"][0]["message"], "nul \u{FFFD} here",
        "{v}"
    );
    let (_, v) = list(&app, &a_admin).await;
    assert_eq!(letters(&v).len(), 2, "{v}");
    assert_eq!(ch_rows(&app, a).await, 7, "ClickHouse held it already");

    // Drop.
    let (s, _) = status_json(
        app.http
            .delete(app.url(&format!("/api/admin/dead-letters/{json_id}")))
            .header("X-API-Key", &a_admin),
    )
    .await;
    assert_eq!(s, 204);
    let (_, v) = list(&app, &a_admin).await;
    assert_eq!(letters(&v).len(), 1);
    assert!(letters(&v).iter().all(|d| d["id"] != json_id.as_str()));
    let (s, _) = status_json(
        app.http
            .delete(app.url(&format!("/api/admin/dead-letters/{json_id}")))
            .header("X-API-Key", &a_admin),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = status_json(
        app.http
            .delete(app.url("/api/admin/dead-letters/not-an-id"))
            .header("X-API-Key", &a_admin),
    )
    .await;
    assert_eq!(s, 404);

    // The CLI sees every tenant's, or one's, and acts on them.
    let listed = cli(&app, &["list", "--json"]);
    let lines: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{listed}");
    let undecodable: Vec<&Value> = lines.iter().filter(|d| d["tenant_id"].is_null()).collect();
    assert_eq!(undecodable.len(), 1, "{listed}");
    assert_eq!(undecodable[0]["reason"], "undecodable");
    assert_eq!(undecodable[0]["store"], "decode");
    assert_eq!(
        lines
            .iter()
            .filter(|d| d["tenant_id"] == a.to_string())
            .count(),
        1
    );
    let listed = cli(&app, &["list", "--tenant", &b.to_string()]);
    assert_eq!(listed.lines().count(), 0, "{listed}");
    cli(&app, &["drop", "--all", "--tenant", &a.to_string()]);
    let (_, v) = list(&app, &a_admin).await;
    assert!(letters(&v).is_empty(), "{v}");
    assert_eq!(cli(&app, &["list"]).lines().count(), 1);
    cli(&app, &["drop", "--all"]);
    assert_eq!(cli(&app, &["list"]).lines().count(), 0);
    // nothing is left waiting in the streams
    let mut conn = app.running.redis.get().await.unwrap();
    assert_eq!(layout.backlog(&mut conn).await.unwrap(), 0);
    drop(conn);

    if let Ok(mut conn) = app.running.redis.get().await {
        let _ = dead_letters::destroy(&mut conn, &layout).await;
    }
    let _ = tenants::delete(&pg, b).await;
    app.stop().await;
}

/// Writes `entries` entries of `per_entry` good events of the app's tenant
/// (spread over 50 groups), the poison (if any) in the middle entry, and
/// returns how long until Postgres and ClickHouse hold every good event.
async fn store_time(app: &TestApp, entries: usize, per_entry: usize, poison: bool) -> Duration {
    let a = app.tenant_id;
    let groups: Vec<ErrorEvent<'static>> = (0..50)
        .map(|g| event(a, &format!("bulk-{g}"), &format!("bulk {g}")))
        .collect();
    let layout = &app.running.layout;
    let shard = layout.shard_of(a);
    let mut pipe = deadpool_redis::redis::pipe();
    let mut chunks = Vec::new();
    for e in 0..entries {
        let mut events: Vec<ErrorEvent<'static>> = (0..per_entry)
            .map(|i| groups[(e * per_entry + i) % groups.len()].clone())
            .collect();
        if poison && e == entries / 2 {
            events[per_entry / 3].message = Cow::Borrowed("nul \0 in a large batch");
            events[per_entry / 3].group_id = Uuid::new_v4();
            events[per_entry / 3].fingerprint = Cow::Borrowed("bulk-poison");
        }
        let mut chunk = Vec::new();
        wire::encode_chunks(&events, &mut chunk);
        chunks.push((chunk, events.len() as u32));
    }
    let envelopes: Vec<wire::Envelope<'_>> = chunks
        .iter()
        .map(|(c, n)| {
            let mut env = wire::Envelope::default();
            env.push(c, *n);
            env
        })
        .collect();
    for env in &envelopes {
        layout.append(&mut pipe, shard, env);
    }
    let total = (entries * per_entry) as u64;
    let good = total - u64::from(poison);
    let started = Instant::now();
    let mut conn = app.running.redis.get().await.unwrap();
    let _: Vec<String> = pipe.query_async(&mut conn).await.unwrap();
    drop(conn);
    wait_for("every good event in Postgres", || async {
        (app.total_count().await == good as i64).then_some(())
    })
    .await;
    wait_for("every event in ClickHouse", || async {
        (app.stored_in_clickhouse().await == total).then_some(())
    })
    .await;
    started.elapsed()
}

/// One poison event among many, in one batch of many entries: everything
/// else is stored exactly once, and what the bisection costs is printed
/// beside a clean batch of the same size (`SLUICE_BISECT_ENTRIES` entries
/// of 1,000 events, default 5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_poison_event_in_a_large_batch_costs_only_the_bisection() {
    let entries: usize = std::env::var("SLUICE_BISECT_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    // a long linger, so every entry lands in one batch
    let tweak = |c: &mut sluice::config::Config| c.worker_linger_ms = 1000;
    let clean = TestApp::spawn_with(sluice::app::Mode::ALL, tweak).await;
    let clean_took = store_time(&clean, entries, 1000, false).await;
    clean.stop().await;

    let app = TestApp::spawn_with(sluice::app::Mode::ALL, tweak).await;
    let poison_took = store_time(&app, entries, 1000, true).await;
    let (s, v) = status_json(
        app.http
            .get(app.url("/api/errors?limit=100"))
            .header("X-API-Key", &app.key),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        v["data"]["total"], 50,
        "the poison's group is not in Postgres"
    );
    let layout = app.running.layout.clone();
    let mut conn = app.running.redis.get().await.unwrap();
    let letters = dead_letters::list(
        &mut conn,
        &layout,
        &dead_letters::ListFilter {
            tenant_id: Some(app.tenant_id),
            before: None,
            limit: 10,
        },
    )
    .await
    .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, "invalid_text");
    assert_eq!(letters[0].index, Some(333));
    let _ = dead_letters::destroy(&mut conn, &layout).await;
    drop(conn);
    app.stop().await;
    eprintln!(
        "{} events in {entries} entries: clean batch stored in {clean_took:?}, with one poison event in {poison_took:?}",
        entries * 1000
    );
}

/// An outage is not a refusal: while Postgres is unreachable the worker
/// retries, sets nothing aside, and stores everything once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_is_retried_not_dead_lettered() {
    let proxy = crate::outage::Proxy::start("127.0.0.1:5432").await;
    let url = {
        let cfg = crate::support::test_config();
        let mut u = reqwest::Url::parse(&cfg.database_url).unwrap();
        u.set_port(Some(proxy.addr.port())).unwrap();
        u.to_string()
    };
    let app = TestApp::spawn_with(sluice::app::Mode::ALL, |c| c.database_url = url).await;
    app.post_error(json!({"message": "before the outage", "source": "outage"}))
        .await;
    app.wait_stored(1).await;

    proxy.cut();
    let batch: Vec<Value> = (0..20)
        .map(|i| json!({"message": format!("during the outage {}", i % 4), "source": "outage"}))
        .collect();
    let r = app
        .post("/api/errors/batch")
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "ingest does not need Postgres");
    // ClickHouse takes them; Postgres cannot, for a few retries
    wait_for("21 rows in ClickHouse", || async {
        (app.stored_in_clickhouse().await == 21).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let layout = app.running.layout.clone();
    let mut conn = app.running.redis.get().await.unwrap();
    assert_eq!(
        dead_letters::totals(&mut conn, &layout).await.unwrap(),
        (0, 0),
        "an outage set events aside"
    );
    assert_eq!(
        layout.backlog(&mut conn).await.unwrap(),
        20,
        "the stream keeps them"
    );
    drop(conn);

    proxy.restore();
    app.wait_stored(21).await;
    let mut conn = app.running.redis.get().await.unwrap();
    assert_eq!(
        dead_letters::totals(&mut conn, &layout).await.unwrap(),
        (0, 0)
    );
    drop(conn);
    app.stop().await;
}
