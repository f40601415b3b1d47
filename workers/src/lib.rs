//! Sluice's workers: they move error events from the Redis streams into
//! ClickHouse (every occurrence) and Postgres (error groups), finished
//! database operations into ClickHouse, time out operations left running
//! ([`timeouts`]), and drain the DDL queues of tracked databases ([`ddl`]).
//!
//! One consumer task per stream shard reads batches through the shared
//! consumer group ([`consumer`]). A batch is stored, then acknowledged and
//! deleted from the stream, so the stream only ever holds unprocessed
//! entries. Entries left pending by a dead consumer are reclaimed with
//! `XAUTOCLAIM` and de-duplicated by entry id in both stores
//! ([`store`]), so storage is effectively-once: a killed worker loses
//! nothing and counts nothing twice.

pub mod consumer;
pub mod ddl;
pub mod store;
pub mod timeouts;

use std::time::Duration;

use sluice_storage::streams::StreamLayout;

/// Worker settings.
#[derive(Clone)]
pub struct WorkerConfig {
    pub layout: StreamLayout,
    /// This process's consumer name in the group.
    pub consumer: String,
    /// Consumers per error stream in this process.
    pub consumers_per_shard: usize,
    /// Entries read per batch.
    pub batch_size: usize,
    /// How long a `XREADGROUP` waits for entries.
    pub block: Duration,
    /// Pending entries idle this long belong to a dead consumer.
    pub reclaim_idle: Duration,
    /// Tracked operations still running after this long are timed out.
    pub operation_timeout: Duration,
    /// Opens stored connection URLs; without it DDL tracking is off.
    pub secrets: Option<sluice_storage::secrets::SecretBox>,
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
            consumers_per_shard: 2,
            batch_size: 2000,
            block: Duration::from_millis(200),
            reclaim_idle: Duration::from_secs(30),
            operation_timeout: Duration::from_secs(6 * 3600),
            secrets: None,
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
    {
        let mut conn = stores
            .redis
            .get()
            .await
            .map_err(sluice_storage::StorageError::from)?;
        cfg.layout.ensure_groups(&mut conn).await?;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for shard in 0..cfg.layout.shards {
        for kind in [consumer::Kind::Errors, consumer::Kind::Operations] {
            // Several consumers per stream share its entries through the
            // group, so one busy tenant's shard is stored in parallel.
            let n = if kind == consumer::Kind::Errors {
                cfg.consumers_per_shard.max(1)
            } else {
                1
            };
            for i in 0..n {
                let mut c = cfg.clone();
                c.consumer = format!("{}-{i}", cfg.consumer);
                tasks.spawn(consumer::run_shard(
                    c,
                    stores.clone(),
                    kind,
                    shard,
                    shutdown.clone(),
                ));
            }
        }
        tasks.spawn(timeouts::run(
            stores.redis.clone(),
            cfg.layout.clone(),
            shard,
            cfg.operation_timeout,
            shutdown.clone(),
        ));
    }
    tasks.spawn(store::prune_loop(stores.pg.clone(), shutdown.clone()));
    if let Some(secrets) = cfg.secrets.clone() {
        tasks.spawn(ddl::supervise(stores.clone(), secrets, shutdown.clone()));
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}
