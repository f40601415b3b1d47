//! Circuit breakers for the stores a request tier reads and writes
//! (Postgres and ClickHouse in the API tier), so that a store known to be
//! down is answered at once instead of after a pool's acquire timeout.
//!
//! A [`Breaker`] is closed while its store answers. `failure_threshold`
//! connection-level failures in a row open it: the store could not be
//! reached (a refused or broken connection, a pool that could not connect
//! in time, a server shutting down or refusing connections). Query errors
//! (a constraint violation, a bad value, a missing row) are answers: they
//! reset the count and never open it. While open, every call through
//! [`Guarded::run`] fails at once with [`Open`], which carries a
//! `retry_after` for the caller's answer.
//!
//! A background probe ([`Breaker::watch`], [`Guarded::watch`]) pings the
//! store every `probe_interval` while the breaker is open and closes it as
//! soon as the store answers; requests never wait for the probe.
//!
//! Errors of another store passing through a guarded call (a Postgres call
//! nested in a ClickHouse one) count for neither.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{watch, Notify};

use crate::StorageError;

/// The stores a breaker can guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    Postgres,
    ClickHouse,
}

/// What one call's result says about its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The store answered (successfully or with a query error).
    Answered,
    /// The store could not be reached.
    Unreachable,
    /// Nothing about this store (another store's error, or Sluice's own).
    Unrelated,
}

/// PostgreSQL error classes that mean "cannot talk to the server now":
/// connection exceptions (08…), shutting down or starting up (57P01-03),
/// too many connections (53300).
fn pg_code_is_connection_level(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

impl Store {
    pub fn as_str(self) -> &'static str {
        match self {
            Store::Postgres => "postgres",
            Store::ClickHouse => "clickhouse",
        }
    }

    /// Classifies an error of a call to this store.
    pub fn classify(self, e: &StorageError) -> Outcome {
        let unreachable = match (self, e) {
            (Store::Postgres, StorageError::Postgres(e)) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                sqlx::Error::Database(db) => {
                    db.code().is_some_and(|c| pg_code_is_connection_level(&c))
                }
                _ => false,
            },
            (Store::ClickHouse, StorageError::ClickHouse(e)) => matches!(
                e,
                clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut
            ),
            _ => return Outcome::Unrelated,
        };
        if unreachable {
            Outcome::Unreachable
        } else {
            Outcome::Answered
        }
    }
}

/// A breaker's settings.
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// Connection-level failures in a row that open the breaker.
    pub failure_threshold: u32,
    /// How often an open breaker's store is probed.
    pub probe_interval: Duration,
    /// How long one probe may take before it counts as failed.
    pub probe_timeout: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 3,
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(2),
        }
    }
}

/// A call refused because its store's breaker is open.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("{} is unavailable (circuit open); retry in {}s", .store.as_str(), .retry_after.as_secs())]
pub struct Open {
    pub store: Store,
    /// When asking again may succeed (the next probe), at least 1 s.
    pub retry_after: Duration,
}

/// What a guarded call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Open(#[from] Open),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Whether a breaker lets calls through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Closed,
    Open,
}

/// A breaker's state as `/health` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub store: Store,
    pub circuit: State,
    pub consecutive_failures: u32,
    /// Seconds since the breaker opened, while open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_for_secs: Option<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    failures: u32,
    opened_at: Option<Instant>,
}

/// One store's circuit breaker; clones share it.
#[derive(Debug, Clone)]
pub struct Breaker {
    store: Store,
    cfg: BreakerConfig,
    inner: Arc<Mutex<Inner>>,
    opened: Arc<Notify>,
}

impl Breaker {
    pub fn new(store: Store, cfg: BreakerConfig) -> Self {
        Self {
            store,
            cfg: BreakerConfig {
                failure_threshold: cfg.failure_threshold.max(1),
                ..cfg
            },
            inner: Arc::default(),
            opened: Arc::default(),
        }
    }

    pub fn store(&self) -> Store {
        self.store
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn state(&self) -> State {
        if self.lock().opened_at.is_some() {
            State::Open
        } else {
            State::Closed
        }
    }

    pub fn status(&self) -> Status {
        let inner = self.lock();
        Status {
            store: self.store,
            circuit: if inner.opened_at.is_some() {
                State::Open
            } else {
                State::Closed
            },
            consecutive_failures: inner.failures,
            open_for_secs: inner.opened_at.map(|t| t.elapsed().as_secs()),
        }
    }

    /// `Ok` when a call may go to the store; [`Open`] at once otherwise.
    pub fn check(&self) -> Result<(), Open> {
        if self.lock().opened_at.is_none() {
            return Ok(());
        }
        metrics::counter!("sluice_store_circuit_rejected_total", "store" => self.store.as_str())
            .increment(1);
        let secs = self.cfg.probe_interval.as_secs_f64().ceil().max(1.0);
        Err(Open {
            store: self.store,
            retry_after: Duration::from_secs(secs as u64),
        })
    }

    /// Records what a call said about the store. Only the probe closes an
    /// open breaker ([`Breaker::close`]): a straggler that started before
    /// it opened proves little.
    pub fn record(&self, outcome: Outcome) {
        let mut inner = self.lock();
        if inner.opened_at.is_some() {
            return;
        }
        match outcome {
            Outcome::Unrelated => {}
            Outcome::Answered => inner.failures = 0,
            Outcome::Unreachable => {
                inner.failures = inner.failures.saturating_add(1);
                if inner.failures >= self.cfg.failure_threshold {
                    inner.opened_at = Some(Instant::now());
                    drop(inner);
                    tracing::warn!(
                        store = self.store.as_str(),
                        "store unreachable: circuit open, requests that need it are refused at once until a probe reaches it"
                    );
                    metrics::gauge!("sluice_store_circuit_open", "store" => self.store.as_str())
                        .set(1.0);
                    metrics::counter!("sluice_store_circuit_opened_total", "store" => self.store.as_str())
                        .increment(1);
                    self.opened.notify_one();
                }
            }
        }
    }

    /// Closes the breaker (the store answered a probe).
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.failures = 0;
        if let Some(t) = inner.opened_at.take() {
            drop(inner);
            tracing::info!(
                store = self.store.as_str(),
                open_secs = t.elapsed().as_secs_f64(),
                "store reachable again: circuit closed"
            );
            metrics::gauge!("sluice_store_circuit_open", "store" => self.store.as_str()).set(0.0);
        }
    }

    /// Probes the store with `ping` every `probe_interval` while the
    /// breaker is open, closing it on the first answer; returns when
    /// `shutdown` turns true.
    pub async fn watch<F, Fut>(self, mut ping: F, mut shutdown: watch::Receiver<bool>)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), StorageError>>,
    {
        loop {
            if self.state() == State::Closed {
                tokio::select! {
                    _ = self.opened.notified() => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.probe_interval) => {}
                _ = shutdown.changed() => return,
            }
            match tokio::time::timeout(self.cfg.probe_timeout, ping()).await {
                Ok(Ok(())) => self.close(),
                Ok(Err(e)) => {
                    tracing::debug!(store = self.store.as_str(), error = %e, "probe failed")
                }
                Err(_) => tracing::debug!(store = self.store.as_str(), "probe timed out"),
            }
        }
    }
}

/// A store reached only through its breaker.
#[derive(Debug, Clone)]
pub struct Guarded<S> {
    store: S,
    breaker: Breaker,
}

impl<S> Guarded<S> {
    pub fn new(store: S, breaker: Breaker) -> Self {
        Self { store, breaker }
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Runs `f` on the store unless the breaker is open, and records what
    /// its result says about the store.
    pub async fn run<'a, T, E, F, Fut>(&'a self, f: F) -> Result<T, CallError>
    where
        F: FnOnce(&'a S) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Into<CallError>,
    {
        self.breaker.check()?;
        let result = f(&self.store).await.map_err(Into::into);
        self.breaker.record(match &result {
            Ok(_) => Outcome::Answered,
            Err(CallError::Storage(e)) => self.breaker.store.classify(e),
            Err(CallError::Open(_)) => Outcome::Unrelated,
        });
        result
    }
}

/// A store that can be asked whether it answers.
pub trait Ping {
    fn ping(&self) -> impl Future<Output = Result<(), StorageError>> + Send;
}

impl Ping for sqlx::PgPool {
    async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(self).await?;
        Ok(())
    }
}

impl Ping for clickhouse::Client {
    async fn ping(&self) -> Result<(), StorageError> {
        self.query("SELECT 1").fetch_one::<u8>().await?;
        Ok(())
    }
}

impl<S: Ping> Guarded<S> {
    /// The breaker's probe, pinging this store ([`Breaker::watch`]).
    pub async fn watch(self, shutdown: watch::Receiver<bool>) {
        let Guarded { store, breaker } = self;
        breaker.watch(|| store.ping(), shutdown).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn unreachable_pg() -> StorageError {
        StorageError::Postgres(sqlx::Error::PoolTimedOut)
    }

    fn cfg(threshold: u32) -> BreakerConfig {
        BreakerConfig {
            failure_threshold: threshold,
            probe_interval: Duration::from_millis(20),
            probe_timeout: Duration::from_millis(200),
        }
    }

    #[test]
    fn connection_failures_count_and_query_errors_do_not() {
        let pg = Store::Postgres;
        assert_eq!(pg.classify(&unreachable_pg()), Outcome::Unreachable);
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            pg.classify(&StorageError::Postgres(sqlx::Error::Io(io))),
            Outcome::Unreachable
        );
        assert_eq!(
            pg.classify(&StorageError::Postgres(sqlx::Error::RowNotFound)),
            Outcome::Answered
        );
        assert_eq!(
            pg.classify(&StorageError::Invalid("x".into())),
            Outcome::Unrelated
        );
        assert!(pg_code_is_connection_level("08006"));
        assert!(pg_code_is_connection_level("57P01"));
        assert!(!pg_code_is_connection_level("23505"), "unique violation");
        let ch = Store::ClickHouse;
        assert_eq!(
            ch.classify(&StorageError::ClickHouse(
                clickhouse::error::Error::TimedOut
            )),
            Outcome::Unreachable
        );
        assert_eq!(
            ch.classify(&StorageError::ClickHouse(
                clickhouse::error::Error::BadResponse("Code: 62. Syntax error".into())
            )),
            Outcome::Answered
        );
        assert_eq!(ch.classify(&unreachable_pg()), Outcome::Unrelated);
    }

    #[tokio::test]
    async fn opens_after_the_threshold_and_refuses_at_once() {
        let g = Guarded::new((), Breaker::new(Store::Postgres, cfg(2)));
        let fail = || async { Err::<(), _>(unreachable_pg()) };
        assert!(matches!(
            g.run(|_| fail()).await,
            Err(CallError::Storage(_))
        ));
        assert_eq!(g.breaker().state(), State::Closed);
        // A query error between failures resets the count.
        let query_error =
            || async { Err::<(), _>(StorageError::Postgres(sqlx::Error::RowNotFound)) };
        let _ = g.run(|_| query_error()).await;
        let _ = g.run(|_| fail()).await;
        assert_eq!(g.breaker().state(), State::Closed);
        let _ = g.run(|_| fail()).await;
        assert_eq!(g.breaker().state(), State::Open);
        let ran = AtomicBool::new(false);
        let r = g
            .run(|_| async {
                ran.store(true, Ordering::SeqCst);
                Ok::<_, StorageError>(())
            })
            .await;
        assert!(matches!(r, Err(CallError::Open(o)) if o.retry_after >= Duration::from_secs(1)));
        assert!(
            !ran.load(Ordering::SeqCst),
            "an open breaker never calls the store"
        );
        assert_eq!(g.breaker().status().consecutive_failures, 2);
    }

    #[tokio::test]
    async fn another_stores_errors_do_not_count() {
        let g = Guarded::new((), Breaker::new(Store::ClickHouse, cfg(1)));
        let _ = g.run(|_| async { Err::<(), _>(unreachable_pg()) }).await;
        assert_eq!(g.breaker().state(), State::Closed);
    }

    #[tokio::test]
    async fn the_probe_closes_it_once_the_store_answers() {
        let breaker = Breaker::new(Store::Postgres, cfg(1));
        let up = Arc::new(AtomicBool::new(false));
        let (stop, rx) = watch::channel(false);
        let probe = {
            let up = up.clone();
            move || {
                let up = up.clone();
                async move {
                    if up.load(Ordering::SeqCst) {
                        Ok(())
                    } else {
                        Err(unreachable_pg())
                    }
                }
            }
        };
        let task = tokio::spawn(breaker.clone().watch(probe, rx));
        breaker.record(Outcome::Unreachable);
        assert_eq!(breaker.state(), State::Open);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(breaker.state(), State::Open, "probes fail while down");
        up.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(2);
        while breaker.state() == State::Open && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(breaker.state(), State::Closed);
        // It keeps watching: a second outage is probed too.
        up.store(false, Ordering::SeqCst);
        breaker.record(Outcome::Unreachable);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(breaker.state(), State::Open);
        up.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(2);
        while breaker.state() == State::Open && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(breaker.state(), State::Closed);
        let _ = stop.send(true);
        task.await.unwrap();
    }
}
