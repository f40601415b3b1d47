//! Error groups beyond the list: the stats figures (one unit, groups),
//! the streamed export, groups fetched by id for live events, and the
//! per-tenant retention setting with the sweep of groups it expires.

use chrono::{DateTime, Utc};
use futures::StreamExt;
use sqlx::PgPool;
use uuid::Uuid;

use crate::model::ErrorGroup;
use crate::pg::error_groups::ListFilter;
use crate::Result;

/// Days of occurrences a tenant keeps when it has set nothing.
pub const DEFAULT_EVENTS_DAYS: i32 = 90;
/// The allowed range of `events_days`.
pub const EVENTS_DAYS_RANGE: std::ops::RangeInclusive<i64> = 1..=3650;

/// The stats figures, all counted in error groups.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct GroupStats {
    pub total: i64,
    pub resolved: i64,
    pub today: i64,
    pub week: i64,
    pub month: i64,
    /// Mean seconds from first occurrence to resolution, over resolved groups.
    pub avg_resolution_secs: Option<f64>,
}

/// Groups of a tenant: all, resolved, and those with an occurrence since
/// each of `today <= week <= month` (pass nested windows and the counts
/// nest too: one table, one snapshot, one unit).
pub async fn stats(
    pool: &PgPool,
    tenant_id: Uuid,
    today: DateTime<Utc>,
    week: DateTime<Utc>,
    month: DateTime<Utc>,
) -> Result<GroupStats> {
    Ok(sqlx::query_as::<_, GroupStats>(
        "SELECT count(*) AS total,
                count(*) FILTER (WHERE resolved) AS resolved,
                count(*) FILTER (WHERE last_seen >= $2) AS today,
                count(*) FILTER (WHERE last_seen >= $3) AS week,
                count(*) FILTER (WHERE last_seen >= $4) AS month,
                (avg(EXTRACT(EPOCH FROM (resolved_at - first_seen))) FILTER (WHERE resolved))::float8
                    AS avg_resolution_secs
         FROM error_groups WHERE tenant_id = $1",
    )
    .bind(tenant_id)
    .bind(today)
    .bind(week)
    .bind(month)
    .fetch_one(pool)
    .await?)
}

/// The export's query: the list's filters as nullable parameters, so the
/// statement is one static string. Newest occurrence first.
const EXPORT_SQL: &str =
    "SELECT id, tenant_id, last_seen AS timestamp, level, message, stack_trace, context,
        source, environment, user_agent, ip_address, url, fingerprint, resolved, resolved_at, count,
        first_seen, last_seen, created_at, updated_at
   FROM error_groups
  WHERE tenant_id = $1
    AND ($2::text IS NULL OR level = $2)
    AND ($3::text IS NULL OR source = $3)
    AND ($4::bool IS NULL OR resolved = $4)
    AND ($5::text IS NULL OR message ILIKE $5 OR stack_trace ILIKE $5)
  ORDER BY last_seen DESC, id";

/// `search` as an `ILIKE` pattern matching it anywhere, wildcards escaped.
pub fn contains_pattern(search: &str) -> String {
    let escaped = search
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// Sends every group matching `f` into `out`, read through a server-side
/// cursor (sqlx streams rows as they arrive), so memory holds only the
/// channel's capacity whatever the number of groups. Stops at the first
/// error (sent) or when the receiver goes away.
pub async fn stream(
    pool: PgPool,
    tenant: Uuid,
    f: ListFilter,
    out: tokio::sync::mpsc::Sender<Result<ErrorGroup>>,
) {
    let pattern = f.search.as_deref().map(contains_pattern);
    let mut rows = sqlx::query_as::<_, ErrorGroup>(EXPORT_SQL)
        .bind(tenant)
        .bind(f.level)
        .bind(f.source)
        .bind(f.resolved)
        .bind(pattern)
        .fetch(&pool);
    while let Some(row) = rows.next().await {
        let stop = row.is_err();
        if out.send(row.map_err(Into::into)).await.is_err() || stop {
            return;
        }
    }
}

/// Groups by id (any tenant: the caller got the ids from the workers).
pub async fn fetch_many(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<ErrorGroup>> {
    Ok(sqlx::query_as::<_, ErrorGroup>(
        "SELECT id, tenant_id, last_seen AS timestamp, level, message, stack_trace, context,
                source, environment, user_agent, ip_address, url, fingerprint, resolved, resolved_at,
                count, first_seen, last_seen, created_at, updated_at
           FROM error_groups WHERE id = ANY($1::uuid[])",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?)
}

/// A tenant's `events_days` (the default when it has set none).
pub async fn events_days(pool: &PgPool, tenant_id: Uuid) -> Result<i32> {
    let row: Option<(i32,)> =
        sqlx::query_as("SELECT events_days FROM error_retention_settings WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_optional(pool)
            .await?;
    Ok(row.map_or(DEFAULT_EVENTS_DAYS, |r| r.0))
}

/// Stores a tenant's `events_days` (validated by the caller and by the
/// table's check) and answers it.
pub async fn set_events_days(pool: &PgPool, tenant_id: Uuid, days: i32) -> Result<i32> {
    let row: (i32,) = sqlx::query_as(
        "INSERT INTO error_retention_settings (tenant_id, events_days) VALUES ($1, $2)
         ON CONFLICT (tenant_id) DO UPDATE SET events_days = EXCLUDED.events_days, updated_at = now()
         RETURNING events_days",
    )
    .bind(tenant_id)
    .bind(days)
    .fetch_one(pool)
    .await?;
    Ok(row.0)
}

/// Every tenant that set its own `events_days`, with it.
pub async fn all_events_days(pool: &PgPool) -> Result<Vec<(Uuid, i32)>> {
    Ok(
        sqlx::query_as("SELECT tenant_id, events_days FROM error_retention_settings")
            .fetch_all(pool)
            .await?,
    )
}

/// Groups deleted per statement, so a large sweep never holds many locks.
const SWEEP_BATCH: i64 = 5000;

/// Deletes the groups whose last occurrence is older than their tenant's
/// retention as of `now` (they have no occurrence left once the sweep has
/// dropped the old partitions). Returns how many went.
pub async fn sweep_groups(pool: &PgPool, now: DateTime<Utc>) -> Result<u64> {
    let mut total = 0;
    loop {
        let r = sqlx::query(
            "DELETE FROM error_groups WHERE id IN (
               SELECT g.id FROM error_groups g
               LEFT JOIN error_retention_settings s ON s.tenant_id = g.tenant_id
               WHERE g.last_seen < $1 - make_interval(days => COALESCE(s.events_days, $2))
               LIMIT $3)",
        )
        .bind(now)
        .bind(DEFAULT_EVENTS_DAYS)
        .bind(SWEEP_BATCH)
        .execute(pool)
        .await?;
        total += r.rows_affected();
        if r.rows_affected() < SWEEP_BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Which of `ids` are tenants that still exist (the occurrences of a
/// deleted tenant are kept by no one).
pub async fn existing_tenants(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<Uuid>> {
    let rows: Vec<(Uuid,)> = sqlx::query_as("SELECT id FROM tenants WHERE id = ANY($1::uuid[])")
        .bind(ids)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}
