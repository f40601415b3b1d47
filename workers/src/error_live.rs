//! `new_error` on `/ws`: after a batch of error groups is committed, the
//! groups it created or reopened (a regression) are read back whole and
//! published to their tenant's live channel. This runs in the workers,
//! which know when a group is new, never on the ingest hot path.
//!
//! Bounded: at most [`MAX_PER_BATCH`] events per batch (the rest are
//! counted in `sluice_live_new_error_dropped_total`), and the whole
//! publication gives up after [`PUBLISH_TIMEOUT`], so a slow Redis cannot
//! hold up storing.

use std::time::Duration;

use sluice_storage::live::Publisher;
use sluice_storage::pg::error_extra;
use sluice_storage::pg::error_groups::GroupChange;
use tracing::Instrument;

/// `new_error` events published per stored batch at most.
pub const MAX_PER_BATCH: usize = 1000;
/// How long one batch's publication may take.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes `new_error` for `changed` (already committed). Failures are
/// logged: live events are notices, the groups are stored either way.
pub async fn announce(pg: &sqlx::PgPool, live: &Publisher, changed: &[GroupChange]) {
    if changed.is_empty() {
        return;
    }
    let span = tracing::info_span!("new_error", groups = changed.len());
    let work = async {
        let take = changed.len().min(MAX_PER_BATCH);
        if take < changed.len() {
            metrics::counter!("sluice_live_new_error_dropped_total")
                .increment((changed.len() - take) as u64);
        }
        let ids: Vec<uuid::Uuid> = changed[..take].iter().map(|c| c.id).collect();
        let groups = match error_extra::fetch_many(pg, &ids).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "new_error: reading the groups failed");
                return;
            }
        };
        for g in &groups {
            let data = match serde_json::to_value(g) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, group = %g.id, "new_error: group not serializable");
                    continue;
                }
            };
            if let Err(e) = live.publish(g.tenant_id, "new_error", &data).await {
                tracing::warn!(error = %e, group = %g.id, "new_error: publishing failed");
            }
        }
    };
    if tokio::time::timeout(PUBLISH_TIMEOUT, work.instrument(span))
        .await
        .is_err()
    {
        tracing::warn!("new_error: publication timed out");
    }
}
