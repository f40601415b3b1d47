//! The alert engine's occurrence counts: one query per evaluation serves
//! every `error_count` rule of every tenant of a deployment. It groups the
//! occurrences of the longest window by tenant, level, source and
//! environment, with one count per distinct window (`countIf` on the
//! millisecond timestamp, so each window slides and ends at the query);
//! each rule then sums the groups its filters match.
//!
//! Why the raw table and not the rollups: `error_rollup_5m`/`_1h` keep only
//! tenant, bucket and level, so they can answer neither a rule's `source`
//! or `environment` filter nor a sliding window shorter than, or not
//! aligned to, five minutes. The scan is bounded by the tenants listed and
//! by the longest window (day partitions and the `timestamp` bound prune).

use clickhouse::{Client, Row};
use serde::Deserialize;
use uuid::Uuid;

use crate::Result;

/// Occurrences of one (tenant, level, source, environment), one count per
/// window asked for, in the order asked.
#[derive(Debug, Clone, Row, Deserialize, PartialEq)]
pub struct WindowCounts {
    pub tenant: String,
    pub level: String,
    pub source: String,
    pub environment: String,
    pub counts: Vec<u64>,
}

/// The most distinct windows one query counts (a larger set is split).
pub const MAX_WINDOWS: usize = 32;

/// Counts, for `tenants`, the occurrences whose timestamp is within each
/// of `windows_secs` before `now_ms` (epoch milliseconds).
pub async fn count_windows(
    client: &Client,
    tenants: &[Uuid],
    windows_secs: &[u64],
    now_ms: u64,
) -> Result<Vec<WindowCounts>> {
    let Some(longest) = windows_secs.iter().copied().max() else {
        return Ok(Vec::new());
    };
    if tenants.is_empty() {
        return Ok(Vec::new());
    }
    // Uuids and integers only: nothing a caller writes reaches the text.
    let ids: Vec<String> = tenants.iter().map(|t| format!("toUUID('{t}')")).collect();
    let counts: Vec<String> = windows_secs
        .iter()
        .map(|w| format!("countIf(ts_ms > {})", now_ms.saturating_sub(w * 1000)))
        .collect();
    let since_ms = now_ms.saturating_sub(longest * 1000);
    let sql = format!(
        "SELECT toString(tenant_id) AS tenant, toString(level) AS level, source, environment,
                [{}] AS counts
         FROM error_events
         WHERE tenant_id IN ({}) AND timestamp >= toDateTime({}) AND ts_ms > {}
         GROUP BY tenant_id, level, source, environment",
        counts.join(", "),
        ids.join(", "),
        since_ms / 1000,
        since_ms,
    );
    Ok(client.query(&sql).fetch_all::<WindowCounts>().await?)
}
