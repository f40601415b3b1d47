//! The retention sweep job (`retention`): for one tenant's database on one
//! server, delete the completed backups that no retention policy of that
//! database's schedules keeps — the object first, then the record — and
//! account for each deletion ([`record_deletion`]). Failed, pending and
//! running backups are never candidates.
//!
//! It is queued after each scheduled backup completes and periodically by
//! the scheduler ([`crate::schedules`]).

use serde::{Deserialize, Serialize};
use sluice_storage::pg::backups::{self, Backup};
use sluice_storage::pg::{retention_policies, schedules};
use tracing::Instrument;
use uuid::Uuid;

use crate::attempt;
use crate::context::JobContext;
use crate::error::JobError;
use crate::queue::{self, Kind};
use crate::retention::{self, Rules};

/// Sweep the backups of `database_name` on `server_id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetentionJob {
    pub task_id: String,
    pub tenant: Uuid,
    pub server_id: i64,
    pub database_name: String,
}

/// A stored policy's rules.
pub fn rules(p: &retention_policies::Policy) -> Rules {
    Rules {
        keep_last_n: p.keep_last_n,
        keep_days: p.keep_days,
        keep_daily: p.keep_daily,
        keep_weekly: p.keep_weekly,
        keep_monthly: p.keep_monthly,
    }
}

/// Accounts for one backup deleted by retention: an audit entry
/// (`backup_retention_delete`, by the system: no user) and a log line. A
/// failure to write the entry is logged, never a reason to stop the sweep.
pub async fn record_deletion(pg: &sqlx::PgPool, tenant: Uuid, backup: &Backup, policy_ids: &[i64]) {
    let entry = sluice_storage::pg::audit::NewEntry {
        tenant_id: Some(tenant),
        user: None,
        username: Some("system".into()),
        action: "backup_retention_delete".into(),
        resource_type: Some("backup".into()),
        resource_id: Some(backup.id),
        details: serde_json::json!({
            "server_id": backup.server_id,
            "database": backup.database_name,
            "created_at": backup.created_at,
            "policies": policy_ids,
        }),
        ip_address: None,
    };
    if let Err(e) = sluice_storage::pg::audit::insert(pg, &entry).await {
        tracing::error!(backup_id = backup.id, error = %e, "retention deletion not written to the audit log");
    }
    tracing::info!(
        %tenant,
        backup_id = backup.id,
        server_id = backup.server_id,
        database = %backup.database_name,
        created_at = %backup.created_at,
        policies = ?policy_ids,
        action = "backup_retention_delete",
        "backup deleted by retention"
    );
}

/// Queues a sweep of one database's backups (its own transaction).
pub async fn enqueue(
    pg: &sqlx::PgPool,
    namespace: &str,
    tenant: Uuid,
    server_id: i64,
    database_name: &str,
) -> Result<String, JobError> {
    let task_id = queue::new_task_id();
    let job = RetentionJob {
        task_id: task_id.clone(),
        tenant,
        server_id,
        database_name: database_name.to_string(),
    };
    let mut tx = pg.begin().await?;
    queue::push(
        &mut tx,
        namespace,
        Kind::Retention,
        &task_id,
        tenant,
        Some(server_id),
        &job,
    )
    .await?;
    tx.commit().await?;
    Ok(task_id)
}

/// After a backup completed: when a schedule with a policy queued it,
/// sweep its database. Failures are logged (the periodic sweep catches up).
pub async fn after_backup(ctx: &JobContext, backup_id: i64) {
    let s = match schedules::of_backup(&ctx.pg, backup_id).await {
        Ok(Some(s)) if s.retention_policy_id.is_some() => s,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(backup_id, error = %e, "retention sweep not queued");
            return;
        }
    };
    match enqueue(
        &ctx.pg,
        &ctx.namespace,
        s.tenant_id,
        s.server_id,
        &s.database_name,
    )
    .await
    {
        Ok(task_id) => tracing::debug!(backup_id, %task_id, "retention sweep queued"),
        Err(e) => tracing::warn!(backup_id, error = %e, "retention sweep not queued"),
    }
}

/// One sweep; answers the ids of the backups deleted.
pub async fn sweep(
    ctx: &JobContext,
    tenant: Uuid,
    server_id: i64,
    database: &str,
) -> Result<Vec<i64>, JobError> {
    let policies = retention_policies::for_database(&ctx.pg, tenant, server_id, database).await?;
    if policies.is_empty() {
        return Ok(Vec::new());
    }
    let rules: Vec<Rules> = policies.iter().map(rules).collect();
    let policy_ids: Vec<i64> = policies.iter().map(|p| p.id).collect();
    let completed = backups::completed_of_database(&ctx.pg, tenant, server_id, database).await?;
    let times: Vec<(i64, chrono::DateTime<chrono::Utc>)> =
        completed.iter().map(|b| (b.id, b.created_at)).collect();
    let doomed = retention::to_delete(&rules, &times, chrono::Utc::now());
    let mut deleted = Vec::with_capacity(doomed.len());
    for b in completed.iter().filter(|b| doomed.contains(&b.id)) {
        // Object first, then the record: a failure in between leaves a
        // visible record whose object is gone, never an invisible object.
        ctx.store
            .delete(&b.object_key)
            .await
            .map_err(|e| JobError::Transient(format!("backup store: {e}")))?;
        if backups::delete_completed(&ctx.pg, tenant, b.id).await? {
            record_deletion(&ctx.pg, tenant, b, &policy_ids).await;
            deleted.push(b.id);
        }
    }
    Ok(deleted)
}

/// Runs a retention job to its end and records it.
pub async fn run(ctx: &JobContext, job: RetentionJob) -> Result<(), JobError> {
    let span = tracing::info_span!("job", kind = "retention", task_id = %job.task_id, server_id = job.server_id, database = %job.database_name);
    async {
        let outcome = attempt::run(ctx, &job.task_id, ctx.settings.backup_timeout, || {
            sweep(ctx, job.tenant, job.server_id, &job.database_name)
        })
        .await;
        match &outcome {
            Ok(deleted) => tracing::info!(deleted = deleted.len(), "retention sweep done"),
            Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
        }
        attempt::finish(ctx, &job.task_id, &outcome).await;
        outcome.map(|_| ())
    }
    .instrument(span)
    .await
}
