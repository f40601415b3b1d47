//! Executions of migrations. The partial unique index
//! `orch_executions_one_running` lets one execution per registered database
//! be `Running` at a time: [`insert`] and [`claim_for_rollback`] answer
//! `None` when another holds it, whichever process asked.

use serde_json::Value;
use uuid::Uuid;

use crate::Result;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Execution {
    pub id: i64,
    pub tenant_id: Uuid,
    pub migration_id: i64,
    pub database_id: i64,
    pub status: String,
    pub dry_run: bool,
    pub strategy: String,
    pub phases: Value,
    pub current_phase: Option<String>,
    pub progress: i32,
    pub metrics: Value,
    pub thresholds: Value,
    pub halt_reason: Option<String>,
    pub estimated_duration: i64,
    pub task_id: Option<String>,
    pub created_by: Option<Uuid>,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub rollback_reason: Option<String>,
    pub rollback_completed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub rollback_duration: Option<f64>,
}

macro_rules! columns {
    () => {
        "id, tenant_id, migration_id, database_id, status, dry_run, strategy, phases, \
         current_phase, progress, metrics, thresholds, halt_reason, estimated_duration, task_id, \
         created_by, started_at, completed_at, rollback_reason, rollback_completed_at, \
         rollback_duration"
    };
}

#[derive(Debug, Clone)]
pub struct NewExecution {
    pub migration_id: i64,
    pub database_id: i64,
    pub dry_run: bool,
    pub strategy: String,
    pub phases: Value,
    pub current_phase: Option<String>,
    pub thresholds: Value,
    pub estimated_duration: i64,
    pub task_id: String,
}

fn holds_lock(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d)
        if d.constraint() == Some("orch_executions_one_running"))
}

/// Inserts a `Running` execution in the caller's transaction; `None` when
/// another execution runs on the same database. The transaction is
/// unusable after `None` (PostgreSQL aborted it): roll it back.
pub async fn insert(
    tx: &mut sqlx::PgConnection,
    tenant: Uuid,
    e: &NewExecution,
    created_by: Option<Uuid>,
) -> Result<Option<Execution>> {
    let sql = concat!(
        "INSERT INTO orch_executions (tenant_id, migration_id, database_id, dry_run, strategy, \
         phases, current_phase, thresholds, estimated_duration, task_id, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING ",
        columns!()
    );
    let r = sqlx::query_as::<_, Execution>(sql)
        .bind(tenant)
        .bind(e.migration_id)
        .bind(e.database_id)
        .bind(e.dry_run)
        .bind(&e.strategy)
        .bind(&e.phases)
        .bind(&e.current_phase)
        .bind(&e.thresholds)
        .bind(e.estimated_duration)
        .bind(&e.task_id)
        .bind(created_by)
        .fetch_one(tx)
        .await;
    match r {
        Ok(x) => Ok(Some(x)),
        Err(e) if holds_lock(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// An execution of `migration`, in the tenant.
pub async fn get<'e>(
    ex: impl sqlx::PgExecutor<'e>,
    tenant: Uuid,
    migration: i64,
    id: i64,
) -> Result<Option<Execution>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM orch_executions WHERE tenant_id = $1 AND migration_id = $2 AND id = $3"
    );
    Ok(sqlx::query_as::<_, Execution>(sql)
        .bind(tenant)
        .bind(migration)
        .bind(id)
        .fetch_optional(ex)
        .await?)
}

/// Progress while running: phases, the current phase, progress, metrics.
pub async fn progress<'e>(
    ex: impl sqlx::PgExecutor<'e>,
    id: i64,
    phases: &Value,
    current_phase: Option<&str>,
    progress: i32,
    metrics: &Value,
) -> Result<()> {
    sqlx::query(
        "UPDATE orch_executions SET phases = $2, current_phase = $3, progress = $4, metrics = $5 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(phases)
    .bind(current_phase)
    .bind(progress)
    .bind(metrics)
    .execute(ex)
    .await?;
    Ok(())
}

/// The end of a run: its final status, phases and metrics.
#[allow(clippy::too_many_arguments)]
pub async fn finish<'e>(
    ex: impl sqlx::PgExecutor<'e>,
    id: i64,
    status: &str,
    phases: &Value,
    current_phase: Option<&str>,
    progress: i32,
    metrics: &Value,
    halt_reason: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE orch_executions SET status = $2, phases = $3, current_phase = $4, progress = $5, \
         metrics = $6, halt_reason = $7, completed_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(phases)
    .bind(current_phase)
    .bind(progress)
    .bind(metrics)
    .bind(halt_reason)
    .execute(ex)
    .await?;
    Ok(())
}

/// Takes the database's execution lock for a manual rollback of a
/// `Succeeded` execution (it shows `Running` meanwhile). `None` when the
/// execution is not `Succeeded` or another execution holds the lock.
pub async fn claim_for_rollback(
    pool: &sqlx::PgPool,
    tenant: Uuid,
    migration: i64,
    id: i64,
) -> Result<Option<Execution>> {
    let sql = concat!(
        "UPDATE orch_executions SET status = 'Running' WHERE tenant_id = $1 AND migration_id = $2 \
         AND id = $3 AND status = 'Succeeded' AND NOT dry_run RETURNING ",
        columns!()
    );
    let r = sqlx::query_as::<_, Execution>(sql)
        .bind(tenant)
        .bind(migration)
        .bind(id)
        .fetch_optional(pool)
        .await;
    match r {
        Ok(x) => Ok(x),
        Err(e) if holds_lock(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The end of a manual rollback.
pub async fn rolled_back<'e>(
    ex: impl sqlx::PgExecutor<'e>,
    id: i64,
    status: &str,
    phases: &Value,
    reason: &str,
    duration_secs: f64,
) -> Result<Execution> {
    let sql = concat!(
        "UPDATE orch_executions SET status = $2, phases = $3, rollback_reason = $4, \
         rollback_duration = $5, rollback_completed_at = now() WHERE id = $1 RETURNING ",
        columns!()
    );
    Ok(sqlx::query_as::<_, Execution>(sql)
        .bind(id)
        .bind(status)
        .bind(phases)
        .bind(reason)
        .bind(duration_secs)
        .fetch_one(ex)
        .await?)
}

/// An execution by id alone, for the job that runs it.
pub async fn get_by_id<'e>(ex: impl sqlx::PgExecutor<'e>, id: i64) -> Result<Option<Execution>> {
    let sql = concat!("SELECT ", columns!(), " FROM orch_executions WHERE id = $1");
    Ok(sqlx::query_as::<_, Execution>(sql)
        .bind(id)
        .fetch_optional(ex)
        .await?)
}
