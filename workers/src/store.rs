//! Storing one batch: ClickHouse first (skipping events an earlier attempt
//! already stored, when that may be), then Postgres (skipping entries
//! already applied, in the same transaction as the group upsert). Each
//! store is retried with backoff while the stream keeps the data.

use std::future::Future;
use std::time::Duration;

use sluice_storage::ch::events::{self, EventRow};
use sluice_storage::ch::operations::{self, OpRow};
use sluice_storage::ch::{self, Keyed};
use sluice_storage::model::{ErrorEvent, OperationEvent};
use sluice_storage::pg::error_groups::{self, EntryEvents};
use sluice_storage::{wire, Result};
use tokio::sync::watch;

use crate::consumer::Batch;
use crate::Stores;

/// Retries `op` with exponential backoff (100 ms to 10 s) until it
/// succeeds or shutdown is requested; `None` means it gave up. Before each
/// retry `refresh` runs (the storer keeps its entries claimed).
pub async fn with_backoff<T, F, Fut, R, RFut>(
    what: &str,
    shutdown: &watch::Receiver<bool>,
    mut op: F,
    refresh: R,
) -> Option<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T>>,
    R: Fn() -> RFut,
    RFut: Future<Output = ()>,
{
    let mut delay = Duration::from_millis(100);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match op(attempt).await {
            Ok(v) => return Some(v),
            Err(e) => {
                metrics::counter!("sluice_worker_store_errors_total", "store" => what.to_string())
                    .increment(1);
                tracing::warn!(error = %e, store = what, retry_in_ms = delay.as_millis() as u64, "store failed; will retry");
                if *shutdown.borrow() {
                    return None;
                }
                tokio::time::sleep(delay).await;
                refresh().await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// A batch's error events, decoded (borrowing from the batch), each with
/// its store-wide id `<stream>/<entry id>/<index>`.
struct Decoded<'b> {
    /// Per entry: its events (empty for a dead letter).
    per_entry: Vec<Vec<ErrorEvent<'b>>>,
    /// Indexes of entries that could not be decoded.
    dead: Vec<usize>,
}

fn decode<'b>(keys: &[String], batch: &'b Batch) -> Decoded<'b> {
    let mut per_entry = Vec::with_capacity(batch.entries.len());
    let mut dead = Vec::new();
    for (i, e) in batch.entries.iter().enumerate() {
        let decoded = match &e.payload {
            Some(bytes) => wire::decode(&e.id, bytes),
            None => Err(sluice_storage::StorageError::Wire {
                id: e.id.clone(),
                reason: format!("no `{}` field", wire::FIELD),
            }),
        };
        match decoded {
            Ok(events) => per_entry.push(events),
            Err(err) => {
                tracing::error!(error = %err, stream = %keys[usize::from(e.shard)], "undecodable entry moved to dead letters");
                dead.push(i);
                per_entry.push(Vec::new());
            }
        }
    }
    Decoded { per_entry, dead }
}

/// Stores a batch of error entries: ClickHouse, then Postgres. Returns the
/// indexes of dead letters, or `None` when shutdown interrupted.
pub async fn errors<R, RFut>(
    crash_after_clickhouse: bool,
    stores: &Stores,
    keys: &[String],
    batch: &Batch,
    refresh: R,
    shutdown: &watch::Receiver<bool>,
) -> Option<Vec<usize>>
where
    R: Fn() -> RFut,
    RFut: Future<Output = ()>,
{
    let decoded = decode(keys, batch);
    let keyed: Vec<(String, &ErrorEvent<'_>)> = batch
        .entries
        .iter()
        .zip(&decoded.per_entry)
        .flat_map(|(entry, events)| {
            let key = &keys[usize::from(entry.shard)];
            events
                .iter()
                .enumerate()
                .map(move |(i, ev)| (format!("{key}/{}/{i}", entry.id), ev))
        })
        .collect();
    // A failed insert may have stored part of the batch, so every retry
    // de-duplicates, as a recovered or reclaimed batch does.
    with_backoff(
        "clickhouse",
        shutdown,
        |attempt| to_clickhouse(stores, &keyed, batch.dedup || attempt > 1),
        &refresh,
    )
    .await?;
    if crash_after_clickhouse {
        tracing::error!("crash_after_clickhouse set: aborting mid-batch");
        std::process::abort();
    }
    let entries: Vec<EntryEvents<'_, '_>> = batch
        .entries
        .iter()
        .zip(&decoded.per_entry)
        .filter(|(_, events)| !events.is_empty())
        .map(|(entry, events)| EntryEvents {
            stream: &keys[usize::from(entry.shard)],
            entry_id: &entry.id,
            events,
        })
        .collect();
    with_backoff(
        "postgres",
        shutdown,
        |_| error_groups::apply_batch(&stores.pg, &entries),
        &refresh,
    )
    .await?;
    Some(decoded.dead)
}

/// Inserts the events into ClickHouse; when `dedup`, first drops the ones
/// an earlier attempt already stored.
async fn to_clickhouse(
    stores: &Stores,
    keyed: &[(String, &ErrorEvent<'_>)],
    dedup: bool,
) -> Result<usize> {
    let mut todo: Vec<&(String, &ErrorEvent<'_>)> = keyed.iter().collect();
    if dedup {
        todo = ch::unstored(
            &stores.ch,
            Keyed::ErrorEvents,
            todo,
            |e| e.ts_ms,
            |e| e.tenant_id,
        )
        .await?;
    }
    let rows: Vec<EventRow<'_>> = todo.iter().map(|(id, e)| EventRow::new(id, e)).collect();
    events::insert(&stores.ch, &rows).await?;
    Ok(rows.len())
}

/// Stores a batch of finished operations in ClickHouse. Returns the
/// indexes of dead letters, or `None` when shutdown interrupted.
pub async fn operations<R, RFut>(
    stores: &Stores,
    keys: &[String],
    batch: &Batch,
    refresh: R,
    shutdown: &watch::Receiver<bool>,
) -> Option<Vec<usize>>
where
    R: Fn() -> RFut,
    RFut: Future<Output = ()>,
{
    let mut ops: Vec<(String, OperationEvent)> = Vec::with_capacity(batch.entries.len());
    let mut dead = Vec::new();
    for (i, e) in batch.entries.iter().enumerate() {
        let key = &keys[usize::from(e.shard)];
        match e
            .payload
            .as_deref()
            .map(serde_json::from_slice::<OperationEvent>)
        {
            Some(Ok(op)) => ops.push((format!("{key}/{}", e.id), op)),
            other => {
                let reason = match other {
                    Some(Err(err)) => err.to_string(),
                    _ => "no operation field".to_string(),
                };
                tracing::error!(entry = %e.id, stream = %key, %reason, "undecodable operation moved to dead letters");
                dead.push(i);
            }
        }
    }
    with_backoff(
        "clickhouse",
        shutdown,
        |attempt| operations_to_clickhouse(stores, &ops, batch.dedup || attempt > 1),
        &refresh,
    )
    .await?;
    Some(dead)
}

/// Inserts finished operations, skipping stored ones when `dedup`.
pub async fn operations_to_clickhouse(
    stores: &Stores,
    entries: &[(String, OperationEvent)],
    dedup: bool,
) -> Result<usize> {
    let mut todo: Vec<&(String, OperationEvent)> = entries.iter().collect();
    if dedup {
        todo = ch::unstored(
            &stores.ch,
            Keyed::Operations,
            todo,
            |e| e.started_ms,
            |e| e.tenant_id,
        )
        .await?;
    }
    let rows: Vec<OpRow<'_>> = todo.iter().map(|(id, e)| OpRow::new(id, e)).collect();
    operations::insert(&stores.ch, &rows).await?;
    Ok(rows.len())
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
