//! Storing one batch: ClickHouse first (skipping entries a reclaimed batch
//! already stored), then Postgres (skipping entries already applied, in
//! the same transaction as the group upsert). Each store is retried with
//! backoff while the stream keeps the data.

use std::future::Future;
use std::time::Duration;

use sluice_storage::ch::events::{self, EventRow};
use sluice_storage::ch::operations::{self, OpRow};
use sluice_storage::ch::{self, Keyed};
use sluice_storage::model::{ErrorEvent, OperationEvent};
use sluice_storage::pg::error_groups;
use sluice_storage::Result;
use tokio::sync::watch;

use crate::Stores;

/// A decoded stream entry: (its store-wide id, the event).
pub type Entry = (String, ErrorEvent);

/// Retries `op` with exponential backoff (100 ms to 10 s) until it
/// succeeds or shutdown is requested; `None` means it gave up.
pub async fn with_backoff<T, F, Fut>(
    what: &str,
    shutdown: &watch::Receiver<bool>,
    mut op: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        match op().await {
            Ok(v) => return Some(v),
            Err(e) => {
                metrics::counter!("sluice_worker_store_errors_total", "store" => what.to_string())
                    .increment(1);
                tracing::warn!(error = %e, store = what, retry_in_ms = delay.as_millis() as u64, "store failed; will retry");
                if *shutdown.borrow() {
                    return None;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Inserts the entries into ClickHouse; when `dedup` (a reclaimed batch,
/// or a retry), first drops the ones an earlier attempt already stored.
pub async fn to_clickhouse(stores: &Stores, entries: &[Entry], dedup: bool) -> Result<usize> {
    let mut todo: Vec<&Entry> = entries.iter().collect();
    if dedup {
        todo = ch::unstored(&stores.ch, Keyed::ErrorEvents, todo, |e| e.ts_ms).await?;
    }
    let rows: Vec<EventRow<'_>> = todo.iter().map(|(id, e)| EventRow::new(id, e)).collect();
    events::insert(&stores.ch, &rows).await?;
    Ok(rows.len())
}

/// Inserts finished operations, skipping stored ones when `dedup`.
pub async fn operations_to_clickhouse(
    stores: &Stores,
    entries: &[(String, OperationEvent)],
    dedup: bool,
) -> Result<usize> {
    let mut todo: Vec<&(String, OperationEvent)> = entries.iter().collect();
    if dedup {
        todo = ch::unstored(&stores.ch, Keyed::Operations, todo, |e| e.started_ms).await?;
    }
    let rows: Vec<OpRow<'_>> = todo.iter().map(|(id, e)| OpRow::new(id, e)).collect();
    operations::insert(&stores.ch, &rows).await?;
    Ok(rows.len())
}

/// Applies the entries to the error groups, once per entry.
pub async fn to_postgres(stores: &Stores, stream: &str, entries: &[Entry]) -> Result<usize> {
    error_groups::apply_batch(&stores.pg, stream, entries).await
}

/// How long applied entry ids are remembered for de-duplication.
const APPLIED_MEMORY: Duration = Duration::from_secs(7 * 24 * 3600);

pub async fn prune_loop(pg: sqlx::PgPool, mut shutdown: watch::Receiver<bool>) {
    loop {
        let cutoff =
            chrono::Utc::now() - chrono::Duration::from_std(APPLIED_MEMORY).unwrap_or_default();
        match error_groups::prune_applied(&pg, cutoff).await {
            Ok(n) if n > 0 => tracing::info!(pruned = n, "pruned applied entry ids"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning applied entry ids failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(600)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
