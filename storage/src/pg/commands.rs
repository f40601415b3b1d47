//! Saved commands and their executions. Every query a tenant's request
//! makes is scoped to that tenant; the job handler, which acts for the
//! system, addresses an execution by id and tenant from its payload.

use sqlx::{PgPool, Postgres};
use uuid::Uuid;

use crate::Result;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Command {
    pub id: i64,
    pub tenant_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub command_template: String,
    pub kind: String,
    pub tags: Option<String>,
    pub created_by: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

macro_rules! command_columns {
    () => {
        "id, tenant_id, name, description, command_template, type AS kind, tags, created_by, \
         created_at, updated_at"
    };
}

/// A command's editable fields.
#[derive(Debug, Clone, Default)]
pub struct CommandFields {
    pub name: String,
    pub description: Option<String>,
    pub command_template: String,
    pub kind: String,
    pub tags: Option<String>,
}

pub async fn insert(
    pool: &PgPool,
    tenant: Uuid,
    f: &CommandFields,
    created_by: &str,
    created_by_user_id: Option<Uuid>,
) -> Result<Command> {
    let sql = concat!(
        "INSERT INTO commands (tenant_id, name, description, command_template, type, tags, \
         created_by, created_by_user_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ",
        command_columns!()
    );
    Ok(sqlx::query_as::<_, Command>(sql)
        .bind(tenant)
        .bind(&f.name)
        .bind(&f.description)
        .bind(&f.command_template)
        .bind(&f.kind)
        .bind(&f.tags)
        .bind(created_by)
        .bind(created_by_user_id)
        .fetch_one(pool)
        .await?)
}

pub async fn get(pool: &PgPool, tenant: Uuid, id: i64) -> Result<Option<Command>> {
    let sql = concat!(
        "SELECT ",
        command_columns!(),
        " FROM commands WHERE tenant_id = $1 AND id = $2"
    );
    Ok(sqlx::query_as::<_, Command>(sql)
        .bind(tenant)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// Every command of the tenant, in creation order.
pub async fn list(pool: &PgPool, tenant: Uuid) -> Result<Vec<Command>> {
    let sql = concat!(
        "SELECT ",
        command_columns!(),
        " FROM commands WHERE tenant_id = $1 ORDER BY id"
    );
    Ok(sqlx::query_as::<_, Command>(sql)
        .bind(tenant)
        .fetch_all(pool)
        .await?)
}

pub async fn update(
    pool: &PgPool,
    tenant: Uuid,
    id: i64,
    f: &CommandFields,
) -> Result<Option<Command>> {
    let sql = concat!(
        "UPDATE commands SET name = $3, description = $4, command_template = $5, type = $6, \
         tags = $7, updated_at = now() WHERE tenant_id = $1 AND id = $2 RETURNING ",
        command_columns!()
    );
    Ok(sqlx::query_as::<_, Command>(sql)
        .bind(tenant)
        .bind(id)
        .bind(&f.name)
        .bind(&f.description)
        .bind(&f.command_template)
        .bind(&f.kind)
        .bind(&f.tags)
        .fetch_optional(pool)
        .await?)
}

/// Deletes the command and its executions; true when it existed here.
pub async fn delete(pool: &PgPool, tenant: Uuid, id: i64) -> Result<bool> {
    Ok(
        sqlx::query("DELETE FROM commands WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
            == 1,
    )
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Execution {
    pub id: i64,
    pub tenant_id: Uuid,
    pub command_id: i64,
    pub server_id: i64,
    pub command_text: String,
    pub status: String,
    pub exit_code: Option<i32>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub stdout_dropped_bytes: i64,
    pub stderr_dropped_bytes: i64,
    pub error_message: Option<String>,
    pub executed_by: String,
    pub task_id: Option<String>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub duration_seconds: Option<f64>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

macro_rules! execution_columns {
    () => {
        "id, tenant_id, command_id, server_id, command_text, status, exit_code, stdout, stderr, \
         stdout_dropped_bytes, stderr_dropped_bytes, error_message, executed_by, task_id, \
         started_at, completed_at, duration_seconds, created_at"
    };
}

/// What a new execution is.
pub struct NewExecution<'a> {
    pub command_id: i64,
    pub server_id: i64,
    pub command_text: &'a str,
    pub executed_by: &'a str,
    pub executed_by_user_id: Option<Uuid>,
    pub task_id: &'a str,
}

/// Records a pending execution, in the transaction that enqueues its job.
pub async fn insert_execution<'c, E>(
    conn: E,
    tenant: Uuid,
    e: &NewExecution<'_>,
) -> Result<Execution>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    let sql = concat!(
        "INSERT INTO command_executions (tenant_id, command_id, server_id, command_text, \
         executed_by, executed_by_user_id, task_id) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         RETURNING ",
        execution_columns!()
    );
    Ok(sqlx::query_as::<_, Execution>(sql)
        .bind(tenant)
        .bind(e.command_id)
        .bind(e.server_id)
        .bind(e.command_text)
        .bind(e.executed_by)
        .bind(e.executed_by_user_id)
        .bind(e.task_id)
        .fetch_one(conn)
        .await?)
}

pub async fn get_execution(pool: &PgPool, tenant: Uuid, id: i64) -> Result<Option<Execution>> {
    let sql = concat!(
        "SELECT ",
        execution_columns!(),
        " FROM command_executions WHERE tenant_id = $1 AND id = $2"
    );
    Ok(sqlx::query_as::<_, Execution>(sql)
        .bind(tenant)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// A command's executions, newest first, at most `limit` from `offset`.
pub async fn list_executions(
    pool: &PgPool,
    tenant: Uuid,
    command_id: i64,
    limit: i64,
    offset: i64,
) -> Result<Vec<Execution>> {
    let sql = concat!(
        "SELECT ",
        execution_columns!(),
        " FROM command_executions WHERE tenant_id = $1 AND command_id = $2 \
         ORDER BY id DESC LIMIT $3 OFFSET $4"
    );
    Ok(sqlx::query_as::<_, Execution>(sql)
        .bind(tenant)
        .bind(command_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await?)
}

/// The execution starts (again): running, from now. One already finished
/// is left alone (false).
pub async fn start_execution(pool: &PgPool, id: i64) -> Result<bool> {
    Ok(sqlx::query(
        "UPDATE command_executions SET status = 'running', started_at = now(), \
         completed_at = NULL, error_message = NULL \
         WHERE id = $1 AND status IN ('pending', 'running')",
    )
    .bind(id)
    .execute(pool)
    .await?
    .rows_affected()
        == 1)
}

/// How an execution ended.
pub struct Finished<'a> {
    /// `completed` or `failed`.
    pub status: &'a str,
    pub exit_code: Option<i32>,
    pub stdout: Option<&'a str>,
    pub stderr: Option<&'a str>,
    pub stdout_dropped_bytes: i64,
    pub stderr_dropped_bytes: i64,
    pub error_message: Option<&'a str>,
}

/// Records the end; `completed_at` and the duration come from the
/// database clock, like `started_at`, so they always agree.
pub async fn finish_execution(pool: &PgPool, id: i64, f: &Finished<'_>) -> Result<()> {
    sqlx::query(
        "UPDATE command_executions SET status = $2, exit_code = $3, stdout = $4, stderr = $5, \
         stdout_dropped_bytes = $6, stderr_dropped_bytes = $7, error_message = $8, \
         started_at = COALESCE(started_at, now()), completed_at = now(), \
         duration_seconds = EXTRACT(EPOCH FROM (now() - COALESCE(started_at, now())))::DOUBLE PRECISION \
         WHERE id = $1 AND status IN ('pending', 'running')",
    )
    .bind(id)
    .bind(f.status)
    .bind(f.exit_code)
    .bind(f.stdout)
    .bind(f.stderr)
    .bind(f.stdout_dropped_bytes)
    .bind(f.stderr_dropped_bytes)
    .bind(f.error_message)
    .execute(pool)
    .await?;
    Ok(())
}
