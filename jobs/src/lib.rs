//! Sluice's one job queue, and the database jobs it runs.
//!
//! Every kind of database work is an apalis 1.0 job in Sluice's own
//! PostgreSQL (the `apalis` schema, through `apalis-postgres`): the API
//! enqueues in the same transaction that records what the job is for
//! ([`queue`]), `sluice worker` runs one apalis worker per job kind with
//! its own concurrency ([`runner`]). apalis gives the durable queue, the
//! locks, the heartbeats and the lease: a job whose worker died is taken up
//! again once that worker has missed its heartbeats.
//!
//! What a tenant sees of a job is its row in `tasks` (status, progress,
//! error); each handler keeps it true ([`attempt`]) and publishes progress
//! on `/ws` ([`progress`]). Retries with backoff for transient failures
//! (a dropped connection), none for permanent ones (authentication refused,
//! a missing database), and a timeout per job kind, all in [`attempt`].
//!
//! The jobs are thin: the work itself is `sluice-backup`'s ([`backups`]:
//! backup, restore, verify). Where a server's tools run is resolved by
//! [`endpoint`].
//!
//! Schedules ([`schedules`]) queue backups when their cron expression
//! ([`cron`]) comes due; retention sweeps ([`sweep`]) delete the backups
//! no policy keeps ([`retention`]). Saved shell commands are jobs too
//! ([`commands`]), their templates substituted by [`template`]. Schema migration executions
//! ([`migrations`]) run the orchestrator's phased executor.

pub mod alerts;
pub mod attempt;
pub mod backups;
pub mod commands;
pub mod context;
pub mod cron;
pub mod endpoint;
pub mod error;
pub mod health;
pub mod migrations;
pub mod notices;
pub mod progress;
pub mod queue;
pub mod retention;
pub mod runner;
pub mod schedules;
pub mod signing;
pub mod sweep;
pub mod template;

pub use context::{JobContext, JobSettings};
pub use error::JobError;
pub use queue::Kind;
