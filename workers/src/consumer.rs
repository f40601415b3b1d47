//! One shard's consumer loop: reclaim what dead consumers left pending,
//! read new entries, store them, then `XACK` and `XDEL` them.

use std::time::{Duration, Instant};

use deadpool_redis::redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply,
};
use deadpool_redis::redis::{self, AsyncCommands};
use sluice_storage::model::OperationEvent;
use sluice_storage::streams::{entry_millis, GROUP};
use sluice_storage::wire;
use tokio::sync::watch;
use tracing::Instrument;

use crate::store::{self, with_backoff, Entry};
use crate::{Stores, WorkerConfig, WorkerError};

/// How often pending entries of other consumers are looked at.
const RECLAIM_EVERY: Duration = Duration::from_secs(5);

/// Which stream a consumer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Errors,
    Operations,
}

pub async fn run_shard(
    cfg: WorkerConfig,
    stores: Stores,
    kind: Kind,
    shard: u16,
    shutdown: watch::Receiver<bool>,
) {
    let key = match kind {
        Kind::Errors => cfg.layout.errors_key(shard),
        Kind::Operations => cfg.layout.ops_key(shard),
    };
    let mut last_reclaim: Option<Instant> = None;
    let mut failures = 0u32;
    while !*shutdown.borrow() {
        let reclaim_due = last_reclaim.is_none_or(|t| t.elapsed() >= RECLAIM_EVERY);
        let step = if reclaim_due {
            last_reclaim = Some(Instant::now());
            reclaim(&cfg, &stores, kind, &key, &shutdown).await
        } else {
            read(&cfg, &stores, kind, &key, &shutdown).await
        };
        match step {
            Ok(_) => failures = 0,
            Err(e) => {
                failures += 1;
                let wait = Duration::from_millis(100 * u64::from(failures.min(50)));
                tracing::warn!(error = %e, stream = %key, "consumer step failed");
                tokio::time::sleep(wait).await;
            }
        }
    }
    tracing::info!(stream = %key, "consumer stopped");
}

/// Reads and processes one batch of new entries; returns how many.
async fn read(
    cfg: &WorkerConfig,
    stores: &Stores,
    kind: Kind,
    key: &str,
    shutdown: &watch::Receiver<bool>,
) -> Result<usize, WorkerError> {
    let reply: StreamReadReply = {
        let mut conn = stores
            .redis
            .get()
            .await
            .map_err(sluice_storage::StorageError::from)?;
        let opts = StreamReadOptions::default()
            .group(GROUP, &cfg.consumer)
            .count(cfg.batch_size)
            .block(cfg.block.as_millis() as usize);
        let res: redis::RedisResult<Option<StreamReadReply>> =
            conn.xread_options(&[key], &[">"], &opts).await;
        match res {
            Ok(r) => r.unwrap_or(StreamReadReply { keys: Vec::new() }),
            // The stream or group vanished (e.g. FLUSHALL): make them again.
            Err(e) if e.code() == Some("NOGROUP") => {
                cfg.layout.ensure_groups(&mut conn).await?;
                return Ok(0);
            }
            Err(e) => return Err(e.into()),
        }
    };
    let ids: Vec<StreamId> = reply.keys.into_iter().flat_map(|k| k.ids).collect();
    process(cfg, stores, kind, key, ids, false, shutdown).await
}

/// Claims entries idle past `reclaim_idle` from any consumer and processes
/// them with de-duplication; returns how many.
async fn reclaim(
    cfg: &WorkerConfig,
    stores: &Stores,
    kind: Kind,
    key: &str,
    shutdown: &watch::Receiver<bool>,
) -> Result<usize, WorkerError> {
    let mut total = 0;
    let mut start = "0-0".to_string();
    loop {
        let reply: StreamAutoClaimReply = {
            let mut conn = stores
                .redis
                .get()
                .await
                .map_err(sluice_storage::StorageError::from)?;
            let res = conn
                .xautoclaim_options(
                    key,
                    GROUP,
                    &cfg.consumer,
                    cfg.reclaim_idle.as_millis() as u64,
                    &start,
                    StreamAutoClaimOptions::default().count(cfg.batch_size),
                )
                .await;
            match res {
                Ok(r) => r,
                Err(e) if e.code() == Some("NOGROUP") => {
                    cfg.layout.ensure_groups(&mut conn).await?;
                    return Ok(total);
                }
                Err(e) => return Err(e.into()),
            }
        };
        if !reply.claimed.is_empty() {
            tracing::info!(
                stream = key,
                entries = reply.claimed.len(),
                "reclaimed pending entries"
            );
            metrics::counter!("sluice_worker_reclaimed_total")
                .increment(reply.claimed.len() as u64);
        }
        total += process(cfg, stores, kind, key, reply.claimed, true, shutdown).await?;
        if reply.next_stream_id == "0-0" || *shutdown.borrow() {
            return Ok(total);
        }
        start = reply.next_stream_id;
    }
}

/// Stores a batch, then acknowledges and deletes its entries. When the
/// stores stay down until shutdown, the entries stay pending for the next
/// consumer to reclaim.
async fn process(
    cfg: &WorkerConfig,
    stores: &Stores,
    kind: Kind,
    key: &str,
    ids: Vec<StreamId>,
    reclaimed: bool,
    shutdown: &watch::Receiver<bool>,
) -> Result<usize, WorkerError> {
    if ids.is_empty() {
        return Ok(0);
    }
    let span = tracing::info_span!("batch", stream = key, entries = ids.len(), reclaimed);
    async move {
        let all_ids: Vec<String> = ids.iter().map(|s| s.id.clone()).collect();
        let mut raw: Vec<(String, Vec<u8>)> = Vec::with_capacity(ids.len());
        for sid in ids {
            let bytes: Option<Vec<u8>> = sid
                .map
                .get(wire::FIELD)
                .and_then(|v| redis::from_redis_value_ref(v).ok());
            match bytes {
                Some(b) => raw.push((sid.id, b)),
                None => {
                    tracing::error!(entry = %sid.id, "entry without an event field dropped");
                    metrics::counter!("sluice_worker_dropped_total", "reason" => "no_field")
                        .increment(1);
                }
            }
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        if let Some(oldest) = all_ids.first().and_then(|id| entry_millis(id)) {
            metrics::histogram!("sluice_worker_lag_seconds")
                .record((now_ms - oldest).max(0) as f64 / 1000.0);
        }
        metrics::histogram!("sluice_worker_batch_entries").record(all_ids.len() as f64);

        let outcome = match kind {
            Kind::Errors => store_errors(cfg, stores, key, raw, reclaimed, shutdown).await,
            Kind::Operations => store_operations(stores, key, raw, reclaimed, shutdown).await,
        };
        let Some(dead) = outcome else {
            return Ok(0);
        };

        let mut conn = stores
            .redis
            .get()
            .await
            .map_err(sluice_storage::StorageError::from)?;
        let mut pipe = redis::pipe();
        if !dead.is_empty() {
            let dead_key = format!("{key}:dead");
            for b in &dead {
                pipe.cmd("XADD")
                    .arg(&dead_key)
                    .arg("*")
                    .arg(wire::FIELD)
                    .arg(b.as_slice())
                    .ignore();
            }
            metrics::counter!("sluice_worker_dropped_total", "reason" => "dead_letter")
                .increment(dead.len() as u64);
        }
        pipe.xack(key, GROUP, &all_ids).ignore();
        pipe.xdel(key, &all_ids).ignore();
        let () = pipe.query_async(&mut conn).await?;
        metrics::counter!("sluice_worker_events_total")
            .increment((all_ids.len() - dead.len()) as u64);
        Ok(all_ids.len())
    }
    .instrument(span)
    .await
}

/// Decodes entries with `decode`; undecodable ones become dead letters.
fn decode_all<T>(
    key: &str,
    raw: Vec<(String, Vec<u8>)>,
    decode: impl Fn(&str, &[u8]) -> sluice_storage::Result<T>,
) -> (Vec<(String, T)>, Vec<Vec<u8>>) {
    let mut ok = Vec::with_capacity(raw.len());
    let mut dead = Vec::new();
    for (id, b) in raw {
        match decode(&id, &b) {
            Ok(v) => ok.push((format!("{key}/{id}"), v)),
            Err(e) => {
                tracing::error!(error = %e, "undecodable entry moved to dead letters");
                dead.push(b);
            }
        }
    }
    (ok, dead)
}

/// Errors: ClickHouse, then Postgres. `None` when shutdown interrupted.
async fn store_errors(
    cfg: &WorkerConfig,
    stores: &Stores,
    key: &str,
    raw: Vec<(String, Vec<u8>)>,
    reclaimed: bool,
    shutdown: &watch::Receiver<bool>,
) -> Option<Vec<Vec<u8>>> {
    let (entries, dead): (Vec<Entry>, _) = decode_all(key, raw, wire::decode);
    // A failed insert may have stored part of the batch, so every retry
    // de-duplicates, as a reclaimed batch does.
    let mut attempt = 0u32;
    with_backoff("clickhouse", shutdown, || {
        attempt += 1;
        store::to_clickhouse(stores, &entries, reclaimed || attempt > 1)
    })
    .await?;
    if cfg.crash_after_clickhouse {
        tracing::error!("crash_after_clickhouse set: aborting mid-batch");
        std::process::abort();
    }
    with_backoff("postgres", shutdown, || {
        store::to_postgres(stores, key, &entries)
    })
    .await?;
    Some(dead)
}

/// Finished operations: ClickHouse. `None` when shutdown interrupted.
async fn store_operations(
    stores: &Stores,
    key: &str,
    raw: Vec<(String, Vec<u8>)>,
    reclaimed: bool,
    shutdown: &watch::Receiver<bool>,
) -> Option<Vec<Vec<u8>>> {
    let (entries, dead) = decode_all(key, raw, |id, b| {
        serde_json::from_slice::<OperationEvent>(b).map_err(|e| {
            sluice_storage::StorageError::Wire {
                id: id.to_string(),
                reason: e.to_string(),
            }
        })
    });
    let mut attempt = 0u32;
    with_backoff("clickhouse", shutdown, || {
        attempt += 1;
        store::operations_to_clickhouse(stores, &entries, reclaimed || attempt > 1)
    })
    .await?;
    Some(dead)
}
