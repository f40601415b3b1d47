//! A worker killed mid-batch loses nothing and counts nothing twice.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice::app::Mode;

use crate::support::TestApp;

fn worker(app: &TestApp, crash: bool) -> Child {
    worker_cmd(app, crash)
        .spawn()
        .expect("start the sluice worker binary")
}

fn worker_cmd(app: &TestApp, crash: bool) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.arg("worker")
        .env("DATABASE_URL", &app.cfg.database_url)
        .env("REDIS_URL", &app.cfg.redis_url)
        .env("CLICKHOUSE_URL", &app.cfg.clickhouse_url)
        .env("CLICKHOUSE_DATABASE", &app.cfg.clickhouse_database)
        .env("SLUICE_REDIS_PREFIX", &app.cfg.redis_prefix)
        .env("SLUICE_STREAM_SHARDS", app.cfg.stream_shards.to_string())
        .env("SLUICE_PG_POOL_SIZE", "3")
        .env("SLUICE_WORKER_BATCH", "20")
        // one entry (10 events) per read: a batch is two entries
        .env("SLUICE_WORKER_READ_COUNT", "1")
        .env("SLUICE_WORKER_RECLAIM_IDLE_MS", "500")
        .env("SLUICE_WORKER_CRASH_AFTER_CLICKHOUSE", crash.to_string())
        // One consumer while crashing, so exactly one batch is in flight;
        // two afterwards, so reclaiming runs beside a live consumer.
        .env("SLUICE_WORKER_CONSUMERS", if crash { "1" } else { "2" })
        .env("SLUICE_DEV", "true")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_batch_leaves_exact_counts() {
    let app = TestApp::spawn_with(
        Mode {
            worker: false,
            ..Mode::ALL
        },
        |_| {},
    )
    .await;
    // Five requests of ten: five stream entries.
    for part in 0..5 {
        let batch: Vec<Value> = (0..10)
            .map(|i| json!({"message": format!("crash test kind {}", ["a", "b", "c"][(part * 10 + i) % 3]), "source": "crash"}))
            .collect();
        let r = app
            .post("/api/errors/batch")
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    // First worker: stores one batch of 20 in ClickHouse, then dies before
    // Postgres and before acknowledging.
    let mut first = worker(&app, true);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = first.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "worker did not crash");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success(), "the worker aborted");
    assert_eq!(
        app.stored_in_clickhouse().await,
        20,
        "one batch reached ClickHouse before the crash"
    );
    assert_eq!(app.total_count().await, 0, "nothing reached Postgres");

    // Second worker: reclaims the dead consumer's pending entries.
    let mut second = worker(&app, false);
    app.wait_stored(50).await;
    // Give any double processing time to show, then check again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(app.total_count().await, 50);
    assert_eq!(app.stored_in_clickhouse().await, 50);
    let mut conn = app.running.redis.get().await.unwrap();
    assert_eq!(
        app.running.layout.backlog(&mut conn).await.unwrap(),
        0,
        "stream drained"
    );
    let (_, v) = app.get_json("/api/errors?source=crash").await;
    assert_eq!(v["data"]["total"], 3);
    let counts: Vec<i64> = v["data"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts.iter().sum::<i64>(), 50);

    let _ = second.kill();
    let _ = second.wait();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_stores_again_what_it_was_given_but_never_acknowledged() {
    let app = TestApp::spawn_with(
        Mode {
            worker: false,
            ..Mode::ALL
        },
        |_| {},
    )
    .await;
    let batch: Vec<Value> = (0..10)
        .map(|i| json!({"message": "pending entry", "source": "pending", "context": {"i": i}}))
        .collect();
    let r = app
        .post("/api/errors/batch")
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The entry is delivered to this consumer, which then "loses" it (a
    // broken connection, say): pending, never acknowledged.
    let mut cfg = sluice_workers::WorkerConfig::new(app.running.layout.clone());
    cfg.consumer = format!("recovery-{}", app.tenant_id.simple());
    // Long enough that reclaiming dead consumers' entries cannot be what
    // brings it back: only the consumer's own recovery can.
    cfg.reclaim_idle = Duration::from_secs(3600);
    cfg.linger = Duration::from_millis(50);
    let keys = app.running.layout.all_error_keys();
    let mut conn = app.running.redis.get().await.unwrap();
    let delivered: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(sluice_storage::streams::GROUP)
        .arg(format!("{}-e0", cfg.consumer))
        .arg("STREAMS")
        .arg(&keys)
        .arg(vec![">"; keys.len()])
        .query_async(&mut *conn)
        .await
        .unwrap();
    assert_eq!(delivered.keys.iter().map(|k| k.ids.len()).sum::<usize>(), 1);
    drop(conn);

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stores = sluice_workers::Stores {
        redis: app.running.redis.clone(),
        pg: app.running.pg.clone(),
        ch: app.running.ch.clone(),
    };
    let worker = tokio::spawn(sluice_workers::run(cfg, stores, stopped));
    app.wait_stored(10).await;
    let mut conn = app.running.redis.get().await.unwrap();
    assert_eq!(app.running.layout.backlog(&mut conn).await.unwrap(), 0);
    let _ = stop.send(true);
    let _ = worker.await;
    app.stop().await;
}

/// A worker restarted under the same `SLUICE_WORKER_NAME` takes back what
/// it had read but not stored at once, without the reclaim (set to an hour
/// here, so only its own recovery can bring the entries back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_restarted_under_its_name_takes_its_entries_back_at_once() {
    let app = TestApp::spawn_with(
        Mode {
            worker: false,
            ..Mode::ALL
        },
        |_| {},
    )
    .await;
    for part in 0..3 {
        let batch: Vec<Value> = (0..10)
            .map(|i| json!({"message": format!("named worker {}", (part * 10 + i) % 2), "source": "named"}))
            .collect();
        let r = app
            .post("/api/errors/batch")
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let name = format!("named-{}", app.tenant_id.simple());
    let named = |crash: bool| {
        let mut cmd = worker_cmd(&app, crash);
        cmd.env("SLUICE_WORKER_NAME", &name)
            .env("SLUICE_WORKER_RECLAIM_IDLE_MS", "3600000")
            .env("SLUICE_WORKER_CONSUMERS", "1");
        cmd.spawn().expect("start the sluice worker binary")
    };
    let mut first = named(true);
    let deadline = Instant::now() + Duration::from_secs(60);
    while first.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "worker did not crash");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.total_count().await, 0, "nothing reached Postgres");

    let started = Instant::now();
    let mut second = named(false);
    app.wait_stored(30).await;
    let took = started.elapsed();
    assert_eq!(app.total_count().await, 30);
    assert_eq!(app.stored_in_clickhouse().await, 30, "nothing twice");
    assert!(
        took < Duration::from_secs(15),
        "taken back without the hour-long reclaim: {took:?}"
    );
    let _ = second.kill();
    let _ = second.wait();
    app.stop().await;
}
