//! Store outages, simulated with a TCP proxy in front of the real server
//! that the test can cut: accepted data is never lost, overload is refused.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use sluice::app::Mode;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use crate::support::{wait_for, TestApp};

/// Forwards connections to `target` while up; cutting it closes them all.
pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    pub async fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (u, c, target) = (up.clone(), conns.clone(), target.to_string());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !u.load(Ordering::SeqCst) {
                    continue;
                }
                let target = target.clone();
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                c.lock().unwrap().push(h.abort_handle());
            }
        });
        Proxy { addr, up, conns }
    }

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_answers_503_and_recovers() {
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let url = format!("redis://{}", proxy.addr);
    let app = TestApp::spawn_with(Mode::ALL, |c| c.redis_url = url).await;
    let first = app
        .post_error(json!({"message": "before the outage"}))
        .await;

    proxy.cut();
    let r = app
        .post("/api/errors")
        .json(&json!({"message": "during the outage"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "error");
    assert!(v["error"].as_str().unwrap().contains("unavailable"));

    proxy.restore();
    let after = wait_for("ingest to recover", || async {
        let r = app
            .post("/api/errors")
            .json(&json!({"message": "after the outage"}))
            .send()
            .await
            .unwrap();
        (r.status() == 201).then_some(())
    })
    .await;
    let () = after;
    app.wait_count(first["id"].as_str().unwrap(), 1).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_down_keeps_events_in_the_stream_until_it_returns() {
    let proxy = Proxy::start("127.0.0.1:8123").await;
    let url = format!("http://{}", proxy.addr);
    let app = TestApp::spawn_with(Mode::ALL, |c| c.clickhouse_url = url).await;
    proxy.cut();
    let batch: Vec<Value> = (0..30)
        .map(|i| json!({"message": format!("outage event {i}"), "source": "outage"}))
        .collect();
    let r = app
        .post("/api/errors/batch")
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "ingest does not need ClickHouse");

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        app.total_count().await,
        0,
        "nothing stored while ClickHouse is down"
    );
    let mut conn = app.running.redis.get().await.unwrap();
    assert_eq!(
        app.running.layout.backlog(&mut conn).await.unwrap(),
        30,
        "the stream holds every event"
    );

    proxy.restore();
    wait_for("all 30 stored once ClickHouse is back", || async {
        (app.total_count().await == 30).then_some(())
    })
    .await;
    let direct = sluice_storage::ch::client(&sluice::app::ch_config(&sluice::config::Config {
        clickhouse_url: "http://127.0.0.1:8123".into(),
        ..app.cfg.clone()
    }));
    wait_for("30 rows in ClickHouse", || async {
        let n = sluice_storage::ch::events::count_raw(&direct, app.tenant_id, None)
            .await
            .unwrap();
        (n == 30).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        sluice_storage::ch::events::count_raw(&direct, app.tenant_id, None)
            .await
            .unwrap(),
        30
    );
    assert_eq!(app.total_count().await, 30);
    app.stop().await;
}
