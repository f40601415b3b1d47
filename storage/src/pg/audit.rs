//! The audit log: append-only entries, one per state-changing request,
//! read back tenant-scoped with filters, or streamed for export.

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::Result;

/// One entry as the API shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Entry {
    pub id: i64,
    pub user_id: Option<i64>,
    pub username: Option<String>,
    pub action: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<i64>,
    pub details: Json<Value>,
    pub ip_address: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A new entry. `user` is the acting user's UUID, resolved to their
/// integer id (and current username, when `username` is unset) as it is written.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub tenant_id: Option<Uuid>,
    pub user: Option<Uuid>,
    pub username: Option<String>,
    pub action: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<i64>,
    pub details: Value,
    pub ip_address: Option<String>,
}

pub async fn insert(pool: &PgPool, e: &NewEntry) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_logs (tenant_id, user_id, username, action, resource_type, resource_id, details, ip_address)
         VALUES ($1, (SELECT num FROM users WHERE id = $2),
                 COALESCE($3, (SELECT username FROM users WHERE id = $2)), $4, $5, $6, $7, $8)",
    )
    .bind(e.tenant_id)
    .bind(e.user)
    .bind(e.username.as_deref())
    .bind(&e.action)
    .bind(e.resource_type.as_deref())
    .bind(e.resource_id)
    .bind(Json(&e.details))
    .bind(e.ip_address.as_deref())
    .execute(pool)
    .await?;
    Ok(())
}

/// The list's filter; `until` is exclusive.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub action: Option<String>,
    pub user_id: Option<i64>,
    pub resource_type: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

macro_rules! columns {
    () => {
        "id, user_id, username, action, resource_type, resource_id, details, ip_address, created_at"
    };
}

macro_rules! filter {
    () => {
        "tenant_id = $1 AND ($2::TEXT IS NULL OR action = $2) AND ($3::BIGINT IS NULL OR user_id = $3) \
         AND ($4::TEXT IS NULL OR resource_type = $4) AND ($5::TIMESTAMPTZ IS NULL OR created_at >= $5) \
         AND ($6::TIMESTAMPTZ IS NULL OR created_at < $6)"
    };
}

/// Matching entries newest first, one page, and how many match in all.
pub async fn list(
    pool: &PgPool,
    tenant: Uuid,
    f: &Filter,
    limit: i64,
    offset: i64,
) -> Result<(i64, Vec<Entry>)> {
    let total: i64 =
        sqlx::query_scalar(concat!("SELECT count(*) FROM audit_logs WHERE ", filter!()))
            .bind(tenant)
            .bind(f.action.as_deref())
            .bind(f.user_id)
            .bind(f.resource_type.as_deref())
            .bind(f.since)
            .bind(f.until)
            .fetch_one(pool)
            .await?;
    let items = sqlx::query_as::<_, Entry>(concat!(
        "SELECT ",
        columns!(),
        " FROM audit_logs WHERE ",
        filter!(),
        " ORDER BY id DESC LIMIT $7 OFFSET $8"
    ))
    .bind(tenant)
    .bind(f.action.as_deref())
    .bind(f.user_id)
    .bind(f.resource_type.as_deref())
    .bind(f.since)
    .bind(f.until)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?;
    Ok((total, items))
}

/// Every matching entry, newest first, sent one by one into `out` (a
/// bounded channel: the query's cursor advances only as fast as the
/// receiver takes rows). Ends at the last row, on an error (sent), or
/// when the receiver is gone.
pub async fn stream(
    pool: PgPool,
    tenant: Uuid,
    f: Filter,
    out: tokio::sync::mpsc::Sender<Result<Entry>>,
) {
    let mut rows = sqlx::query_as::<_, Entry>(concat!(
        "SELECT ",
        columns!(),
        " FROM audit_logs WHERE ",
        filter!(),
        " ORDER BY id DESC"
    ))
    .bind(tenant)
    .bind(f.action)
    .bind(f.user_id)
    .bind(f.resource_type)
    .bind(f.since)
    .bind(f.until)
    .fetch(&pool);
    while let Some(row) = rows.next().await {
        let stop = row.is_err();
        if out.send(row.map_err(Into::into)).await.is_err() || stop {
            return;
        }
    }
}
