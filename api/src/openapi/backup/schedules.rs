//! Bodies of `/api/v1/schedules` and `/api/v1/retention-policies`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::backups::{BackupType, Compression};

/// `POST /api/v1/schedules`; on `PUT` every field is optional.
#[derive(Serialize, ToSchema)]
pub struct ScheduleRequest {
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    pub description: Option<String>,
    #[schema(minimum = 1)]
    pub server_id: i64,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,63}$")]
    pub database_name: String,
    /// Five-field cron (minute hour day-of-month month day-of-week).
    pub cron_expression: String,
    /// An IANA zone name; `UTC` when absent.
    pub timezone: Option<String>,
    pub backup_type: Option<BackupType>,
    pub compression_type: Option<Compression>,
    pub encrypt: Option<bool>,
    #[schema(minimum = 1)]
    pub retention_policy_id: Option<i64>,
    pub enabled: Option<bool>,
    pub notify_on_success: Option<bool>,
    pub notify_on_failure: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct ScheduleView {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub server_id: i64,
    pub database_name: String,
    pub cron_expression: String,
    pub timezone: String,
    pub backup_type: BackupType,
    pub compression_type: Compression,
    pub encrypt: bool,
    pub retention_policy_id: Option<i64>,
    pub enabled: bool,
    pub notify_on_success: bool,
    pub notify_on_failure: bool,
    /// Null until the schedule first runs.
    pub last_run: Option<DateTime<Utc>>,
    /// The next matching instant (UTC); null while disabled.
    pub next_run: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /api/v1/retention-policies`; on `PUT` every field is optional. A
/// rule not given is null (`PUT`: keeps its value).
#[derive(Serialize, ToSchema)]
pub struct PolicyRequest {
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    pub description: Option<String>,
    #[schema(minimum = 0, maximum = 100000)]
    pub keep_last_n: Option<i32>,
    #[schema(minimum = 0, maximum = 100000)]
    pub keep_days: Option<i32>,
    #[schema(minimum = 0, maximum = 100000)]
    pub keep_daily: Option<i32>,
    #[schema(minimum = 0, maximum = 100000)]
    pub keep_weekly: Option<i32>,
    #[schema(minimum = 0, maximum = 100000)]
    pub keep_monthly: Option<i32>,
}

#[derive(Serialize, ToSchema)]
pub struct PolicyView {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub keep_last_n: Option<i32>,
    pub keep_days: Option<i32>,
    pub keep_daily: Option<i32>,
    pub keep_weekly: Option<i32>,
    pub keep_monthly: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What the policy would keep and delete of one database's completed
/// backups, now (nothing is deleted).
#[derive(Serialize, ToSchema)]
pub struct DryRun {
    pub policy_id: i64,
    pub server_id: i64,
    pub database_name: String,
    pub evaluated_at: DateTime<Utc>,
    pub keep: Vec<KeptBackup>,
    pub delete: Vec<DroppedBackup>,
}

#[derive(Serialize, ToSchema)]
pub struct KeptBackup {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub size_bytes: Option<i64>,
    /// The rules keeping it.
    pub kept_by: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DroppedBackup {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub size_bytes: Option<i64>,
}
