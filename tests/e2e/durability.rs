//! What a 2xx promises: `/health` reports the durability of the Redis
//! Sluice writes to, and with `SLUICE_REDIS_MIN_REPLICAS` ingest answers
//! 2xx only once replicas hold the event. Each test starts its own
//! redis-server processes on free ports and stops them at the end.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice::app::Mode;

use crate::support::{wait_for, TestApp};

/// A redis-server of this test's own, killed on drop.
struct Redis {
    port: u16,
    child: Child,
    dir: std::path::PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Redis {
    async fn start(args: &[&str]) -> Redis {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("sluice-redis-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--dir", dir.to_str().unwrap(), "--save", ""])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        let r = Redis { port, child, dir };
        wait_for("redis-server to answer", || async {
            r.info("server").await.map(|_| ())
        })
        .await;
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn info(&self, section: &str) -> Option<String> {
        let client = redis::Client::open(self.url()).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("INFO")
            .arg(section)
            .query_async(&mut conn)
            .await
            .ok()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn durability(app: &TestApp) -> Value {
    let v: Value = app
        .http
        .get(app.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["durability"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_what_redis_persistence_promises() {
    let bare = Redis::start(&["--appendonly", "no"]).await;
    let url = bare.url();
    let app = TestApp::spawn_with(Mode::ALL, |c| c.redis_url = url).await;
    let d = durability(&app).await;
    assert_eq!(d["level"], "none", "{d}");
    assert_eq!(d["survives_redis_restart"], "no");
    assert_eq!(d["survives_os_crash"], "no");
    assert_eq!(d["survives_machine_loss"], "no");
    assert_eq!(d["redis"]["appendonly"], false);
    assert!(
        d["warnings"].to_string().contains("without AOF"),
        "a loud warning: {d}"
    );
    app.stop().await;
    drop(bare);

    let aof = Redis::start(&["--appendonly", "yes", "--appendfsync", "everysec"]).await;
    let url = aof.url();
    let app = TestApp::spawn_with(Mode::ALL, |c| c.redis_url = url).await;
    let d = durability(&app).await;
    assert_eq!(d["level"], "aof_everysec", "{d}");
    assert_eq!(d["survives_redis_restart"], "yes");
    assert!(d["survives_os_crash"]
        .as_str()
        .unwrap()
        .contains("last second"));
    assert_eq!(d["survives_machine_loss"], "no");
    assert_eq!(d["warnings"], json!([]));
    app.stop().await;

    // The ingest tier alone answers /health with the same report.
    let url = aof.url();
    let ingest = TestApp::spawn_with(Mode::INGEST, |c| c.redis_url = url).await;
    assert_eq!(durability(&ingest).await["level"], "aof_everysec");
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_replicas_answers_201_only_once_a_replica_holds_the_event() {
    let primary = Redis::start(&["--appendonly", "yes"]).await;
    let url = primary.url();
    let app = TestApp::spawn_with(Mode::ALL, |c| {
        c.redis_url = url;
        c.redis_min_replicas = 1;
        c.redis_replica_timeout_ms = 300;
    })
    .await;
    let d = durability(&app).await;
    assert_eq!(d["min_replicas"], 1);
    assert!(d["warnings"].to_string().contains("503"), "{d}");

    let t = Instant::now();
    let r = app
        .post("/api/errors")
        .json(&json!({"message": "no replica to hold it"}))
        .send()
        .await
        .unwrap();
    let took = t.elapsed();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert!(
        took < Duration::from_millis(1500),
        "answered within the 300 ms timeout (and a margin): {took:?}"
    );
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("replicas"), "{v}");

    let port = primary.port.to_string();
    let replica = Redis::start(&["--replicaof", "127.0.0.1", &port]).await;
    wait_for("the replica to be in sync", || async {
        let info = replica.info("replication").await?;
        info.contains("master_link_status:up").then_some(())
    })
    .await;
    // The first WAIT after the initial sync may still miss its 300 ms
    // while the replica settles; a client retries a 503, and each attempt
    // is in the primary (so it is stored: the count is the attempts).
    let mut attempts = 0;
    let e = wait_for("a post acknowledged by the replica", || {
        attempts += 1;
        let app = &app;
        async move {
            let r = app
                .post("/api/errors")
                .json(&json!({"message": "held by a replica"}))
                .send()
                .await
                .ok()?;
            if r.status() != 201 {
                return None;
            }
            let v: Value = r.json().await.ok()?;
            Some(v["data"].clone())
        }
    })
    .await;
    let d = durability(&app).await;
    assert_eq!(d["redis"]["connected_replicas"], 1);
    assert!(d["survives_machine_loss"]
        .as_str()
        .unwrap()
        .starts_with("yes"));
    // Stored as usual by the workers.
    eprintln!("acknowledged by the replica after {attempts} attempt(s)");
    app.wait_count(e["id"].as_str().unwrap(), attempts).await;
    app.stop().await;
    drop(replica);
    drop(primary);
}
