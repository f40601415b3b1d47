//! The `migration` job: runs one recorded execution of a schema migration
//! with [`sluice_orchestrator::executor`], keeping the execution's row
//! (phases, current phase, progress, metrics) true as it goes and
//! publishing each change on `/ws` (`migration_progress`), then records the
//! outcome on the execution and the migration and in the audit log.
//!
//! An execution runs once: a worker that dies mid-run leaves phases marked
//! started; the job taken up again does not run the script a second time
//! but ends the execution failed, rolling back the phases that completed
//! (when the migration has a rollback script), as a failed phase would.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sluice_orchestrator::executor::{
    self, ExecStatus, Metrics, Observer, Outcome, Phase, PhaseReport, PhaseStatus, Plan, Thresholds,
};
use sluice_orchestrator::target::Target;
use sluice_orchestrator::{objects, script};
use sluice_storage::pg::orchestrator::{databases, executions, migrations};
use sluice_storage::secrets::SecretBox;
use tracing::Instrument;
use uuid::Uuid;

use crate::attempt;
use crate::context::JobContext;
use crate::error::JobError;

/// Run the execution the API recorded as `Running`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MigrationJob {
    pub task_id: String,
    pub tenant: Uuid,
    pub execution_id: i64,
}

/// A registered database's master and replicas, their connection strings
/// opened.
pub struct Cluster {
    pub master: Target,
    /// `(replicaId, target)` in registration order.
    pub replicas: Vec<(String, Target)>,
}

impl Cluster {
    /// Opens `db`'s sealed connection strings.
    pub fn open(secrets: &SecretBox, db: &databases::Database) -> Result<Cluster, String> {
        let open = |sealed: &[u8], what: &str| -> Result<Target, String> {
            let s = secrets
                .open(sealed)
                .map_err(|_| format!("the {what} connection string cannot be decrypted"))?;
            Target::parse(&s).map_err(|e| format!("the {what} connection string: {e}"))
        };
        let master = open(&db.master_sealed, "master")?;
        let ids = replica_ids(&db.replicas);
        let mut replicas = Vec::with_capacity(ids.len());
        for (id, sealed) in ids.into_iter().zip(&db.replica_conns_sealed) {
            let t = open(sealed, &format!("{id} replica"))?;
            replicas.push((id, t));
        }
        Ok(Cluster { master, replicas })
    }

    /// The target a phase named `name` runs on.
    pub fn target(&self, name: &str) -> Option<&Target> {
        if name == "master" {
            return Some(&self.master);
        }
        self.replicas
            .iter()
            .find(|(id, _)| id == name)
            .map(|(_, t)| t)
    }
}

/// The replica ids of a registration, in order.
pub fn replica_ids(replicas: &Value) -> Vec<String> {
    replicas
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("replicaId").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Phases as the execution's row keeps them (the contract's fields).
pub fn phases_json(phases: &[PhaseReport]) -> Value {
    Value::Array(
        phases
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "status": p.status.as_str(),
                    "startedAt": p.started_at.map(stamp),
                    "completedAt": p.completed_at.map(stamp),
                    "error": p.error,
                })
            })
            .collect(),
    )
}

/// Phases read back from the execution's row.
pub fn phases_of(v: &Value) -> Vec<PhaseReport> {
    let time = |p: &Value, k: &str| {
        p.get(k)
            .and_then(Value::as_str)
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|p| PhaseReport {
                    name: p.get("name").and_then(Value::as_str).unwrap_or("").into(),
                    status: match p.get("status").and_then(Value::as_str) {
                        Some("Running") => PhaseStatus::Running,
                        Some("Succeeded") => PhaseStatus::Succeeded,
                        Some("Failed") => PhaseStatus::Failed,
                        Some("RolledBack") => PhaseStatus::RolledBack,
                        _ => PhaseStatus::Pending,
                    },
                    started_at: time(p, "startedAt"),
                    completed_at: time(p, "completedAt"),
                    error: p.get("error").and_then(Value::as_str).map(str::to_string),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn metrics_json(m: &Metrics) -> Value {
    json!({
        "avgQueryLatencyMs": m.avg_query_latency_ms,
        "p99QueryLatencyMs": m.p99_query_latency_ms,
        "replicationLagSeconds": m.replication_lag_seconds,
    })
}

/// Thresholds from the execution's row (the execute request's, with
/// defaults for what it left out).
pub fn thresholds_of(v: &Value) -> Thresholds {
    let mut t = Thresholds::default();
    if let Some(p) = v.get("maxLatencyIncreasePercent").and_then(Value::as_f64) {
        t.max_latency_increase_pct = p;
    }
    if let Some(s) = v.get("maxReplicationLagSeconds").and_then(Value::as_f64) {
        t.max_replication_lag_secs = s;
    }
    t
}

fn stamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Completed phases over all phases, in percent; below 100 until every
/// phase succeeded.
pub fn percent(phases: &[PhaseReport]) -> i32 {
    if phases.is_empty() {
        return 0;
    }
    let done = phases
        .iter()
        .filter(|p| p.status == PhaseStatus::Succeeded)
        .count();
    ((done * 100) / phases.len()) as i32
}

/// The phase running, or the next to run.
pub fn current(phases: &[PhaseReport]) -> Option<&str> {
    phases
        .iter()
        .find(|p| p.status == PhaseStatus::Running)
        .or_else(|| phases.iter().find(|p| p.status == PhaseStatus::Pending))
        .map(|p| p.name.as_str())
}

/// Writes each change to the execution's row and publishes it.
struct Recorder<'a> {
    ctx: &'a JobContext,
    tenant: Uuid,
    execution: i64,
    migration: i64,
}

impl Recorder<'_> {
    async fn publish(&self, status: &str, phases: &[PhaseReport], metrics: &Metrics) {
        let body = json!({
            "executionId": format!("exec-{}", self.execution),
            "migrationId": format!("mig-{}", self.migration),
            "status": status,
            "currentPhase": current(phases),
            "progress": percent(phases),
            "phases": phases_json(phases),
            "performanceMetrics": metrics_json(metrics),
        });
        if let Err(e) = self
            .ctx
            .live
            .publish(self.tenant, "migration_progress", &body)
            .await
        {
            tracing::debug!(error = %e, "migration progress not published");
        }
    }
}

impl Observer for Recorder<'_> {
    async fn changed(&self, phases: &[PhaseReport], current: Option<&str>, metrics: &Metrics) {
        let r = executions::progress(
            &self.ctx.pg,
            self.execution,
            &phases_json(phases),
            current,
            percent(phases).min(99),
            &metrics_json(metrics),
        )
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "execution progress not recorded");
        }
        self.publish("Running", phases, metrics).await;
    }
}

fn status_str(s: ExecStatus) -> &'static str {
    match s {
        ExecStatus::Running => "Running",
        ExecStatus::Succeeded => "Succeeded",
        ExecStatus::Failed => "Failed",
        ExecStatus::RolledBack => "RolledBack",
    }
}

/// Runs a migration job to its end and records it.
pub async fn execute(ctx: &JobContext, job: MigrationJob) -> Result<(), JobError> {
    let span = tracing::info_span!("job", kind = "migration", task_id = %job.task_id, execution_id = job.execution_id);
    async {
        let ran = attempt::run(ctx, &job.task_id, ctx.settings.migration_timeout, || {
            run_once(ctx, &job)
        })
        .await;
        let outcome = match ran {
            Ok(None) => Ok(()),
            Ok(Some(why)) => Err(JobError::Permanent(why)),
            Err(e) => {
                fail_unstarted(ctx, &job, e.message()).await;
                Err(e)
            }
        };
        attempt::finish(ctx, &job.task_id, &outcome).await;
        outcome
    }
    .instrument(span)
    .await
}

/// Ends an execution that could not be run at all (its database gone, a
/// connection string unreadable): failed, nothing applied.
async fn fail_unstarted(ctx: &JobContext, job: &MigrationJob, why: &str) {
    let Ok(Some(e)) = executions::get_by_id(&ctx.pg, job.execution_id).await else {
        return;
    };
    if e.status != "Running" {
        return;
    }
    let phases = phases_of(&e.phases);
    let r = executions::finish(
        &ctx.pg,
        e.id,
        "Failed",
        &phases_json(&phases),
        current(&phases),
        percent(&phases),
        &e.metrics,
        Some(why),
    )
    .await;
    if let Err(err) = r {
        tracing::error!(error = %err, "could not record the execution's failure");
    }
    if !e.dry_run {
        let _ = migrations::set_status(&ctx.pg, e.tenant_id, e.migration_id, "Failed").await;
    }
}

/// One attempt: `Ok(None)` when the execution succeeded, `Ok(Some(why))`
/// when it ran and did not (recorded already), `Err` when it could not
/// start.
async fn run_once(ctx: &JobContext, job: &MigrationJob) -> Result<Option<String>, JobError> {
    let e = executions::get_by_id(&ctx.pg, job.execution_id)
        .await?
        .filter(|e| e.tenant_id == job.tenant)
        .ok_or_else(|| {
            JobError::Permanent(format!("execution {} no longer exists", job.execution_id))
        })?;
    match e.status.as_str() {
        "Running" => {}
        "Succeeded" => return Ok(None),
        other => return Ok(Some(e.halt_reason.unwrap_or_else(|| other.to_string()))),
    }
    let m = migrations::get(&ctx.pg, e.tenant_id, e.migration_id)
        .await?
        .ok_or_else(|| JobError::Permanent("the migration no longer exists".into()))?;
    let db = databases::get(&ctx.pg, e.tenant_id, e.database_id)
        .await?
        .ok_or_else(|| JobError::Permanent("the database is no longer registered".into()))?;
    let cluster = Cluster::open(&ctx.secrets, &db).map_err(JobError::Permanent)?;
    let script = script::parse(&m.migration_script)
        .map_err(|e| JobError::Permanent(format!("migrationScript: {e}")))?;
    let rollback = match m
        .rollback_script
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    {
        Some(s) => Some(
            script::parse(s).map_err(|e| JobError::Permanent(format!("rollbackScript: {e}")))?,
        ),
        None => None,
    };
    let recorded = phases_of(&e.phases);
    let mut phases = Vec::with_capacity(recorded.len());
    for p in &recorded {
        let t = cluster.target(&p.name).ok_or_else(|| {
            JobError::Permanent(format!("phase {} is not part of the database", p.name))
        })?;
        phases.push(Phase {
            name: p.name.clone(),
            target: t.clone(),
        });
    }
    let recorder = Recorder {
        ctx,
        tenant: e.tenant_id,
        execution: e.id,
        migration: m.id,
    };
    let outcome = if recorded.iter().any(|p| p.status != PhaseStatus::Pending) {
        interrupted(recorded, rollback.as_ref(), &phases, e.dry_run).await
    } else {
        let plan = Plan {
            probe_tables: objects::touched_tables(&script),
            script,
            rollback,
            phases,
            dry_run: e.dry_run,
            thresholds: thresholds_of(&e.thresholds),
            replicas: cluster.replicas.clone(),
        };
        executor::run(&plan, &recorder).await
    };
    record(ctx, &recorder, &e, &outcome).await?;
    Ok(match outcome.status {
        ExecStatus::Succeeded => None,
        _ => Some(halt_text(&outcome)),
    })
}

/// A run a dead worker left half done: the phase it was in failed (its
/// transaction died with the worker's connection); the completed ones are
/// rolled back when there is a rollback script.
async fn interrupted(
    mut recorded: Vec<PhaseReport>,
    rollback: Option<&script::Script>,
    phases: &[Phase],
    dry_run: bool,
) -> Outcome {
    let why = "the worker running this phase stopped before it finished";
    for p in recorded.iter_mut() {
        if p.status == PhaseStatus::Running {
            p.status = PhaseStatus::Failed;
            p.completed_at = Some(chrono::Utc::now());
            p.error = Some(why.into());
        }
    }
    let mut outcome = Outcome {
        status: ExecStatus::Failed,
        phases: recorded,
        metrics: Metrics::default(),
        halt: Some(executor::Halt::PhaseFailed {
            phase: String::new(),
            error: why.into(),
        }),
        rollback_errors: Vec::new(),
    };
    if dry_run {
        return outcome;
    }
    if let Some(rb) = rollback {
        let applied: Vec<Phase> = phases
            .iter()
            .zip(&outcome.phases)
            .filter(|(_, r)| r.status == PhaseStatus::Succeeded)
            .map(|(p, _)| p.clone())
            .collect();
        match executor::rollback(rb, &applied).await {
            Ok(reports) => {
                for r in reports {
                    if let Some(p) = outcome.phases.iter_mut().find(|p| p.name == r.name) {
                        *p = r;
                    }
                }
                if outcome
                    .phases
                    .iter()
                    .all(|p| p.status != PhaseStatus::Succeeded)
                {
                    outcome.status = ExecStatus::RolledBack;
                }
            }
            Err(e) => outcome.rollback_errors.push(e.to_string()),
        }
    }
    outcome
}

fn halt_text(o: &Outcome) -> String {
    match &o.halt {
        Some(executor::Halt::PhaseFailed { phase, error }) if phase.is_empty() => error.clone(),
        Some(executor::Halt::PhaseFailed { phase, error }) => {
            format!("phase {phase} failed: {error}")
        }
        Some(executor::Halt::Latency {
            phase,
            increase_pct,
            limit_pct,
        }) => format!(
            "halted during phase {phase}: query latency rose {increase_pct:.0} % (limit {limit_pct:.0} %)"
        ),
        Some(executor::Halt::ReplicationLag {
            phase,
            lag_secs,
            limit_secs,
        }) => format!(
            "halted during phase {phase}: replication lag {lag_secs:.1} s (limit {limit_secs:.1} s)"
        ),
        None => status_str(o.status).to_string(),
    }
}

/// Records an outcome: the execution's row, the migration's status (not
/// for a dry run), the audit log, and a last `/ws` event.
async fn record(
    ctx: &JobContext,
    recorder: &Recorder<'_>,
    e: &executions::Execution,
    o: &Outcome,
) -> Result<(), JobError> {
    let status = status_str(o.status);
    let halt = o.halt.as_ref().map(|_| halt_text(o));
    executions::finish(
        &ctx.pg,
        e.id,
        status,
        &phases_json(&o.phases),
        current(&o.phases),
        percent(&o.phases),
        &metrics_json(&o.metrics),
        halt.as_deref(),
    )
    .await?;
    if !e.dry_run {
        migrations::set_status(&ctx.pg, e.tenant_id, e.migration_id, status).await?;
    }
    let entry = sluice_storage::pg::audit::NewEntry {
        tenant_id: Some(e.tenant_id),
        user: e.created_by,
        username: None,
        action: format!(
            "migration_execution_{}",
            status
                .to_ascii_lowercase()
                .replace("rolledback", "rolled_back")
        ),
        resource_type: Some("migration_execution".into()),
        resource_id: Some(e.id),
        details: json!({
            "migrationId": format!("mig-{}", e.migration_id),
            "dryRun": e.dry_run,
            "phases": phases_json(&o.phases),
            "halt": halt,
            "rollbackErrors": o.rollback_errors,
        }),
        ip_address: None,
    };
    if let Err(err) = sluice_storage::pg::audit::insert(&ctx.pg, &entry).await {
        tracing::error!(error = %err, "migration execution not written to the audit log");
    }
    tracing::info!(status, halt = ?halt, "migration execution finished");
    recorder.publish(status, &o.phases, &o.metrics).await;
    Ok(())
}
