//! Tracked operations left running past the timeout are finished as
//! `TIMEOUT`, through the same atomic script a completion uses, so a late
//! completion and the sweep cannot both win.

use std::time::Duration;

use sluice_storage::model::OpStatus;
use sluice_storage::ops;
use sluice_storage::streams::StreamLayout;
use tokio::sync::watch;

const SWEEP_EVERY: Duration = Duration::from_secs(2);

pub async fn run(
    redis: deadpool_redis::Pool,
    layout: StreamLayout,
    shard: u16,
    timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = sweep(&redis, &layout, shard, timeout).await {
            tracing::warn!(error = %e, shard, "operation timeout sweep failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Times out every overdue operation of a shard; returns how many.
pub async fn sweep(
    redis: &deadpool_redis::Pool,
    layout: &StreamLayout,
    shard: u16,
    timeout: Duration,
) -> sluice_storage::Result<usize> {
    let mut conn = redis.get().await?;
    let before = chrono::Utc::now().timestamp_millis() - timeout.as_millis() as i64;
    let overdue = ops::overdue(&mut conn, layout, shard, before, 500).await?;
    let message = format!("operation timed out after {} s", timeout.as_secs());
    let mut n = 0;
    for (tenant, id) in overdue {
        let found = ops::finish(
            &mut conn,
            layout,
            tenant,
            &id,
            OpStatus::Timeout,
            Some(&message),
        )
        .await?;
        if matches!(found, ops::Finish::Finished { .. }) {
            tracing::info!(%tenant, operation = %id, "operation timed out");
            metrics::counter!("sluice_tracking_timed_out_total").increment(1);
            n += 1;
        }
    }
    Ok(n)
}
