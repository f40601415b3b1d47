//! Appending accepted events to Redis streams. Requests hand their events
//! to a few writer tasks over bounded queues; each writer drains whatever
//! is waiting and sends it as one pipelined round trip of `XADD`s, then
//! answers every request with its entry ids. A request is answered only
//! after Redis acknowledged its entries.
//!
//! Overload is refused, never buffered: a full queue, a stream backlog
//! above its bound, or Redis unreachable all answer "unavailable".

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use deadpool_redis::redis;
use sluice_storage::streams::StreamLayout;
use sluice_storage::wire;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SinkError {
    #[error("ingest queue is full")]
    QueueFull,
    #[error("stream backlog is over its bound")]
    Backlog,
    #[error("redis unavailable: {0}")]
    Redis(String),
}

struct Job {
    key: Arc<str>,
    payloads: Vec<Bytes>,
    reply: oneshot::Sender<Result<Vec<String>, SinkError>>,
}

#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub writers: usize,
    /// Requests waiting per writer before new ones are refused.
    pub queue_per_writer: usize,
    /// Entries sent in one pipeline at most.
    pub max_pipeline: usize,
    /// Unprocessed entries across all shards before ingest refuses more.
    pub max_backlog: u64,
    /// Event bytes waiting for Redis, across all writers, before ingest
    /// refuses more: the bound on the sink's memory.
    pub max_inflight_bytes: usize,
    pub redis_timeout: Duration,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            writers: 4,
            queue_per_writer: 1024,
            max_pipeline: 4096,
            max_backlog: 5_000_000,
            max_inflight_bytes: 64 << 20,
            redis_timeout: Duration::from_secs(5),
        }
    }
}

pub struct StreamSink {
    queues: Vec<mpsc::Sender<Job>>,
    next: AtomicUsize,
    keys: Vec<Arc<str>>,
    layout: StreamLayout,
    over_backlog: Arc<AtomicBool>,
    backlog: Arc<AtomicU64>,
    /// One permit per KiB of event bytes in flight.
    inflight: Arc<tokio::sync::Semaphore>,
}

impl StreamSink {
    /// Starts the writers and the backlog watcher on the current runtime.
    pub fn start(pool: deadpool_redis::Pool, layout: StreamLayout, cfg: SinkConfig) -> Arc<Self> {
        let over_backlog = Arc::new(AtomicBool::new(false));
        let backlog = Arc::new(AtomicU64::new(0));
        let queues = (0..cfg.writers.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(cfg.queue_per_writer.max(1));
                tokio::spawn(writer(rx, pool.clone(), cfg.clone()));
                tx
            })
            .collect();
        tokio::spawn(watch_backlog(
            pool,
            layout.clone(),
            cfg.max_backlog,
            over_backlog.clone(),
            backlog.clone(),
        ));
        let keys = (0..layout.shards)
            .map(|s| Arc::from(layout.errors_key(s)))
            .collect();
        let kib = (cfg.max_inflight_bytes / 1024).clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        Arc::new(Self {
            inflight: Arc::new(tokio::sync::Semaphore::new(kib)),
            queues,
            next: AtomicUsize::new(0),
            keys,
            layout,
            over_backlog,
            backlog,
        })
    }

    /// Unprocessed entries seen by the last backlog check.
    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }

    /// Appends one tenant's events; resolves to their stream entry ids.
    pub async fn append(
        &self,
        tenant_id: uuid::Uuid,
        payloads: Vec<Bytes>,
    ) -> Result<Vec<String>, SinkError> {
        if self.over_backlog.load(Ordering::Relaxed) {
            return Err(SinkError::Backlog);
        }
        let bytes: usize = payloads.iter().map(Bytes::len).sum();
        let kib = u32::try_from(bytes / 1024 + 1).unwrap_or(u32::MAX);
        let _permit = self
            .inflight
            .clone()
            .try_acquire_many_owned(kib)
            .map_err(|_| SinkError::QueueFull)?;
        let key = self.keys[usize::from(self.layout.shard_of(tenant_id))].clone();
        let (reply, rx) = oneshot::channel();
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.queues.len();
        self.queues[i]
            .try_send(Job {
                key,
                payloads,
                reply,
            })
            .map_err(|_| SinkError::QueueFull)?;
        rx.await
            .unwrap_or_else(|_| Err(SinkError::Redis("writer stopped".into())))
    }
}

async fn writer(mut rx: mpsc::Receiver<Job>, pool: deadpool_redis::Pool, cfg: SinkConfig) {
    let mut jobs: Vec<Job> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut entries = first.payloads.len();
        jobs.push(first);
        while entries < cfg.max_pipeline {
            match rx.try_recv() {
                Ok(j) => {
                    entries += j.payloads.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        metrics::histogram!("sluice_ingest_pipeline_entries").record(entries as f64);
        let result = tokio::time::timeout(cfg.redis_timeout, flush(&pool, &jobs))
            .await
            .unwrap_or_else(|_| Err(SinkError::Redis("timed out".into())));
        match result {
            Ok(ids) => {
                let mut ids = ids.into_iter();
                for job in jobs.drain(..) {
                    let mine: Vec<String> = ids.by_ref().take(job.payloads.len()).collect();
                    let _ = job.reply.send(Ok(mine));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "xadd pipeline failed");
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

async fn flush(pool: &deadpool_redis::Pool, jobs: &[Job]) -> Result<Vec<String>, SinkError> {
    let mut conn = pool
        .get()
        .await
        .map_err(|e| SinkError::Redis(e.to_string()))?;
    let mut pipe = redis::pipe();
    for job in jobs {
        for p in &job.payloads {
            pipe.cmd("XADD")
                .arg(&*job.key)
                .arg("*")
                .arg(wire::FIELD)
                .arg(p.as_ref());
        }
    }
    pipe.query_async::<Vec<String>>(&mut conn)
        .await
        .map_err(|e| SinkError::Redis(e.to_string()))
}

async fn watch_backlog(
    pool: deadpool_redis::Pool,
    layout: StreamLayout,
    max: u64,
    over: Arc<AtomicBool>,
    backlog: Arc<AtomicU64>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let Ok(mut conn) = pool.get().await else {
            continue;
        };
        if let Ok(n) = layout.backlog(&mut conn).await {
            backlog.store(n, Ordering::Relaxed);
            metrics::gauge!("sluice_stream_backlog").set(n as f64);
            over.store(n >= max, Ordering::Relaxed);
        }
    }
}
