//! What a scheduled backup tells people: when its schedule asks
//! (`notify_on_success`, `notify_on_failure`), the outcome goes to every
//! enabled notification channel of the tenant, through the product's one
//! notifier (which also publishes `notification` on `/ws`).

use serde_json::json;
use sluice_notify::{Level, Notification};
use sluice_storage::pg::{notification_channels, schedules};
use uuid::Uuid;

use crate::context::JobContext;

/// Sends the outcome of backup `backup_id` if its schedule asks for it.
/// Never fails the job: a delivery problem is logged (and recorded by the
/// notifier).
pub async fn after_backup(ctx: &JobContext, tenant: Uuid, backup_id: i64, error: Option<&str>) {
    let Some(notifier) = &ctx.notifier else {
        return;
    };
    let schedule = match schedules::of_backup(&ctx.pg, backup_id).await {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(backup_id, error = %e, "schedule of the backup not loaded; no notification");
            return;
        }
    };
    let wanted = match error {
        None => schedule.notify_on_success,
        Some(_) => schedule.notify_on_failure,
    };
    if !wanted {
        return;
    }
    let channels: Vec<i64> = match notification_channels::list(&ctx.pg, tenant).await {
        Ok(list) => list.iter().map(|c| c.id).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "notification channels not loaded");
            return;
        }
    };
    if channels.is_empty() {
        return;
    }
    let (level, message) = match error {
        None => (
            Level::Info,
            format!(
                "Backup of {} completed (schedule {})",
                schedule.database_name, schedule.name
            ),
        ),
        Some(e) => (
            Level::Error,
            format!("Backup failed for {}: {e}", schedule.database_name),
        ),
    };
    let n = Notification::new(level, "Scheduled backup", message).with_details(json!({
        "backup_id": backup_id,
        "schedule_id": schedule.id,
        "server_id": schedule.server_id,
        "database": schedule.database_name,
        "error": error,
    }));
    if let Err(e) = notifier.notify(tenant, &channels, &n).await {
        tracing::warn!(backup_id, error = %e, "scheduled backup notification not sent");
    }
}
