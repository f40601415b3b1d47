//! Appending accepted events to Redis streams. Requests hand their encoded
//! chunks ([`sluice_storage::wire`]) to a few writer tasks over bounded
//! queues; each writer drains whatever is waiting, joins the chunks bound
//! for the same shard into entries of up to [`MAX_ENTRY_BYTES`], and sends
//! them as one pipelined round trip, then answers every request. A request
//! is answered only after Redis acknowledged its entries, and, with
//! `SLUICE_REDIS_MIN_REPLICAS`, after that many replicas did: the round
//! trip ends with one `WAIT` covering all of its entries
//! ([`sluice_storage::durability::ReplicaWait`]).
//!
//! Overload is refused, never buffered: a full queue, event bytes in
//! flight over their budget, a stream backlog above its bound, or Redis
//! unreachable all answer "unavailable".

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::redis;
use sluice_storage::durability::{NotReplicated, ReplicaWait};
use sluice_storage::model::ErrorEvent;
use sluice_storage::streams::StreamLayout;
use sluice_storage::wire;
use tokio::sync::{mpsc, oneshot};

/// The size a stream entry grows to at most (unless one chunk is larger):
/// it bounds what a worker's read holds in memory.
pub const MAX_ENTRY_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SinkError {
    #[error("ingest queue is full")]
    QueueFull,
    #[error("stream backlog is over its bound")]
    Backlog,
    #[error("redis unavailable: {0}")]
    Redis(String),
    #[error("redis replicas: {0}")]
    NotReplicated(#[from] NotReplicated),
}

/// Events of one request, encoded for the stream.
#[derive(Debug)]
pub struct Chunk {
    bytes: Vec<u8>,
    events: u32,
}

impl Chunk {
    /// `size`: about the bytes it will take, so its buffer grows once.
    pub fn encode(events: &[ErrorEvent<'_>], size: usize) -> Self {
        let mut bytes = Vec::with_capacity(size + 64);
        wire::encode_chunks(events, &mut bytes);
        Chunk {
            bytes,
            events: events.len() as u32,
        }
    }
}

struct Job {
    shard: u16,
    chunks: Vec<Chunk>,
    reply: oneshot::Sender<Result<(), SinkError>>,
}

#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub writers: usize,
    /// Requests waiting per writer before new ones are refused.
    pub queue_per_writer: usize,
    /// Chunk bytes sent in one pipeline at most.
    pub max_pipeline_bytes: usize,
    /// Unprocessed events across all shards before ingest refuses more.
    pub max_backlog: u64,
    /// Event bytes waiting for Redis, across all writers, before ingest
    /// refuses more: the bound on the sink's memory.
    pub max_inflight_bytes: usize,
    pub redis_timeout: Duration,
    /// Replicas that must acknowledge each round trip (none by default).
    pub replicas: ReplicaWait,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            writers: 2,
            queue_per_writer: 1024,
            max_pipeline_bytes: 4 << 20,
            max_backlog: 5_000_000,
            max_inflight_bytes: 32 << 20,
            redis_timeout: Duration::from_secs(5),
            replicas: ReplicaWait::none(),
        }
    }
}

pub struct StreamSink {
    queues: Vec<mpsc::Sender<Job>>,
    next: AtomicUsize,
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
                tokio::spawn(writer(rx, pool.clone(), layout.clone(), cfg.clone()));
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
        let kib = (cfg.max_inflight_bytes / 1024).clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        Arc::new(Self {
            inflight: Arc::new(tokio::sync::Semaphore::new(kib)),
            queues,
            next: AtomicUsize::new(0),
            layout,
            over_backlog,
            backlog,
        })
    }

    /// Unprocessed events seen by the last backlog check.
    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }

    /// Appends one tenant's chunks; resolves once Redis holds them.
    pub async fn append(&self, tenant_id: uuid::Uuid, chunks: Vec<Chunk>) -> Result<(), SinkError> {
        if self.over_backlog.load(Ordering::Relaxed) {
            return Err(SinkError::Backlog);
        }
        let bytes: usize = chunks.iter().map(|c| c.bytes.len()).sum();
        let kib = u32::try_from(bytes / 1024 + 1).unwrap_or(u32::MAX);
        let _permit = self
            .inflight
            .clone()
            .try_acquire_many_owned(kib)
            .map_err(|_| SinkError::QueueFull)?;
        let (reply, rx) = oneshot::channel();
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.queues.len();
        self.queues[i]
            .try_send(Job {
                shard: self.layout.shard_of(tenant_id),
                chunks,
                reply,
            })
            .map_err(|_| SinkError::QueueFull)?;
        rx.await
            .unwrap_or_else(|_| Err(SinkError::Redis("writer stopped".into())))
    }
}

/// Joins the jobs' chunks into entries per shard, at most
/// [`MAX_ENTRY_BYTES`] each unless a chunk alone is larger.
fn entries(jobs: &[Job]) -> Vec<(u16, wire::Envelope<'_>)> {
    let mut shards: Vec<u16> = jobs.iter().map(|j| j.shard).collect();
    shards.sort_unstable();
    shards.dedup();
    let mut out = Vec::new();
    for shard in shards {
        let mut env = wire::Envelope::default();
        for chunk in jobs
            .iter()
            .filter(|j| j.shard == shard)
            .flat_map(|j| &j.chunks)
        {
            if !env.is_empty() && env.len() + chunk.bytes.len() > MAX_ENTRY_BYTES {
                out.push((shard, std::mem::take(&mut env)));
            }
            env.push(&chunk.bytes, chunk.events);
        }
        if !env.is_empty() {
            out.push((shard, env));
        }
    }
    out
}

async fn writer(
    mut rx: mpsc::Receiver<Job>,
    pool: deadpool_redis::Pool,
    layout: StreamLayout,
    cfg: SinkConfig,
) {
    let mut jobs: Vec<Job> = Vec::new();
    let mut failures = FailureLog::default();
    while let Some(first) = rx.recv().await {
        let size = |j: &Job| j.chunks.iter().map(|c| c.bytes.len()).sum::<usize>();
        let mut bytes = size(&first);
        jobs.push(first);
        while bytes < cfg.max_pipeline_bytes {
            match rx.try_recv() {
                Ok(j) => {
                    bytes += size(&j);
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        let entries = entries(&jobs);
        metrics::histogram!("sluice_ingest_pipeline_requests").record(jobs.len() as f64);
        metrics::histogram!("sluice_ingest_pipeline_entries").record(entries.len() as f64);
        let result = tokio::time::timeout(
            cfg.redis_timeout,
            flush(&pool, &layout, &entries, cfg.replicas),
        )
        .await
        .unwrap_or_else(|_| Err(SinkError::Redis("timed out".into())));
        if let Err(e) = &result {
            metrics::counter!("sluice_ingest_redis_failures_total").increment(1);
            failures.warn(e);
        }
        for job in jobs.drain(..) {
            let _ = job.reply.send(result.clone());
        }
    }
}

/// Warnings about failed round trips, at most one a second per writer:
/// while Redis is down every round trip fails (hundreds a second), and one
/// line with a count says as much as all of them.
#[derive(Default)]
struct FailureLog {
    last: Option<std::time::Instant>,
    suppressed: u64,
}

impl FailureLog {
    fn warn(&mut self, e: &SinkError) {
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(error = %e, similar_since_last = self.suppressed, "xadd pipeline failed");
        self.last = Some(std::time::Instant::now());
        self.suppressed = 0;
    }
}

async fn flush(
    pool: &deadpool_redis::Pool,
    layout: &StreamLayout,
    entries: &[(u16, wire::Envelope<'_>)],
    replicas: ReplicaWait,
) -> Result<(), SinkError> {
    let mut conn = pool
        .get()
        .await
        .map_err(|e| SinkError::Redis(e.to_string()))?;
    let mut pipe = redis::pipe();
    for (shard, env) in entries {
        layout.append(&mut pipe, *shard, env);
    }
    if !replicas.enabled() {
        return pipe
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| SinkError::Redis(e.to_string()));
    }
    // The entry ids, then WAIT's count of replicas holding all of them.
    replicas.append(&mut pipe);
    let replies: Vec<redis::Value> = pipe
        .query_async(&mut conn)
        .await
        .map_err(|e| SinkError::Redis(e.to_string()))?;
    let acked = match replies.last() {
        Some(redis::Value::Int(n)) => *n,
        _ => return Err(SinkError::Redis("WAIT gave no count".into())),
    };
    replicas.check(acked)?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_round_trips_are_logged_once_a_second() {
        let mut log = FailureLog::default();
        let e = SinkError::Redis("down".into());
        log.warn(&e);
        log.warn(&e);
        log.warn(&e);
        assert_eq!(log.suppressed, 2);
        log.last = Some(std::time::Instant::now() - Duration::from_secs(2));
        log.warn(&e);
        assert_eq!(log.suppressed, 0);
    }

    fn job(shard: u16, sizes: &[usize]) -> Job {
        let (reply, _) = oneshot::channel();
        Job {
            shard,
            chunks: sizes
                .iter()
                .map(|s| Chunk {
                    bytes: vec![7; *s],
                    events: 1,
                })
                .collect(),
            reply,
        }
    }

    #[test]
    fn chunks_join_per_shard_within_the_entry_size() {
        let jobs = [
            job(1, &[100, 200]),
            job(0, &[MAX_ENTRY_BYTES + 5]),
            job(1, &[MAX_ENTRY_BYTES - 250]),
            job(0, &[10]),
        ];
        let got: Vec<(u16, u32, usize)> = entries(&jobs)
            .iter()
            .map(|(s, e)| (*s, e.events(), e.len()))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 1, MAX_ENTRY_BYTES + 6),
                (0, 1, 11),
                (1, 2, 301),
                (1, 1, MAX_ENTRY_BYTES - 249),
            ]
        );
    }
}
