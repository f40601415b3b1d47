//! Shared OpenAPI components of the tracking routes: the contract's
//! success and error envelopes and the answers of [`crate::routes::tracking`],
//! plus the descriptions of `POST /api/v1/tracking/operations/start` and
//! `/complete`, which the ingest tier serves (raw hyper,
//! `sluice_ingest::tracking`) and so are described here by doc-only
//! functions.
//!
//! The shapes describe what the handlers build; they are never built
//! themselves.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::{IntoParams, IntoResponses, OpenApi, ToSchema};

/// `X-Tenant-ID`: the tenant (id or slug) a Bearer caller acts in, needed
/// when a token's user belongs to several (the Tracking and orchestrator
/// routes' [`crate::auth::Member`]).
#[derive(IntoParams)]
#[into_params(names("X-Tenant-ID"), parameter_in = Header)]
pub struct TenantHeader(Option<String>);

/// `{"success": true, "message": ..., "data": ...}`.
#[derive(Serialize, ToSchema)]
pub struct TrackingOk<T> {
    /// Always true.
    pub success: bool,
    pub message: String,
    pub data: T,
}

/// The contract's error answer, whatever the status.
#[derive(Serialize, ToSchema)]
pub struct TrackingError {
    /// Always false.
    pub success: bool,
    pub error: String,
    pub error_code: TrackingErrorCode,
    pub timestamp: DateTime<Utc>,
}

/// The refusals every authenticated tracking route can answer.
#[derive(IntoResponses)]
pub enum Refused {
    #[response(
        status = 400,
        description = "Invalid request, parameter or body (INVALID_REQUEST)"
    )]
    Invalid(TrackingError),
    #[response(
        status = 401,
        description = "Missing or invalid credentials (AUTH_FAILED)"
    )]
    Unauthorized(TrackingError),
    #[response(
        status = 403,
        description = "A role that may not do this, or another tenant (AUTH_FAILED)"
    )]
    Forbidden(TrackingError),
    #[response(
        status = 503,
        description = "A store is unavailable (DATABASE_ERROR); see Retry-After"
    )]
    StoreDown(TrackingError),
}

/// 429: over the route's limit a minute (`RATE_LIMITED`).
#[derive(IntoResponses)]
#[response(
    status = 429,
    description = "Over the route's limit a minute (RATE_LIMITED); see Retry-After"
)]
pub struct Throttled(TrackingError);

/// What the ingest tier refuses besides [`Refused`]: bodies too slow, too
/// large or in an unknown encoding.
#[derive(IntoResponses)]
pub enum BodyRefused {
    #[response(status = 408, description = "The body did not arrive in time")]
    TooSlow(TrackingError),
    #[response(status = 413, description = "Body over 64 KiB")]
    TooLarge(TrackingError),
    #[response(status = 415, description = "Unknown Content-Encoding")]
    Encoding(TrackingError),
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TrackingErrorCode {
    InvalidRequest,
    AuthFailed,
    NotFound,
    OperationNotFound,
    RequestTimeout,
    RateLimited,
    DatabaseError,
}

/// A status of the dashboard's metrics and the health checks.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Health {
    Normal,
    Excellent,
    Good,
    Warning,
    Critical,
}

/// `POST /api/v1/tracking/operations/start`.
#[derive(Serialize, ToSchema)]
pub struct StartRequest {
    /// 1 to 500 characters (trimmed).
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    pub script_name: String,
    /// Letters, digits and underscores, at most 50, upper-cased; `MANUAL`
    /// when absent.
    #[schema(pattern = "^[A-Za-z][A-Za-z0-9_]{0,49}$")]
    pub script_type: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Started {
    /// 32 lower-case hexadecimal characters.
    #[schema(pattern = "^[0-9a-f]{32}$")]
    pub operation_id: String,
    pub script_name: String,
    pub script_type: String,
    /// `RUNNING`.
    pub status: String,
    pub started_at: DateTime<Utc>,
}

/// `POST /api/v1/tracking/operations/complete`.
#[derive(Serialize, ToSchema)]
pub struct CompleteRequest {
    /// The id `start` answered (32 hexadecimal characters).
    #[schema(pattern = "^[0-9a-fA-F]{32}$")]
    pub operation_id: String,
    /// True when absent.
    pub success: Option<bool>,
    pub error_message: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OpStatus {
    Completed,
    Failed,
    Timeout,
}

#[derive(Serialize, ToSchema)]
pub struct Completed {
    pub operation_id: String,
    pub status: OpStatus,
    pub duration_ms: i64,
    pub completed_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct Dashboard {
    /// Total operations, success rate, average duration, failed operations.
    pub metrics: Vec<Metric>,
    pub summary: DashboardSummary,
}

#[derive(Serialize, ToSchema)]
pub struct Metric {
    /// e.g. `total_operations_24h`.
    pub metric_name: String,
    pub metric_value: f64,
    /// `count`, `percentage` or `milliseconds`.
    pub metric_unit: String,
    pub status: Health,
    pub last_updated: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct DashboardSummary {
    pub system_health: Health,
    pub total_operations: u64,
    pub success_rate: f64,
    pub failed_operations: u64,
}

#[derive(Serialize, ToSchema)]
pub struct History {
    pub operations: Vec<Operation>,
    pub pagination: Pagination,
}

#[derive(Serialize, ToSchema)]
pub struct Operation {
    pub operation_id: String,
    pub script_name: String,
    pub script_type: String,
    pub execution_status: OpStatus,
    pub execution_timestamp: DateTime<Utc>,
    pub execution_duration_ms: u64,
    /// The database session's user (automatic DDL tracking).
    pub db_session_user: Option<String>,
    pub affected_objects: Vec<String>,
    pub error_message: Option<String>,
    /// The DDL statement (automatic DDL tracking).
    pub statement: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Pagination {
    pub total_records: u64,
    pub returned_records: u64,
    pub has_more: bool,
}

#[derive(Serialize, ToSchema)]
pub struct SystemHealth {
    pub overall_status: Health,
    pub health_checks: Vec<HealthCheck>,
    /// 0 to 100.
    pub system_score: f64,
}

#[derive(Serialize, ToSchema)]
pub struct HealthCheck {
    /// `PERFORMANCE`, `RELIABILITY`, `CAPACITY` or `AVAILABILITY`.
    pub health_category: String,
    pub health_metric: String,
    pub current_status: Health,
    pub details: String,
    pub last_checked: DateTime<Utc>,
}

/// `GET /api/v1/tracking/status` (not enveloped).
#[derive(Serialize, ToSchema)]
pub struct ApiStatus {
    pub service: String,
    /// `operational`, or `degraded` when a store does not answer.
    pub status: String,
    pub version: String,
    pub build: String,
    pub features: Vec<String>,
    pub timestamp: DateTime<Utc>,
}

/// `POST /api/v1/tracking/databases`.
#[derive(Serialize, ToSchema)]
pub struct AttachRequest {
    #[schema(min_length = 1, pattern = r"\S")]
    pub name: String,
    /// A `postgres://` or `postgresql://` URL; stored encrypted.
    #[schema(pattern = "^postgres(ql)?://")]
    pub connection_url: String,
}

#[derive(Serialize, ToSchema)]
pub struct TrackedDatabase {
    pub id: uuid::Uuid,
    pub name: String,
    /// `ATTACHED`.
    pub status: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct TrackedDatabases {
    pub databases: Vec<TrackedDatabase>,
}

#[derive(Serialize, ToSchema)]
pub struct Detached {
    pub id: uuid::Uuid,
    /// `DETACHED`.
    pub status: String,
}

/// Start tracking an operation (served by the ingest tier).
#[utoipa::path(
    post,
    path = "/api/v1/tracking/operations/start",
    tag = "tracking",
    params(TenantHeader),
    request_body(content = StartRequest, content_type = "application/json"),
    responses(
        (status = 200, body = TrackingOk<Started>, description = "Tracking started"),
        Refused, Throttled, BodyRefused,
    ),
    security(("bearerAuth" = []))
)]
pub fn start() {}

/// Complete a tracked operation (served by the ingest tier).
#[utoipa::path(
    post,
    path = "/api/v1/tracking/operations/complete",
    tag = "tracking",
    params(TenantHeader),
    request_body(content = CompleteRequest, content_type = "application/json"),
    responses(
        (status = 200, body = TrackingOk<Completed>, description = "Operation recorded"),
        (status = 404, body = TrackingError, description = "No running operation has this id (OPERATION_NOT_FOUND)"),
        Refused, Throttled, BodyRefused,
    ),
    security(("bearerAuth" = []))
)]
pub fn complete() {}

#[derive(OpenApi)]
#[openapi(
    paths(start, complete),
    components(schemas(TrackingError, TrackingErrorCode))
)]
pub struct Doc;
