//! Replication lag against a REAL streaming standby: the test starts its own
//! throw-away primary and standby (initdb + pg_basebackup, PostgreSQL's
//! binaries under /usr/lib/postgresql/<version>/bin, run as the `postgres`
//! OS user when the test runs as root) on free ports, and stops and deletes
//! them afterwards. It needs those binaries (scripts/services.sh installs
//! PostgreSQL) and takes several seconds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sluice_orchestrator::executor::{self, ExecStatus, Halt, Phase, PhaseStatus, Plan, Thresholds};
use sluice_orchestrator::health;
use sluice_orchestrator::script::parse;
use sluice_orchestrator::target::Target;
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Executor};

fn bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL binaries under /usr/lib/postgresql")
        .map(|e| e.unwrap().path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect("an initdb")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL binary (as `postgres` when we are root).
fn pg(bin: &str, args: &[&str]) {
    let path = bin_dir().join(bin);
    let out = if is_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&path)
            .args(args)
            .output()
    } else {
        Command::new(&path).args(args).output()
    }
    .unwrap();
    assert!(
        out.status.success(),
        "{bin} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A primary and its streaming standby, stopped and deleted on drop.
struct Pair {
    dir: PathBuf,
    primary_port: u16,
    standby_port: u16,
}

impl Pair {
    fn start() -> Pair {
        let dir = std::env::temp_dir().join(format!("orch_repl_{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres", dir.to_str().unwrap()])
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let pair = Pair {
            primary_port: free_port(),
            standby_port: free_port(),
            dir,
        };
        let d = pair.dir.to_str().unwrap().to_string();
        let primary = format!("{d}/primary");
        let standby = format!("{d}/standby");
        pg(
            "initdb",
            &["-D", &primary, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        let opts =
            |port: u16| format!("-p {port} -k {d} -c listen_addresses=127.0.0.1 -c fsync=off");
        pg(
            "pg_ctl",
            &[
                "-D",
                &primary,
                "-l",
                &format!("{d}/primary.log"),
                "-o",
                &opts(pair.primary_port),
                "-w",
                "start",
            ],
        );
        pg(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &pair.primary_port.to_string(),
                "-U",
                "postgres",
                "-D",
                &standby,
                "-R",
                "-X",
                "stream",
            ],
        );
        pg(
            "pg_ctl",
            &[
                "-D",
                &standby,
                "-l",
                &format!("{d}/standby.log"),
                "-o",
                &opts(pair.standby_port),
                "-w",
                "start",
            ],
        );
        pair
    }

    fn target(&self, port: u16) -> Target {
        Target::parse(&format!("postgresql://postgres@127.0.0.1:{port}/postgres")).unwrap()
    }

    async fn conn(&self, port: u16) -> PgConnection {
        self.target(port)
            .connect(Duration::from_secs(5))
            .await
            .unwrap()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for which in ["standby", "primary"] {
            let data = self.dir.join(which);
            let path = bin_dir().join("pg_ctl");
            let mut cmd = if is_root() {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(path);
                c
            } else {
                Command::new(path)
            };
            let _ = cmd
                .args(["-D", data.to_str().unwrap_or(""), "-m", "immediate", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(Path::new(&self.dir));
    }
}

#[tokio::test]
async fn replication_lag_is_read_from_a_streaming_standby() {
    let pair = Pair::start();
    let primary = pair.target(pair.primary_port);
    let replicas = vec![("replica-1".to_string(), pair.target(pair.standby_port))];

    // Caught up: a standby in recovery, lag measured (0 when all is replayed).
    let mut p = pair.conn(pair.primary_port).await;
    p.execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let mut s = pair.conn(pair.standby_port).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_class WHERE relname = 't'")
            .fetch_one(&mut s)
            .await
            .unwrap();
        if n == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the standby never caught up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let h = health::measure(&primary, &replicas, Duration::from_secs(5)).await;
    assert!(h.is_healthy, "{h:?}");
    assert_eq!(h.members[1].in_recovery, Some(true));
    let lag = h.replication_lag.expect("a lag for a streaming standby");
    assert!((0.0..5.0).contains(&lag), "{lag}");

    // Replay paused while the primary keeps writing: the lag grows.
    s.execute("SELECT pg_wal_replay_pause()").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    p.execute("INSERT INTO t VALUES (2)").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let h = health::measure(&primary, &replicas, Duration::from_secs(5)).await;
    let lag = h.replication_lag.unwrap();
    assert!(lag >= 1.0, "{lag}");

    // The executor halts a phase on it.
    let plan = Plan {
        script: parse("CREATE TABLE during (id int);\nSELECT pg_sleep(5);").unwrap(),
        rollback: None,
        phases: vec![Phase {
            name: "master".into(),
            target: primary.clone(),
        }],
        dry_run: false,
        thresholds: Thresholds {
            max_replication_lag_secs: 1.0,
            min_latency_delta_ms: 10_000.0,
            ..Thresholds::default()
        },
        probe_tables: vec![],
        replicas: replicas.clone(),
    };
    let started = Instant::now();
    let outcome = executor::run(&plan, &()).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(outcome.status, ExecStatus::Failed, "{outcome:?}");
    assert_eq!(outcome.phases[0].status, PhaseStatus::Failed);
    match &outcome.halt {
        Some(Halt::ReplicationLag {
            phase,
            lag_secs,
            limit_secs,
        }) => {
            assert_eq!(phase, "master");
            assert!(lag_secs > limit_secs);
        }
        other => panic!("{other:?}"),
    }
    assert!(outcome.metrics.replication_lag_seconds.unwrap() >= 1.0);
    let error = outcome.phases[0].error.clone().unwrap();
    assert!(error.contains("replication lag"), "{error}");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_class WHERE relname = 'during'")
        .fetch_one(&mut p)
        .await
        .unwrap();
    assert_eq!(n, 0, "the cancelled phase left nothing");

    s.execute("SELECT pg_wal_replay_resume()").await.unwrap();
    s.close().await.unwrap();
    p.close().await.unwrap();
}
