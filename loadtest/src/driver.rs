//! The open-loop driver. `connections` workers (the permits: at most that
//! many requests in flight) take slots in order from a shared counter; a
//! worker sleeps until its slot is due, or sends at once when it is already
//! late because every worker was busy. Latency counts from the slot's due
//! time, so queueing behind a slow server shows up in the percentiles
//! instead of quietly lowering the rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::task::JoinSet;

use crate::http::Http;
use crate::scenario::Workload;
use crate::schedule::Schedule;
use crate::stats::{Collector, Stats};

/// A slot sent later than this after its due time is a late send. It
/// also bounds how much of a sleeping worker's wake-up delay (the timer
/// ticks in milliseconds) is charged to the server.
pub const LATE_AFTER: Duration = Duration::from_millis(2);

/// How long past the window's end owed slots are still sent.
pub const GRACE: Duration = Duration::from_secs(1);

pub struct Ctx {
    pub http: Http,
    pub work: Arc<Workload>,
    pub collector: Arc<Collector>,
    pub connections: usize,
    /// Where the per-second timeline starts.
    pub run_start: Instant,
}

/// Runs one window of `schedule` and returns its totals.
pub async fn run_window(ctx: &Arc<Ctx>, schedule: Schedule) -> Result<Stats> {
    let start = Instant::now();
    let stop_at = start + Duration::from_secs_f64(schedule.secs()) + GRACE;
    let next = Arc::new(AtomicU64::new(0));
    let performed = Arc::new(AtomicU64::new(0));
    let late = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..ctx.connections.max(1) {
        let (ctx, next, performed, late) =
            (ctx.clone(), next.clone(), performed.clone(), late.clone());
        workers.spawn(async move {
            let mut rec = ctx.collector.recorder();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(offset) = schedule.offset(n) else {
                    break;
                };
                let due = start + offset;
                let now = Instant::now();
                if now >= stop_at {
                    break;
                }
                let slept = due > now;
                if slept {
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent = Instant::now();
                let delay = sent.saturating_duration_since(due);
                if delay > LATE_AFTER {
                    late.fetch_add(1, Ordering::Relaxed);
                }
                // A worker that was free and slept: forgive the timer's
                // granularity, not more. A worker that was busy: the whole
                // wait is the server's.
                let origin = if slept {
                    due + delay.min(LATE_AFTER)
                } else {
                    due
                };
                ctx.work
                    .perform(&ctx.http, n, origin, ctx.run_start, &mut rec)
                    .await;
                performed.fetch_add(1, Ordering::Relaxed);
            }
            rec.flush();
        });
    }
    while let Some(r) = workers.join_next().await {
        r?;
    }
    let mut stats = ctx.collector.take_window()?;
    stats.slots = performed.load(Ordering::Relaxed);
    stats.late = late.load(Ordering::Relaxed);
    stats.unsent = schedule.slots().saturating_sub(stats.slots);
    stats.window_secs = start.elapsed().as_secs_f64();
    Ok(stats)
}
