//! Migrations and their status.

use sqlx::PgPool;
use uuid::Uuid;

use crate::Result;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Migration {
    pub id: i64,
    pub tenant_id: Uuid,
    pub database_id: i64,
    pub name: String,
    pub description: Option<String>,
    pub migration_script: String,
    pub rollback_script: Option<String>,
    pub strategy: String,
    pub requested_risk: String,
    pub risk_level: String,
    pub requires_approval: bool,
    pub tags: Vec<String>,
    pub status: String,
    pub created_by: Option<Uuid>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

macro_rules! columns {
    () => {
        "id, tenant_id, database_id, name, description, migration_script, rollback_script, \
         strategy, requested_risk, risk_level, requires_approval, tags, status, created_by, \
         created_at, updated_at"
    };
}

#[derive(Debug, Clone)]
pub struct NewMigration {
    pub database_id: i64,
    pub name: String,
    pub description: Option<String>,
    pub migration_script: String,
    pub rollback_script: Option<String>,
    pub strategy: String,
    pub requested_risk: String,
    pub risk_level: String,
    pub requires_approval: bool,
    pub tags: Vec<String>,
}

pub async fn insert(
    pool: &PgPool,
    tenant: Uuid,
    m: &NewMigration,
    created_by: Option<Uuid>,
) -> Result<Migration> {
    let sql = concat!(
        "INSERT INTO orch_migrations (tenant_id, database_id, name, description, \
         migration_script, rollback_script, strategy, requested_risk, risk_level, \
         requires_approval, tags, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING ",
        columns!()
    );
    Ok(sqlx::query_as::<_, Migration>(sql)
        .bind(tenant)
        .bind(m.database_id)
        .bind(&m.name)
        .bind(&m.description)
        .bind(&m.migration_script)
        .bind(&m.rollback_script)
        .bind(&m.strategy)
        .bind(&m.requested_risk)
        .bind(&m.risk_level)
        .bind(m.requires_approval)
        .bind(&m.tags)
        .bind(created_by)
        .fetch_one(pool)
        .await?)
}

pub async fn get<'e>(
    ex: impl sqlx::PgExecutor<'e>,
    tenant: Uuid,
    id: i64,
) -> Result<Option<Migration>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM orch_migrations WHERE tenant_id = $1 AND id = $2"
    );
    Ok(sqlx::query_as::<_, Migration>(sql)
        .bind(tenant)
        .bind(id)
        .fetch_optional(ex)
        .await?)
}

/// The same row, locked until the end of the caller's transaction.
pub async fn lock(tx: &mut sqlx::PgConnection, tenant: Uuid, id: i64) -> Result<Option<Migration>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM orch_migrations WHERE tenant_id = $1 AND id = $2 FOR UPDATE"
    );
    Ok(sqlx::query_as::<_, Migration>(sql)
        .bind(tenant)
        .bind(id)
        .fetch_optional(tx)
        .await?)
}

/// A page of the tenant's migrations, newest first, and the total count.
pub async fn list(
    pool: &PgPool,
    tenant: Uuid,
    status: Option<&str>,
    database: Option<i64>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Migration>, i64)> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM orch_migrations WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2) \
         AND ($3::bigint IS NULL OR database_id = $3) \
         ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5"
    );
    let rows = sqlx::query_as::<_, Migration>(sql)
        .bind(tenant)
        .bind(status)
        .bind(database)
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await?;
    let total: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orch_migrations WHERE tenant_id = $1 \
         AND ($2::text IS NULL OR status = $2) AND ($3::bigint IS NULL OR database_id = $3)",
    )
    .bind(tenant)
    .bind(status)
    .bind(database)
    .fetch_one(pool)
    .await?;
    Ok((rows, total))
}

/// Sets a migration's status.
pub async fn set_status<'e>(
    ex: impl sqlx::PgExecutor<'e>,
    tenant: Uuid,
    id: i64,
    status: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE orch_migrations SET status = $3, updated_at = now() \
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(status)
    .execute(ex)
    .await?;
    Ok(())
}
