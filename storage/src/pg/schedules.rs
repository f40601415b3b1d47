//! Backup schedules: a tenant's cron expressions (evaluated in an IANA
//! zone by `sluice-jobs`), each naming a server's database, how to back it
//! up and an optional retention policy. Reads and writes for the API are
//! scoped to one tenant; the scheduler claims due rows across tenants with
//! `FOR UPDATE SKIP LOCKED`, so several workers never run one tick twice.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres};
use uuid::Uuid;

use crate::Result;

/// What a schedule says, as written by a create or an update.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScheduleFields {
    pub name: String,
    pub description: Option<String>,
    pub server_id: i64,
    pub database_name: String,
    pub cron_expression: String,
    pub timezone: String,
    pub backup_type: String,
    pub compression_type: String,
    pub encrypt: bool,
    pub retention_policy_id: Option<i64>,
    pub enabled: bool,
    pub notify_on_success: bool,
    pub notify_on_failure: bool,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Schedule {
    pub id: i64,
    pub tenant_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub server_id: i64,
    pub database_name: String,
    pub cron_expression: String,
    pub timezone: String,
    pub backup_type: String,
    pub compression_type: String,
    pub encrypt: bool,
    pub retention_policy_id: Option<i64>,
    pub enabled: bool,
    pub notify_on_success: bool,
    pub notify_on_failure: bool,
    pub last_run: Option<DateTime<Utc>>,
    pub next_run: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Schedule {
    pub fn fields(&self) -> ScheduleFields {
        ScheduleFields {
            name: self.name.clone(),
            description: self.description.clone(),
            server_id: self.server_id,
            database_name: self.database_name.clone(),
            cron_expression: self.cron_expression.clone(),
            timezone: self.timezone.clone(),
            backup_type: self.backup_type.clone(),
            compression_type: self.compression_type.clone(),
            encrypt: self.encrypt,
            retention_policy_id: self.retention_policy_id,
            enabled: self.enabled,
            notify_on_success: self.notify_on_success,
            notify_on_failure: self.notify_on_failure,
        }
    }
}

macro_rules! columns {
    () => {
        "id, tenant_id, name, description, server_id, database_name, cron_expression, timezone, \
         backup_type, compression_type, encrypt, retention_policy_id, enabled, notify_on_success, \
         notify_on_failure, last_run, next_run, created_at, updated_at"
    };
}

/// Inserts a schedule run by the deployment whose job namespace is
/// `namespace` (see the `schedules.namespace` column).
pub async fn insert(
    pool: &PgPool,
    namespace: &str,
    tenant: Uuid,
    f: &ScheduleFields,
    next_run: Option<DateTime<Utc>>,
) -> Result<Schedule> {
    let sql = concat!(
        "INSERT INTO schedules (tenant_id, name, description, server_id, database_name, \
         cron_expression, timezone, backup_type, compression_type, encrypt, retention_policy_id, \
         enabled, notify_on_success, notify_on_failure, next_run, namespace) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING ",
        columns!()
    );
    Ok(sqlx::query_as::<_, Schedule>(sql)
        .bind(tenant)
        .bind(&f.name)
        .bind(&f.description)
        .bind(f.server_id)
        .bind(&f.database_name)
        .bind(&f.cron_expression)
        .bind(&f.timezone)
        .bind(&f.backup_type)
        .bind(&f.compression_type)
        .bind(f.encrypt)
        .bind(f.retention_policy_id)
        .bind(f.enabled)
        .bind(f.notify_on_success)
        .bind(f.notify_on_failure)
        .bind(next_run)
        .bind(namespace)
        .fetch_one(pool)
        .await?)
}

pub async fn get(pool: &PgPool, tenant: Uuid, id: i64) -> Result<Option<Schedule>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM schedules WHERE tenant_id = $1 AND id = $2"
    );
    Ok(sqlx::query_as::<_, Schedule>(sql)
        .bind(tenant)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// Every schedule of the tenant, in creation order.
pub async fn list(pool: &PgPool, tenant: Uuid) -> Result<Vec<Schedule>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM schedules WHERE tenant_id = $1 ORDER BY id"
    );
    Ok(sqlx::query_as::<_, Schedule>(sql)
        .bind(tenant)
        .fetch_all(pool)
        .await?)
}

/// Replaces the schedule's fields and its next run; none when it is not
/// the tenant's.
pub async fn update(
    pool: &PgPool,
    tenant: Uuid,
    id: i64,
    f: &ScheduleFields,
    next_run: Option<DateTime<Utc>>,
) -> Result<Option<Schedule>> {
    let sql = concat!(
        "UPDATE schedules SET name = $3, description = $4, server_id = $5, database_name = $6, \
         cron_expression = $7, timezone = $8, backup_type = $9, compression_type = $10, \
         encrypt = $11, retention_policy_id = $12, enabled = $13, notify_on_success = $14, \
         notify_on_failure = $15, next_run = $16, updated_at = now() \
         WHERE tenant_id = $1 AND id = $2 RETURNING ",
        columns!()
    );
    Ok(sqlx::query_as::<_, Schedule>(sql)
        .bind(tenant)
        .bind(id)
        .bind(&f.name)
        .bind(&f.description)
        .bind(f.server_id)
        .bind(&f.database_name)
        .bind(&f.cron_expression)
        .bind(&f.timezone)
        .bind(&f.backup_type)
        .bind(&f.compression_type)
        .bind(f.encrypt)
        .bind(f.retention_policy_id)
        .bind(f.enabled)
        .bind(f.notify_on_success)
        .bind(f.notify_on_failure)
        .bind(next_run)
        .fetch_optional(pool)
        .await?)
}

pub async fn delete(pool: &PgPool, tenant: Uuid, id: i64) -> Result<bool> {
    Ok(
        sqlx::query("DELETE FROM schedules WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
            == 1,
    )
}

/// For the scheduler, in its transaction: one enabled schedule whose
/// `next_run` has come, locked; rows another worker holds are skipped.
pub async fn claim_due(conn: &mut sqlx::PgConnection, namespace: &str) -> Result<Option<Schedule>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM schedules WHERE namespace = $1 AND enabled AND next_run <= now() \
         ORDER BY next_run, id LIMIT 1 FOR UPDATE SKIP LOCKED"
    );
    Ok(sqlx::query_as::<_, Schedule>(sql)
        .bind(namespace)
        .fetch_optional(&mut *conn)
        .await?)
}

/// The claimed schedule ran (`ran`) and next runs at `next_run`.
pub async fn advance(
    conn: &mut sqlx::PgConnection,
    id: i64,
    ran: bool,
    next_run: Option<DateTime<Utc>>,
) -> Result<()> {
    sqlx::query(
        "UPDATE schedules SET next_run = $2, \
         last_run = CASE WHEN $3 THEN now() ELSE last_run END WHERE id = $1",
    )
    .bind(id)
    .bind(next_run)
    .bind(ran)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records which schedule queued a backup.
pub async fn set_backup_schedule<'c, E>(conn: E, backup_id: i64, schedule_id: i64) -> Result<()>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    sqlx::query("UPDATE backups SET schedule_id = $2 WHERE id = $1")
        .bind(backup_id)
        .bind(schedule_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The schedule that queued backup `backup_id`, if any, and still there.
pub async fn of_backup(pool: &PgPool, backup_id: i64) -> Result<Option<Schedule>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM schedules WHERE id = (SELECT schedule_id FROM backups WHERE id = $1)"
    );
    Ok(sqlx::query_as::<_, Schedule>(sql)
        .bind(backup_id)
        .fetch_optional(pool)
        .await?)
}

/// Claims the periodic retention sweep of every schedule with a policy
/// whose last sweep is older than `every_secs` (a conditional UPDATE: one
/// worker per period gets each), and answers the distinct (tenant, server,
/// database) groups to sweep.
pub async fn claim_sweeps(
    pool: &PgPool,
    namespace: &str,
    every_secs: f64,
) -> Result<Vec<(Uuid, i64, String)>> {
    Ok(sqlx::query_as::<_, (Uuid, i64, String)>(
        "WITH claimed AS (UPDATE schedules SET retention_swept_at = now() \
         WHERE namespace = $2 AND retention_policy_id IS NOT NULL AND (retention_swept_at IS NULL \
         OR retention_swept_at <= now() - make_interval(secs => $1)) \
         RETURNING tenant_id, server_id, database_name) \
         SELECT DISTINCT tenant_id, server_id, database_name FROM claimed",
    )
    .bind(every_secs)
    .bind(namespace)
    .fetch_all(pool)
    .await?)
}
