//! The backup platform's servers: where database tools run and the
//! database endpoint they reach. Every query is scoped to one tenant, so
//! another tenant's server is never found. Secret columns hold what
//! [`crate::secrets::SecretBox`] sealed; this module never sees plaintext.

use sqlx::PgPool;
use uuid::Uuid;

use crate::Result;

/// The columns of a [`Server`], as a literal for `concat!` (sqlx takes
/// only static SQL).
macro_rules! columns {
    () => {
        "id, tenant_id, name, description, kind, environment, host, port, container, \
         tags, ssh_username, ssh_password_sealed, ssh_key_sealed, db_type, db_host, db_port, \
         db_username, db_password_sealed, health_status, last_heartbeat, created_at, updated_at"
    };
}

/// A stored server.
#[derive(Clone, sqlx::FromRow)]
pub struct Server {
    pub id: i64,
    pub tenant_id: Uuid,
    #[sqlx(flatten)]
    pub fields: ServerFields,
    pub health_status: String,
    pub last_heartbeat: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// What a caller sets on a server (secrets already sealed).
#[derive(Clone, Default, sqlx::FromRow)]
pub struct ServerFields {
    pub name: String,
    pub description: Option<String>,
    /// `local`, `ssh` or `docker`.
    pub kind: String,
    pub environment: Option<String>,
    pub host: Option<String>,
    pub port: Option<i32>,
    pub container: Option<String>,
    pub tags: sqlx::types::Json<serde_json::Value>,
    pub ssh_username: Option<String>,
    pub ssh_password_sealed: Option<Vec<u8>>,
    pub ssh_key_sealed: Option<Vec<u8>>,
    /// `postgresql` or `mysql`.
    pub db_type: Option<String>,
    pub db_host: Option<String>,
    pub db_port: Option<i32>,
    pub db_username: Option<String>,
    pub db_password_sealed: Option<Vec<u8>>,
}

fn bind_fields<'q>(
    q: sqlx::query::QueryAs<'q, sqlx::Postgres, Server, sqlx::postgres::PgArguments>,
    f: &'q ServerFields,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, Server, sqlx::postgres::PgArguments> {
    q.bind(&f.name)
        .bind(&f.description)
        .bind(&f.kind)
        .bind(&f.environment)
        .bind(&f.host)
        .bind(f.port)
        .bind(&f.container)
        .bind(&f.tags)
        .bind(&f.ssh_username)
        .bind(&f.ssh_password_sealed)
        .bind(&f.ssh_key_sealed)
        .bind(&f.db_type)
        .bind(&f.db_host)
        .bind(f.db_port)
        .bind(&f.db_username)
        .bind(&f.db_password_sealed)
}

pub async fn insert(pool: &PgPool, tenant_id: Uuid, f: &ServerFields) -> Result<Server> {
    let sql = concat!(
        "INSERT INTO servers (tenant_id, name, description, kind, environment, host, port, \
         container, tags, ssh_username, ssh_password_sealed, ssh_key_sealed, db_type, db_host, \
         db_port, db_username, db_password_sealed) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
         RETURNING ",
        columns!()
    );
    let q = sqlx::query_as::<_, Server>(sql).bind(tenant_id);
    Ok(bind_fields(q, f).fetch_one(pool).await?)
}

pub async fn list(pool: &PgPool, tenant_id: Uuid) -> Result<Vec<Server>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM servers WHERE tenant_id = $1 ORDER BY id"
    );
    Ok(sqlx::query_as::<_, Server>(sql)
        .bind(tenant_id)
        .fetch_all(pool)
        .await?)
}

pub async fn get(pool: &PgPool, tenant_id: Uuid, id: i64) -> Result<Option<Server>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM servers WHERE tenant_id = $1 AND id = $2"
    );
    Ok(sqlx::query_as::<_, Server>(sql)
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// Replaces every caller-set field of the tenant's server `id`; `None`
/// when there is no such server in that tenant.
pub async fn update(
    pool: &PgPool,
    tenant_id: Uuid,
    id: i64,
    f: &ServerFields,
) -> Result<Option<Server>> {
    let sql = concat!(
        "UPDATE servers SET name = $3, description = $4, kind = $5, environment = $6, host = $7, \
         port = $8, container = $9, tags = $10, ssh_username = $11, ssh_password_sealed = $12, \
         ssh_key_sealed = $13, db_type = $14, db_host = $15, db_port = $16, db_username = $17, \
         db_password_sealed = $18, updated_at = now() \
         WHERE tenant_id = $1 AND id = $2 RETURNING ",
        columns!()
    );
    let q = sqlx::query_as::<_, Server>(sql).bind(tenant_id).bind(id);
    Ok(bind_fields(q, f).fetch_optional(pool).await?)
}

pub async fn delete(pool: &PgPool, tenant_id: Uuid, id: i64) -> Result<bool> {
    let r = sqlx::query("DELETE FROM servers WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// The SSH host key recorded for a server (trust on first use), if any.
pub async fn host_key(pool: &PgPool, id: i64) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar::<_, Option<String>>("SELECT ssh_host_key FROM servers WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?
            .flatten(),
    )
}

/// Records the host key a server presented, unless one is already there.
pub async fn record_host_key(pool: &PgPool, id: i64, fingerprint: &str) -> Result<()> {
    sqlx::query("UPDATE servers SET ssh_host_key = $2 WHERE id = $1 AND ssh_host_key IS NULL")
        .bind(id)
        .bind(fingerprint)
        .execute(pool)
        .await?;
    Ok(())
}

/// Claims at most `limit` servers whose health check is due (never
/// checked, or last taken more than `every_secs` ago), oldest first, and
/// marks them taken now; concurrent callers never get the same server.
pub async fn claim_health_checks(
    pool: &PgPool,
    every_secs: f64,
    limit: i64,
) -> Result<Vec<(i64, Uuid)>> {
    Ok(sqlx::query_as::<_, (i64, Uuid)>(
        "UPDATE servers SET health_checked_at = now() WHERE id IN ( \
           SELECT id FROM servers \
           WHERE health_checked_at IS NULL \
              OR health_checked_at < now() - make_interval(secs => $1) \
           ORDER BY health_checked_at NULLS FIRST LIMIT $2 FOR UPDATE SKIP LOCKED) \
         RETURNING id, tenant_id",
    )
    .bind(every_secs)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Records a health check's outcome.
pub async fn set_health(pool: &PgPool, id: i64, status: &str) -> Result<()> {
    sqlx::query(
        "UPDATE servers SET health_status = $2, \
         last_heartbeat = CASE WHEN $2 = 'healthy' THEN now() ELSE last_heartbeat END \
         WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .execute(pool)
    .await?;
    Ok(())
}
