//! Background tasks as the API shows them: one row per apalis job, scoped
//! to a tenant, with the status, progress and error its handler records.
//! The queue itself (locks, attempts, leases) is apalis' own `apalis.jobs`;
//! this table is what a tenant may read about its jobs.

use sqlx::{PgPool, Postgres};
use uuid::Uuid;

use crate::Result;

/// A task's row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Task {
    pub id: String,
    pub tenant_id: Uuid,
    /// `backup`, `restore`, `verify`, …
    pub kind: String,
    /// `pending`, `running`, `completed` or `failed`.
    pub status: String,
    /// 0 to 100.
    pub progress: f64,
    pub error: Option<String>,
    pub resource_id: Option<i64>,
    pub attempts: i32,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Records a new pending task, in the transaction that enqueues its job.
pub async fn insert<'c, E>(
    conn: E,
    id: &str,
    tenant: Uuid,
    kind: &str,
    resource_id: Option<i64>,
) -> Result<()>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    sqlx::query("INSERT INTO tasks (id, tenant_id, kind, resource_id) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(tenant)
        .bind(kind)
        .bind(resource_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn get(pool: &PgPool, tenant: Uuid, id: &str) -> Result<Option<Task>> {
    let sql = "SELECT id, tenant_id, kind, status, progress, error, resource_id, attempts, \
               created_at, started_at, finished_at FROM tasks WHERE tenant_id = $1 AND id = $2";
    Ok(sqlx::query_as::<_, Task>(sql)
        .bind(tenant)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// A task starts (again, after a retry or a lost worker): running, its
/// error cleared, one more attempt counted. Progress is kept, so what a
/// client saw never goes backwards.
pub async fn start(pool: &PgPool, id: &str) -> Result<()> {
    sqlx::query(
        "UPDATE tasks SET status = 'running', error = NULL, attempts = attempts + 1, \
         started_at = COALESCE(started_at, now()), updated_at = now() \
         WHERE id = $1 AND status IN ('pending', 'running')",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Raises the task's progress (never lowers it).
pub async fn progress(pool: &PgPool, id: &str, percent: f64) -> Result<()> {
    sqlx::query(
        "UPDATE tasks SET progress = GREATEST(progress, $2), updated_at = now() \
         WHERE id = $1 AND status = 'running'",
    )
    .bind(id)
    .bind(percent.clamp(0.0, 100.0))
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn complete(pool: &PgPool, id: &str) -> Result<()> {
    sqlx::query(
        "UPDATE tasks SET status = 'completed', progress = 100, error = NULL, \
         finished_at = now(), updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn fail(pool: &PgPool, id: &str, error: &str) -> Result<()> {
    sqlx::query(
        "UPDATE tasks SET status = 'failed', error = $2, finished_at = now(), updated_at = now() \
         WHERE id = $1",
    )
    .bind(id)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}
