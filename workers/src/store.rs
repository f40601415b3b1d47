//! Storing one batch: ClickHouse first (skipping events an earlier attempt
//! already stored, when that may be), then Postgres (skipping entries
//! already applied, in the same transaction as the group upsert).
//!
//! A store that fails for a transient reason (down, slow, a serialization
//! race: [`sluice_storage::failure`]) is retried with backoff while the
//! stream keeps the data. One that refuses the data for good has the batch
//! bisected ([`sluice_storage::failure::Isolate`]) until the refused
//! events are alone; those become dead letters
//! ([`sluice_storage::dead_letters`]) and the rest is stored, so one bad
//! event costs the others only the bisection's round trips.

use std::future::Future;
use std::time::Duration;

use sluice_storage::ch::events::{self, EventRow};
use sluice_storage::ch::operations::{self, OpRow};
use sluice_storage::ch::{self, Keyed};
use sluice_storage::dead_letters::{self, Kind, NewDeadLetter, Store};
use sluice_storage::failure::{Failure, Isolate, Reason};
use sluice_storage::model::{ErrorEvent, OperationEvent};
use sluice_storage::pg::error_groups::{self, EntryEvents};
use sluice_storage::{wire, Result};
use tokio::sync::watch;

use crate::consumer::{Batch, RawEntry};
use crate::{Stores, WorkerConfig};

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
                tracing::warn!(error = %e, store = what, permanent = e.is_permanent(), retry_in_ms = delay.as_millis() as u64, "store failed; will retry");
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

/// A batch's error events, decoded (borrowing from the batch).
struct Decoded<'b> {
    /// Per entry: its events (empty for an undecodable entry).
    per_entry: Vec<Vec<ErrorEvent<'b>>>,
    /// Undecodable entries, already dead letters.
    dead: Vec<NewDeadLetter>,
}

/// Where an event was first read: its stream, entry id and index. A
/// replayed entry carries that in its origin field; others are it.
fn first_identity(
    keys: &[String],
    entry: &RawEntry,
    index: usize,
) -> (String, String, Option<u32>) {
    if let Some((stream, id, i)) = entry.origin.as_deref().and_then(dead_letters::split_origin) {
        return (stream.to_string(), id.to_string(), i.or(Some(index as u32)));
    }
    (
        keys[usize::from(entry.shard)].clone(),
        entry.id.clone(),
        Some(index as u32),
    )
}

/// The id stores key an event by: `<stream>/<entry id>/<index>` of where
/// it was first read, so a replayed event is the same event to them.
fn event_id(keys: &[String], entry: &RawEntry, index: usize) -> String {
    let (stream, id, i) = first_identity(keys, entry, index);
    format!("{stream}/{id}/{}", i.unwrap_or(index as u32))
}

fn decode<'b>(keys: &[String], batch: &'b Batch) -> Decoded<'b> {
    let mut per_entry = Vec::with_capacity(batch.entries.len());
    let mut dead = Vec::new();
    for e in &batch.entries {
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
                let (stream, entry_id, _) = first_identity(keys, e, 0);
                dead.push(NewDeadLetter {
                    kind: Kind::Errors,
                    shard: e.shard,
                    tenant_id: None,
                    store: Store::Decode,
                    reason: Reason::Undecodable,
                    error: err.detail(),
                    stream,
                    entry_id,
                    index: None,
                    in_clickhouse: false,
                    events: e.events,
                    payload: e.payload.clone().unwrap_or_default(),
                });
                per_entry.push(Vec::new());
            }
        }
    }
    Decoded { per_entry, dead }
}

/// A dead letter for an event a store refused.
fn refused_event(
    keys: &[String],
    entry: &RawEntry,
    index: usize,
    event: &ErrorEvent<'_>,
    store: Store,
    error: &sluice_storage::StorageError,
) -> NewDeadLetter {
    let (stream, entry_id, i) = first_identity(keys, entry, index);
    let reason = match error.failure() {
        Failure::Permanent(r) => r,
        Failure::Transient => Reason::BadValue,
    };
    tracing::warn!(
        tenant = %event.tenant_id,
        store = store.name(),
        reason = reason.label(),
        %stream,
        entry = %entry_id,
        index = i,
        error = %error.detail(),
        "event refused for good: moved to dead letters"
    );
    NewDeadLetter {
        kind: Kind::Errors,
        shard: entry.shard,
        tenant_id: Some(event.tenant_id),
        store,
        reason,
        error: error.detail(),
        stream,
        entry_id,
        index: i,
        in_clickhouse: store == Store::Postgres,
        events: 1,
        payload: wire::encode(std::slice::from_ref(event)),
    }
}

/// Writes dead letters and counts them (`sluice_worker_dead_letters_total`
/// by reason, and what the streams' bound trimmed).
pub async fn write_dead(
    stores: &Stores,
    cfg: &WorkerConfig,
    letters: &[NewDeadLetter],
) -> Result<()> {
    if letters.is_empty() {
        return Ok(());
    }
    let mut conn = stores.redis.get().await?;
    let trimmed = dead_letters::push(&mut conn, &cfg.layout, letters, cfg.dead_letter_max).await?;
    for l in letters {
        metrics::counter!("sluice_worker_dead_letters_total", "reason" => l.reason.label())
            .increment(1);
    }
    if trimmed > 0 {
        tracing::warn!(
            trimmed,
            bound = cfg.dead_letter_max,
            "dead-letter streams full: oldest dead letters trimmed"
        );
        metrics::counter!("sluice_worker_dead_letters_trimmed_total").increment(trimmed);
    }
    Ok(())
}

/// Stores a batch of error entries: ClickHouse, then Postgres. Events a
/// store refuses for good are isolated by bisection and become dead
/// letters, written before the Postgres transaction commits (so a crash in
/// between writes them again rather than losing them). Returns the number
/// of events set aside, or `None` when shutdown interrupted.
pub async fn errors<R, RFut>(
    cfg: &WorkerConfig,
    stores: &Stores,
    keys: &[String],
    batch: &Batch,
    refresh: R,
    shutdown: &watch::Receiver<bool>,
) -> Option<u64>
where
    R: Fn() -> RFut,
    RFut: Future<Output = ()>,
{
    let decoded = decode(keys, batch);
    // (entry index, event index) of each event, and its keyed form
    let mut pos: Vec<(usize, usize)> = Vec::new();
    let mut keyed: Vec<(String, &ErrorEvent<'_>)> = Vec::new();
    for (ei, (entry, events)) in batch.entries.iter().zip(&decoded.per_entry).enumerate() {
        for (i, ev) in events.iter().enumerate() {
            pos.push((ei, i));
            keyed.push((event_id(keys, entry, i), ev));
        }
    }
    // A replayed event may be in ClickHouse already (Postgres refused it).
    let replayed = batch.entries.iter().any(|e| e.origin.is_some());
    let keyed = &keyed;
    // A failed insert may have stored part of the batch, so every retry
    // de-duplicates, as a recovered or reclaimed batch does.
    let ch_refused = with_backoff(
        "clickhouse",
        shutdown,
        |attempt| {
            let dedup = batch.dedup || replayed || attempt > 1;
            isolating(keyed, dedup, move |items, dedup| {
                to_clickhouse(stores, items, dedup)
            })
        },
        &refresh,
    )
    .await?;
    if cfg.crash_after_clickhouse {
        tracing::error!("crash_after_clickhouse set: aborting mid-batch");
        std::process::abort();
    }
    let mut dead = decoded.dead.clone();
    let mut skip = std::collections::HashSet::new();
    for (k, err) in &ch_refused {
        let (ei, i) = pos[*k];
        skip.insert((ei, i));
        dead.push(refused_event(
            keys,
            &batch.entries[ei],
            i,
            keyed[*k].1,
            Store::Clickhouse,
            err,
        ));
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
    // EntryEvents index -> batch entry index
    let entry_of: Vec<usize> = decoded
        .per_entry
        .iter()
        .enumerate()
        .filter(|(_, events)| !events.is_empty())
        .map(|(i, _)| i)
        .collect();
    let (entries, entry_of, skip, dead, decoded) = (&entries, &entry_of, &skip, &dead, &decoded);
    with_backoff(
        "postgres",
        shutdown,
        |_| async move {
            let mut applied = error_groups::apply_isolating(&stores.pg, entries, |e, i| {
                skip.contains(&(entry_of[e], i))
            })
            .await?;
            let mut all = dead.clone();
            for r in &applied.refused {
                let ei = entry_of[r.entry];
                all.push(refused_event(
                    keys,
                    &batch.entries[ei],
                    r.event,
                    &decoded.per_entry[ei][r.event],
                    Store::Postgres,
                    &r.error,
                ));
            }
            write_dead(stores, cfg, &all).await?;
            let changed = std::mem::take(&mut applied.changed);
            applied.commit().await?;
            let live = sluice_storage::live::Publisher::new(
                stores.redis.clone(),
                cfg.layout.prefix.clone(),
            );
            crate::error_live::announce(&stores.pg, &live, &changed).await;
            Ok(all.iter().map(|d| u64::from(d.events)).sum::<u64>())
        },
        &refresh,
    )
    .await
}

/// Inserts `items` with `insert`, bisecting around what the store refuses
/// for good ([`Isolate`]); after any failure the rest de-duplicates, since
/// a failed insert may have stored part of its range. Returns the refused
/// items' indexes with their errors; a transient error ends it.
async fn isolating<'i, T, F, Fut>(
    items: &'i [T],
    mut dedup: bool,
    insert: F,
) -> Result<Vec<(usize, sluice_storage::StorageError)>>
where
    F: Fn(&'i [T], bool) -> Fut,
    Fut: Future<Output = Result<usize>>,
{
    let mut search = Isolate::new(items.len());
    while let Some(r) = search.next_range() {
        let result = insert(&items[r.clone()], dedup).await.map(drop);
        dedup |= result.is_err();
        search.record(r, result)?;
    }
    Ok(search.into_refused())
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

/// Stores a batch of finished operations in ClickHouse; undecodable ones
/// and those ClickHouse refuses for good become dead letters. Returns the
/// number set aside, or `None` when shutdown interrupted.
pub async fn operations<R, RFut>(
    cfg: &WorkerConfig,
    stores: &Stores,
    keys: &[String],
    batch: &Batch,
    refresh: R,
    shutdown: &watch::Receiver<bool>,
) -> Option<u64>
where
    R: Fn() -> RFut,
    RFut: Future<Output = ()>,
{
    let mut ops: Vec<(String, OperationEvent)> = Vec::with_capacity(batch.entries.len());
    let mut from: Vec<usize> = Vec::with_capacity(batch.entries.len());
    let mut dead = Vec::new();
    for (i, e) in batch.entries.iter().enumerate() {
        let key = &keys[usize::from(e.shard)];
        let origin = e.origin.clone();
        let (stream, entry_id) = origin
            .as_deref()
            .and_then(dead_letters::split_origin)
            .map_or((key.clone(), e.id.clone()), |(s, id, _)| {
                (s.to_string(), id.to_string())
            });
        match e
            .payload
            .as_deref()
            .map(serde_json::from_slice::<OperationEvent>)
        {
            Some(Ok(op)) => {
                ops.push((format!("{stream}/{entry_id}"), op));
                from.push(i);
            }
            other => {
                let reason = match other {
                    Some(Err(err)) => err.to_string(),
                    _ => "no operation field".to_string(),
                };
                tracing::error!(entry = %e.id, stream = %key, %reason, "undecodable operation moved to dead letters");
                dead.push(NewDeadLetter {
                    kind: Kind::Operations,
                    shard: e.shard,
                    tenant_id: None,
                    store: Store::Decode,
                    reason: Reason::Undecodable,
                    error: reason,
                    stream,
                    entry_id,
                    index: None,
                    in_clickhouse: false,
                    events: 1,
                    payload: e.payload.clone().unwrap_or_default(),
                });
            }
        }
    }
    let replayed = batch.entries.iter().any(|e| e.origin.is_some());
    let ops = &ops;
    let refused = with_backoff(
        "clickhouse",
        shutdown,
        |attempt| {
            let dedup = batch.dedup || replayed || attempt > 1;
            isolating(ops, dedup, move |items, dedup| {
                operations_to_clickhouse(stores, items, dedup)
            })
        },
        &refresh,
    )
    .await?;
    for (k, err) in refused {
        let (id, op) = &ops[k];
        let e = &batch.entries[from[k]];
        let (stream, entry_id) = id.rsplit_once('/').unwrap_or((id, ""));
        let reason = match err.failure() {
            Failure::Permanent(r) => r,
            Failure::Transient => Reason::BadValue,
        };
        tracing::warn!(tenant = %op.tenant_id, reason = reason.label(), error = %err.detail(), "operation refused for good: moved to dead letters");
        dead.push(NewDeadLetter {
            kind: Kind::Operations,
            shard: e.shard,
            tenant_id: Some(op.tenant_id),
            store: Store::Clickhouse,
            reason,
            error: err.detail(),
            stream: stream.to_string(),
            entry_id: entry_id.to_string(),
            index: None,
            in_clickhouse: false,
            events: 1,
            payload: e.payload.clone().unwrap_or_default(),
        });
    }
    let dead = &dead;
    with_backoff(
        "redis",
        shutdown,
        |_| async move { write_dead(stores, cfg, dead).await },
        &refresh,
    )
    .await?;
    Some(dead.len() as u64)
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
