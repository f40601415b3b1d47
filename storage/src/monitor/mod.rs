//! Sluice's own health, for the Health Monitor's monitoring endpoints.
//!
//! One [`Monitor`] per process:
//! - **Requests.** The listener calls [`Monitor::record`] for every
//!   request it answers, on every tier (ingest and api): a few atomic
//!   additions, no allocation, no I/O. [`Monitor::connection`] counts the
//!   open client connections.
//! - **Sampler** ([`Monitor::run_sampler`], in EVERY process): every
//!   `sample_every` it reads the host (CPU, memory, disk, network counters;
//!   [`host`]), takes the request figures aggregated since the previous
//!   sample and writes one row to ClickHouse (`monitor_samples`), so every
//!   timeframe answers from history. Rows that could not be written wait in
//!   a bounded queue ([`MAX_PENDING`]). It also beats the heartbeat of the
//!   process's tiers in Redis (`{prefix}:monitor:alive:{tier}`, a sorted
//!   set by time), which is how Ingest and Workers are probed.
//! - **Prober** ([`Monitor::run_prober`], in every API process): every
//!   `probe_every` it probes each service for real ([`probe`]), keeps the
//!   round in memory for `/api/monitoring/services`, writes it to
//!   ClickHouse (`service_probes`, uptime is computed from it) and, when a
//!   service's status differs from the last one recorded in Redis
//!   (`GETSET`, so several API processes publish a change once), publishes
//!   `service_status_change` to every tenant's `/ws`.
//!
//! Everything is keyed by deployment, the Redis prefix.

pub mod host;
pub mod probe;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::ch::monitoring::{self as chm, ProbeRow, SampleRow};

pub use probe::{Round, ServiceProbe};

/// Rows (samples or probes) kept while ClickHouse refuses them; older
/// ones are dropped beyond this.
pub const MAX_PENDING: usize = 2000;

/// What a process runs and how often it samples and probes.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// The deployment: the Redis prefix.
    pub deployment: String,
    pub ingest: bool,
    pub api: bool,
    pub worker: bool,
    pub sample_every: Duration,
    pub probe_every: Duration,
    /// A path on the filesystem holding Sluice's data (disk usage).
    pub data_dir: PathBuf,
}

/// The tier a request was served by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Ingest,
    Api,
}

#[derive(Default)]
struct Window {
    requests: AtomicU64,
    errors_5xx: AtomicU64,
    latency_us: AtomicU64,
    ingest: AtomicU64,
    api: AtomicU64,
}

/// Requests aggregated since the last sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    pub requests: u64,
    pub errors_5xx: u64,
    pub latency_us: u64,
    pub ingest: u64,
    pub api: u64,
}

impl Window {
    fn take(&self) -> Figures {
        Figures {
            requests: self.requests.swap(0, Ordering::Relaxed),
            errors_5xx: self.errors_5xx.swap(0, Ordering::Relaxed),
            latency_us: self.latency_us.swap(0, Ordering::Relaxed),
            ingest: self.ingest.swap(0, Ordering::Relaxed),
            api: self.api.swap(0, Ordering::Relaxed),
        }
    }

    fn peek(&self) -> Figures {
        Figures {
            requests: self.requests.load(Ordering::Relaxed),
            errors_5xx: self.errors_5xx.load(Ordering::Relaxed),
            latency_us: self.latency_us.load(Ordering::Relaxed),
            ingest: self.ingest.load(Ordering::Relaxed),
            api: self.api.load(Ordering::Relaxed),
        }
    }
}

/// When this process started (the first [`Monitor`] made, or the first
/// call): `current_uptime_hours` counts from it.
pub fn process_started() -> (Instant, DateTime<Utc>) {
    static START: OnceLock<(Instant, DateTime<Utc>)> = OnceLock::new();
    *START.get_or_init(|| (Instant::now(), Utc::now()))
}

struct Inner {
    cfg: MonitorConfig,
    instance: String,
    host: String,
    window: Window,
    connections: AtomicU64,
    latest_host: Mutex<host::HostReading>,
    round: watch::Sender<Option<Arc<Round>>>,
    /// Probes and healthy ones per service since start (when ClickHouse
    /// cannot tell the history).
    local_shares: Mutex<HashMap<String, (u64, u64)>>,
    answers: Mutex<HashMap<String, (Instant, serde_json::Value)>>,
}

/// This process's monitor (cheap to clone).
#[derive(Clone)]
pub struct Monitor {
    inner: Arc<Inner>,
}

/// One open client connection, counted until dropped.
pub struct Connection(Monitor);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.inner.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> u64 {
    Utc::now().timestamp_millis().max(0) as u64
}

/// The heartbeat key of a tier.
pub fn alive_key(deployment: &str, tier: &str) -> String {
    format!("{deployment}:monitor:alive:{tier}")
}

impl Monitor {
    pub fn new(cfg: MonitorConfig) -> Self {
        process_started();
        let mut meter = host::Meter::default();
        let first = meter.read(&cfg.data_dir);
        Self {
            inner: Arc::new(Inner {
                instance: uuid::Uuid::new_v4().simple().to_string(),
                host: host::hostname(),
                window: Window::default(),
                connections: AtomicU64::new(0),
                latest_host: Mutex::new(first),
                round: watch::channel(None).0,
                local_shares: Mutex::new(HashMap::new()),
                answers: Mutex::new(HashMap::new()),
                cfg,
            }),
        }
    }

    pub fn config(&self) -> &MonitorConfig {
        &self.inner.cfg
    }

    pub fn deployment(&self) -> &str {
        &self.inner.cfg.deployment
    }

    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// Counts one answered request.
    pub fn record(&self, tier: Tier, status: u16, elapsed: Duration) {
        let w = &self.inner.window;
        w.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            w.errors_5xx.fetch_add(1, Ordering::Relaxed);
        }
        // at least 1 µs, so a served request always has a latency
        let us = (elapsed.as_micros() as u64).max(1);
        w.latency_us.fetch_add(us, Ordering::Relaxed);
        match tier {
            Tier::Ingest => w.ingest.fetch_add(1, Ordering::Relaxed),
            Tier::Api => w.api.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Counts an open client connection until the guard is dropped.
    pub fn connection(&self) -> Connection {
        self.inner.connections.fetch_add(1, Ordering::Relaxed);
        Connection(self.clone())
    }

    pub fn open_connections(&self) -> u64 {
        self.inner.connections.load(Ordering::Relaxed)
    }

    /// Requests counted since the last sample was taken (not yet in
    /// ClickHouse).
    pub fn unflushed(&self) -> Figures {
        self.inner.window.peek()
    }

    /// The latest host reading of this process's sampler.
    pub fn host_now(&self) -> host::HostReading {
        *lock(&self.inner.latest_host)
    }

    /// The latest probe round, waiting (at most `within`) for the first.
    pub async fn latest_round(&self, within: Duration) -> Option<Arc<Round>> {
        let mut rx = self.inner.round.subscribe();
        let r = tokio::time::timeout(within, rx.wait_for(|r| r.is_some())).await;
        match r {
            Ok(Ok(v)) => v.clone(),
            _ => None,
        }
    }

    /// Probes and healthy ones per service, counted in memory since start.
    pub fn local_shares(&self) -> HashMap<String, (u64, u64)> {
        lock(&self.inner.local_shares).clone()
    }

    /// A cached answer under `key`, reused for `ttl`; computed by `f` when
    /// missing or older.
    pub async fn cached<F, Fut, E>(
        &self,
        key: &str,
        ttl: Duration,
        f: F,
    ) -> Result<serde_json::Value, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<serde_json::Value, E>>,
    {
        if let Some((at, v)) = lock(&self.inner.answers).get(key) {
            if at.elapsed() < ttl {
                return Ok(v.clone());
            }
        }
        let v = f().await?;
        let mut a = lock(&self.inner.answers);
        if a.len() > 64 {
            a.clear();
        }
        a.insert(key.to_string(), (Instant::now(), v.clone()));
        Ok(v)
    }

    fn tiers(&self) -> Vec<&'static str> {
        let c = &self.inner.cfg;
        let mut t = Vec::new();
        if c.ingest {
            t.push("ingest");
        }
        if c.api {
            t.push("api");
        }
        if c.worker {
            t.push("workers");
        }
        t
    }

    /// How long a heartbeat counts: three samples (at least 3 s).
    pub fn heartbeat_ttl(&self) -> Duration {
        (self.inner.cfg.sample_every * 3).max(Duration::from_secs(3))
    }

    async fn beat(&self, redis: &deadpool_redis::Pool, alive: bool) -> crate::Result<()> {
        let mut conn = redis.get().await?;
        let now = now_ms();
        let stale = now.saturating_sub(self.heartbeat_ttl().as_millis() as u64 * 10);
        let mut pipe = redis::pipe();
        for tier in self.tiers() {
            let key = alive_key(self.deployment(), tier);
            if alive {
                pipe.zadd(&key, self.instance(), now).ignore();
            } else {
                pipe.zrem(&key, self.instance()).ignore();
            }
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(&key)
                .arg("-inf")
                .arg(stale)
                .ignore();
            // a deployment that stops leaves nothing behind for long
            pipe.expire(&key, (self.heartbeat_ttl().as_secs() * 10) as i64)
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    fn sample_row(&self, reading: host::HostReading, f: Figures) -> SampleRow {
        let ms = now_ms();
        SampleRow {
            deployment: self.deployment().to_string(),
            instance: self.instance().to_string(),
            host: self.inner.host.clone(),
            ts: (ms / 1000) as u32,
            ts_ms: ms,
            cpu_percent: reading.cpu_percent,
            memory_percent: reading.memory_percent,
            disk_percent: reading.disk_percent,
            net_rx_bytes: reading.net_rx_bytes,
            net_tx_bytes: reading.net_tx_bytes,
            connections: self.open_connections(),
            requests: f.requests,
            errors_5xx: f.errors_5xx,
            latency_us: f.latency_us,
            ingest_requests: f.ingest,
            api_requests: f.api,
        }
    }

    /// The sampler loop of this process, until `shutdown`; a last sample
    /// is written on the way out and the heartbeats withdrawn.
    pub async fn run_sampler(
        self,
        ch: clickhouse::Client,
        redis: deadpool_redis::Pool,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let span = tracing::info_span!("monitor_sampler", deployment = %self.deployment());
        let mut meter = host::Meter::default();
        meter.read(&self.inner.cfg.data_dir);
        let mut pending: VecDeque<SampleRow> = VecDeque::new();
        // the first reading a moment later, so CPU has an interval
        tokio::time::sleep(Duration::from_millis(250)).await;
        loop {
            let reading = meter.read(&self.inner.cfg.data_dir);
            *lock(&self.inner.latest_host) = reading;
            let row = self.sample_row(reading, self.inner.window.take());
            push_bounded(&mut pending, row);
            match chm::insert_samples(&ch, pending.make_contiguous()).await {
                Ok(()) => pending.clear(),
                Err(e) => {
                    tracing::warn!(parent: &span, error = %e, pending = pending.len(), "monitor: samples not stored yet")
                }
            }
            if let Err(e) = self.beat(&redis, true).await {
                tracing::warn!(parent: &span, error = %e, "monitor: heartbeat failed");
            }
            let stop = tokio::select! {
                _ = tokio::time::sleep(self.inner.cfg.sample_every) => false,
                _ = shutdown.wait_for(|s| *s) => true,
            };
            if stop {
                let row = self.sample_row(self.host_now(), self.inner.window.take());
                push_bounded(&mut pending, row);
                let _ = chm::insert_samples(&ch, pending.make_contiguous()).await;
                let _ = self.beat(&redis, false).await;
                return;
            }
        }
    }

    /// The prober loop of an API process, until `shutdown`.
    pub async fn run_prober(
        self,
        stores: probe::Stores,
        publisher: crate::live::Publisher,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let span = tracing::info_span!("monitor_prober", deployment = %self.deployment());
        let mut pending: VecDeque<ProbeRow> = VecDeque::new();
        loop {
            let round =
                Arc::new(probe::round(&stores, self.deployment(), self.heartbeat_ttl()).await);
            {
                let mut shares = lock(&self.inner.local_shares);
                for s in &round.services {
                    let e = shares.entry(s.name.to_string()).or_default();
                    e.0 += 1;
                    e.1 += u64::from(s.status == "healthy");
                }
            }
            self.inner.round.send_replace(Some(round.clone()));
            if let Err(e) = self
                .publish_changes(&stores.redis, &publisher, &round)
                .await
            {
                tracing::warn!(parent: &span, error = %e, "monitor: status changes not published");
            }
            for row in round.rows(self.deployment(), self.instance()) {
                push_bounded(&mut pending, row);
            }
            match chm::insert_probes(&stores.ch, pending.make_contiguous()).await {
                Ok(()) => pending.clear(),
                Err(e) => {
                    tracing::warn!(parent: &span, error = %e, pending = pending.len(), "monitor: probes not stored yet")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.inner.cfg.probe_every) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    /// Publishes `service_status_change` for each service whose status
    /// differs from the one last recorded for the deployment.
    async fn publish_changes(
        &self,
        redis: &deadpool_redis::Pool,
        publisher: &crate::live::Publisher,
        round: &Round,
    ) -> crate::Result<()> {
        let mut conn = redis.get().await?;
        for s in &round.services {
            let key = format!("{}:monitor:status:{}", self.deployment(), s.key());
            let (old,): (Option<String>,) = redis::pipe()
                .cmd("GETSET")
                .arg(&key)
                .arg(s.status)
                .expire(&key, 7 * 86400)
                .ignore()
                .query_async(&mut conn)
                .await?;
            if old.as_deref().is_some_and(|o| o != s.status) {
                tracing::info!(
                    service = s.name,
                    status = s.status,
                    "service status changed"
                );
                publisher
                    .publish(
                        crate::live::BROADCAST,
                        "service_status_change",
                        &serde_json::json!({"service": s.name, "status": s.status}),
                    )
                    .await?;
            }
        }
        Ok(())
    }
}

fn push_bounded<T>(q: &mut VecDeque<T>, item: T) {
    if q.len() >= MAX_PENDING {
        q.pop_front();
        metrics::counter!("sluice_monitor_rows_dropped_total").increment(1);
    }
    q.push_back(item);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitor() -> Monitor {
        Monitor::new(MonitorConfig {
            deployment: "t".into(),
            ingest: true,
            api: true,
            worker: false,
            sample_every: Duration::from_secs(5),
            probe_every: Duration::from_secs(10),
            data_dir: PathBuf::from("/"),
        })
    }

    #[test]
    fn aggregates_requests_in_memory() {
        let m = monitor();
        m.record(Tier::Api, 200, Duration::from_millis(2));
        m.record(Tier::Ingest, 503, Duration::from_micros(0));
        let f = m.unflushed();
        assert_eq!((f.requests, f.errors_5xx, f.api, f.ingest), (2, 1, 1, 1));
        assert_eq!(f.latency_us, 2001);
        assert_eq!(m.inner.window.take(), f);
        assert_eq!(m.unflushed(), Figures::default());
        let c = m.connection();
        assert_eq!(m.open_connections(), 1);
        drop(c);
        assert_eq!(m.open_connections(), 0);
        assert_eq!(m.tiers(), vec!["ingest", "api"]);
    }
}
