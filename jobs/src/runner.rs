//! `sluice worker`'s job side: the servers' health check ([`crate::health`]),
//! the scheduler ([`crate::schedules`]), the alert engine ([`crate::alerts`])
//! and one apalis worker per job kind, on the
//! `apalis-postgres` backend (an idle worker polls its queue every
//! [`crate::JobSettings::poll_every`]; no connection is held open for
//! LISTEN), each with its kind's concurrency, all stopped together.

use std::future::Future;

use apalis::prelude::{
    BackendExt, BoxDynError, Data, Monitor, Strategy, WorkerBuilder, WorkerBuilderExt,
};
use apalis_postgres::{Config, PostgresStorage};

use crate::backups::{self, BackupJob, RestoreJob, VerifyJob};
use crate::commands::{self, CommandJob};
use crate::context::JobContext;
use crate::error::JobError;
use crate::migrations::{self, MigrationJob};
use crate::queue::{self, Kind};
use crate::sweep::{self, RetentionJob};

fn config(ctx: &JobContext, kind: Kind) -> Config {
    Config::default()
        .queue(kind.queue(&ctx.namespace))
        .batch_size(1)
        .heartbeat_interval(ctx.settings.heartbeat)
        .missed_heartbeats(ctx.settings.missed_heartbeats)
}

fn boxed(r: Result<(), JobError>) -> Result<(), BoxDynError> {
    r.map_err(|e| Box::new(e) as BoxDynError)
}

async fn run_backup(job: BackupJob, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    boxed(backups::backup(&ctx, job).await)
}

async fn run_restore(job: RestoreJob, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    boxed(backups::restore(&ctx, job).await)
}

async fn run_verify(job: VerifyJob, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    boxed(backups::verify(&ctx, job).await)
}

async fn run_retention(job: RetentionJob, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    boxed(sweep::run(&ctx, job).await)
}

async fn run_command(job: CommandJob, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    boxed(commands::execute(&ctx, job).await)
}

async fn run_migration(job: MigrationJob, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    boxed(migrations::execute(&ctx, job).await)
}

/// Runs the job workers of this process (named `name`) until `shutdown`
/// resolves; jobs in flight then get a grace period to finish, and any cut
/// short are taken up again by a worker once this one's lease lapsed.
pub async fn run(
    ctx: JobContext,
    name: &str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), JobError> {
    queue::setup(&ctx.pg).await?;
    let s = ctx.settings.clone();
    let backup = {
        let ctx = ctx.clone();
        let name = format!("{name}-backup");
        move |_: usize| {
            WorkerBuilder::new(name.as_str())
                .backend(
                    PostgresStorage::<BackupJob>::new(&ctx.pg)
                        .with_config(config(&ctx, Kind::Backup))
                        .poll_with_strategy(Strategy::new().interval(ctx.settings.poll_every)),
                )
                .concurrency(s.backup_concurrency.max(1))
                .data(ctx.clone())
                .build(run_backup)
        }
    };
    let restore = {
        let ctx = ctx.clone();
        let name = format!("{name}-restore");
        let n = s.restore_concurrency.max(1);
        move |_: usize| {
            WorkerBuilder::new(name.as_str())
                .backend(
                    PostgresStorage::<RestoreJob>::new(&ctx.pg)
                        .with_config(config(&ctx, Kind::Restore))
                        .poll_with_strategy(Strategy::new().interval(ctx.settings.poll_every)),
                )
                .concurrency(n)
                .data(ctx.clone())
                .build(run_restore)
        }
    };
    let verify = {
        let ctx = ctx.clone();
        let name = format!("{name}-verify");
        let n = s.restore_concurrency.max(1);
        move |_: usize| {
            WorkerBuilder::new(name.as_str())
                .backend(
                    PostgresStorage::<VerifyJob>::new(&ctx.pg)
                        .with_config(config(&ctx, Kind::Verify))
                        .poll_with_strategy(Strategy::new().interval(ctx.settings.poll_every)),
                )
                .concurrency(n)
                .data(ctx.clone())
                .build(run_verify)
        }
    };
    let retention = {
        let ctx = ctx.clone();
        let name = format!("{name}-retention");
        move |_: usize| {
            WorkerBuilder::new(name.as_str())
                .backend(
                    PostgresStorage::<RetentionJob>::new(&ctx.pg)
                        .with_config(config(&ctx, Kind::Retention))
                        .poll_with_strategy(Strategy::new().interval(ctx.settings.poll_every)),
                )
                .concurrency(1)
                .data(ctx.clone())
                .build(run_retention)
        }
    };
    let command = {
        let ctx = ctx.clone();
        let name = format!("{name}-command");
        let n = s.command_concurrency.max(1);
        move |_: usize| {
            WorkerBuilder::new(name.as_str())
                .backend(
                    PostgresStorage::<CommandJob>::new(&ctx.pg)
                        .with_config(config(&ctx, Kind::Command))
                        .poll_with_strategy(Strategy::new().interval(ctx.settings.poll_every)),
                )
                .concurrency(n)
                .data(ctx.clone())
                .build(run_command)
        }
    };
    let migration = {
        let ctx = ctx.clone();
        let name = format!("{name}-migration");
        let n = s.migration_concurrency.max(1);
        move |_: usize| {
            WorkerBuilder::new(name.as_str())
                .backend(
                    PostgresStorage::<MigrationJob>::new(&ctx.pg)
                        .with_config(config(&ctx, Kind::Migration))
                        .poll_with_strategy(Strategy::new().interval(ctx.settings.poll_every)),
                )
                .concurrency(n)
                .data(ctx.clone())
                .build(run_migration)
        }
    };
    tracing::info!(worker = name, "job workers starting");
    let stop = futures::FutureExt::shared(Box::pin(shutdown));
    let health = tokio::spawn(crate::health::run(
        ctx.clone(),
        s.health.clone(),
        stop.clone(),
    ));
    let scheduler = tokio::spawn(crate::schedules::run(
        ctx.clone(),
        s.schedules.clone(),
        stop.clone(),
    ));
    let alert_engine = ctx.ch.clone().map(|ch| {
        let engine = crate::alerts::Engine {
            pg: ctx.pg.clone(),
            ch,
            notifier: ctx.notifier.clone(),
            live: ctx.live.clone(),
            secrets: ctx.secrets.clone(),
            namespace: ctx.namespace.clone(),
            settings: s.alerts.clone(),
        };
        tokio::spawn(engine.run(stop.clone()))
    });
    let result = Monitor::new()
        .register(backup)
        .register(restore)
        .register(verify)
        .register(retention)
        .register(command)
        .register(migration)
        .shutdown_timeout(std::time::Duration::from_secs(30))
        .run_with_signal(async move {
            stop.await;
            Ok(())
        })
        .await
        .map_err(|e| JobError::Transient(format!("job workers: {e}")));
    health.abort();
    scheduler.abort();
    if let Some(a) = alert_engine {
        a.abort();
    }
    result
}
