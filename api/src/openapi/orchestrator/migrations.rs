//! Migrations and their validation, as the orchestrator routes take and
//! answer them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub enum MigrationStatus {
    Draft,
    PendingApproval,
    Approved,
    Rejected,
    Running,
    Succeeded,
    Failed,
    RolledBack,
}

#[derive(Serialize, ToSchema)]
pub enum Strategy {
    Immediate,
    Phased,
}

#[derive(Serialize, ToSchema)]
pub enum RiskLevel {
    Low,
    Medium,
    High,
    Critical,
}

/// `POST /api/v1/migrations`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationRequest {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    /// A registered database's id (`db-<n>`).
    pub target_database_id: String,
    /// PostgreSQL SQL (at most 1 MiB); a syntax error is a 400 naming its line.
    pub migration_script: String,
    pub rollback_script: Option<String>,
    /// `Phased` when absent.
    pub strategy: Option<Strategy>,
    /// The requested level; the effective one is the higher of it and the
    /// lint's. `Low` when absent.
    pub risk_level: Option<RiskLevel>,
    /// At most 50, each 1 to 100 characters.
    #[schema(max_items = 50)]
    pub tags: Option<Vec<String>>,
}

/// A migration (`POST /api/v1/migrations`, `GET /api/v1/migrations/{id}`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationView {
    /// `mig-<n>`.
    pub migration_id: String,
    pub name: String,
    pub description: Option<String>,
    pub target_database_id: String,
    pub migration_script: String,
    pub rollback_script: Option<String>,
    pub strategy: Strategy,
    /// The effective level.
    pub risk_level: RiskLevel,
    pub requires_approval: bool,
    pub tags: Vec<String>,
    pub status: MigrationStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationSummary {
    pub migration_id: String,
    pub name: String,
    pub status: MigrationStatus,
    /// The target database's id.
    pub target_database: String,
    pub risk_level: RiskLevel,
    pub created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct MigrationList {
    pub migrations: Vec<MigrationSummary>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// `POST /api/v1/migrations/{id}/validate`; the body may be empty.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidateRequest {
    /// Also run the script in a transaction on the master, rolled back.
    pub dry_run: Option<bool>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Validation {
    pub is_valid: bool,
    pub errors: Vec<Finding>,
    pub warnings: Vec<Finding>,
    /// Seconds.
    pub estimated_duration: u64,
    pub risk_level: RiskLevel,
    pub dependency_check: DependencyCheck,
}

/// A lint rule's or the dry run's finding.
#[derive(Serialize, ToSchema)]
pub struct Finding {
    /// The rule id (`index-not-concurrent`, `dry-run`…).
    pub rule: String,
    pub message: String,
    /// The 1-based line of the statement (lint findings).
    pub line: Option<u64>,
    pub recommendation: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DependencyCheck {
    pub has_conflicts: bool,
    pub affected_objects: Vec<String>,
}
