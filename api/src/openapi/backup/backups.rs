//! Bodies of `/api/v1/backups` and `/api/v1/tasks`: backups, downloads,
//! restores, verifications and the jobs behind them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::servers::DbType;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Zstd,
    Gzip,
    None,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    Full,
}

/// A job's (and a backup's) state.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Pending,
    Running,
    Completed,
    Failed,
}

/// `POST /api/v1/backups`.
#[derive(Serialize, ToSchema)]
pub struct BackupRequest {
    #[schema(minimum = 1)]
    pub server_id: i64,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,63}$")]
    pub database_name: String,
    /// The server's database type when absent.
    pub db_type: Option<DbType>,
    /// `full` when absent.
    pub backup_type: Option<BackupType>,
    /// `false` goes with `compression_type: none`.
    pub compress: Option<bool>,
    /// `zstd` when absent.
    pub compression_type: Option<Compression>,
    /// AES-256-GCM under a key Sluice manages; `true` when absent.
    pub encrypt: Option<bool>,
}

/// A backup job queued.
#[derive(Serialize, ToSchema)]
pub struct BackupQueued {
    pub id: i64,
    pub status: super::Pending,
    pub message: String,
    pub task_id: String,
}

/// A backup and, once completed, its stored object.
#[derive(Serialize, ToSchema)]
pub struct BackupView {
    pub id: i64,
    pub server_id: i64,
    pub database_name: String,
    pub db_type: DbType,
    pub backup_type: BackupType,
    pub status: JobStatus,
    /// The stored object's exact length.
    pub size_bytes: Option<i64>,
    /// `file://` URL (local storage) or the backend's own URL.
    pub storage_path: Option<String>,
    pub is_encrypted: bool,
    pub is_compressed: bool,
    pub compression_type: Compression,
    /// `sha256:` and 64 lowercase hex digits of the stored object.
    pub checksum: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    /// Null unless failed.
    pub error_message: Option<String>,
    pub task_id: Option<String>,
    pub verified_at: Option<DateTime<Utc>>,
    pub verification: Option<Verification>,
    pub created_at: DateTime<Utc>,
}

/// The last verification's outcome.
#[derive(Serialize, ToSchema)]
pub struct Verification {
    /// `passed` or `failed`.
    pub status: String,
    pub details: Option<Value>,
}

/// `GET /api/v1/backups`: a page of matches, newest first.
#[derive(Serialize, ToSchema)]
pub struct BackupPage {
    /// Every match before `limit`/`offset`.
    pub total: i64,
    pub items: Vec<BackupView>,
}

/// `POST /api/v1/backups/{id}/download` (the body may be empty).
#[derive(Serialize, ToSchema)]
pub struct DownloadRequest {
    /// The URL's lifetime in seconds (default 3600).
    #[schema(minimum = 60, maximum = 604800)]
    pub expires_in: Option<i64>,
}

/// A signed URL serving the stored object without credentials.
#[derive(Serialize, ToSchema)]
pub struct DownloadLink {
    pub download_url: String,
    pub expires_at: DateTime<Utc>,
}

/// `POST /api/v1/backups/{id}/restore`.
#[derive(Serialize, ToSchema)]
pub struct RestoreRequest {
    /// The backup's own server when absent.
    #[schema(minimum = 1)]
    pub target_server_id: Option<i64>,
    /// Created when missing.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,63}$")]
    pub target_database: String,
    pub mask_sensitive_data: Option<bool>,
    /// Column name (case-insensitive, whole name) → strategy; at most 256.
    pub masking_rules: Option<BTreeMap<String, MaskStrategy>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MaskStrategy {
    Hash,
    Randomize,
    Null,
}

/// `POST /api/v1/backups/{id}/verify` (the body may be empty).
#[derive(Serialize, ToSchema)]
pub struct VerifyRequest {
    /// The server to restore the backup on for the check.
    #[schema(minimum = 1)]
    pub server_id: Option<i64>,
}

/// `GET /api/v1/tasks/{task_id}`.
#[derive(Serialize, ToSchema)]
pub struct TaskView {
    pub task_id: String,
    /// `backup`, `restore`, `verify`, `command`, …
    #[serde(rename = "type")]
    pub kind: String,
    pub status: JobStatus,
    /// 0 to 100; 100 once completed.
    #[schema(minimum = 0, maximum = 100)]
    pub progress: f64,
    /// Null unless failed.
    pub error: Option<String>,
    /// The backup, execution, … the job works on.
    pub resource_id: Option<i64>,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}
