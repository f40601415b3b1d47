//! Enqueueing: a job is pushed into apalis' table in the caller's
//! transaction, beside the `tasks` row a tenant reads and whatever record
//! the job is for, so either all of them exist or none does.

use std::str::FromStr;

use apalis::prelude::{TaskBuilder, TaskId};
use serde::Serialize;
use uuid::Uuid;

use crate::error::JobError;

/// The kinds of job, each its own apalis queue and worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Backup,
    Restore,
    Verify,
    /// A retention sweep of one database's backups.
    Retention,
    /// A saved shell command run on a server.
    Command,
    /// An execution of a schema migration.
    Migration,
}

impl Kind {
    /// The task's `type` in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Backup => "backup",
            Kind::Restore => "restore",
            Kind::Verify => "verify",
            Kind::Retention => "retention",
            Kind::Command => "command",
            Kind::Migration => "migration",
        }
    }

    /// The apalis queue (`job_type` in `apalis.jobs`) of this kind in a
    /// deployment's namespace (its `SLUICE_REDIS_PREFIX`), so deployments
    /// sharing one PostgreSQL never run each other's jobs.
    pub fn queue(self, namespace: &str) -> String {
        format!("{namespace}.{}", self.as_str())
    }
}

/// Creates apalis' schema and tables (idempotent; serialised by sqlx's
/// migration lock, so every process may call it at start).
pub async fn setup(pool: &sqlx::PgPool) -> Result<(), JobError> {
    apalis_postgres::PostgresStorage::setup(pool)
        .await
        .map_err(|e| JobError::Transient(format!("job queue set-up: {e}")))
}

/// A new task id (a ULID, as apalis-postgres uses).
pub fn new_task_id() -> String {
    ulid::Ulid::new().to_string()
}

/// Pushes one job of `kind` with id `task_id`, and records its `tasks`
/// row for `tenant`, in the transaction `tx`.
pub async fn push(
    tx: &mut sqlx::PgConnection,
    namespace: &str,
    kind: Kind,
    task_id: &str,
    tenant: Uuid,
    resource_id: Option<i64>,
    payload: &impl Serialize,
) -> Result<(), JobError> {
    let args = serde_json::to_vec(payload)
        .map_err(|e| JobError::Permanent(format!("job payload: {e}")))?;
    let id = TaskId::from_str(task_id)
        .map_err(|e| JobError::Permanent(format!("task id {task_id:?}: {e}")))?;
    // One attempt as far as apalis is concerned: retries of transient
    // failures happen inside the handler (with backoff), and a job whose
    // worker died is re-enqueued by apalis' lease whatever its attempts.
    let task = TaskBuilder::new(args).task_id(id).max_attempts(1).build();
    sluice_storage::pg::tasks::insert(&mut *tx, task_id, tenant, kind.as_str(), resource_id)
        .await?;
    apalis_postgres::queries::push_tasks(&mut *tx, &kind.queue(namespace), vec![task])
        .await
        .map_err(|e| JobError::Transient(format!("enqueue: {e}")))?;
    Ok(())
}
