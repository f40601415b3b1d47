//! Scratch databases on the local PostgreSQL (127.0.0.1:5432, trust auth),
//! each named `orch_t_<uuid>…` and dropped (WITH (FORCE)) when its guard
//! is dropped, also when a test fails.

#![allow(dead_code)]

use std::sync::Mutex;

use sluice_orchestrator::executor::{Metrics, Observer, Phase, PhaseReport};
use sluice_orchestrator::target::Target;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection, Executor};

pub const ADMIN_URL: &str = "postgresql://postgres@127.0.0.1:5432/postgres";

/// One scratch database.
pub struct ScratchDb {
    pub name: String,
}

impl ScratchDb {
    pub async fn new(suffix: &str) -> ScratchDb {
        let name = format!("orch_t_{}{suffix}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(ADMIN_URL).await.unwrap();
        admin
            .execute(sqlx::raw_sql(AssertSqlSafe(format!(
                "CREATE DATABASE \"{name}\""
            ))))
            .await
            .unwrap();
        admin.close().await.unwrap();
        ScratchDb { name }
    }

    /// The URL form.
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:5432/{}", self.name)
    }

    /// The contract's form.
    pub fn kv(&self) -> String {
        format!(
            "Host=127.0.0.1;Port=5432;Database={};Username=postgres;Password=unused",
            self.name
        )
    }

    pub fn target(&self) -> Target {
        Target::parse(&self.kv()).unwrap()
    }

    pub async fn conn(&self) -> PgConnection {
        PgConnection::connect(&self.url()).await.unwrap()
    }

    /// Runs `sql` (several statements allowed).
    pub async fn exec(&self, sql: &str) {
        let mut c = self.conn().await;
        c.execute(sqlx::raw_sql(AssertSqlSafe(sql.to_string())))
            .await
            .unwrap();
        c.close().await.unwrap();
    }

    /// Whether `table` has `column`.
    pub async fn has_column(&self, table: &str, column: &str) -> bool {
        let mut c = self.conn().await;
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.columns
              WHERE table_schema = 'public' AND table_name = $1 AND column_name = $2",
        )
        .bind(table)
        .bind(column)
        .fetch_one(&mut c)
        .await
        .unwrap();
        c.close().await.unwrap();
        n == 1
    }

    /// Whether relation `name` exists in `public`.
    pub async fn has_relation(&self, name: &str) -> bool {
        let mut c = self.conn().await;
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'public' AND c.relname = $1",
        )
        .bind(name)
        .fetch_one(&mut c)
        .await
        .unwrap();
        c.close().await.unwrap();
        n == 1
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
            .arg(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .output();
    }
}

/// A master and three replica stand-ins (plain databases, not standbys).
pub struct Cluster {
    pub master: ScratchDb,
    pub replicas: Vec<ScratchDb>,
}

impl Cluster {
    pub async fn new() -> Cluster {
        let (master, r1, r2, r3) = tokio::join!(
            ScratchDb::new("_m"),
            ScratchDb::new("_r1"),
            ScratchDb::new("_r2"),
            ScratchDb::new("_r3")
        );
        Cluster {
            master,
            replicas: vec![r1, r2, r3],
        }
    }

    /// Every database, in the default phase order (replicas, then master).
    pub fn all(&self) -> Vec<&ScratchDb> {
        let mut v: Vec<&ScratchDb> = self.replicas.iter().collect();
        v.push(&self.master);
        v
    }

    /// Runs `sql` on every database.
    pub async fn exec_all(&self, sql: &str) {
        for db in self.all() {
            db.exec(sql).await;
        }
    }

    /// `replica-1`, `replica-2`, `replica-3`, `master`.
    pub fn phases(&self) -> Vec<Phase> {
        let mut v: Vec<Phase> = self
            .replicas
            .iter()
            .enumerate()
            .map(|(i, db)| Phase {
                name: format!("replica-{}", i + 1),
                target: db.target(),
            })
            .collect();
        v.push(Phase {
            name: "master".into(),
            target: self.master.target(),
        });
        v
    }

    pub fn replica_targets(&self) -> Vec<(String, Target)> {
        self.replicas
            .iter()
            .enumerate()
            .map(|(i, db)| (format!("replica-{}", i + 1), db.target()))
            .collect()
    }
}

/// One report to the observer: the phases, `current`, the metrics.
pub type Change = (Vec<PhaseReport>, Option<String>, Metrics);

/// Records every change the executor reports.
#[derive(Default)]
pub struct Recorder {
    pub changes: Mutex<Vec<Change>>,
}

impl Observer for Recorder {
    async fn changed(&self, phases: &[PhaseReport], current: Option<&str>, metrics: &Metrics) {
        self.changes.lock().unwrap().push((
            phases.to_vec(),
            current.map(str::to_string),
            metrics.clone(),
        ));
    }
}
