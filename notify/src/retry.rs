//! Retries of one delivery: a bounded number of attempts, each under a
//! timeout, exponential backoff between them, only after transient
//! failures.

use std::future::Future;
use std::time::Duration;

use crate::NotifyError;

/// How a delivery is retried.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// The wait after the first failed attempt; doubled after each.
    pub first_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
    /// The longest one attempt may take.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    /// 3 attempts, 500 ms then 1 s between them, 10 s per attempt.
    fn default() -> Self {
        Self {
            attempts: 3,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `n` (1-based).
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1));
        self.first_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    /// Runs `attempt` until it succeeds, fails permanently, or the attempts
    /// are spent; answers the last outcome and how many attempts were made.
    pub async fn run<F, Fut>(&self, mut attempt: F) -> (Result<(), NotifyError>, u32)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), NotifyError>>,
    {
        let total = self.attempts.max(1);
        let mut n = 0;
        loop {
            n += 1;
            let outcome = match tokio::time::timeout(self.attempt_timeout, attempt()).await {
                Ok(r) => r,
                Err(_) => Err(NotifyError::Timeout(self.attempt_timeout)),
            };
            match outcome {
                Ok(()) => return (Ok(()), n),
                Err(e) if e.is_transient() && n < total => {
                    tracing::debug!(attempt = n, error = %e, "delivery attempt failed; retrying");
                    tokio::time::sleep(self.backoff(n)).await;
                }
                Err(e) => return (Err(e), n),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn quick() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            first_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
            attempt_timeout: Duration::from_millis(200),
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_millis(500));
        assert_eq!(p.backoff(2), Duration::from_secs(1));
        assert_eq!(p.backoff(10), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn retries_transient_failures_only() {
        let calls = AtomicU32::new(0);
        let (r, n) = quick()
            .run(|| async {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(NotifyError::Transient("503".into()))
                } else {
                    Ok(())
                }
            })
            .await;
        assert!(r.is_ok());
        assert_eq!(n, 2);

        let (r, n) = quick()
            .run(|| async { Err(NotifyError::Rejected("400".into())) })
            .await;
        assert!(matches!(r, Err(NotifyError::Rejected(_))));
        assert_eq!(n, 1);

        let (r, n) = quick()
            .run(|| async { Err(NotifyError::Transient("down".into())) })
            .await;
        assert!(r.is_err());
        assert_eq!(n, 3);
    }

    #[tokio::test]
    async fn a_slow_attempt_times_out_and_is_retried() {
        let (r, n) = quick()
            .run(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(())
            })
            .await;
        assert!(matches!(r, Err(NotifyError::Timeout(_))));
        assert_eq!(n, 3);
    }
}
