//! A fresh tenant for the run, and the loss check after it: wait until
//! ClickHouse's raw events and Postgres's group counts of that tenant reach
//! the number of events the server accepted, then compare.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use sluice_storage::ch::{self, ChConfig};
use sluice_storage::pg;
use sqlx::PgPool;
use uuid::Uuid;

/// Sluice reloads its key directory every 2 s; a new key works after that.
pub const KEY_PROPAGATION: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    pub id: Uuid,
    pub slug: String,
    #[serde(skip)]
    pub api_key: String,
}

/// Creates tenant `loadtest-<uuid8>` and a read,write API key without a
/// rate limit (a per-key quota of 0), valid for a week.
pub async fn provision(pool: &PgPool) -> Result<Tenant> {
    let suffix = Uuid::new_v4().simple().to_string();
    let slug = format!("loadtest-{}", &suffix[..8]);
    let tenant = pg::tenants::ensure(pool, &slug, &format!("Load test {slug}"))
        .await
        .context("creating the load-test tenant")?;
    let permissions = ["read".to_string(), "write".to_string()];
    let (_, api_key) = pg::api_keys::create(
        pool,
        &pg::api_keys::NewKey {
            tenant_id: tenant.id,
            name: "sluice-loadtest",
            permissions: &permissions,
            rate_limit_per_min: Some(0),
            expires_at: Some(chrono::Utc::now() + chrono::Duration::days(7)),
        },
    )
    .await
    .context("creating the load-test API key")?;
    Ok(Tenant {
        id: tenant.id,
        slug: tenant.slug,
        api_key,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct LossCheck {
    /// Error events the server accepted (2xx singles, batches' `accepted`,
    /// lag probes).
    pub accepted: u64,
    pub stored_clickhouse: u64,
    pub stored_postgres: u64,
    /// Accepted events missing from the store that has fewer.
    pub lost: u64,
    /// Events beyond the accepted count in the store that has more.
    pub duplicated: u64,
    /// Events sent without an answer (connection error or time-out): the
    /// server may have stored them, so they can show up as duplicates.
    pub unanswered: u64,
    /// From the end of the run until both stores held every accepted event
    /// (or the drain time-out).
    pub drain_secs: f64,
    /// accepted / (run time + drain time); none when the drain timed out.
    pub sustained_events_per_sec: Option<f64>,
    /// Both stores reached the accepted count before the time-out.
    pub drained: bool,
}

pub struct Stores {
    pub pg: PgPool,
    pub ch: clickhouse::Client,
}

impl Stores {
    pub fn clickhouse(cfg: &ChConfig) -> clickhouse::Client {
        ch::client(cfg)
    }

    async fn counts(&self, tenant: Uuid) -> Result<(u64, u64)> {
        let in_ch = ch::events::count_raw(&self.ch, tenant, None)
            .await
            .context("counting events in ClickHouse")?;
        let in_pg: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(count), 0)::bigint FROM error_groups WHERE tenant_id = $1",
        )
        .bind(tenant)
        .fetch_one(&self.pg)
        .await
        .context("counting events in Postgres")?;
        Ok((in_ch, u64::try_from(in_pg).unwrap_or(0)))
    }
}

/// Polls both stores until they hold `accepted` events (or more), or
/// `timeout` passes since `run_end`.
pub async fn drain(
    stores: &Stores,
    tenant: Uuid,
    accepted: u64,
    unanswered: u64,
    run_secs: f64,
    run_end: Instant,
    timeout: Duration,
) -> Result<LossCheck> {
    let (mut in_ch, mut in_pg);
    loop {
        (in_ch, in_pg) = stores.counts(tenant).await?;
        if (in_ch >= accepted && in_pg >= accepted) || run_end.elapsed() >= timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let drain_secs = run_end.elapsed().as_secs_f64();
    let drained = in_ch >= accepted && in_pg >= accepted;
    Ok(LossCheck {
        accepted,
        stored_clickhouse: in_ch,
        stored_postgres: in_pg,
        lost: accepted.saturating_sub(in_ch.min(in_pg)),
        duplicated: in_ch.max(in_pg).saturating_sub(accepted),
        unanswered,
        drain_secs,
        sustained_events_per_sec: drained
            .then(|| accepted as f64 / (run_secs + drain_secs).max(1e-9)),
        drained,
    })
}
