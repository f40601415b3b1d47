//! Acceptance-to-visibility lag: during the run, post an error with a
//! fingerprint of its own every so often and poll `GET /api/errors/{id}`
//! until it answers 200 (any 2xx: the reference server answers 201). The
//! lag is from the post's answer to that first success.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::http::{Endpoints, HeaderSets, Http};
use crate::stats::Outcome;

const POLL_EVERY: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
pub struct LagConfig {
    pub samples: usize,
    pub every: Duration,
    pub timeout: Duration,
    pub run_id: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LagReport {
    /// Probes posted.
    pub samples: usize,
    /// Probes the server accepted (they count as accepted events).
    pub accepted: u64,
    /// Accepted probes that became readable.
    pub visible: usize,
    /// Accepted probes not readable before the time-out (or with no id).
    pub timed_out: usize,
    /// Polls answered 429 (the API's rate limit slows the measurement).
    pub rate_limited_polls: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

#[derive(Deserialize)]
struct Posted {
    data: Option<PostedData>,
}

#[derive(Deserialize)]
struct PostedData {
    id: Option<String>,
}

/// Posts probes until `samples` are out or `stop` turns true, then waits
/// for the outstanding polls.
pub async fn probe(
    http: Http,
    endpoints: Endpoints,
    headers: HeaderSets,
    cfg: LagConfig,
    mut stop: watch::Receiver<bool>,
) -> LagReport {
    let mut polls: JoinSet<Option<Duration>> = JoinSet::new();
    let limited = Arc::new(AtomicU64::new(0));
    let mut report = LagReport::default();
    for i in 0..cfg.samples {
        if *stop.borrow() {
            break;
        }
        let body = json!({
            "level": "info",
            "message": format!("loadtest lag probe {} #{i}", cfg.run_id),
            "source": "loadtest",
            "fingerprint": format!("loadtest-lag-{}-{i}", cfg.run_id),
            "context": {"probe": i},
        });
        report.samples += 1;
        let a = http
            .send(
                Method::POST,
                &endpoints.errors,
                &headers.json_key,
                Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
            )
            .await;
        let accepted_at = Instant::now();
        if a.outcome.is_success() {
            report.accepted += 1;
            let id = serde_json::from_slice::<Posted>(&a.body)
                .ok()
                .and_then(|p| p.data)
                .and_then(|d| d.id);
            if let Some(uri) = id.and_then(|id| endpoints.error_by_id(&id).ok()) {
                let (http, headers, limited) = (http.clone(), headers.clone(), limited.clone());
                let timeout = cfg.timeout;
                polls.spawn(async move {
                    loop {
                        let a = http
                            .send(Method::GET, &uri, &headers.key_only, Bytes::new())
                            .await;
                        match a.outcome {
                            Outcome::Status(s) if (200..300).contains(&s) => {
                                return Some(accepted_at.elapsed())
                            }
                            Outcome::Status(429) => {
                                limited.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {}
                        }
                        if accepted_at.elapsed() > timeout {
                            return None;
                        }
                        tokio::time::sleep(POLL_EVERY).await;
                    }
                });
            } else {
                // accepted but no id to follow
                polls.spawn(async { None });
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(cfg.every) => {}
            _ = stop.changed() => {}
        }
    }
    let mut lags = Vec::new();
    while let Some(r) = polls.join_next().await {
        match r.ok().flatten() {
            Some(d) => lags.push(d),
            None => report.timed_out += 1,
        }
    }
    report.rate_limited_polls = limited.load(Ordering::Relaxed);
    report.visible = lags.len();
    lags.sort();
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    report.p50_ms = quantile(&lags, 0.5).map(ms);
    report.p99_ms = quantile(&lags, 0.99).map(ms);
    report.max_ms = lags.last().map(ms);
    report
}

/// Nearest-rank quantile of sorted values.
fn quantile<T>(sorted: &[T], q: f64) -> Option<&T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), Some(&50));
        assert_eq!(quantile(&v, 0.99), Some(&99));
        assert_eq!(quantile(&v, 1.0), Some(&100));
        assert_eq!(quantile(&[7], 0.5), Some(&7));
        assert_eq!(quantile::<u32>(&[], 0.5), None);
    }
}
