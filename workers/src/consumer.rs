//! The consumer of one stream kind (errors or operations), over all of its
//! shards at once: a *reader* gathers entries through the consumer group
//! into a batch — until it holds `batch_size` events or `linger` has passed
//! since its first entry — and hands it to a *storer*, which stores it
//! while the reader gathers the next, then acknowledges and deletes it.
//! Few large inserts are what ClickHouse wants: each insert makes parts
//! that it merges later, so many small ones cost it far more CPU.
//!
//! Entries that may have been stored already are stored with
//! de-duplication: this consumer's own pending entries after a start or a
//! failed step (read again from id `0`), and those of dead consumers
//! (`XAUTOCLAIM` of entries idle past `reclaim_idle`). A storer that is
//! retrying claims its entries again, so nobody takes them over while it
//! is alive.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_redis::redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply,
};
use deadpool_redis::redis::{self, AsyncCommands};
use sluice_storage::dead_letters;
use sluice_storage::streams::{entry_millis, GROUP};
use sluice_storage::wire;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use crate::store;
use crate::{Stores, WorkerConfig, WorkerError};

/// How often pending entries of other consumers are looked at.
const RECLAIM_EVERY: Duration = Duration::from_secs(5);

/// Which streams a consumer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Errors,
    Operations,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Errors => "errors",
            Kind::Operations => "operations",
        }
    }
}

/// One stream entry as read.
pub struct RawEntry {
    pub shard: u16,
    pub id: String,
    /// The payload field (`None`: the entry has none, a dead letter).
    pub payload: Option<Vec<u8>>,
    /// Events the entry says it holds.
    pub events: u32,
    /// A replayed dead letter: where its event was first read
    /// (`<stream>/<entry id>[/<index>]`).
    pub origin: Option<String>,
}

/// Entries stored and acknowledged together.
pub struct Batch {
    pub entries: Vec<RawEntry>,
    pub events: u64,
    pub bytes: usize,
    /// The entries may be stored already: skip what is.
    pub dedup: bool,
    _slot: Option<OwnedSemaphorePermit>,
}

impl Batch {
    fn new(dedup: bool) -> Self {
        Batch {
            entries: Vec::new(),
            events: 0,
            bytes: 0,
            dedup,
            _slot: None,
        }
    }

    fn push(&mut self, kind: Kind, shard: u16, sid: StreamId) {
        let StreamId { id, mut map, .. } = sid;
        let field = match kind {
            Kind::Errors => wire::FIELD,
            Kind::Operations => sluice_storage::ops::OP_FIELD,
        };
        let payload = match map.remove(field) {
            Some(redis::Value::BulkString(b)) => Some(b),
            Some(other) => redis::from_redis_value::<Vec<u8>>(other).ok(),
            None => None,
        };
        let events = match kind {
            Kind::Errors => map
                .get(wire::COUNT_FIELD)
                .and_then(|v| redis::from_redis_value_ref::<u32>(v).ok())
                .unwrap_or(0),
            Kind::Operations => 1,
        };
        let origin = map
            .get(dead_letters::ORIGIN_FIELD)
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok());
        self.bytes += payload.as_ref().map_or(0, Vec::len);
        self.events += u64::from(events);
        self.entries.push(RawEntry {
            shard,
            id,
            payload,
            events,
            origin,
        });
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Shared between a reader and its storer.
struct Shared {
    cfg: WorkerConfig,
    stores: Stores,
    kind: Kind,
    keys: Vec<String>,
    /// Set by a failed step: the consumer's own pending entries must be
    /// read again once nothing is in flight.
    recover: AtomicBool,
    /// One permit per batch in flight (being stored or waiting to be).
    slots: Arc<Semaphore>,
}

/// Runs one consumer of `kind` until `shutdown` turns true; the batch in
/// hand is finished first.
pub async fn run(cfg: WorkerConfig, stores: Stores, kind: Kind, shutdown: watch::Receiver<bool>) {
    let keys = match kind {
        Kind::Errors => cfg.layout.all_error_keys(),
        Kind::Operations => cfg.layout.all_ops_keys(),
    };
    let slots = Arc::new(Semaphore::new(cfg.inflight_batches.max(1)));
    let shared = Arc::new(Shared {
        cfg,
        stores,
        kind,
        keys,
        recover: AtomicBool::new(true),
        slots,
    });
    let (tx, rx) = mpsc::channel::<Batch>(shared.cfg.inflight_batches.max(1));
    let storer = tokio::spawn(storer(shared.clone(), rx, shutdown.clone()));
    reader(&shared, tx, &shutdown).await;
    let _ = storer.await;
    tracing::info!(kind = kind.name(), consumer = %shared.cfg.consumer, "consumer stopped");
}

async fn reader(shared: &Arc<Shared>, tx: mpsc::Sender<Batch>, shutdown: &watch::Receiver<bool>) {
    let mut last_reclaim: Option<Instant> = None;
    let mut failures = 0u32;
    while !*shutdown.borrow() {
        let step = async {
            if shared.recover.load(Ordering::Acquire) {
                return recover_own(shared, &tx).await;
            }
            if last_reclaim.is_none_or(|t| t.elapsed() >= RECLAIM_EVERY) {
                last_reclaim = Some(Instant::now());
                return reclaim(shared, &tx, shutdown).await;
            }
            let batch = gather(shared, shutdown).await?;
            send(shared, &tx, batch).await;
            Ok(())
        };
        match step.await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                shared.recover.store(true, Ordering::Release);
                let wait = Duration::from_millis(100 * u64::from(failures.min(50)));
                tracing::warn!(error = %e, kind = shared.kind.name(), "consumer step failed");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Hands a batch to the storer, holding one in-flight slot.
async fn send(shared: &Shared, tx: &mpsc::Sender<Batch>, mut batch: Batch) {
    if batch.is_empty() {
        return;
    }
    batch._slot = shared.slots.clone().acquire_owned().await.ok();
    let _ = tx.send(batch).await;
}

fn conn_err(e: deadpool_redis::PoolError) -> WorkerError {
    WorkerError::Storage(e.into())
}

/// Whether `e` says the streams or the group vanished (e.g. `FLUSHALL`);
/// they are made again when so.
async fn regrouped(
    cfg: &WorkerConfig,
    conn: &mut deadpool_redis::Connection,
    e: &redis::RedisError,
) -> Result<bool, WorkerError> {
    if e.code() != Some("NOGROUP") {
        return Ok(false);
    }
    cfg.layout
        .ensure_groups(conn)
        .await
        .map_err(WorkerError::Storage)?;
    Ok(true)
}

/// Reads new entries until the batch is full or has lingered long enough.
async fn gather(shared: &Shared, shutdown: &watch::Receiver<bool>) -> Result<Batch, WorkerError> {
    let cfg = &shared.cfg;
    let mut batch = Batch::new(false);
    let mut deadline: Option<Instant> = None;
    let ids = vec![">"; shared.keys.len()];
    loop {
        let block = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => cfg.block,
        };
        if deadline.is_some() && block.is_zero() {
            return Ok(batch);
        }
        let opts = StreamReadOptions::default()
            .group(GROUP, &cfg.consumer)
            .count(cfg.read_count)
            .block(block.as_millis().max(1) as usize);
        let reply: Option<StreamReadReply> = {
            let mut conn = shared.stores.redis.get().await.map_err(conn_err)?;
            match conn.xread_options(&shared.keys, &ids, &opts).await {
                Ok(r) => r,
                Err(e) if regrouped(cfg, &mut conn, &e).await? => return Ok(batch),
                Err(e) => return Err(e.into()),
            }
        };
        for k in reply.map(|r| r.keys).unwrap_or_default() {
            let shard = shard_of(&shared.keys, &k.key);
            for sid in k.ids {
                batch.push(shared.kind, shard, sid);
            }
        }
        if batch.is_empty() {
            // idle: back to the reader, which looks at pending entries
            return Ok(batch);
        }
        if deadline.is_none() {
            deadline = Some(Instant::now() + cfg.linger);
        }
        let full = batch.events >= cfg.batch_size as u64 || batch.bytes >= cfg.batch_bytes;
        if full || *shutdown.borrow() {
            return Ok(batch);
        }
    }
}

fn shard_of(keys: &[String], key: &str) -> u16 {
    keys.iter().position(|k| k == key).unwrap_or(0) as u16
}

/// Reads this consumer's own pending entries (delivered, never
/// acknowledged) once nothing is in flight, and stores them again with
/// de-duplication.
async fn recover_own(shared: &Shared, tx: &mpsc::Sender<Batch>) -> Result<(), WorkerError> {
    let all = shared.cfg.inflight_batches.max(1) as u32;
    // Wait until the storer has nothing: its entries are pending too.
    let idle = shared.slots.acquire_many(all).await;
    drop(idle);
    let mut start: Vec<String> = vec!["0-0".to_string(); shared.keys.len()];
    let mut done = vec![false; shared.keys.len()];
    while done.iter().any(|d| !d) {
        let mut batch = Batch::new(true);
        let opts = StreamReadOptions::default()
            .group(GROUP, &shared.cfg.consumer)
            .count(shared.cfg.read_count);
        let keys: Vec<&str> = shared
            .keys
            .iter()
            .zip(&done)
            .filter(|(_, d)| !**d)
            .map(|(k, _)| k.as_str())
            .collect();
        let ids: Vec<&str> = start
            .iter()
            .zip(&done)
            .filter(|(_, d)| !**d)
            .map(|(s, _)| s.as_str())
            .collect();
        let reply: Option<StreamReadReply> = {
            let mut conn = shared.stores.redis.get().await.map_err(conn_err)?;
            match conn.xread_options(&keys, &ids, &opts).await {
                Ok(r) => r,
                Err(e) if regrouped(&shared.cfg, &mut conn, &e).await? => None,
                Err(e) => return Err(e.into()),
            }
        };
        let mut seen = vec![false; shared.keys.len()];
        for k in reply.map(|r| r.keys).unwrap_or_default() {
            let shard = shard_of(&shared.keys, &k.key);
            for sid in k.ids {
                start[usize::from(shard)] = sid.id.clone();
                seen[usize::from(shard)] = true;
                batch.push(shared.kind, shard, sid);
            }
        }
        for (d, s) in done.iter_mut().zip(&seen) {
            *d = *d || !s;
        }
        if !batch.is_empty() {
            tracing::info!(
                kind = shared.kind.name(),
                entries = batch.entries.len(),
                "storing this consumer's pending entries again"
            );
            metrics::counter!("sluice_worker_recovered_total")
                .increment(batch.entries.len() as u64);
            send(shared, tx, batch).await;
        }
    }
    shared.recover.store(false, Ordering::Release);
    Ok(())
}

/// Claims entries idle past `reclaim_idle` from any consumer and hands
/// them over with de-duplication.
async fn reclaim(
    shared: &Shared,
    tx: &mpsc::Sender<Batch>,
    shutdown: &watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let cfg = &shared.cfg;
    for (shard, key) in shared.keys.iter().enumerate() {
        let mut start = "0-0".to_string();
        loop {
            let reply: StreamAutoClaimReply = {
                let mut conn = shared.stores.redis.get().await.map_err(conn_err)?;
                let res = conn
                    .xautoclaim_options(
                        key,
                        GROUP,
                        &cfg.consumer,
                        cfg.reclaim_idle.as_millis() as u64,
                        &start,
                        StreamAutoClaimOptions::default().count(cfg.read_count),
                    )
                    .await;
                match res {
                    Ok(r) => r,
                    Err(e) if regrouped(cfg, &mut conn, &e).await? => break,
                    Err(e) => return Err(e.into()),
                }
            };
            if !reply.claimed.is_empty() {
                tracing::info!(
                    stream = %key,
                    entries = reply.claimed.len(),
                    "reclaimed pending entries"
                );
                metrics::counter!("sluice_worker_reclaimed_total")
                    .increment(reply.claimed.len() as u64);
                let mut batch = Batch::new(true);
                for sid in reply.claimed {
                    batch.push(shared.kind, shard as u16, sid);
                }
                send(shared, tx, batch).await;
            }
            if reply.next_stream_id == "0-0" || *shutdown.borrow() {
                break;
            }
            start = reply.next_stream_id;
        }
    }
    Ok(())
}

async fn storer(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Batch>,
    shutdown: watch::Receiver<bool>,
) {
    while let Some(batch) = rx.recv().await {
        let span = tracing::info_span!(
            "batch",
            kind = shared.kind.name(),
            entries = batch.entries.len(),
            events = batch.events,
            dedup = batch.dedup
        );
        let ok = process(&shared, &batch, &shutdown).instrument(span).await;
        if !ok {
            // Not stored (shutdown) or not acknowledged: the entries stay
            // pending for this consumer's recovery or another's reclaim.
            shared.recover.store(true, Ordering::Release);
        }
    }
}

/// Stores a batch, then acknowledges and deletes its entries; false when
/// that did not happen.
async fn process(shared: &Shared, batch: &Batch, shutdown: &watch::Receiver<bool>) -> bool {
    let now_ms = chrono::Utc::now().timestamp_millis();
    if let Some(oldest) = batch
        .entries
        .iter()
        .filter_map(|e| entry_millis(&e.id))
        .min()
    {
        metrics::histogram!("sluice_worker_lag_seconds")
            .record((now_ms - oldest).max(0) as f64 / 1000.0);
    }
    metrics::histogram!("sluice_worker_batch_entries").record(batch.entries.len() as f64);
    metrics::histogram!("sluice_worker_batch_events").record(batch.events as f64);

    let refresh = || keep_claimed(shared, batch);
    let dead = match shared.kind {
        Kind::Errors => {
            store::errors(
                &shared.cfg,
                &shared.stores,
                &shared.keys,
                batch,
                refresh,
                shutdown,
            )
            .await
        }
        Kind::Operations => {
            store::operations(
                &shared.cfg,
                &shared.stores,
                &shared.keys,
                batch,
                refresh,
                shutdown,
            )
            .await
        }
    };
    let Some(dead) = dead else {
        return false;
    };
    match acknowledge(shared, batch).await {
        Ok(events) => {
            metrics::counter!("sluice_worker_events_total").increment(events.saturating_sub(dead));
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "acknowledging a stored batch failed; it will be checked again");
            false
        }
    }
}

/// Claims the batch's entries for this consumer again, which resets their
/// idle time: a storer retrying a store keeps them from being reclaimed.
async fn keep_claimed(shared: &Shared, batch: &Batch) {
    let Ok(mut conn) = shared.stores.redis.get().await else {
        return;
    };
    let mut pipe = redis::pipe();
    for (shard, key) in shared.keys.iter().enumerate() {
        let ids: Vec<&str> = batch
            .entries
            .iter()
            .filter(|e| usize::from(e.shard) == shard)
            .map(|e| e.id.as_str())
            .collect();
        if ids.is_empty() {
            continue;
        }
        pipe.cmd("XCLAIM")
            .arg(key)
            .arg(GROUP)
            .arg(&shared.cfg.consumer)
            .arg(0)
            .arg(&ids)
            .arg("JUSTID")
            .ignore();
    }
    let _: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
}

/// Acknowledges and deletes every entry of a stored batch (its dead
/// letters are written already). Returns the events the entries held.
async fn acknowledge(shared: &Shared, batch: &Batch) -> Result<u64, WorkerError> {
    let mut conn = shared.stores.redis.get().await.map_err(conn_err)?;
    let mut stored = 0u64;
    for shard in 0..shared.keys.len() {
        let mine: Vec<(&str, u32)> = batch
            .entries
            .iter()
            .filter(|e| usize::from(e.shard) == shard)
            .map(|e| (e.id.as_str(), e.events))
            .collect();
        if mine.is_empty() {
            continue;
        }
        match shared.kind {
            Kind::Errors => {
                shared
                    .cfg
                    .layout
                    .ack_errors(&mut conn, shard as u16, &mine)
                    .await
                    .map_err(WorkerError::Storage)?;
            }
            Kind::Operations => {
                let ids: Vec<&str> = mine.iter().map(|(id, _)| *id).collect();
                let key = &shared.keys[shard];
                let mut pipe = redis::pipe();
                pipe.xack(key, GROUP, &ids).ignore();
                pipe.xdel(key, &ids).ignore();
                let () = pipe.query_async(&mut conn).await?;
            }
        }
        stored += mine.iter().map(|(_, n)| u64::from(*n)).sum::<u64>();
    }
    Ok(stored)
}
