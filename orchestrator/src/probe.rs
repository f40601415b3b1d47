//! Query latency sampled on a target while a phase runs.
//!
//! A [`Probe`] has its own connection to the phase's database. Before the
//! phase starts it takes a baseline (the median of [`BASELINE_SAMPLES`]
//! rounds); then, every [`INTERVAL`], it times `SELECT 1 FROM <t> LIMIT 1`
//! for each table the migration touches (or `SELECT 1` when it touches
//! none), each under a statement timeout of [`PROBE_STATEMENT_TIMEOUT`].
//!
//! A probe blocked behind the migration's lock is the signal, not noise: the
//! query in flight counts, with the time it has waited so far, in
//! [`Probe::current_latency_ms`]. A probe that hits its statement timeout
//! is recorded with the time it waited; one that fails otherwise (say the
//! table does not exist yet) is not recorded.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Executor};
use tokio::task::JoinHandle;

use crate::executor::ExecError;
use crate::target::Target;

/// Time between the starts of two sampling rounds.
pub const INTERVAL: Duration = Duration::from_millis(100);
/// The rounds the baseline is the median of.
pub const BASELINE_SAMPLES: usize = 5;
/// The statement timeout each probe query runs under.
pub const PROBE_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How many of the latest completed samples the current latency is the
/// median of (a single hiccup on a shared machine is not a trend).
const RECENT: usize = 3;

#[derive(Default)]
struct State {
    samples: Vec<f64>,
    recent: VecDeque<f64>,
    in_flight_since: Option<Instant>,
}

/// A running sampler; see the module doc.
pub struct Probe {
    baseline_ms: f64,
    baseline_samples: Vec<f64>,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    task: Option<JoinHandle<()>>,
}

/// A probe dropped without [`Probe::stop`] (say its execution was
/// cancelled) still stops, after the query it is running.
impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Probe {
    /// Connects to `target`, takes the baseline and starts sampling.
    /// `tables` are already quoted names; empty means `SELECT 1`.
    pub async fn start(
        target: &Target,
        tables: &[String],
        connect_timeout: Duration,
    ) -> Result<Probe, ExecError> {
        let mut conn = target.connect(connect_timeout).await?;
        let set = format!(
            "SET statement_timeout = {}",
            PROBE_STATEMENT_TIMEOUT.as_millis()
        );
        conn.execute(sqlx::raw_sql(AssertSqlSafe(set)))
            .await
            .map_err(ExecError::from)?;
        let mut queries: Vec<String> = tables
            .iter()
            .map(|t| format!("SELECT 1 FROM {t} LIMIT 1"))
            .collect();
        if queries.is_empty() {
            queries.push("SELECT 1".to_string());
        }
        let mut baseline_samples = Vec::new();
        for _ in 0..BASELINE_SAMPLES {
            for q in &queries {
                if let Some(ms) = time_one(&mut conn, q).await {
                    baseline_samples.push(ms);
                }
            }
        }
        if baseline_samples.is_empty() {
            // None of the tables answers (yet): time the round trip.
            for _ in 0..BASELINE_SAMPLES {
                if let Some(ms) = time_one(&mut conn, "SELECT 1").await {
                    baseline_samples.push(ms);
                }
            }
        }
        let baseline_ms = median(&baseline_samples).unwrap_or(0.0);
        tracing::debug!(
            target = %target.display_name(),
            baseline_ms,
            "probe baseline taken"
        );
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(sample(conn, queries, state.clone(), stop.clone()));
        Ok(Probe {
            baseline_ms,
            baseline_samples,
            state,
            stop,
            task: Some(task),
        })
    }

    /// The median latency before the phase started, in milliseconds.
    pub fn baseline_ms(&self) -> f64 {
        self.baseline_ms
    }

    /// The samples the baseline was taken from, in milliseconds.
    pub fn baseline_samples(&self) -> &[f64] {
        &self.baseline_samples
    }

    /// The samples taken since sampling started, in milliseconds.
    pub fn samples(&self) -> Vec<f64> {
        lock(&self.state).samples.clone()
    }

    /// The latency now: the larger of the median of the latest completed
    /// samples and the time the probe in flight has waited so far.
    pub fn current_latency_ms(&self) -> Option<f64> {
        let state = lock(&self.state);
        let recent: Vec<f64> = state.recent.iter().copied().collect();
        let in_flight = state
            .in_flight_since
            .map(|t| t.elapsed().as_secs_f64() * 1000.0);
        match (median(&recent), in_flight) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// How far the current latency is above the baseline, in milliseconds.
    pub fn current_increase_ms(&self) -> Option<f64> {
        self.current_latency_ms().map(|l| l - self.baseline_ms)
    }

    /// How far the current latency is above the baseline, in percent of it.
    pub fn current_increase_pct(&self) -> Option<f64> {
        let now = self.current_latency_ms()?;
        // A baseline of a few microseconds must not make the percentage
        // infinite.
        let base = self.baseline_ms.max(0.001);
        Some((now - base) / base * 100.0)
    }

    /// Stops sampling and returns every sample taken while it ran (the
    /// baseline excluded).
    pub async fn stop(mut self) -> Vec<f64> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(mut task) = self.task.take() {
            // A probe query waits at most its statement timeout.
            if tokio::time::timeout(PROBE_STATEMENT_TIMEOUT + Duration::from_secs(1), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        let state = lock(&self.state);
        state.samples.clone()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

async fn sample(
    mut conn: PgConnection,
    queries: Vec<String>,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
) {
    'rounds: loop {
        let round = Instant::now();
        for q in &queries {
            if stop.load(Ordering::SeqCst) {
                break 'rounds;
            }
            let started = Instant::now();
            lock(&state).in_flight_since = Some(started);
            let result = conn.execute(sqlx::raw_sql(AssertSqlSafe(q.as_str()))).await;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            let mut s = lock(&state);
            s.in_flight_since = None;
            let recorded = match result {
                Ok(_) => true,
                Err(e) => {
                    let timed_out = e
                        .as_database_error()
                        .and_then(|d| d.code())
                        .is_some_and(|c| c == "57014");
                    if !timed_out {
                        tracing::debug!(error = %e, "probe query failed");
                    }
                    timed_out
                }
            };
            if recorded {
                s.samples.push(ms);
                s.recent.push_back(ms);
                while s.recent.len() > RECENT {
                    s.recent.pop_front();
                }
            }
        }
        let elapsed = round.elapsed();
        if elapsed < INTERVAL {
            tokio::time::sleep(INTERVAL - elapsed).await;
        }
    }
    let _ = sqlx::Connection::close(conn).await;
}

/// Times one query; `None` when it fails.
async fn time_one(conn: &mut PgConnection, q: &str) -> Option<f64> {
    let started = Instant::now();
    conn.execute(sqlx::raw_sql(AssertSqlSafe(q)))
        .await
        .ok()
        .map(|_| started.elapsed().as_secs_f64() * 1000.0)
}

/// The mean of `samples`.
pub fn average(samples: &[f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    Some(samples.iter().sum::<f64>() / samples.len() as f64)
}

/// The `p`-th percentile (0 < p ≤ 100) of `samples`, by nearest rank.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// The median of `samples`.
pub fn median(samples: &[f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    Some(if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics() {
        let s = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(median(&s), Some(3.0));
        assert_eq!(median(&[1.0, 2.0]), Some(1.5));
        assert_eq!(average(&s), Some(3.0));
        assert_eq!(percentile(&s, 99.0), Some(5.0));
        assert_eq!(percentile(&s, 50.0), Some(3.0));
        let many: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&many, 99.0), Some(198.0));
        assert_eq!(average(&[]), None);
        assert_eq!(percentile(&[], 99.0), None);
    }
}
