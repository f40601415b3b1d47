//! The phased executor (conventions §9 and §10).
//!
//! [`run`] applies a [`Plan`]'s script to its phases one at a time, in the
//! order given:
//!
//! - When [`Script::fits_one_transaction`], a phase runs the whole script
//!   in ONE transaction of Sluice's own; the script's `BEGIN`/`COMMIT`
//!   (and kin) are skipped, so nothing in the script can end that
//!   transaction early. A failing phase leaves nothing behind.
//! - Otherwise (`CREATE INDEX CONCURRENTLY`, `VACUUM`, …) the statements
//!   run one by one in autocommit, the script's own `BEGIN`/`COMMIT`
//!   as written. A phase that fails in this mode may be partly applied: when
//!   the plan has a rollback script, it is also run on that phase, best
//!   effort (its errors go to [`Outcome::rollback_errors`]; the phase stays
//!   `Failed`).
//!
//! While a phase runs, a [`Probe`] samples query latency on its database
//! and, every [`LAG_EVERY`], the replicas' replay lag is read. When a
//! threshold is crossed the phase's backend is cancelled
//! (`pg_cancel_backend`, from a second connection of Sluice's own: a role
//! may cancel its own backends, no superuser needed) and the phase fails
//! with a message naming the threshold.
//!
//! When a phase fails, no later phase starts (they stay `Pending`), the
//! failed phase is `Failed` with PostgreSQL's message, and, if the plan has
//! a rollback script, it is run on every phase already applied, newest
//! first, each in its own transaction: those phases become `RolledBack`
//! and the outcome `RolledBack` (or `Failed` if any rollback failed: its
//! phase stays `Succeeded` and the error is in `rollback_errors`). Without
//! a rollback script the applied phases stay `Succeeded` and the outcome
//! is `Failed`.
//!
//! A dry run runs each phase's script in a transaction that is always
//! rolled back, skipping the statements that cannot run in one; it ends
//! `Succeeded` or `Failed` and never runs a rollback script.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection, Executor};
use tracing::Instrument;

use crate::health::standby_lag;
use crate::probe::{self, Probe};
use crate::script::Script;
use crate::target::Target;

/// How long Sluice waits for a connection to a phase's database.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long Sluice waits for a connection to a replica it reads lag from.
pub const REPLICA_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the thresholds are checked while a phase runs.
pub const CHECK_EVERY: Duration = Duration::from_millis(50);
/// How often a halted phase's statement is cancelled again until the
/// phase stops.
pub const CANCEL_AGAIN: Duration = Duration::from_millis(200);
/// How long one replica's lag reading may take.
pub const LAG_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the replicas' lag is read while a phase runs.
pub const LAG_EVERY: Duration = Duration::from_millis(500);

/// What can go wrong outside a phase's own statements.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExecError {
    /// No connection (refused, timed out, authentication failed, …). The
    /// target is `host:port/database`; no password ever appears.
    #[error("cannot connect to {target}: {message}")]
    Connect { target: String, message: String },
    /// PostgreSQL's message (or the driver's, when PostgreSQL sent none).
    #[error("{0}")]
    Database(String),
    /// A manual rollback failed on `phase`; the phases in `rolled_back`
    /// (in the order they were rolled back) had been rolled back before,
    /// the others were not tried.
    #[error("rollback of phase {phase} failed: {message}")]
    Rollback {
        phase: String,
        message: String,
        rolled_back: Vec<String>,
    },
}

impl From<sqlx::Error> for ExecError {
    fn from(e: sqlx::Error) -> Self {
        ExecError::Database(pg_message(&e))
    }
}

/// PostgreSQL's own message for a database error, else the driver's text.
pub fn pg_message(e: &sqlx::Error) -> String {
    match e.as_database_error() {
        Some(d) => d.message().to_string(),
        None => e.to_string(),
    }
}

/// One phase: a name (`master` or a replica id) and its database.
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: String,
    pub target: Target,
}

/// When a running phase is halted.
///
/// A latency increase counts only when it is both above
/// `max_latency_increase_pct` percent of the probe's baseline AND at least
/// `min_latency_delta_ms` milliseconds above it: on a 0.3 ms baseline a
/// shared machine's jitter is easily +300 %, and must not halt anything.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Default 300 %.
    pub max_latency_increase_pct: f64,
    /// Default 30 s; applies to replicas that really stream.
    pub max_replication_lag_secs: f64,
    /// Default 50 ms.
    pub min_latency_delta_ms: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_latency_increase_pct: 300.0,
            max_replication_lag_secs: 30.0,
            min_latency_delta_ms: 50.0,
        }
    }
}

/// Everything an execution needs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub script: Script,
    pub rollback: Option<Script>,
    pub phases: Vec<Phase>,
    pub dry_run: bool,
    pub thresholds: Thresholds,
    /// Tables the probe reads, already quoted (what the script touches);
    /// empty → the probe times `SELECT 1`.
    pub probe_tables: Vec<String>,
    /// `(replica id, target)`, for replication lag readings.
    pub replicas: Vec<(String, Target)>,
}

/// A phase's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    RolledBack,
}

impl PhaseStatus {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseStatus::Pending => "Pending",
            PhaseStatus::Running => "Running",
            PhaseStatus::Succeeded => "Succeeded",
            PhaseStatus::Failed => "Failed",
            PhaseStatus::RolledBack => "RolledBack",
        }
    }
}

/// A phase as reported.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseReport {
    pub name: String,
    pub status: PhaseStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// PostgreSQL's message when the phase failed.
    pub error: Option<String>,
}

/// Measurements of an execution.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// Over every probe sample of the execution (baselines included), once
    /// a phase has run.
    pub avg_query_latency_ms: Option<f64>,
    pub p99_query_latency_ms: Option<f64>,
    /// The latest reading over replicas that really stream; `None` when
    /// none does.
    pub replication_lag_seconds: Option<f64>,
}

/// An execution's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecStatus {
    Running,
    Succeeded,
    Failed,
    RolledBack,
}

impl ExecStatus {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecStatus::Running => "Running",
            ExecStatus::Succeeded => "Succeeded",
            ExecStatus::Failed => "Failed",
            ExecStatus::RolledBack => "RolledBack",
        }
    }
}

/// Why an execution stopped early.
#[derive(Debug, Clone, PartialEq)]
pub enum Halt {
    /// The phase's statements failed (or no connection could be made).
    PhaseFailed { phase: String, error: String },
    /// Query latency rose past the threshold; the phase was cancelled.
    Latency {
        phase: String,
        increase_pct: f64,
        limit_pct: f64,
    },
    /// A streaming replica fell too far behind; the phase was cancelled.
    ReplicationLag {
        phase: String,
        lag_secs: f64,
        limit_secs: f64,
    },
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: ExecStatus,
    pub phases: Vec<PhaseReport>,
    pub metrics: Metrics,
    pub halt: Option<Halt>,
    /// `"<phase>: <message>"` for each rollback that failed.
    pub rollback_errors: Vec<String>,
}

/// Told about every state change of an execution, to persist and publish
/// it. `current` is the phase running or next to run.
pub trait Observer: Send + Sync {
    fn changed(
        &self,
        phases: &[PhaseReport],
        current: Option<&str>,
        metrics: &Metrics,
    ) -> impl Future<Output = ()> + Send;
}

/// Observes nothing.
impl Observer for () {
    async fn changed(&self, _: &[PhaseReport], _: Option<&str>, _: &Metrics) {}
}

/// How a script is applied to one database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One transaction of Sluice's; the script's transaction control skipped.
    OneTransaction,
    /// Autocommit, every statement as written.
    StatementByStatement,
    /// One transaction, always rolled back; statements that cannot run in
    /// a transaction, and transaction control, skipped.
    DryRun,
}

impl Mode {
    fn for_script(script: &Script) -> Mode {
        if script.fits_one_transaction() {
            Mode::OneTransaction
        } else {
            Mode::StatementByStatement
        }
    }
}

/// A script that failed on one database.
struct Failure {
    message: String,
    /// Statement by statement: something may be left behind (statements
    /// before the failing one, or an invalid index of a failed
    /// `CREATE INDEX CONCURRENTLY`).
    partial: bool,
}

/// Applies `script` on `conn` in `mode`, stopping before the next
/// statement once `halted` is set.
async fn apply(
    conn: &mut PgConnection,
    script: &Script,
    mode: Mode,
    halted: &AtomicBool,
) -> Result<(), Failure> {
    let in_txn = mode != Mode::StatementByStatement;
    if in_txn {
        simple(conn, "BEGIN").await.map_err(|message| Failure {
            message,
            partial: false,
        })?;
    }
    let mut applied = 0usize;
    for st in &script.statements {
        if in_txn && (st.is_transaction_control() || !st.runs_in_transaction()) {
            continue;
        }
        if halted.load(Ordering::SeqCst) {
            return Err(fail(conn, in_txn, "halted".into(), applied > 0).await);
        }
        if let Err(e) = conn
            .execute(sqlx::raw_sql(AssertSqlSafe(st.sql.as_str())))
            .await
        {
            let message = format!("{} (line {})", pg_message(&e), st.line);
            // A failed `CREATE INDEX CONCURRENTLY` leaves an invalid index.
            let left_something = applied > 0 || !st.runs_in_transaction();
            return Err(fail(conn, in_txn, message, left_something).await);
        }
        applied += 1;
    }
    if !in_txn {
        return Ok(());
    }
    if mode == Mode::DryRun || halted.load(Ordering::SeqCst) {
        let _ = simple(conn, "ROLLBACK").await;
        if mode == Mode::DryRun && !halted.load(Ordering::SeqCst) {
            return Ok(());
        }
        return Err(Failure {
            message: "halted".into(),
            partial: false,
        });
    }
    simple(conn, "COMMIT").await.map_err(|message| Failure {
        message,
        partial: false,
    })
}

/// Cleans up after a failing statement.
async fn fail(
    conn: &mut PgConnection,
    in_txn: bool,
    message: String,
    any_applied: bool,
) -> Failure {
    // In a transaction: undo it. Statement by statement: end a transaction
    // the script itself may have opened (a warning if there is none).
    let _ = simple(conn, "ROLLBACK").await;
    Failure {
        message,
        partial: !in_txn && any_applied,
    }
}

async fn simple(conn: &mut PgConnection, sql: &'static str) -> Result<(), String> {
    conn.execute(sqlx::raw_sql(sql))
        .await
        .map(|_| ())
        .map_err(|e| pg_message(&e))
}

/// Connects to `target` and applies `script` in its own mode.
async fn apply_on(target: &Target, script: &Script) -> Result<(), Failure> {
    let mut conn = target.connect(CONNECT_TIMEOUT).await.map_err(|e| Failure {
        message: e.to_string(),
        partial: false,
    })?;
    let result = apply(
        &mut conn,
        script,
        Mode::for_script(script),
        &AtomicBool::new(false),
    )
    .await;
    let _ = conn.close().await;
    result
}

/// Everything accumulated over an execution.
struct Run<'a, O: Observer> {
    plan: &'a Plan,
    observer: &'a O,
    reports: Vec<PhaseReport>,
    samples: Vec<f64>,
    lag: Option<f64>,
    replicas: Vec<(String, PgConnection)>,
}

impl<O: Observer> Run<'_, O> {
    fn metrics(&self) -> Metrics {
        Metrics {
            avg_query_latency_ms: probe::average(&self.samples),
            p99_query_latency_ms: probe::percentile(&self.samples, 99.0),
            replication_lag_seconds: self.lag,
        }
    }

    async fn publish(&self, current: Option<&str>) {
        let metrics = self.metrics();
        self.observer
            .changed(&self.reports, current, &metrics)
            .await;
    }

    /// Reads the lag of every streaming replica; the largest, if any.
    async fn read_lag(&mut self) -> Option<f64> {
        let mut largest: Option<f64> = None;
        for (id, conn) in &mut self.replicas {
            match tokio::time::timeout(LAG_READ_TIMEOUT, standby_lag(conn)).await {
                Ok(Ok(Some(l))) => largest = Some(largest.map_or(l, |m| m.max(l))),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::warn!(replica = %id, error = %e, "replica lag unreadable"),
                Err(_) => tracing::warn!(replica = %id, "replica lag reading timed out"),
            }
        }
        if largest.is_some() {
            self.lag = largest;
        }
        largest
    }
}

/// Runs `plan`; see the module doc. Never panics on database trouble: a
/// phase that cannot connect fails like any other.
pub async fn run(plan: &Plan, observer: &impl Observer) -> Outcome {
    let mut run = Run {
        plan,
        observer,
        reports: plan
            .phases
            .iter()
            .map(|p| PhaseReport {
                name: p.name.clone(),
                status: PhaseStatus::Pending,
                started_at: None,
                completed_at: None,
                error: None,
            })
            .collect(),
        samples: Vec::new(),
        lag: None,
        replicas: connect_standbys(&plan.replicas).await,
    };
    run.read_lag().await;
    let mode = if plan.dry_run {
        Mode::DryRun
    } else {
        Mode::for_script(&plan.script)
    };
    let mut halt = None;
    let mut rollback_errors = Vec::new();
    let mut failed_at = None;
    for (i, phase) in plan.phases.iter().enumerate() {
        run.reports[i].status = PhaseStatus::Running;
        run.reports[i].started_at = Some(Utc::now());
        run.publish(Some(&phase.name)).await;
        let span = tracing::info_span!(
            "phase",
            name = %phase.name,
            target = %phase.target.display_name(),
            dry_run = plan.dry_run
        );
        let result = run_phase(&mut run, phase, mode).instrument(span).await;
        run.reports[i].completed_at = Some(Utc::now());
        match result {
            Ok(()) => {
                run.reports[i].status = PhaseStatus::Succeeded;
                let next = plan.phases.get(i + 1).map(|p| p.name.as_str());
                run.publish(next).await;
            }
            Err((failure, h)) => {
                tracing::warn!(phase = %phase.name, error = %failure.message, "phase failed");
                run.reports[i].status = PhaseStatus::Failed;
                run.reports[i].error = Some(failure.message.clone());
                run.publish(None).await;
                if failure.partial && !plan.dry_run {
                    if let Some(rb) = &plan.rollback {
                        // Partly applied statement by statement: best effort.
                        if let Err(e) = apply_on(&phase.target, rb).await {
                            rollback_errors.push(format!("{}: {}", phase.name, e.message));
                        }
                    }
                }
                halt = Some(h);
                failed_at = Some(i);
                break;
            }
        }
    }
    let status = match failed_at {
        None => ExecStatus::Succeeded,
        Some(_) if plan.dry_run => ExecStatus::Failed,
        Some(i) => match &plan.rollback {
            None => ExecStatus::Failed,
            Some(rb) => {
                for j in (0..i).rev() {
                    let phase = &plan.phases[j];
                    let span = tracing::info_span!("rollback", phase = %phase.name);
                    match apply_on(&phase.target, rb).instrument(span).await {
                        Ok(()) => {
                            run.reports[j].status = PhaseStatus::RolledBack;
                            run.publish(None).await;
                        }
                        Err(e) => {
                            tracing::warn!(phase = %phase.name, error = %e.message, "rollback failed");
                            rollback_errors.push(format!("{}: {}", phase.name, e.message));
                        }
                    }
                }
                if rollback_errors.is_empty() {
                    ExecStatus::RolledBack
                } else {
                    ExecStatus::Failed
                }
            }
        },
    };
    for (_, conn) in run.replicas.drain(..) {
        let _ = conn.close().await;
    }
    Outcome {
        status,
        metrics: run.metrics(),
        phases: run.reports,
        halt,
        rollback_errors,
    }
}

/// Opens a connection to each replica that is a standby (in recovery).
async fn connect_standbys(replicas: &[(String, Target)]) -> Vec<(String, PgConnection)> {
    let conns = futures::future::join_all(replicas.iter().map(|(id, t)| async move {
        let mut conn = match t.connect(REPLICA_CONNECT_TIMEOUT).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(replica = %id, error = %e, "replica unreachable for lag readings");
                return None;
            }
        };
        let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(&mut conn)
            .await
            .unwrap_or(false);
        if standby {
            Some((id.clone(), conn))
        } else {
            let _ = conn.close().await;
            None
        }
    }))
    .await;
    conns.into_iter().flatten().collect()
}

/// Runs one phase under the probe and the lag watch.
async fn run_phase<O: Observer>(
    run: &mut Run<'_, O>,
    phase: &Phase,
    mode: Mode,
) -> Result<(), (Failure, Halt)> {
    let phase_failed = |message: String| {
        (
            Failure {
                message: message.clone(),
                partial: false,
            },
            Halt::PhaseFailed {
                phase: phase.name.clone(),
                error: message,
            },
        )
    };
    let mut conn = phase
        .target
        .connect(CONNECT_TIMEOUT)
        .await
        .map_err(|e| phase_failed(e.to_string()))?;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| phase_failed(pg_message(&e)))?;
    let probe = match Probe::start(&phase.target, &run.plan.probe_tables, CONNECT_TIMEOUT).await {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(error = %e, "no latency probe for this phase");
            None
        }
    };
    let mut control = match phase.target.connect(CONNECT_TIMEOUT).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "no control connection: thresholds cannot cancel this phase");
            None
        }
    };
    if let Some(p) = &probe {
        run.samples.extend_from_slice(p.baseline_samples());
    }
    let halted = AtomicBool::new(false);
    let plan = run.plan;
    let thresholds = plan.thresholds;
    let script = &plan.script;
    let mut halt_reason = None;
    let result = {
        let applying = apply(&mut conn, script, mode, &halted);
        tokio::pin!(applying);
        let watch = watch(
            probe.as_ref(),
            &mut run.replicas,
            &mut run.lag,
            &thresholds,
            &phase.name,
        );
        tokio::select! {
            r = &mut applying => r,
            h = watch => {
                tracing::warn!(?h, "threshold crossed: cancelling the phase");
                halted.store(true, Ordering::SeqCst);
                halt_reason = Some(h);
                // Until the statements stop: a cancel that lands between two
                // statements does nothing, and the flag stops the next one
                // only once it is reached.
                loop {
                    cancel(control.as_mut(), pid).await;
                    tokio::select! {
                        r = &mut applying => break r,
                        _ = tokio::time::sleep(CANCEL_AGAIN) => {}
                    }
                }
            }
        }
    };
    if let Some(p) = probe {
        run.samples.extend(p.stop().await);
    }
    if let Some(c) = control {
        let _ = c.close().await;
    }
    let _ = conn.close().await;
    run.read_lag().await;
    match (result, halt_reason) {
        // The phase finished before the cancel could stop it: it is applied.
        (Ok(()), _) => Ok(()),
        (Err(f), None) => {
            let halt = Halt::PhaseFailed {
                phase: phase.name.clone(),
                error: f.message.clone(),
            };
            Err((f, halt))
        }
        (Err(f), Some(h)) => {
            let reason = match &h {
                Halt::Latency {
                    increase_pct,
                    limit_pct,
                    ..
                } => format!(
                    "halted: query latency rose {increase_pct:.0}% above its baseline (limit {limit_pct:.0}%)"
                ),
                Halt::ReplicationLag {
                    lag_secs,
                    limit_secs,
                    ..
                } => format!(
                    "halted: replication lag reached {lag_secs:.1} s (limit {limit_secs:.1} s)"
                ),
                Halt::PhaseFailed { error, .. } => error.clone(),
            };
            let message = if f.message == "halted" {
                reason
            } else {
                format!("{reason}; {}", f.message)
            };
            Err((
                Failure {
                    message,
                    partial: f.partial,
                },
                h,
            ))
        }
    }
}

/// Cancels the statement `pid` runs, from the control connection.
async fn cancel(control: Option<&mut PgConnection>, pid: i32) {
    let Some(c) = control else {
        return;
    };
    if let Err(e) = sqlx::query("SELECT pg_cancel_backend($1)")
        .bind(pid)
        .execute(c)
        .await
    {
        tracing::warn!(error = %pg_message(&e), "pg_cancel_backend failed");
    }
}

/// Resolves when a threshold is crossed; never otherwise.
async fn watch(
    probe: Option<&Probe>,
    replicas: &mut [(String, PgConnection)],
    lag: &mut Option<f64>,
    t: &Thresholds,
    phase: &str,
) -> Halt {
    let mut last_lag = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        if let Some(p) = probe {
            if let (Some(pct), Some(ms)) = (p.current_increase_pct(), p.current_increase_ms()) {
                if pct > t.max_latency_increase_pct && ms >= t.min_latency_delta_ms {
                    return Halt::Latency {
                        phase: phase.to_string(),
                        increase_pct: pct,
                        limit_pct: t.max_latency_increase_pct,
                    };
                }
            }
        }
        if !replicas.is_empty() && last_lag.elapsed() >= LAG_EVERY {
            last_lag = tokio::time::Instant::now();
            let mut largest: Option<f64> = None;
            for (_, conn) in replicas.iter_mut() {
                if let Ok(Ok(Some(l))) =
                    tokio::time::timeout(LAG_READ_TIMEOUT, standby_lag(conn)).await
                {
                    largest = Some(largest.map_or(l, |m| m.max(l)));
                }
            }
            if let Some(l) = largest {
                *lag = Some(l);
                if l > t.max_replication_lag_secs {
                    return Halt::ReplicationLag {
                        phase: phase.to_string(),
                        lag_secs: l,
                        limit_secs: t.max_replication_lag_secs,
                    };
                }
            }
        }
    }
}

/// Manual rollback (conventions §10): runs `rollback` on the `applied`
/// phases in REVERSE order, each in its own transaction (statement by
/// statement when the script cannot run in one). Returns the phases'
/// reports, all `RolledBack`, in the order they were rolled back, their
/// `started_at`/`completed_at` being the rollback's own. Stops at the first
/// failure: [`ExecError::Rollback`] names the phase and those already
/// rolled back.
pub async fn rollback(rollback: &Script, applied: &[Phase]) -> Result<Vec<PhaseReport>, ExecError> {
    let mut reports = Vec::with_capacity(applied.len());
    for phase in applied.iter().rev() {
        let started = Utc::now();
        let span = tracing::info_span!("manual_rollback", phase = %phase.name);
        if let Err(f) = apply_on(&phase.target, rollback).instrument(span).await {
            return Err(ExecError::Rollback {
                phase: phase.name.clone(),
                message: f.message,
                rolled_back: reports
                    .iter()
                    .map(|r: &PhaseReport| r.name.clone())
                    .collect(),
            });
        }
        reports.push(PhaseReport {
            name: phase.name.clone(),
            status: PhaseStatus::RolledBack,
            started_at: Some(started),
            completed_at: Some(Utc::now()),
            error: None,
        });
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_and_defaults() {
        assert_eq!(PhaseStatus::RolledBack.as_str(), "RolledBack");
        assert_eq!(ExecStatus::Succeeded.as_str(), "Succeeded");
        let t = Thresholds::default();
        assert_eq!(
            (
                t.max_latency_increase_pct,
                t.max_replication_lag_secs,
                t.min_latency_delta_ms
            ),
            (300.0, 30.0, 50.0)
        );
    }

    #[test]
    fn run_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let plan = Plan {
            script: crate::script::parse("SELECT 1").unwrap(),
            rollback: None,
            phases: vec![],
            dry_run: false,
            thresholds: Thresholds::default(),
            probe_tables: vec![],
            replicas: vec![],
        };
        let fut = run(&plan, &());
        assert_send(&fut);
    }
}
