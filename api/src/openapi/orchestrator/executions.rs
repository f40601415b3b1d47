//! Executions, their phases and manual rollback, as the orchestrator
//! routes take and answer them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::migrations::Strategy;
use super::Environment;

/// `POST /api/v1/migrations/{id}/execute`; the body may be empty.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecuteRequest {
    /// When given, must be the environment the database is registered in.
    pub environment: Option<Environment>,
    /// The migration's strategy when absent.
    pub strategy: Option<Strategy>,
    /// Run in a transaction that is rolled back; needs no approval.
    pub dry_run: Option<bool>,
    /// Replica ids and `master`, in order; every replica then the master
    /// when absent (`["master"]` for `Immediate`).
    pub phases: Option<Vec<String>>,
    pub thresholds: Option<Thresholds>,
}

/// Limits past which a phased execution halts and rolls back.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Thresholds {
    #[schema(exclusive_minimum = 0.0)]
    pub max_latency_increase_percent: Option<f64>,
    #[schema(exclusive_minimum = 0.0)]
    pub max_replication_lag_seconds: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub enum ExecutionStatus {
    Running,
    Succeeded,
    Failed,
    RolledBack,
}

#[derive(Serialize, ToSchema)]
pub enum PhaseStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    RolledBack,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Phase {
    /// A replica id or `master`.
    pub name: String,
    pub status: PhaseStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// PostgreSQL's message when the phase failed.
    pub error: Option<String>,
}

/// 202 from `POST /api/v1/migrations/{id}/execute`: the execution is queued.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionStarted {
    /// `exec-<n>`.
    pub execution_id: String,
    pub migration_id: String,
    pub status: ExecutionStatus,
    pub dry_run: bool,
    pub started_at: DateTime<Utc>,
    /// Seconds.
    pub estimated_duration: i64,
    pub current_phase: Option<String>,
    pub phases: Vec<Phase>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionView {
    pub execution_id: String,
    pub migration_id: String,
    pub status: ExecutionStatus,
    pub dry_run: bool,
    pub strategy: Strategy,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub current_phase: Option<String>,
    /// Percent of the phases done.
    pub progress: i32,
    /// Seconds.
    pub estimated_duration: i64,
    pub performance_metrics: PerformanceMetrics,
    pub thresholds: ThresholdsView,
    pub phases: Vec<Phase>,
    pub halt_reason: Option<String>,
    pub rollback_reason: Option<String>,
    pub rollback_completed_at: Option<DateTime<Utc>>,
    /// Seconds.
    pub rollback_duration: Option<f64>,
}

/// The thresholds given at execute (each null or absent when not given).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThresholdsView {
    pub max_latency_increase_percent: Option<f64>,
    pub max_replication_lag_seconds: Option<f64>,
}

/// Measured while the execution runs; null until measured.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PerformanceMetrics {
    pub avg_query_latency_ms: Option<f64>,
    pub p99_query_latency_ms: Option<f64>,
    pub replication_lag_seconds: Option<f64>,
}

/// `POST /api/v1/migrations/{id}/executions/{execution_id}/rollback`.
#[derive(Serialize, ToSchema)]
pub struct RollbackRequest {
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolledBack {
    pub execution_id: String,
    pub status: ExecutionStatus,
    pub rollback_completed_at: Option<DateTime<Utc>>,
    /// Seconds.
    pub rollback_duration: f64,
}
