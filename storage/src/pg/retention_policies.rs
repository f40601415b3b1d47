//! Retention policies: a tenant's named sets of restic-style keep rules
//! (`keep_last_n`, `keep_days`, `keep_daily`, `keep_weekly`,
//! `keep_monthly`), each optional. Every query is scoped to one tenant.

use sqlx::PgPool;
use uuid::Uuid;

use crate::Result;

/// What a policy says, as written by a create or an update.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyFields {
    pub name: String,
    pub description: Option<String>,
    pub keep_last_n: Option<i32>,
    pub keep_days: Option<i32>,
    pub keep_daily: Option<i32>,
    pub keep_weekly: Option<i32>,
    pub keep_monthly: Option<i32>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Policy {
    pub id: i64,
    pub tenant_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub keep_last_n: Option<i32>,
    pub keep_days: Option<i32>,
    pub keep_daily: Option<i32>,
    pub keep_weekly: Option<i32>,
    pub keep_monthly: Option<i32>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl Policy {
    pub fn fields(&self) -> PolicyFields {
        PolicyFields {
            name: self.name.clone(),
            description: self.description.clone(),
            keep_last_n: self.keep_last_n,
            keep_days: self.keep_days,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
        }
    }
}

macro_rules! columns {
    () => {
        "id, tenant_id, name, description, keep_last_n, keep_days, keep_daily, keep_weekly, \
         keep_monthly, created_at, updated_at"
    };
}

pub async fn insert(pool: &PgPool, tenant: Uuid, f: &PolicyFields) -> Result<Policy> {
    let sql = concat!(
        "INSERT INTO retention_policies (tenant_id, name, description, keep_last_n, keep_days, \
         keep_daily, keep_weekly, keep_monthly) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ",
        columns!()
    );
    Ok(sqlx::query_as::<_, Policy>(sql)
        .bind(tenant)
        .bind(&f.name)
        .bind(&f.description)
        .bind(f.keep_last_n)
        .bind(f.keep_days)
        .bind(f.keep_daily)
        .bind(f.keep_weekly)
        .bind(f.keep_monthly)
        .fetch_one(pool)
        .await?)
}

pub async fn get(pool: &PgPool, tenant: Uuid, id: i64) -> Result<Option<Policy>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM retention_policies WHERE tenant_id = $1 AND id = $2"
    );
    Ok(sqlx::query_as::<_, Policy>(sql)
        .bind(tenant)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// Every policy of the tenant, in creation order.
pub async fn list(pool: &PgPool, tenant: Uuid) -> Result<Vec<Policy>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM retention_policies WHERE tenant_id = $1 ORDER BY id"
    );
    Ok(sqlx::query_as::<_, Policy>(sql)
        .bind(tenant)
        .fetch_all(pool)
        .await?)
}

/// Replaces the policy's fields; none when it is not the tenant's.
pub async fn update(
    pool: &PgPool,
    tenant: Uuid,
    id: i64,
    f: &PolicyFields,
) -> Result<Option<Policy>> {
    let sql = concat!(
        "UPDATE retention_policies SET name = $3, description = $4, keep_last_n = $5, \
         keep_days = $6, keep_daily = $7, keep_weekly = $8, keep_monthly = $9, updated_at = now() \
         WHERE tenant_id = $1 AND id = $2 RETURNING ",
        columns!()
    );
    Ok(sqlx::query_as::<_, Policy>(sql)
        .bind(tenant)
        .bind(id)
        .bind(&f.name)
        .bind(&f.description)
        .bind(f.keep_last_n)
        .bind(f.keep_days)
        .bind(f.keep_daily)
        .bind(f.keep_weekly)
        .bind(f.keep_monthly)
        .fetch_optional(pool)
        .await?)
}

pub async fn delete(pool: &PgPool, tenant: Uuid, id: i64) -> Result<bool> {
    Ok(
        sqlx::query("DELETE FROM retention_policies WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
            == 1,
    )
}

/// The policies of every schedule of `tenant` backing up `database` on
/// `server` (distinct; several schedules may share a policy).
pub async fn for_database(
    pool: &PgPool,
    tenant: Uuid,
    server: i64,
    database: &str,
) -> Result<Vec<Policy>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM retention_policies WHERE tenant_id = $1 AND id IN (SELECT retention_policy_id \
         FROM schedules WHERE tenant_id = $1 AND server_id = $2 AND database_name = $3) ORDER BY id"
    );
    Ok(sqlx::query_as::<_, Policy>(sql)
        .bind(tenant)
        .bind(server)
        .bind(database)
        .fetch_all(pool)
        .await?)
}
