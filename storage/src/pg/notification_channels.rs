//! Notification channels and their delivery records. Every query is
//! scoped to one tenant, so another tenant's channel is never found. The
//! `secrets_sealed` column holds what [`crate::secrets::SecretBox`] sealed;
//! this module never sees plaintext.

use sqlx::PgPool;
use uuid::Uuid;

use crate::Result;

/// The columns of a [`NotificationChannel`], as a literal for `concat!`
/// (sqlx takes only static SQL).
macro_rules! columns {
    () => {
        "id, tenant_id, name, kind, is_enabled, config, secrets_sealed, created_at, updated_at"
    };
}

/// A stored channel.
#[derive(Clone, sqlx::FromRow)]
pub struct NotificationChannel {
    pub id: i64,
    pub tenant_id: Uuid,
    #[sqlx(flatten)]
    pub fields: ChannelFields,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// What a caller sets on a channel (secrets already sealed).
#[derive(Clone, Default, sqlx::FromRow)]
pub struct ChannelFields {
    pub name: String,
    /// `slack`, `webhook` or `email`.
    pub kind: String,
    pub is_enabled: bool,
    /// The settings that are not secret.
    pub config: sqlx::types::Json<serde_json::Value>,
    /// A JSON object of the secret settings, sealed.
    pub secrets_sealed: Option<Vec<u8>>,
}

type Q<'q> =
    sqlx::query::QueryAs<'q, sqlx::Postgres, NotificationChannel, sqlx::postgres::PgArguments>;

fn bind_fields<'q>(q: Q<'q>, f: &'q ChannelFields) -> Q<'q> {
    q.bind(&f.name)
        .bind(&f.kind)
        .bind(f.is_enabled)
        .bind(&f.config)
        .bind(&f.secrets_sealed)
}

pub async fn insert(
    pool: &PgPool,
    tenant_id: Uuid,
    f: &ChannelFields,
) -> Result<NotificationChannel> {
    let sql = concat!(
        "INSERT INTO notification_channels (tenant_id, name, kind, is_enabled, config, \
         secrets_sealed) VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
        columns!()
    );
    let q = sqlx::query_as::<_, NotificationChannel>(sql).bind(tenant_id);
    Ok(bind_fields(q, f).fetch_one(pool).await?)
}

pub async fn list(pool: &PgPool, tenant_id: Uuid) -> Result<Vec<NotificationChannel>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM notification_channels WHERE tenant_id = $1 ORDER BY id"
    );
    Ok(sqlx::query_as::<_, NotificationChannel>(sql)
        .bind(tenant_id)
        .fetch_all(pool)
        .await?)
}

pub async fn get(pool: &PgPool, tenant_id: Uuid, id: i64) -> Result<Option<NotificationChannel>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM notification_channels WHERE tenant_id = $1 AND id = $2"
    );
    Ok(sqlx::query_as::<_, NotificationChannel>(sql)
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// The tenant's channels among `ids` (unknown and other tenants' ids are
/// left out), in id order.
pub async fn get_many(
    pool: &PgPool,
    tenant_id: Uuid,
    ids: &[i64],
) -> Result<Vec<NotificationChannel>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM notification_channels WHERE tenant_id = $1 AND id = ANY($2) ORDER BY id"
    );
    Ok(sqlx::query_as::<_, NotificationChannel>(sql)
        .bind(tenant_id)
        .bind(ids)
        .fetch_all(pool)
        .await?)
}

/// Replaces every caller-set field of the tenant's channel `id`; `None`
/// when there is no such channel in that tenant.
pub async fn update(
    pool: &PgPool,
    tenant_id: Uuid,
    id: i64,
    f: &ChannelFields,
) -> Result<Option<NotificationChannel>> {
    let sql = concat!(
        "UPDATE notification_channels SET name = $3, kind = $4, is_enabled = $5, config = $6, \
         secrets_sealed = $7, updated_at = now() WHERE tenant_id = $1 AND id = $2 RETURNING ",
        columns!()
    );
    let q = sqlx::query_as::<_, NotificationChannel>(sql)
        .bind(tenant_id)
        .bind(id);
    Ok(bind_fields(q, f).fetch_optional(pool).await?)
}

pub async fn delete(pool: &PgPool, tenant_id: Uuid, id: i64) -> Result<bool> {
    let r = sqlx::query("DELETE FROM notification_channels WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// One delivery's outcome, as recorded.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Delivery {
    pub id: i64,
    pub channel_id: i64,
    pub tenant_id: Uuid,
    /// `delivered` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub error: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Records a delivery's outcome (the channel must be the tenant's).
pub async fn record_delivery(
    pool: &PgPool,
    tenant_id: Uuid,
    channel_id: i64,
    status: &str,
    attempts: i32,
    error: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO notification_deliveries (channel_id, tenant_id, status, attempts, error) \
         SELECT id, tenant_id, $3, $4, $5 FROM notification_channels \
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant_id)
    .bind(channel_id)
    .bind(status)
    .bind(attempts)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// The latest `limit` deliveries of the tenant's channel, newest first.
pub async fn deliveries(
    pool: &PgPool,
    tenant_id: Uuid,
    channel_id: i64,
    limit: i64,
) -> Result<Vec<Delivery>> {
    Ok(sqlx::query_as::<_, Delivery>(
        "SELECT id, channel_id, tenant_id, status, attempts, error, created_at \
         FROM notification_deliveries WHERE tenant_id = $1 AND channel_id = $2 \
         ORDER BY id DESC LIMIT $3",
    )
    .bind(tenant_id)
    .bind(channel_id)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
