//! Bodies of `/api/v1/commands`: command templates and their executions.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::backups::JobStatus;

/// Both run with `sh -c` on the target server.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CommandType {
    Shell,
    Docker,
}

/// `POST /api/v1/commands`; on `PUT` every field is optional.
#[derive(Serialize, ToSchema)]
pub struct CommandRequest {
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    pub description: Option<String>,
    /// Variables are written `{{name}}`; at most 64 KiB.
    pub command_template: String,
    /// `shell` when absent.
    #[serde(rename = "type")]
    pub kind: Option<CommandType>,
    /// Free text, e.g. `docker,restart`.
    pub tags: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CommandView {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub command_template: String,
    #[serde(rename = "type")]
    pub kind: CommandType,
    pub tags: Option<String>,
    /// The variables the template names.
    pub variables: Vec<String>,
    /// The creator's username (`api-key:<id>` for an API key).
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /api/v1/commands/{id}/execute`. Each value is substituted as
/// exactly one shell word (quoted when needed).
#[derive(Serialize, ToSchema)]
#[schema(as = CommandExecuteRequest)]
pub struct ExecuteRequest {
    #[schema(minimum = 1)]
    pub server_id: i64,
    /// Variable → value (a string, number or boolean); at most 256.
    pub variables: Option<BTreeMap<String, String>>,
}

/// An execution queued.
#[derive(Serialize, ToSchema)]
pub struct ExecutionQueued {
    pub execution_id: i64,
    pub status: super::Pending,
    pub task_id: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = CommandExecutionView)]
pub struct ExecutionView {
    pub id: i64,
    pub command_id: i64,
    pub server_id: i64,
    /// The substituted command.
    pub command_text: String,
    pub status: JobStatus,
    pub exit_code: Option<i32>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    /// Output beyond the capture limit, dropped.
    pub stdout_truncated_bytes: i64,
    pub stderr_truncated_bytes: i64,
    pub error_message: Option<String>,
    pub duration_seconds: Option<f64>,
    pub executed_by: String,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub task_id: Option<String>,
}
