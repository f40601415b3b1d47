//! A fresh tenant for the run, and the loss check after it: wait until
//! ClickHouse's raw events and Postgres's group counts of that tenant reach
//! the number of events the server accepted (and, with a settle time, stop
//! changing), then compare. ClickHouse rows carry each event's identity
//! (`<stream>/<entry id>/<index>`), so an event stored twice is told apart
//! from an event stored without an answer.

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
    /// ClickHouse rows of the tenant.
    pub stored_clickhouse: u64,
    /// Distinct event ids among those rows.
    pub distinct_clickhouse: u64,
    /// The sum of the tenant's group counts in Postgres.
    pub stored_postgres: u64,
    /// Accepted events missing from the store that has fewer (distinct
    /// events in ClickHouse, counts in Postgres).
    pub lost: u64,
    /// Events stored more than once: ClickHouse rows whose event id another
    /// row already has, plus Postgres counts beyond ClickHouse's distinct
    /// events.
    pub duplicated: u64,
    /// Events sent without an answer (connection error or time-out): the
    /// server may have stored them.
    pub unanswered: u64,
    /// Events stored (in both stores) beyond the accepted count: requests
    /// that were stored but not answered. More than `unanswered` would mean
    /// events stored that were refused.
    pub stored_unanswered: u64,
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

    /// Both stores' counts. Distinct event ids cost more than a row count,
    /// so they are counted only once there are `distinct_from` rows or more
    /// (below that, fewer rows than accepted events, the distinct count is
    /// taken to be the row count); 0 counts them always.
    async fn counts(&self, tenant: Uuid, distinct_from: u64) -> Result<Counts> {
        let rows = ch::events::count_raw(&self.ch, tenant, None)
            .await
            .context("counting events in ClickHouse")?;
        let distinct = if rows >= distinct_from {
            self.ch
                .query("SELECT uniqExact(event_id) FROM error_events WHERE tenant_id = toUUID(?)")
                .bind(tenant.to_string())
                .fetch_one::<u64>()
                .await
                .context("counting distinct events in ClickHouse")?
        } else {
            rows
        };
        let in_pg: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(count), 0)::bigint FROM error_groups WHERE tenant_id = $1",
        )
        .bind(tenant)
        .fetch_one(&self.pg)
        .await
        .context("counting events in Postgres")?;
        Ok(Counts {
            ch_rows: rows,
            ch_distinct: distinct,
            pg: u64::try_from(in_pg).unwrap_or(0),
        })
    }
}

/// One look at both stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    ch_rows: u64,
    ch_distinct: u64,
    pg: u64,
}

impl Counts {
    fn hold(&self, accepted: u64) -> bool {
        self.ch_distinct >= accepted && self.pg >= accepted
    }
}

/// How long to wait for the stores after the run.
#[derive(Debug, Clone, Copy)]
pub struct DrainPlan {
    /// Longest wait, from the end of the run.
    pub timeout: Duration,
    /// Once both stores hold the accepted count, keep polling until the
    /// counts stay the same this long (events stored without an answer, or
    /// twins, still arriving), within `timeout`.
    pub settle: Duration,
}

/// Polls both stores until they hold `accepted` events (or more) and, with
/// a settle time, stop changing; or until the time-out passes since
/// `run_end`.
pub async fn drain(
    stores: &Stores,
    tenant: Uuid,
    accepted: u64,
    unanswered: u64,
    run_secs: f64,
    run_end: Instant,
    plan: DrainPlan,
) -> Result<LossCheck> {
    let mut c = stores.counts(tenant, accepted).await?;
    let mut held_at: Option<Instant> = None;
    let mut drain_secs = run_end.elapsed().as_secs_f64();
    let mut stable_since = Instant::now();
    loop {
        if c.hold(accepted) && held_at.is_none() {
            held_at = Some(Instant::now());
            drain_secs = run_end.elapsed().as_secs_f64();
        }
        let settled = held_at.is_some() && stable_since.elapsed() >= plan.settle;
        if settled || run_end.elapsed() >= plan.timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let next = stores.counts(tenant, accepted).await?;
        if next != c {
            stable_since = Instant::now();
        }
        c = next;
    }
    let drained = held_at.is_some();
    if !drained {
        drain_secs = run_end.elapsed().as_secs_f64();
        c = stores.counts(tenant, 0).await?;
    }
    Ok(loss_check(
        c, accepted, unanswered, run_secs, drain_secs, drained,
    ))
}

fn loss_check(
    c: Counts,
    accepted: u64,
    unanswered: u64,
    run_secs: f64,
    drain_secs: f64,
    drained: bool,
) -> LossCheck {
    let stored = c.ch_distinct.min(c.pg);
    LossCheck {
        accepted,
        stored_clickhouse: c.ch_rows,
        distinct_clickhouse: c.ch_distinct,
        stored_postgres: c.pg,
        lost: accepted.saturating_sub(stored),
        duplicated: c.ch_rows.saturating_sub(c.ch_distinct) + c.pg.saturating_sub(c.ch_distinct),
        unanswered,
        stored_unanswered: stored.saturating_sub(accepted),
        drain_secs,
        sustained_events_per_sec: drained
            .then(|| accepted as f64 / (run_secs + drain_secs).max(1e-9)),
        drained,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(ch_rows: u64, ch_distinct: u64, pg: u64) -> Counts {
        Counts {
            ch_rows,
            ch_distinct,
            pg,
        }
    }

    #[test]
    fn loss_check_tells_twins_from_unanswered_events() {
        let clean = loss_check(counts(100, 100, 100), 100, 0, 10.0, 1.0, true);
        assert_eq!(
            (clean.lost, clean.duplicated, clean.stored_unanswered),
            (0, 0, 0)
        );
        // 5 events stored without an answer: not duplicates
        let unanswered = loss_check(counts(105, 105, 105), 100, 8, 10.0, 1.0, true);
        assert_eq!(
            (
                unanswered.lost,
                unanswered.duplicated,
                unanswered.stored_unanswered
            ),
            (0, 0, 5)
        );
        // 3 ClickHouse twins and 2 events counted twice in Postgres
        let twins = loss_check(counts(103, 100, 102), 100, 0, 10.0, 1.0, true);
        assert_eq!((twins.lost, twins.duplicated), (0, 5));
        // 4 accepted events missing from Postgres, 1 from ClickHouse
        let lost = loss_check(counts(99, 99, 96), 100, 0, 10.0, 1.0, false);
        assert_eq!((lost.lost, lost.duplicated), (4, 0));
        assert!(lost.sustained_events_per_sec.is_none());
        assert!(!counts(100, 99, 100).hold(100) && counts(100, 100, 101).hold(100));
    }
}
