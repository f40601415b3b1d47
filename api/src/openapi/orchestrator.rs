//! Shared OpenAPI components of the orchestrator routes: the contract's
//! error envelope, login, registered databases and approvals; migrations
//! and executions in [`migrations`] and [`executions`].
//!
//! These shapes describe the answers the handlers of
//! [`crate::routes::orchestrator`] build (field names as the contract and
//! its conventions spell them); they are never built themselves.
#![allow(dead_code)]

pub mod executions;
pub mod migrations;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::{IntoResponses, OpenApi, ToSchema};

/// The contract's error answer, whatever the status.
#[derive(Serialize, ToSchema)]
pub struct OrchError {
    pub error: OrchErrorBody,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrchErrorBody {
    pub code: OrchErrorCode,
    pub message: String,
    /// The request fields at fault (empty when the fault is not a field's).
    pub details: Vec<FieldDetail>,
    /// The request's trace id, also in Sluice's logs.
    pub trace_id: String,
    pub timestamp: DateTime<Utc>,
}

/// 400 `VALIDATION_ERROR`, 401 `UNAUTHORIZED`, 403 `FORBIDDEN`, 404
/// `NOT_FOUND`, 408 `REQUEST_TIMEOUT`, 409 `CONFLICT` or
/// `APPROVAL_REQUIRED`, 429 `RATE_LIMIT_EXCEEDED`, 503 `DATABASE_ERROR`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrchErrorCode {
    ValidationError,
    Unauthorized,
    Forbidden,
    NotFound,
    RequestTimeout,
    Conflict,
    ApprovalRequired,
    RateLimitExceeded,
    DatabaseError,
}

/// The refusals every authenticated orchestrator route can answer.
#[derive(IntoResponses)]
pub enum Refused {
    #[response(
        status = 400,
        description = "Invalid request, body or field (VALIDATION_ERROR, with details)"
    )]
    Invalid(OrchError),
    #[response(
        status = 401,
        description = "Missing or invalid credentials (UNAUTHORIZED)"
    )]
    Unauthorized(OrchError),
    #[response(
        status = 403,
        description = "The caller's role may not do this, or another tenant (FORBIDDEN)"
    )]
    Forbidden(OrchError),
    #[response(
        status = 503,
        description = "A store is unavailable (DATABASE_ERROR); see Retry-After"
    )]
    StoreDown(OrchError),
}

/// 404: no such resource of the caller's tenant (`NOT_FOUND`).
#[derive(IntoResponses)]
#[response(
    status = 404,
    description = "No such resource of the caller's tenant (NOT_FOUND)"
)]
pub struct Missing(OrchError);

/// 409: the resource's state forbids this (`CONFLICT`, `APPROVAL_REQUIRED`).
#[derive(IntoResponses)]
#[response(
    status = 409,
    description = "The resource's state forbids this (CONFLICT or APPROVAL_REQUIRED)"
)]
pub struct Conflicting(OrchError);

/// 429: too many requests (`RATE_LIMIT_EXCEEDED`).
#[derive(IntoResponses)]
#[response(
    status = 429,
    description = "Too many requests (RATE_LIMIT_EXCEEDED); see Retry-After"
)]
pub struct Throttled(OrchError);

/// One request field at fault (`replicas[0].connectionString`).
#[derive(Serialize, ToSchema)]
pub struct FieldDetail {
    pub field: String,
    pub message: String,
}

/// `POST /api/v1/authentication/login` (JSON, or an OAuth2 password form).
#[derive(Serialize, ToSchema)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginAnswer {
    /// The access token (a JWT) for `Authorization: Bearer`.
    pub token: String,
    pub refresh_token: String,
    pub expires_at: DateTime<Utc>,
    pub user: LoginUser,
}

#[derive(Serialize, ToSchema)]
pub struct LoginUser {
    pub username: String,
    /// The strongest role the user holds in any tenant.
    pub role: Role,
}

/// The contract's roles.
#[derive(Serialize, ToSchema)]
pub enum Role {
    Admin,
    #[serde(rename = "DBA")]
    Dba,
    Developer,
    Viewer,
}

#[derive(Serialize, ToSchema)]
pub enum Environment {
    Production,
    Staging,
    #[serde(rename = "QA")]
    Qa,
    Development,
}

#[derive(Serialize, ToSchema)]
pub enum DatabaseType {
    PostgreSQL,
}

#[derive(Serialize, ToSchema)]
pub enum ReplicaRole {
    AsyncReplica,
    SyncReplica,
}

/// `POST /api/v1/databases`. Connection strings are PostgreSQL URLs or
/// `key=value` strings; they are sealed and never answered.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterDatabase {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// `PostgreSQL` when absent.
    #[serde(rename = "type")]
    pub db_type: Option<DatabaseType>,
    pub environment: Environment,
    pub master_connection_string: String,
    /// At most 32.
    pub replicas: Option<Vec<NewReplica>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewReplica {
    /// Unique in the registration; not `master`.
    #[schema(min_length = 1, max_length = 100)]
    pub replica_id: String,
    pub connection_string: String,
    /// `AsyncReplica` when absent.
    pub role: Option<ReplicaRole>,
}

/// A registered database (never its connection strings).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseView {
    /// `db-<n>`.
    pub database_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub db_type: DatabaseType,
    pub environment: Environment,
    pub replicas: Vec<ReplicaView>,
    pub health: DatabaseHealth,
    pub created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaView {
    pub replica_id: String,
    pub role: ReplicaRole,
}

/// Measured when asked (reused for at most 5 seconds).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseHealth {
    pub is_healthy: bool,
    /// Null when the master could not be reached.
    pub active_connections: Option<i64>,
    /// Seconds; the largest lag of the replicas, null without a measurement.
    pub replication_lag: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub struct DatabaseList {
    pub databases: Vec<DatabaseView>,
    pub total: u64,
}

/// `POST /api/v1/migrations/{id}/submit-approval`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalSubmitted {
    /// `appr-<n>`.
    pub approval_id: String,
    pub migration_id: String,
    pub status: ApprovalStatus,
    pub submitted_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Rejected,
    Expired,
}

/// `POST /api/v1/migrations/{id}/approve` and `/reject`; the body may be
/// empty.
#[derive(Serialize, ToSchema)]
pub struct Decision {
    #[schema(max_length = 4000)]
    pub notes: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalDecided {
    pub approval_id: String,
    pub migration_id: String,
    pub status: ApprovalStatus,
    /// The reviewer's username (`api-key` for an API key).
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<DateTime<Utc>>,
    pub notes: Option<String>,
}

#[derive(OpenApi)]
#[openapi(components(schemas(OrchError, OrchErrorCode)))]
pub struct Doc;
