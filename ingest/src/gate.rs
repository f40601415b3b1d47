//! How many requests are between their body and their answer at once
//! (decompressing, decoding, waiting for Redis). The decoding is CPU-bound
//! and Redis writes are shared, so a few dozen at a time go as fast as
//! hundreds; the rest wait here holding only their compressed bytes. With
//! every connection let through, 256 connections of batches filled the
//! sink's byte budget with decoded events and most requests were refused
//! after their work was done (BENCHMARKS.md). A request that waits longer
//! than the gate's wait is refused (503, `Retry-After`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::response::Rejection;

#[derive(Debug, Clone)]
pub struct Gate {
    slots: Arc<Semaphore>,
    wait: Duration,
}

/// A place through the gate, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Gate {
    pub fn new(slots: usize, wait: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            wait,
        }
    }

    /// A slot, waiting at most the gate's wait for one.
    pub async fn enter(&self) -> Result<Slot, Rejection> {
        match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Slot { _permit: permit }),
            // timed out, or (never: the semaphore is not closed) closed
            _ => Err(crate::body::overloaded()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_a_slot_then_refuses() {
        let gate = Gate::new(1, Duration::from_millis(50));
        let first = gate.enter().await.expect("a free slot");
        let refused = gate.enter().await.expect_err("no slot within the wait");
        assert_eq!(refused.status, http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.retry_after, Some(1));
        // a slot given back within the wait is taken by the waiter
        let g = gate.clone();
        let waiter = tokio::spawn(async move { g.enter().await.is_ok() });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(first);
        assert!(waiter.await.unwrap());
    }
}
