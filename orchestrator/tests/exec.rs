//! Targets, health, the phased executor and dry runs against the real
//! PostgreSQL on 127.0.0.1:5432, each test in scratch databases of its own.

mod support;

use std::time::{Duration, Instant};

use sluice_orchestrator::dryrun::{dry_run, snapshot};
use sluice_orchestrator::executor::{
    self, ExecError, ExecStatus, Halt, PhaseStatus, Plan, Thresholds,
};
use sluice_orchestrator::health;
use sluice_orchestrator::script::{parse, Script};
use sluice_orchestrator::target::{Target, TargetError};
use sqlx::Connection;
use support::{Cluster, Recorder, ScratchDb};

fn script(sql: &str) -> Script {
    parse(sql).unwrap()
}

/// Thresholds for tests on a busy 2-core machine: the percent is the
/// default, the minimum delta is raised so scheduler hiccups never halt a
/// phase (a lock held for seconds still does).
fn thresholds() -> Thresholds {
    Thresholds {
        min_latency_delta_ms: 250.0,
        ..Thresholds::default()
    }
}

fn plan(cluster: &Cluster, sql: &str, rollback: Option<&str>) -> Plan {
    Plan {
        script: script(sql),
        rollback: rollback.map(script),
        phases: cluster.phases(),
        dry_run: false,
        thresholds: thresholds(),
        probe_tables: vec![],
        replicas: cluster.replica_targets(),
    }
}

fn statuses(o: &executor::Outcome) -> Vec<PhaseStatus> {
    o.phases.iter().map(|p| p.status).collect()
}

#[tokio::test]
async fn connection_strings_parse_and_errors_hide_the_password() {
    let kv = Target::parse("host=db.example.org;DATABASE=orders;User Id=app;Password=Sup3r$ecret")
        .unwrap();
    let url = Target::parse("postgresql://app:Sup3r%24ecret@db.example.org:5432/orders").unwrap();
    assert_eq!(kv, url, "both forms read the same");
    assert_eq!(kv.port(), 5432);
    assert_eq!(kv.database(), "orders");
    assert_eq!(kv.host(), "db.example.org");
    assert!(!format!("{kv:?}").contains("Sup3r"));

    let bad = [
        ("", TargetError::Empty),
        (
            "Host=h;Username=u;Password=Sup3r$ecret",
            TargetError::Missing("database"),
        ),
        (
            "Host=h;Port=99999;Database=d;Username=u;Password=Sup3r$ecret",
            TargetError::BadPort,
        ),
        (
            "Host=h;Database=d;Username=u;Password=\"Sup3r$ecret",
            TargetError::UnterminatedQuote,
        ),
        (
            "Host=h;Database=d;Username=u;Sup3r$ecret",
            TargetError::NotKeyValue,
        ),
        ("postgresql://u:Sup3r$ecret@h:port/d", TargetError::BadPort),
        (
            "postgresql://u:Sup3r%zz@h/d",
            TargetError::BadPercentEncoding("password"),
        ),
        ("postgres://u:Sup3r$ecret@/d", TargetError::Missing("host")),
    ];
    for (s, want) in bad {
        let e = Target::parse(s).unwrap_err();
        assert_eq!(e, want, "{s}");
        let text = e.to_string();
        assert!(!text.contains("Sup3r"), "{text}");
        assert!(!text.contains("Host=") && !text.contains("://"), "{text}");
    }

    // A connection that fails names the target, not the password.
    let closed =
        Target::parse("Host=127.0.0.1;Port=1;Database=d;Username=u;Password=Sup3r$ecret").unwrap();
    let e = closed.connect(Duration::from_secs(2)).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ExecError::Connect { .. }), "{text}");
    assert!(text.contains("127.0.0.1:1/d"), "{text}");
    assert!(!text.contains("Sup3r"), "{text}");
}

#[tokio::test]
async fn connect_sets_the_application_name() {
    let db = ScratchDb::new("_app").await;
    let mut conn = db.target().connect(Duration::from_secs(5)).await.unwrap();
    let name: String = sqlx::query_scalar("SELECT current_setting('application_name')")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(name, "sluice-orchestrator");
    conn.close().await.unwrap();
}

#[tokio::test]
async fn health_counts_connections_and_reports_unreachable_members() {
    let cluster = Cluster::new().await;
    let master = cluster.master.target();
    let replicas = cluster.replica_targets();
    let h = health::measure(&master, &replicas, Duration::from_secs(5)).await;
    assert!(h.is_healthy, "{h:?}");
    assert_eq!(h.replication_lag, None, "no replica is a standby");
    assert_eq!(h.members.len(), 4);
    assert_eq!(h.members[0].name, "master");
    assert!(h
        .members
        .iter()
        .all(|m| m.reachable && m.in_recovery == Some(false)));
    let before = h.active_connections.unwrap();

    let mut extra = Vec::new();
    for _ in 0..3 {
        extra.push(cluster.master.conn().await);
    }
    let h = health::measure(&master, &replicas, Duration::from_secs(5)).await;
    let after = h.active_connections.unwrap();
    assert!(after >= before + 3, "{before} → {after}");
    for c in extra {
        c.close().await.unwrap();
    }

    // A closed port, and an address nothing answers on: unhealthy, in time.
    let mut broken = replicas.clone();
    broken.push((
        "closed".into(),
        Target::parse("Host=127.0.0.1;Port=1;Database=x;Username=u;Password=pw").unwrap(),
    ));
    broken.push((
        "unroutable".into(),
        Target::parse("postgresql://u:pw@10.255.255.1:5432/x").unwrap(),
    ));
    let started = Instant::now();
    let h = health::measure(&master, &broken, Duration::from_millis(1500)).await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2500), "{took:?}");
    assert!(!h.is_healthy, "{h:?}");
    assert!(h.active_connections.is_some());
    let closed = h.members.iter().find(|m| m.name == "closed").unwrap();
    assert!(!closed.reachable && closed.error.is_some());
    assert!(!closed.error.as_deref().unwrap().contains("pw@"));
    let unroutable = h.members.iter().find(|m| m.name == "unroutable").unwrap();
    assert!(!unroutable.reachable);
    assert!(h.members.iter().filter(|m| m.reachable).count() == 4);
}

const APPLY: &str = "CREATE TABLE IF NOT EXISTS accounts (id int PRIMARY KEY, name text);
CREATE TABLE IF NOT EXISTS applied (db text, at timestamptz);
CREATE TABLE IF NOT EXISTS reverted (db text, at timestamptz);";

/// When each database recorded the script (or rollback) running.
async fn stamps(cluster: &Cluster, table: &str) -> Vec<Option<chrono::DateTime<chrono::Utc>>> {
    let mut out = Vec::new();
    for db in cluster.all() {
        let mut c = db.conn().await;
        let at: Option<chrono::DateTime<chrono::Utc>> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT max(at) FROM {table}")))
                .fetch_one(&mut c)
                .await
                .unwrap();
        c.close().await.unwrap();
        out.push(at);
    }
    out
}

#[tokio::test]
async fn phased_run_applies_in_order_then_manual_rollback_reverses() {
    let cluster = Cluster::new().await;
    cluster.exec_all(APPLY).await;
    let mut p = plan(
        &cluster,
        "SET lock_timeout = '5s';\nBEGIN;\nALTER TABLE accounts ADD COLUMN email text;\n\
         INSERT INTO applied VALUES (current_database(), clock_timestamp());\nCOMMIT;",
        Some(
            "ALTER TABLE accounts DROP COLUMN email;\n\
             INSERT INTO reverted VALUES (current_database(), clock_timestamp());",
        ),
    );
    p.probe_tables = vec!["accounts".into(), "\"applied\"".into()];
    let recorder = Recorder::default();
    let outcome = executor::run(&p, &recorder).await;
    assert_eq!(outcome.status, ExecStatus::Succeeded, "{outcome:?}");
    assert_eq!(statuses(&outcome), vec![PhaseStatus::Succeeded; 4]);
    assert!(outcome.halt.is_none() && outcome.rollback_errors.is_empty());
    for db in cluster.all() {
        assert!(db.has_column("accounts", "email").await, "{}", db.name);
    }
    // Applied in phase order, each phase finished before the next started.
    let at = stamps(&cluster, "applied").await;
    assert!(at.iter().all(Option::is_some), "{at:?}");
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{at:?}");
    for w in outcome.phases.windows(2) {
        assert!(w[0].completed_at.unwrap() <= w[1].started_at.unwrap());
    }
    assert!(outcome.phases.iter().all(|p| p.error.is_none()));
    let m = &outcome.metrics;
    let (avg, p99) = (
        m.avg_query_latency_ms.unwrap(),
        m.p99_query_latency_ms.unwrap(),
    );
    assert!(avg > 0.0 && p99 >= avg * 0.5, "{m:?}");
    assert_eq!(m.replication_lag_seconds, None, "stand-ins do not stream");

    // The observer saw every phase run, `current` naming it.
    let changes = recorder.changes.lock().unwrap().clone();
    assert_eq!(changes.len(), 8, "{changes:?}");
    assert_eq!(changes[0].1.as_deref(), Some("replica-1"));
    assert_eq!(changes[0].0[0].status, PhaseStatus::Running);
    assert_eq!(changes[0].0[1].status, PhaseStatus::Pending);
    assert_eq!(changes[1].1.as_deref(), Some("replica-2"));
    assert_eq!(changes[6].1.as_deref(), Some("master"));
    assert_eq!(changes[7].1, None);

    // Manual rollback: master first, then replica-3, -2, -1.
    let rb = p.rollback.clone().unwrap();
    let reports = executor::rollback(&rb, &p.phases).await.unwrap();
    let names: Vec<&str> = reports.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["master", "replica-3", "replica-2", "replica-1"]);
    assert!(reports.iter().all(|r| r.status == PhaseStatus::RolledBack));
    for db in cluster.all() {
        assert!(!db.has_column("accounts", "email").await, "{}", db.name);
    }
    let at = stamps(&cluster, "reverted").await;
    assert!(at.iter().all(Option::is_some), "{at:?}");
    assert!(at.windows(2).all(|w| w[0] > w[1]), "reverse order: {at:?}");

    // Rolling back again fails on master (the column is gone) and says so;
    // nothing else is tried.
    let e = executor::rollback(&rb, &p.phases).await.unwrap_err();
    match e {
        ExecError::Rollback {
            phase,
            message,
            rolled_back,
        } => {
            assert_eq!(phase, "master");
            assert!(message.contains("column \"email\""), "{message}");
            assert!(rolled_back.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

/// The script's own COMMIT must not end the phase's transaction: on the
/// failing phase, `marker` must not survive.
const FAILING: &str =
    "BEGIN;\nCREATE TABLE marker (x int);\nCOMMIT;\nALTER TABLE accounts ADD COLUMN email text;";

#[tokio::test]
async fn failing_phase_halts_and_rolls_back_applied_phases() {
    let cluster = Cluster::new().await;
    cluster.exec_all(APPLY).await;
    cluster.replicas[1]
        .exec("ALTER TABLE accounts ADD COLUMN email text")
        .await;
    let p = plan(
        &cluster,
        FAILING,
        Some("DROP TABLE marker;\nALTER TABLE accounts DROP COLUMN email;"),
    );
    let outcome = executor::run(&p, &()).await;
    assert_eq!(outcome.status, ExecStatus::RolledBack, "{outcome:?}");
    assert_eq!(
        statuses(&outcome),
        [
            PhaseStatus::RolledBack,
            PhaseStatus::Failed,
            PhaseStatus::Pending,
            PhaseStatus::Pending
        ]
    );
    let error = outcome.phases[1].error.clone().unwrap();
    assert!(
        error.contains("column \"email\" of relation \"accounts\" already exists")
            && error.contains("line 4"),
        "{error}"
    );
    assert!(matches!(&outcome.halt, Some(Halt::PhaseFailed { phase, .. }) if phase == "replica-2"));
    assert!(outcome.phases[2].started_at.is_none() && outcome.phases[3].started_at.is_none());
    assert!(
        outcome.rollback_errors.is_empty(),
        "{:?}",
        outcome.rollback_errors
    );
    let [r1, r2, r3] = &cluster.replicas[..] else {
        unreachable!()
    };
    // replica-1: applied, then rolled back by the rollback script.
    assert!(!r1.has_column("accounts", "email").await);
    assert!(!r1.has_relation("marker").await);
    // replica-2: its transaction rolled back (no marker), its own column kept.
    assert!(!r2.has_relation("marker").await);
    assert!(r2.has_column("accounts", "email").await);
    // replica-3 and master: untouched.
    for db in [r3, &cluster.master] {
        assert!(!db.has_relation("marker").await);
        assert!(!db.has_column("accounts", "email").await);
    }
}

#[tokio::test]
async fn failing_phase_without_rollback_script_keeps_applied_phases() {
    let cluster = Cluster::new().await;
    cluster.exec_all(APPLY).await;
    cluster.replicas[1]
        .exec("ALTER TABLE accounts ADD COLUMN email text")
        .await;
    let p = plan(&cluster, FAILING, None);
    let outcome = executor::run(&p, &()).await;
    assert_eq!(outcome.status, ExecStatus::Failed, "{outcome:?}");
    assert_eq!(
        statuses(&outcome),
        [
            PhaseStatus::Succeeded,
            PhaseStatus::Failed,
            PhaseStatus::Pending,
            PhaseStatus::Pending
        ]
    );
    assert!(cluster.replicas[0].has_column("accounts", "email").await);
    assert!(cluster.replicas[0].has_relation("marker").await);
    assert!(!cluster.replicas[1].has_relation("marker").await);
    assert!(!cluster.replicas[2].has_relation("marker").await);
    assert!(!cluster.master.has_relation("marker").await);
}

#[tokio::test]
async fn latency_threshold_cancels_the_phase_and_rolls_back() {
    let cluster = Cluster::new().await;
    cluster
        .exec_all("CREATE TABLE t (id int); INSERT INTO t VALUES (1);")
        .await;
    let r2 = &cluster.replicas[1].name;
    let mut p = plan(
        &cluster,
        &format!(
            "ALTER TABLE t ADD COLUMN c int;\n\
             SELECT pg_sleep(CASE WHEN current_database() = '{r2}' THEN 5 ELSE 0 END);"
        ),
        Some("ALTER TABLE t DROP COLUMN c;"),
    );
    p.probe_tables = vec!["t".into()];
    let started = Instant::now();
    let outcome = executor::run(&p, &()).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_eq!(outcome.status, ExecStatus::RolledBack, "{outcome:?}");
    assert_eq!(
        statuses(&outcome),
        [
            PhaseStatus::RolledBack,
            PhaseStatus::Failed,
            PhaseStatus::Pending,
            PhaseStatus::Pending
        ]
    );
    match &outcome.halt {
        Some(Halt::Latency {
            phase,
            increase_pct,
            limit_pct,
        }) => {
            assert_eq!(phase, "replica-2");
            assert!(increase_pct > limit_pct);
            assert_eq!(*limit_pct, 300.0);
        }
        other => panic!("{other:?}"),
    }
    let error = outcome.phases[1].error.clone().unwrap();
    assert!(
        error.contains("latency") && error.contains("300%"),
        "{error}"
    );
    for db in cluster.all() {
        assert!(!db.has_column("t", "c").await, "{}", db.name);
    }
    // The blocked probes are in the metrics.
    let p99 = outcome.metrics.p99_query_latency_ms.unwrap();
    assert!(p99 >= 100.0, "{:?}", outcome.metrics);
}

#[tokio::test]
async fn concurrently_script_runs_statement_by_statement() {
    let cluster = Cluster::new().await;
    cluster.exec_all(APPLY).await;
    let p = plan(
        &cluster,
        "SET lock_timeout = '2s';\nALTER TABLE accounts ADD COLUMN email text;\n\
         CREATE INDEX CONCURRENTLY idx_accounts_email ON accounts (email);",
        None,
    );
    let outcome = executor::run(&p, &()).await;
    assert_eq!(outcome.status, ExecStatus::Succeeded, "{outcome:?}");
    for db in cluster.all() {
        let mut c = db.conn().await;
        let valid: bool = sqlx::query_scalar(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'idx_accounts_email'::regclass",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        assert!(valid, "{}", db.name);
        c.close().await.unwrap();
    }
}

#[tokio::test]
async fn partly_applied_phase_gets_the_rollback_script() {
    let db = ScratchDb::new("_partial").await;
    db.exec(APPLY).await;
    let p = Plan {
        script: script(
            "ALTER TABLE accounts ADD COLUMN email text;\n\
             CREATE INDEX CONCURRENTLY idx_nope ON no_such_table (id);",
        ),
        rollback: Some(script("ALTER TABLE accounts DROP COLUMN IF EXISTS email;")),
        phases: vec![executor::Phase {
            name: "master".into(),
            target: db.target(),
        }],
        dry_run: false,
        thresholds: thresholds(),
        probe_tables: vec![],
        replicas: vec![],
    };
    let outcome = executor::run(&p, &()).await;
    assert_eq!(outcome.phases[0].status, PhaseStatus::Failed);
    let error = outcome.phases[0].error.clone().unwrap();
    assert!(
        error.contains("\"no_such_table\" does not exist") && error.contains("line 2"),
        "{error}"
    );
    assert!(
        !db.has_column("accounts", "email").await,
        "rollback ran on the partial phase"
    );
}

#[tokio::test]
async fn dry_run_changes_nothing_and_reports_what_it_touched() {
    let db = ScratchDb::new("_dry").await;
    db.exec(
        "CREATE TABLE accounts (id int PRIMARY KEY, name text);
         CREATE TABLE old_t (id int);
         CREATE INDEX idx_old ON old_t (id);",
    )
    .await;
    let mut c = db.conn().await;
    let before = snapshot(&mut c).await.unwrap();
    let s = script(
        "SET lock_timeout = '2s';\n\
         ALTER TABLE accounts ADD COLUMN email text NOT NULL DEFAULT '';\n\
         CREATE INDEX idx_accounts_name ON accounts (name);\n\
         CREATE TABLE new_t (id int);\n\
         DROP TABLE old_t;\n\
         CREATE INDEX CONCURRENTLY idx_accounts_email ON accounts (email);\n\
         ALTER TABLE accounts ALTER COLUMN name SET NOT NULL;",
    );
    let r = dry_run(&s, &db.target()).await.unwrap();
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(
        r.skipped,
        [
            "line 6: CREATE INDEX CONCURRENTLY idx_accounts_email ON accounts (email) (cannot run in a transaction)"
        ]
    );
    for want in [
        "accounts table (altered: column email added, column name NOT NULL set)",
        "idx_accounts_name (new index)",
        "new_t table (new)",
        "old_t table (dropped)",
        "idx_old (dropped index)",
    ] {
        assert!(
            r.touched.iter().any(|t| t == want),
            "{want} not in {:?}",
            r.touched
        );
    }
    assert_eq!(r.touched.len(), 5, "{:?}", r.touched);
    // Exactly as before.
    let after = snapshot(&mut c).await.unwrap();
    assert_eq!(before, after);
    assert!(db.has_relation("old_t").await && !db.has_relation("new_t").await);
    assert!(!db.has_column("accounts", "email").await);
    c.close().await.unwrap();

    // A failing statement: PostgreSQL's message, naming the object; what
    // ran before it is still reported, and still rolled back.
    let s = script(
        "CREATE TABLE made (id int);\nALTER TABLE accounts ADD COLUMN name text;\nCREATE TABLE later (id int);",
    );
    let r = dry_run(&s, &db.target()).await.unwrap();
    assert_eq!(
        r.errors,
        ["column \"name\" of relation \"accounts\" already exists (line 2)"]
    );
    assert_eq!(r.touched, ["made table (new)"]);
    assert!(!db.has_relation("made").await && !db.has_relation("later").await);
}

#[tokio::test]
async fn dry_run_execution_changes_nothing_and_never_rolls_back() {
    let cluster = Cluster::new().await;
    cluster.exec_all(APPLY).await;
    let mut p = plan(
        &cluster,
        "BEGIN;\nALTER TABLE accounts ADD COLUMN email text;\nCOMMIT;\n\
         CREATE INDEX CONCURRENTLY idx_e ON accounts (email);",
        Some("ALTER TABLE accounts DROP COLUMN email;"),
    );
    p.dry_run = true;
    let outcome = executor::run(&p, &()).await;
    assert_eq!(outcome.status, ExecStatus::Succeeded, "{outcome:?}");
    assert_eq!(statuses(&outcome), vec![PhaseStatus::Succeeded; 4]);
    for db in cluster.all() {
        assert!(!db.has_column("accounts", "email").await, "{}", db.name);
        assert!(!db.has_relation("idx_e").await, "{}", db.name);
    }

    // Failing on replica-2: Failed, later phases Pending, no rollback script
    // run (replica-2's own column would be dropped by it).
    cluster.replicas[1]
        .exec("ALTER TABLE accounts ADD COLUMN email text")
        .await;
    let outcome = executor::run(&p, &()).await;
    assert_eq!(outcome.status, ExecStatus::Failed, "{outcome:?}");
    assert_eq!(
        statuses(&outcome),
        [
            PhaseStatus::Succeeded,
            PhaseStatus::Failed,
            PhaseStatus::Pending,
            PhaseStatus::Pending
        ]
    );
    assert!(cluster.replicas[1].has_column("accounts", "email").await);
    assert!(!cluster.replicas[0].has_column("accounts", "email").await);
}

#[tokio::test]
async fn dry_run_gives_up_on_a_lock_it_cannot_get() {
    let db = ScratchDb::new("_lockwait").await;
    db.exec("CREATE TABLE accounts (id int)").await;
    let mut holder = db.conn().await;
    sqlx::raw_sql("BEGIN; LOCK TABLE accounts IN ACCESS SHARE MODE")
        .execute(&mut holder)
        .await
        .unwrap();
    let started = Instant::now();
    let r = dry_run(
        &script("ALTER TABLE accounts ADD COLUMN x int;"),
        &db.target(),
    )
    .await
    .unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert_eq!(r.errors.len(), 1, "{r:?}");
    assert!(r.errors[0].contains("lock timeout"), "{r:?}");
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    holder.close().await.unwrap();
}

#[tokio::test]
async fn standby_lag_is_none_on_a_primary() {
    let db = ScratchDb::new("_lag").await;
    let mut c = db.target().connect(Duration::from_secs(5)).await.unwrap();
    assert_eq!(health::standby_lag(&mut c).await.unwrap(), None);
    c.close().await.unwrap();
}

#[tokio::test]
async fn unreachable_phase_fails_and_later_phases_stay_pending() {
    let cluster = Cluster::new().await;
    cluster.exec_all(APPLY).await;
    let mut p = plan(
        &cluster,
        "ALTER TABLE accounts ADD COLUMN email text;",
        Some("ALTER TABLE accounts DROP COLUMN email;"),
    );
    p.phases[1].target =
        Target::parse("Host=127.0.0.1;Port=1;Database=x;Username=u;Password=Sup3r$ecret").unwrap();
    let outcome = executor::run(&p, &()).await;
    assert_eq!(outcome.status, ExecStatus::RolledBack, "{outcome:?}");
    assert_eq!(
        statuses(&outcome),
        [
            PhaseStatus::RolledBack,
            PhaseStatus::Failed,
            PhaseStatus::Pending,
            PhaseStatus::Pending
        ]
    );
    let error = outcome.phases[1].error.clone().unwrap();
    assert!(
        error.contains("cannot connect") && !error.contains("Sup3r"),
        "{error}"
    );
    for db in cluster.all() {
        assert!(!db.has_column("accounts", "email").await, "{}", db.name);
    }
}

#[tokio::test]
async fn failed_concurrent_index_is_cleaned_up_by_the_rollback_script() {
    let db = ScratchDb::new("_cic").await;
    db.exec(APPLY).await;
    db.exec("INSERT INTO accounts VALUES (1, 'same'), (2, 'same')")
        .await;
    let mut p = Plan {
        script: script("CREATE UNIQUE INDEX CONCURRENTLY idx_u ON accounts (name);"),
        rollback: None,
        phases: vec![executor::Phase {
            name: "master".into(),
            target: db.target(),
        }],
        dry_run: false,
        thresholds: thresholds(),
        probe_tables: vec![],
        replicas: vec![],
    };
    let outcome = executor::run(&p, &()).await;
    assert_eq!(outcome.status, ExecStatus::Failed);
    let error = outcome.phases[0].error.clone().unwrap();
    assert!(
        error.contains("could not create unique index \"idx_u\""),
        "{error}"
    );
    assert!(
        db.has_relation("idx_u").await,
        "PostgreSQL leaves an invalid index"
    );
    db.exec("DROP INDEX idx_u").await;

    p.rollback = Some(script("DROP INDEX CONCURRENTLY IF EXISTS idx_u;"));
    let outcome = executor::run(&p, &()).await;
    assert_eq!(outcome.phases[0].status, PhaseStatus::Failed);
    assert!(outcome.rollback_errors.is_empty(), "{outcome:?}");
    assert!(
        !db.has_relation("idx_u").await,
        "the rollback script removed it"
    );
}

#[tokio::test]
async fn probe_counts_a_query_blocked_behind_a_lock() {
    use sluice_orchestrator::probe::Probe;
    let db = ScratchDb::new("_probe").await;
    db.exec("CREATE TABLE t (id int); INSERT INTO t VALUES (1);")
        .await;
    let probe = Probe::start(&db.target(), &["t".to_string()], Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(probe.baseline_samples().len(), 5);
    let baseline = probe.baseline_ms();
    assert!(baseline > 0.0 && baseline < 100.0, "{baseline}");
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(probe.samples().len() >= 2, "{:?}", probe.samples());

    let mut locker = db.conn().await;
    sqlx::raw_sql("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .unwrap();
    let before = probe.samples().len();
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Blocked: no new sample completes, but the one in flight counts.
    assert!(probe.samples().len() <= before + 1);
    let now = probe.current_latency_ms().unwrap();
    assert!(now >= 500.0, "{now}");
    assert!(probe.current_increase_pct().unwrap() > 300.0);
    assert!(probe.current_increase_ms().unwrap() >= 500.0 - baseline);
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut locker)
        .await
        .unwrap();
    locker.close().await.unwrap();
    let samples = probe.stop().await;
    assert!(
        samples.iter().any(|&s| s >= 500.0),
        "the blocked query is a sample: {samples:?}"
    );
}
