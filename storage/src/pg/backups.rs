//! Backups: one row per backup a tenant asked for, from `pending` to
//! `completed` or `failed`. Every query is scoped to one tenant; the job
//! handlers, which act for the system, address rows by id alone.

use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgPool, Postgres};
use uuid::Uuid;

use crate::Result;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Backup {
    pub id: i64,
    pub tenant_id: Uuid,
    pub server_id: i64,
    pub database_name: String,
    pub db_type: String,
    pub backup_type: String,
    pub status: String,
    pub compression_type: String,
    pub is_encrypted: bool,
    pub object_key: String,
    pub storage_path: Option<String>,
    pub size_bytes: Option<i64>,
    pub dump_bytes: Option<i64>,
    pub checksum: Option<String>,
    pub table_counts: Option<Json<Value>>,
    pub task_id: Option<String>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub duration_seconds: Option<f64>,
    pub error_message: Option<String>,
    pub verified_at: Option<chrono::DateTime<chrono::Utc>>,
    pub verify_status: Option<String>,
    pub verify_details: Option<Json<Value>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The columns of a [`Backup`], as a literal for `concat!` (sqlx takes
/// only static SQL).
macro_rules! columns {
    () => {
        "id, tenant_id, server_id, database_name, db_type, backup_type, status, \
         compression_type, is_encrypted, object_key, storage_path, size_bytes, dump_bytes, \
         checksum, table_counts, task_id, started_at, completed_at, duration_seconds, \
         error_message, verified_at, verify_status, verify_details, created_at"
    };
}

/// The list's filter, all optional, combined with AND.
macro_rules! filter {
    () => {
        "tenant_id = $1 AND ($2::BIGINT IS NULL OR server_id = $2) \
         AND ($3::TEXT IS NULL OR db_type = $3) AND ($4::TEXT IS NULL OR status = $4)"
    };
}

/// What a new backup is.
pub struct NewBackup<'a> {
    pub server_id: i64,
    pub database_name: &'a str,
    pub db_type: &'a str,
    pub backup_type: &'a str,
    pub compression_type: &'a str,
    pub is_encrypted: bool,
}

/// Inserts a pending backup; its object key is derived from its id by
/// `object_key(id)`, in the same statement.
pub async fn insert(
    tx: &mut sqlx::PgConnection,
    tenant: Uuid,
    b: &NewBackup<'_>,
    object_key: impl Fn(i64) -> String,
) -> Result<Backup> {
    let id: i64 = sqlx::query_scalar("SELECT nextval(pg_get_serial_sequence('backups', 'id'))")
        .fetch_one(&mut *tx)
        .await?;
    let sql = concat!(
        "INSERT INTO backups (id, tenant_id, server_id, database_name, db_type, backup_type, \
         compression_type, is_encrypted, object_key) OVERRIDING SYSTEM VALUE \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING ",
        columns!()
    );
    Ok(sqlx::query_as::<_, Backup>(sql)
        .bind(id)
        .bind(tenant)
        .bind(b.server_id)
        .bind(b.database_name)
        .bind(b.db_type)
        .bind(b.backup_type)
        .bind(b.compression_type)
        .bind(b.is_encrypted)
        .bind(object_key(id))
        .fetch_one(&mut *tx)
        .await?)
}

pub async fn set_task<'c, E>(conn: E, id: i64, task_id: &str) -> Result<()>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    sqlx::query("UPDATE backups SET task_id = $2 WHERE id = $1")
        .bind(id)
        .bind(task_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn get(pool: &PgPool, tenant: Uuid, id: i64) -> Result<Option<Backup>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM backups WHERE tenant_id = $1 AND id = $2"
    );
    Ok(sqlx::query_as::<_, Backup>(sql)
        .bind(tenant)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// For job handlers: a backup by id, whatever its tenant.
pub async fn get_any(pool: &PgPool, id: i64) -> Result<Option<Backup>> {
    let sql = concat!("SELECT ", columns!(), " FROM backups WHERE id = $1");
    Ok(sqlx::query_as::<_, Backup>(sql)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// Filters of the list; all optional, combined with AND.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub server_id: Option<i64>,
    pub db_type: Option<String>,
    pub status: Option<String>,
}

/// One page, newest first, and the number of every match.
pub async fn list(
    pool: &PgPool,
    tenant: Uuid,
    f: &Filter,
    limit: i64,
    offset: i64,
) -> Result<(i64, Vec<Backup>)> {
    let total: i64 = sqlx::query_scalar(concat!("SELECT count(*) FROM backups WHERE ", filter!()))
        .bind(tenant)
        .bind(f.server_id)
        .bind(&f.db_type)
        .bind(&f.status)
        .fetch_one(pool)
        .await?;
    let items = sqlx::query_as::<_, Backup>(concat!(
        "SELECT ",
        columns!(),
        " FROM backups WHERE ",
        filter!(),
        " ORDER BY id DESC LIMIT $5 OFFSET $6"
    ))
    .bind(tenant)
    .bind(f.server_id)
    .bind(&f.db_type)
    .bind(&f.status)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?;
    Ok((total, items))
}

/// Deletes the record; true when it existed in this tenant.
pub async fn delete(pool: &PgPool, tenant: Uuid, id: i64) -> Result<bool> {
    Ok(
        sqlx::query("DELETE FROM backups WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
            == 1,
    )
}

/// The job starts (again): running, the outcome of an earlier attempt
/// cleared. A backup already completed is left alone (false).
pub async fn start(pool: &PgPool, id: i64) -> Result<bool> {
    Ok(sqlx::query(
        "UPDATE backups SET status = 'running', started_at = now(), completed_at = NULL, \
         error_message = NULL, size_bytes = NULL, checksum = NULL, duration_seconds = NULL \
         WHERE id = $1 AND status <> 'completed'",
    )
    .bind(id)
    .execute(pool)
    .await?
    .rows_affected()
        == 1)
}

pub async fn set_table_counts(pool: &PgPool, id: i64, counts: &Value) -> Result<()> {
    sqlx::query("UPDATE backups SET table_counts = $2 WHERE id = $1")
        .bind(id)
        .bind(Json(counts))
        .execute(pool)
        .await?;
    Ok(())
}

/// What a completed backup stored.
pub struct Completed<'a> {
    pub storage_path: &'a str,
    pub size_bytes: i64,
    pub dump_bytes: i64,
    pub checksum: &'a str,
}

/// Marks the backup completed; `completed_at` and the duration come from
/// the database clock, like `started_at`, so they always agree.
pub async fn complete(pool: &PgPool, id: i64, c: &Completed<'_>) -> Result<()> {
    sqlx::query(
        "UPDATE backups SET status = 'completed', storage_path = $2, size_bytes = $3, \
         dump_bytes = $4, checksum = $5, completed_at = now(), \
         duration_seconds = EXTRACT(EPOCH FROM (now() - COALESCE(started_at, now())))::DOUBLE PRECISION, \
         error_message = NULL WHERE id = $1",
    )
    .bind(id)
    .bind(c.storage_path)
    .bind(c.size_bytes)
    .bind(c.dump_bytes)
    .bind(c.checksum)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn fail(pool: &PgPool, id: i64, message: &str) -> Result<()> {
    sqlx::query(
        "UPDATE backups SET status = 'failed', error_message = $2, completed_at = now(), \
         duration_seconds = EXTRACT(EPOCH FROM (now() - COALESCE(started_at, now())))::DOUBLE PRECISION \
         WHERE id = $1 AND status <> 'completed'",
    )
    .bind(id)
    .bind(message)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn record_verification(
    pool: &PgPool,
    id: i64,
    status: &str,
    details: &Value,
) -> Result<()> {
    sqlx::query(
        "UPDATE backups SET verified_at = now(), verify_status = $2, verify_details = $3 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(Json(details))
    .execute(pool)
    .await?;
    Ok(())
}

/// For retention: the completed backups of `database` on `server`,
/// newest first (by `created_at`, then id).
pub async fn completed_of_database(
    pool: &PgPool,
    tenant: Uuid,
    server: i64,
    database: &str,
) -> Result<Vec<Backup>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM backups WHERE tenant_id = $1 AND server_id = $2 AND database_name = $3 \
         AND status = 'completed' ORDER BY created_at DESC, id DESC"
    );
    Ok(sqlx::query_as::<_, Backup>(sql)
        .bind(tenant)
        .bind(server)
        .bind(database)
        .fetch_all(pool)
        .await?)
}

/// For retention: deletes the record of a completed backup (never one in
/// any other state); true when it was deleted.
pub async fn delete_completed(pool: &PgPool, tenant: Uuid, id: i64) -> Result<bool> {
    Ok(
        sqlx::query(
            "DELETE FROM backups WHERE tenant_id = $1 AND id = $2 AND status = 'completed'",
        )
        .bind(tenant)
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected()
            == 1,
    )
}
