//! Retention of error occurrences: `error_events` is partitioned by day
//! (`toYYYYMMDD(timestamp)`), so old occurrences go a whole partition at a
//! time (`ALTER TABLE … DROP PARTITION`, instant and without rewriting
//! anything). A day whose tenants do not all want it gone yet is kept, and
//! the tenants that do have their rows of that day removed by a mutation.

use chrono::{DateTime, NaiveDate, Utc};
use clickhouse::Client;
use uuid::Uuid;

use crate::Result;

/// The day-partitioned tables of Sluice's own health history
/// (`monitor_samples`, `service_probes`), kept for a configured number of
/// days (`SLUICE_MONITOR_KEEP_DAYS`) by dropping whole old partitions
/// (ClickHouse 18.16 has no TTL).
pub const MONITOR_TABLES: [&str; 2] = ["monitor_samples", "service_probes"];

/// The days (`YYYYMMDD`) that have an active part of `error_events`,
/// oldest first.
pub async fn event_days(client: &Client) -> Result<Vec<u32>> {
    table_days(client, "error_events").await
}

/// The days (`YYYYMMDD`) that have an active part of `table` (a table
/// partitioned by `toYYYYMMDD`), oldest first.
pub async fn table_days(client: &Client, table: &'static str) -> Result<Vec<u32>> {
    let parts: Vec<String> = client
        .query(
            "SELECT DISTINCT partition FROM system.parts
             WHERE database = currentDatabase() AND table = ? AND active",
        )
        .bind(table)
        .fetch_all::<String>()
        .await?;
    let mut days: Vec<u32> = parts
        .iter()
        .filter_map(|p| p.trim_matches('\'').parse().ok())
        .collect();
    days.sort_unstable();
    days.dedup();
    Ok(days)
}

/// The UTC day a partition id names.
pub fn day_of(partition: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(
        (partition / 10000) as i32,
        partition / 100 % 100,
        partition % 100,
    )
}

fn day_bounds(day: NaiveDate) -> (i64, i64) {
    let start = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    (start.timestamp(), start.timestamp() + 86_400)
}

/// The tenants with occurrences on `day`.
pub async fn tenants_on(client: &Client, day: NaiveDate) -> Result<Vec<Uuid>> {
    let (start, end) = day_bounds(day);
    let ids: Vec<String> = client
        .query(
            "SELECT DISTINCT toString(tenant_id) FROM error_events
             WHERE timestamp >= toDateTime(?) AND timestamp < toDateTime(?)",
        )
        .bind(start)
        .bind(end)
        .fetch_all::<String>()
        .await?;
    Ok(ids.iter().filter_map(|s| Uuid::parse_str(s).ok()).collect())
}

/// Drops one day's partition: every tenant's occurrences of that day.
pub async fn drop_day(client: &Client, partition: u32) -> Result<()> {
    drop_table_day(client, "error_events", partition).await
}

/// Drops one day's partition of `table` (one of Sluice's own names).
pub async fn drop_table_day(client: &Client, table: &'static str, partition: u32) -> Result<()> {
    // A constant name and a number: nothing of a caller's reaches the
    // statement but digits.
    client
        .query(&format!("ALTER TABLE {table} DROP PARTITION {partition}"))
        .execute()
        .await?;
    Ok(())
}

/// Removes some tenants' occurrences of one day (an asynchronous
/// mutation), for a day other tenants still keep.
pub async fn delete_tenants_on(client: &Client, day: NaiveDate, tenants: &[Uuid]) -> Result<()> {
    if tenants.is_empty() {
        return Ok(());
    }
    let (start, end) = day_bounds(day);
    let ids: Vec<String> = tenants.iter().map(Uuid::to_string).collect();
    client
        .query(
            "ALTER TABLE error_events DELETE
             WHERE timestamp >= toDateTime(?) AND timestamp < toDateTime(?)
               AND has(?, toString(tenant_id))",
        )
        .bind(start)
        .bind(end)
        .bind(ids)
        .execute()
        .await?;
    Ok(())
}

/// Whether all of `day` lies before `cutoff`.
pub fn day_before(day: NaiveDate, cutoff: DateTime<Utc>) -> bool {
    day_bounds(day).1 <= cutoff.timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn partitions_name_days() {
        assert_eq!(day_of(20250131), NaiveDate::from_ymd_opt(2025, 1, 31));
        assert_eq!(day_of(20251301), None);
        let d = NaiveDate::from_ymd_opt(2025, 1, 31).unwrap();
        assert!(day_before(
            d,
            Utc.with_ymd_and_hms(2025, 2, 1, 0, 0, 0).unwrap()
        ));
        assert!(!day_before(
            d,
            Utc.with_ymd_and_hms(2025, 1, 31, 23, 59, 59).unwrap()
        ));
    }
}
