//! The scheduler: every worker process, each tick, claims the enabled
//! schedules whose `next_run` has come (`FOR UPDATE SKIP LOCKED`, one per
//! transaction), and in that same transaction queues one backup (the
//! common path, [`crate::backups::enqueue_backup`]) and moves `next_run`
//! to the first match after now. So however many workers run, a due tick
//! queues exactly one backup, and ticks missed while every worker was down
//! run once at start-up, not once each. It also queues the periodic
//! retention sweeps ([`crate::sweep`]).

use std::time::Duration;

use chrono::Utc;
use sluice_storage::pg::{schedules, servers};
use tracing::Instrument;

use crate::backups::{enqueue_backup, BackupOrder};
use crate::context::JobContext;
use crate::cron::CronSchedule;
use crate::error::JobError;

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct ScheduleSettings {
    /// How often a worker looks for due schedules.
    pub tick: Duration,
    /// How often each schedule's database is swept for retention.
    pub sweep_every: Duration,
    /// Schedules one worker queues per tick, at most.
    pub batch: usize,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(5),
            sweep_every: Duration::from_secs(3600),
            batch: 100,
        }
    }
}

/// Claims and runs one due schedule; false when none is due.
async fn run_one(ctx: &JobContext) -> Result<bool, JobError> {
    let mut tx = ctx.pg.begin().await?;
    let Some(s) = schedules::claim_due(&mut tx, &ctx.namespace).await? else {
        tx.rollback().await?;
        return Ok(false);
    };
    let span = tracing::info_span!("schedule", schedule_id = s.id, server_id = s.server_id, database = %s.database_name);
    async {
        let next = CronSchedule::parse(&s.cron_expression, &s.timezone)
            .ok()
            .and_then(|c| c.next_after(Utc::now()));
        if next.is_none() {
            tracing::warn!(cron = %s.cron_expression, tz = %s.timezone, "schedule has no next run; it stays idle");
        }
        let server = servers::get(&ctx.pg, s.tenant_id, s.server_id).await?;
        let db_type = server.and_then(|sv| sv.fields.db_type);
        let Some(db_type) = db_type else {
            tracing::warn!("schedule's server has no database configured; tick skipped");
            schedules::advance(&mut tx, s.id, false, next).await?;
            tx.commit().await?;
            return Ok(true);
        };
        let order = BackupOrder {
            server_id: s.server_id,
            database_name: &s.database_name,
            db_type: &db_type,
            backup_type: &s.backup_type,
            compression_type: &s.compression_type,
            encrypt: s.encrypt,
            schedule_id: Some(s.id),
        };
        let q = enqueue_backup(&mut tx, &ctx.namespace, s.tenant_id, &order).await?;
        schedules::advance(&mut tx, s.id, true, next).await?;
        tx.commit().await?;
        tracing::info!(backup_id = q.backup.id, task_id = %q.task_id, next_run = ?next, "scheduled backup queued");
        Ok(true)
    }
    .instrument(span)
    .await
}

/// One tick: queues the due schedules (at most `batch`) and the retention
/// sweeps that are due; answers how many schedules were claimed.
pub async fn tick(ctx: &JobContext, s: &ScheduleSettings) -> Result<usize, JobError> {
    let mut n = 0;
    while n < s.batch.max(1) {
        if !run_one(ctx).await? {
            break;
        }
        n += 1;
    }
    let groups =
        schedules::claim_sweeps(&ctx.pg, &ctx.namespace, s.sweep_every.as_secs_f64()).await?;
    for (tenant, server, database) in groups {
        if let Err(e) =
            crate::sweep::enqueue(&ctx.pg, &ctx.namespace, tenant, server, &database).await
        {
            tracing::warn!(%tenant, server, %database, error = %e, "retention sweep not queued");
        }
    }
    Ok(n)
}

/// Runs ticks until `stop` resolves.
pub async fn run(
    ctx: JobContext,
    s: ScheduleSettings,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut every = tokio::time::interval(s.tick.max(Duration::from_millis(50)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = every.tick() => {}
        }
        if let Err(e) = tick(&ctx, &s).await {
            tracing::warn!(error = %e, "scheduler tick failed");
        }
    }
}
