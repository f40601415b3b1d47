//! Sluice's workers: they move error events from the Redis streams into
//! ClickHouse (every occurrence) and Postgres (error groups), finished
//! database operations into ClickHouse, time out operations left running
//! ([`timeouts`]), and drain the DDL queues of tracked databases ([`ddl`]).
//!
//! A consumer per stream kind reads every shard of that kind through the
//! shared consumer group and gathers entries into large batches
//! ([`consumer`]). A batch is stored, then acknowledged and deleted from
//! the stream, so the stream only ever holds unprocessed entries. Entries
//! left pending by a dead consumer are reclaimed with `XAUTOCLAIM` and
//! de-duplicated by entry id in both stores ([`store`]), so storage is
//! effectively-once: a killed worker loses nothing and counts nothing
//! twice. More worker processes join the same groups to scale out.
//!
//! Events a store refuses for good are isolated and set aside as dead
//! letters instead of being retried ([`store`]), so one bad event never
//! holds up the others.

pub mod consumer;
pub mod ddl;
// Health Monitor: new_error on /ws and the retention sweep (issue 12)
pub mod error_live;
pub mod error_retention;
pub mod store;
pub mod timeouts;

use std::time::Duration;

use sluice_storage::streams::StreamLayout;

/// Days of monitoring history kept unless configured.
pub const DEFAULT_MONITOR_KEEP_DAYS: u32 = 30;

/// Worker settings.
#[derive(Clone)]
pub struct WorkerConfig {
    pub layout: StreamLayout,
    /// This process's consumer name in the group.
    pub consumer: String,
    /// Consumers of the error streams in this process.
    pub consumers: usize,
    /// Events per batch at most (a batch closes when it reaches this).
    pub batch_size: usize,
    /// Payload bytes per batch at most.
    pub batch_bytes: usize,
    /// How long a batch waits for more entries after its first.
    pub linger: Duration,
    /// Entries one `XREADGROUP` asks of each stream.
    pub read_count: usize,
    /// Batches a consumer has handed to its storer and not yet stored; it
    /// gathers the next one meanwhile (so memory holds this many plus one).
    pub inflight_batches: usize,
    /// How long an idle `XREADGROUP` waits for entries.
    pub block: Duration,
    /// Pending entries idle this long belong to a dead consumer.
    pub reclaim_idle: Duration,
    /// Tracked operations still running after this long are timed out.
    pub operation_timeout: Duration,
    /// Opens stored connection URLs; without it DDL tracking is off.
    pub secrets: Option<sluice_storage::secrets::SecretBox>,
    /// Each dead-letter stream keeps about this many entries at most.
    pub dead_letter_max: usize,
    /// Days of monitoring history (`monitor_samples`, `service_probes`)
    /// the hourly sweep keeps.
    pub monitor_keep_days: u32,
    /// Test hook: abort the process right after the first ClickHouse insert,
    /// before Postgres and the acknowledgement (a crash mid-batch).
    pub crash_after_clickhouse: bool,
}

impl WorkerConfig {
    pub fn new(layout: StreamLayout) -> Self {
        Self {
            layout,
            consumer: format!(
                "worker-{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            consumers: 1,
            batch_size: 50_000,
            batch_bytes: 32 << 20,
            linger: Duration::from_millis(500),
            read_count: 16,
            inflight_batches: 1,
            block: Duration::from_millis(500),
            reclaim_idle: Duration::from_secs(30),
            operation_timeout: Duration::from_secs(6 * 3600),
            secrets: None,
            dead_letter_max: sluice_storage::dead_letters::DEFAULT_MAX_LEN,
            monitor_keep_days: DEFAULT_MONITOR_KEEP_DAYS,
            crash_after_clickhouse: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Storage(#[from] sluice_storage::StorageError),
    #[error("redis: {0}")]
    Redis(#[from] deadpool_redis::redis::RedisError),
}

/// Everything a consumer needs.
#[derive(Clone)]
pub struct Stores {
    pub redis: deadpool_redis::Pool,
    pub pg: sqlx::PgPool,
    pub ch: clickhouse::Client,
}

/// Runs one consumer per shard until `shutdown` turns true; each finishes
/// the batch in hand before returning.
pub async fn run(
    cfg: WorkerConfig,
    stores: Stores,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    // Redis may be down at start: wait for it rather than give up.
    let mut delay = Duration::from_millis(100);
    loop {
        let ready = async {
            let mut conn = stores
                .redis
                .get()
                .await
                .map_err(sluice_storage::StorageError::from)?;
            cfg.layout.ensure_groups(&mut conn).await
        };
        match ready.await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "workers cannot reach Redis yet");
                if *shutdown.borrow() {
                    return Err(e.into());
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for kind in [consumer::Kind::Errors, consumer::Kind::Operations] {
        // Several consumers share the streams' entries through the group.
        let n = if kind == consumer::Kind::Errors {
            cfg.consumers.max(1)
        } else {
            1
        };
        for i in 0..n {
            let mut c = cfg.clone();
            c.consumer = format!(
                "{}-{}{i}",
                cfg.consumer,
                &format!("{kind:?}")[..1].to_lowercase()
            );
            tasks.spawn(consumer::run(c, stores.clone(), kind, shutdown.clone()));
        }
    }
    for shard in 0..cfg.layout.shards {
        tasks.spawn(timeouts::run(
            stores.redis.clone(),
            cfg.layout.clone(),
            shard,
            cfg.operation_timeout,
            shutdown.clone(),
        ));
    }
    tasks.spawn(store::prune_loop(stores.pg.clone(), shutdown.clone()));
    tasks.spawn(error_retention::run(
        stores.pg.clone(),
        stores.ch.clone(),
        cfg.monitor_keep_days,
        shutdown.clone(),
    ));
    if let Some(secrets) = cfg.secrets.clone() {
        tasks.spawn(ddl::supervise(stores.clone(), secrets, shutdown.clone()));
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}
