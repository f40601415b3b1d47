//! The retention sweep of error occurrences (`/api/settings/retention`):
//! a periodic task in every worker process. Each pass
//! 1. drops, by whole ClickHouse partitions (one per day), the days every
//!    tenant with occurrences on them has let expire;
//! 2. for a day only some of its tenants let expire, removes their rows of
//!    it with a mutation (the others keep theirs); a deleted tenant's
//!    occurrences count as expired;
//! 3. deletes the error groups whose last occurrence is older than their
//!    tenant's retention (they have no occurrence left).
//!
//! The same pass also drops the partitions (days) of Sluice's own health
//! history (`monitor_samples`, `service_probes`) that lie wholly before the
//! keep period (`SLUICE_MONITOR_KEEP_DAYS`, [`sweep_monitoring`]). Those
//! tables are shared by every deployment on the ClickHouse database, so
//! the shortest keep period among them wins.
//!
//! Idempotent: several workers sweeping at once drop and delete the same
//! things, which is harmless.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sluice_storage::ch::retention as ch_retention;
use sluice_storage::pg::error_extra::{self, DEFAULT_EVENTS_DAYS};
use tokio::sync::watch;
use uuid::Uuid;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Partitions (days) dropped whole.
    pub dropped_days: Vec<u32>,
    /// Days from which some tenants' rows were deleted by a mutation.
    pub trimmed_days: Vec<u32>,
    /// Error groups deleted.
    pub groups_deleted: u64,
}

/// One pass as of `now`.
#[tracing::instrument(skip_all)]
pub async fn sweep(
    pg: &sqlx::PgPool,
    ch: &clickhouse::Client,
    now: DateTime<Utc>,
) -> sluice_storage::Result<SweepReport> {
    let days_of: HashMap<Uuid, i32> = error_extra::all_events_days(pg)
        .await?
        .into_iter()
        .collect();
    let cutoff = |tenant: &Uuid| {
        let days = days_of.get(tenant).copied().unwrap_or(DEFAULT_EVENTS_DAYS);
        now - chrono::Duration::days(i64::from(days))
    };
    // No tenant keeps less than this: days after it are never touched.
    let shortest = days_of
        .values()
        .copied()
        .chain([DEFAULT_EVENTS_DAYS])
        .min()
        .unwrap_or(DEFAULT_EVENTS_DAYS);
    let earliest_cutoff = now - chrono::Duration::days(i64::from(shortest));
    let mut report = SweepReport::default();
    for partition in ch_retention::event_days(ch).await? {
        let Some(day) = ch_retention::day_of(partition) else {
            continue;
        };
        if !ch_retention::day_before(day, earliest_cutoff) {
            break; // sorted: the later days are kept by everyone
        }
        let tenants = ch_retention::tenants_on(ch, day).await?;
        let live: std::collections::HashSet<Uuid> = error_extra::existing_tenants(pg, &tenants)
            .await?
            .into_iter()
            .collect();
        // A deleted tenant's occurrences are kept by no one.
        let expired: Vec<Uuid> = tenants
            .iter()
            .copied()
            .filter(|t| !live.contains(t) || ch_retention::day_before(day, cutoff(t)))
            .collect();
        if expired.len() == tenants.len() {
            ch_retention::drop_day(ch, partition).await?;
            report.dropped_days.push(partition);
        } else if !expired.is_empty() {
            ch_retention::delete_tenants_on(ch, day, &expired).await?;
            report.trimmed_days.push(partition);
        }
    }
    report.groups_deleted = error_extra::sweep_groups(pg, now).await?;
    if !report.dropped_days.is_empty()
        || !report.trimmed_days.is_empty()
        || report.groups_deleted > 0
    {
        tracing::info!(
            dropped = ?report.dropped_days,
            trimmed = ?report.trimmed_days,
            groups = report.groups_deleted,
            "error retention sweep"
        );
    }
    Ok(report)
}

/// Drops, from each of [`ch_retention::MONITOR_TABLES`], the day
/// partitions that end before `now − keep_days`; answers (table, day)
/// of each one dropped. `keep_days` below 1 counts as 1.
#[tracing::instrument(skip_all, fields(keep_days))]
pub async fn sweep_monitoring(
    ch: &clickhouse::Client,
    now: DateTime<Utc>,
    keep_days: u32,
) -> sluice_storage::Result<Vec<(&'static str, u32)>> {
    let cutoff = now - chrono::Duration::days(i64::from(keep_days.max(1)));
    let mut dropped = Vec::new();
    for table in ch_retention::MONITOR_TABLES {
        for partition in ch_retention::table_days(ch, table).await? {
            let Some(day) = ch_retention::day_of(partition) else {
                continue;
            };
            if !ch_retention::day_before(day, cutoff) {
                break; // sorted: the later days are kept
            }
            ch_retention::drop_table_day(ch, table, partition).await?;
            dropped.push((table, partition));
        }
    }
    if !dropped.is_empty() {
        tracing::info!(?dropped, "monitoring history sweep");
    }
    Ok(dropped)
}

/// How often the sweep runs.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// The first sweep waits this long after start-up.
pub const FIRST_SWEEP_AFTER: Duration = Duration::from_secs(60);

/// Sweeps (occurrences, then the monitoring history kept `monitor_keep_days`)
/// every [`SWEEP_EVERY`] until `shutdown` turns true.
pub async fn run(
    pg: sqlx::PgPool,
    ch: clickhouse::Client,
    monitor_keep_days: u32,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut wait = FIRST_SWEEP_AFTER;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(e) = sweep(&pg, &ch, Utc::now()).await {
            tracing::warn!(error = %e, "error retention sweep failed; next pass retries");
        }
        if let Err(e) = sweep_monitoring(&ch, Utc::now(), monitor_keep_days).await {
            tracing::warn!(error = %e, "monitoring history sweep failed; next pass retries");
        }
        wait = SWEEP_EVERY;
    }
}
