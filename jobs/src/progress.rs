//! Progress of a running job: the pipeline counts bytes as they pass
//! (cheap, atomic); a ticker turns them into a percentage at most once per
//! interval, raises the task's row and publishes it on `/ws`. The
//! percentage never goes down and stays below 100 until the job completed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sluice_backup::ProgressFn;
use uuid::Uuid;

use crate::context::JobContext;

/// Counts a job's bytes and reports them until dropped.
pub struct Progress {
    bytes: Arc<AtomicU64>,
    ticker: tokio::task::JoinHandle<()>,
}

/// What a progress event says besides `progress` and `status`.
#[derive(Clone)]
pub struct Event {
    pub tenant: Uuid,
    /// `backup_progress`, `restore_progress`, …
    pub event_type: &'static str,
    pub task_id: String,
    /// Fields of every event (e.g. `backup_id`).
    pub fields: Value,
}

impl Event {
    fn body(&self, progress: f64, status: &str, bytes: u64) -> Value {
        let mut body = self.fields.clone();
        if let Value::Object(m) = &mut body {
            m.insert("task_id".into(), json!(self.task_id));
            m.insert("progress".into(), json!(progress));
            m.insert("status".into(), json!(status));
            m.insert("bytes".into(), json!(bytes));
        }
        body
    }

    /// Publishes one event; a failure to publish never fails the job.
    pub async fn publish(&self, ctx: &JobContext, progress: f64, status: &str, bytes: u64) {
        let body = self.body(progress, status, bytes);
        if let Err(e) = ctx.live.publish(self.tenant, self.event_type, &body).await {
            tracing::debug!(error = %e, "progress event not published");
        }
    }
}

fn percent(bytes: u64, total: Option<u64>) -> f64 {
    match total {
        Some(t) if t > 0 => ((bytes as f64 / t as f64) * 100.0).clamp(0.0, 99.0).floor(),
        _ => 0.0,
    }
}

impl Progress {
    /// Starts reporting; `total` is the expected number of bytes, when known.
    pub fn start(ctx: &JobContext, event: Event, total: Option<u64>) -> Self {
        let bytes = Arc::new(AtomicU64::new(0));
        let ctx = ctx.clone();
        let every = ctx.settings.progress_every.max(Duration::from_millis(100));
        let seen = Arc::clone(&bytes);
        let ticker = tokio::spawn(async move {
            let mut shown = 0.0f64;
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let b = seen.load(Ordering::Relaxed);
                shown = shown.max(percent(b, total));
                event.publish(&ctx, shown, "in_progress", b).await;
                if let Err(e) =
                    sluice_storage::pg::tasks::progress(&ctx.pg, &event.task_id, shown).await
                {
                    tracing::debug!(error = %e, "task progress not recorded");
                }
            }
        });
        Self { bytes, ticker }
    }

    /// The callback the backup library calls with its running byte count.
    pub fn callback(&self) -> ProgressFn {
        let bytes = Arc::clone(&self.bytes);
        Arc::new(move |n| {
            bytes.store(n, Ordering::Relaxed);
        })
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Stops the ticker and waits until it has stopped, so no progress
    /// event can follow the final one the caller publishes next.
    pub async fn stop(mut self) -> u64 {
        self.ticker.abort();
        let _ = (&mut self.ticker).await;
        self.bytes()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.ticker.abort();
    }
}
