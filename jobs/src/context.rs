//! What every job handler shares: Sluice's database, the backup store and
//! keys, the secret box that opens server credentials, the live publisher,
//! and the settings of each job kind.

use std::time::Duration;

use sluice_backup::{BackupStore, Keyring};
use sluice_storage::live::Publisher;
use sluice_storage::secrets::SecretBox;

/// Limits of each job kind.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// Jobs of each kind one worker process runs at once.
    pub backup_concurrency: usize,
    pub restore_concurrency: usize,
    pub command_concurrency: usize,
    /// The longest one attempt of a job may run.
    pub backup_timeout: Duration,
    pub restore_timeout: Duration,
    /// The longest a saved command may run (then it is stopped, failed).
    pub command_timeout: Duration,
    /// Migration executions one worker process runs at once (each holds
    /// its database's execution lock, so they are on different databases).
    pub migration_concurrency: usize,
    /// The longest one migration execution may run, rollback included.
    pub migration_timeout: Duration,
    /// The most of a command's stdout, and of its stderr, kept (bytes).
    pub command_output_limit: usize,
    /// Further attempts after a transient failure.
    pub retries: u32,
    /// The pause before the first retry; doubled each time, at most
    /// [`JobSettings::retry_max_delay`].
    pub retry_delay: Duration,
    pub retry_max_delay: Duration,
    /// How often a worker tells apalis it is alive; a worker that missed
    /// [`JobSettings::missed_heartbeats`] of them has its jobs taken up
    /// again by another.
    pub heartbeat: Duration,
    pub missed_heartbeats: usize,
    /// How often a running job publishes its progress.
    pub progress_every: Duration,
    /// How often an idle worker looks for new jobs.
    pub poll_every: Duration,
    /// The servers' background health check.
    pub health: crate::health::HealthSettings,
    /// The scheduler and its retention sweeps.
    pub schedules: crate::schedules::ScheduleSettings,
    /// The alert engine.
    pub alerts: crate::alerts::AlertSettings,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            backup_concurrency: 2,
            restore_concurrency: 2,
            command_concurrency: 4,
            backup_timeout: Duration::from_secs(6 * 3600),
            restore_timeout: Duration::from_secs(6 * 3600),
            command_timeout: Duration::from_secs(600),
            migration_concurrency: 2,
            migration_timeout: Duration::from_secs(6 * 3600),
            command_output_limit: 1 << 20,
            retries: 3,
            retry_delay: Duration::from_secs(2),
            retry_max_delay: Duration::from_secs(60),
            heartbeat: Duration::from_secs(10),
            missed_heartbeats: 3,
            progress_every: Duration::from_secs(1),
            poll_every: Duration::from_millis(500),
            health: crate::health::HealthSettings::default(),
            schedules: crate::schedules::ScheduleSettings::default(),
            alerts: crate::alerts::AlertSettings::default(),
        }
    }
}

/// The shared state of job handlers.
#[derive(Clone)]
pub struct JobContext {
    pub pg: sqlx::PgPool,
    pub store: BackupStore,
    /// Master keys: the current one encrypts, older ones still decrypt.
    pub keyring: Keyring,
    pub secrets: SecretBox,
    pub live: Publisher,
    /// The deployment's queue namespace (see [`crate::queue::Kind::queue`]).
    pub namespace: String,
    /// Sends notifications through the tenant's channels (scheduled
    /// backups' outcomes); none when its HTTP client could not be built.
    pub notifier: Option<sluice_notify::Notifier>,
    /// Secret from which per-tenant masking keys are derived.
    pub masking_secret: String,
    pub settings: JobSettings,
    /// ClickHouse, for the alert engine's counts (none: no engine runs).
    pub ch: Option<clickhouse::Client>,
}
