//! Shared OpenAPI components of the Backup platform routes (tag `backup`):
//! the contract's error envelope `{"detail", "code", "timestamp"}`, its
//! FastAPI-style 422 `{"detail": [{"loc", "msg", "type"}]}`, and the
//! refusals every Bearer route can answer ([`MemberRefusals`]). The
//! request and answer bodies are in the submodules, one per route group.
//!
//! These shapes describe what the handlers of [`crate::routes`] build with
//! `json!` (field names as the contract and its conventions spell them);
//! they are never built themselves.
#![allow(dead_code)]

pub mod admin;
pub mod backups;
pub mod commands;
pub mod identity;
pub mod schedules;
pub mod servers;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::{IntoResponses, OpenApi, ToSchema};

/// The contract's error answer (every status but a body validation 422).
#[derive(Serialize, ToSchema)]
pub struct BackupError {
    /// What went wrong, for a person.
    pub detail: String,
    pub code: ErrorCode,
    pub timestamp: DateTime<Utc>,
}

/// 400 `INVALID_REQUEST`, 401 `AUTH_FAILED`, 403 `FORBIDDEN`, 404
/// `NOT_FOUND`, 408 `REQUEST_TIMEOUT`, 409 `CONFLICT`, 422
/// `VALIDATION_ERROR`, 429 `RATE_LIMITED`, 503 `DATABASE_ERROR`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    InvalidRequest,
    ValidationError,
    AuthFailed,
    Forbidden,
    NotFound,
    RequestTimeout,
    Conflict,
    RateLimited,
    DatabaseError,
}

/// A request validation failure: every field at fault.
#[derive(Serialize, ToSchema)]
pub struct ValidationError {
    pub detail: Vec<FieldFault>,
}

/// One field at fault: `loc` is `["body", "<field>", ...]`,
/// `["query", "<param>"]` or `["path", "id"]`.
#[derive(Serialize, ToSchema)]
pub struct FieldFault {
    pub loc: Vec<String>,
    pub msg: String,
    /// pydantic's error type names (`value_error.missing`, `type_error.integer`, …).
    #[serde(rename = "type")]
    pub kind: String,
}

/// A 422: the field list, or (identity routes) the envelope with a
/// `VALIDATION_ERROR` sentence.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Unprocessable {
    Fields(ValidationError),
    Sentence(BackupError),
}

/// What every route taking `Authorization: Bearer` (a JWT or an API key)
/// may answer before it looks at the request itself.
#[derive(IntoResponses)]
pub enum MemberRefusals {
    /// A missing, invalid or expired token; a deactivated or removed user.
    #[response(status = 401)]
    Unauthorized(BackupError),
    /// The caller's role may not do this, or `X-Tenant-ID` names a tenant
    /// the caller is not a member of.
    #[response(status = 403)]
    Forbidden(BackupError),
    /// A backing store is unavailable; see `Retry-After`.
    #[response(status = 503)]
    Unavailable(BackupError),
}

/// `{"id", "deleted": true}`, the answer to a `DELETE`.
#[derive(Serialize, ToSchema)]
pub struct Deleted {
    pub id: i64,
    pub deleted: bool,
}

/// `{"task_id", "status": "pending", "message"}`: a job queued.
#[derive(Serialize, ToSchema)]
pub struct JobQueued {
    /// `GET /api/v1/tasks/{task_id}` follows it.
    pub task_id: String,
    pub status: Pending,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Pending {
    Pending,
}

#[derive(OpenApi)]
#[openapi(components(schemas(
    // named by query parameters only (bodies bring their own schemas)
    admin::ExportFormat,
    backups::JobStatus,
    servers::DbType,
    BackupError,
    ErrorCode,
    ValidationError,
    FieldFault,
    Unprocessable,
    Deleted,
    JobQueued,
    Pending
)))]
pub struct Doc;
