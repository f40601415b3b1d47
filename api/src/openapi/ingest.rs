//! OpenAPI description of the ingest tier's error paths (raw hyper in
//! `sluice-ingest`, not axum): `POST /api/errors` and
//! `POST /api/errors/batch`. The functions here only carry the
//! descriptions; the ingest tier serves the paths.
#![allow(dead_code)]

use serde::Serialize;
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

use super::health_monitor::{Data, ErrorObject, HmError, Level};

/// One error, as `POST /api/errors` takes it (bodies may be gzip or zstd
/// compressed, `Content-Encoding`).
#[derive(Serialize, ToSchema)]
pub struct NewError {
    #[schema(min_length = 1)]
    pub message: String,
    /// Default `error`.
    pub level: Option<Level>,
    pub stack_trace: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub context: Option<Value>,
    /// Default `unknown`; at most 255 bytes.
    pub source: Option<String>,
    pub environment: Option<String>,
    pub url: Option<String>,
    /// Groups by this instead of the computed fingerprint.
    pub fingerprint: Option<String>,
    /// RFC 3339; default now.
    pub timestamp: Option<String>,
}

/// The answer to a batch: each item accepted or rejected on its own.
#[derive(Serialize, ToSchema)]
pub struct BatchResult {
    pub accepted: i64,
    pub rejected: i64,
    pub results: Vec<BatchItem>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchItem {
    pub index: i64,
    /// `accepted` or `rejected`.
    pub status: String,
    pub id: Option<uuid::Uuid>,
    pub fingerprint: Option<String>,
    pub error: Option<String>,
}

/// Report one error.
#[utoipa::path(
    post,
    path = "/api/errors",
    operation_id = "ingest_error",
    tag = "ingest",
    request_body(content = NewError, content_type = "application/json"),
    responses(
        (status = 201, body = Data<ErrorObject>, description = "Accepted: this occurrence (count 1)"),
        (status = 400, body = HmError, description = "Malformed JSON or an invalid field"),
        (status = 401, body = HmError, description = "No key, or one Sluice does not know"),
        (status = 403, body = HmError, description = "The key may not write"),
        (status = 413, body = HmError, description = "The body (or its decompressed form) is over the limit"),
        (status = 429, body = HmError, description = "Over the key's rate limit; see Retry-After"),
        (status = 503, body = HmError, description = "Backlog or memory budget full; see Retry-After"),
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
fn post_error() {}

/// Report many errors: a JSON array or NDJSON.
#[utoipa::path(
    post,
    path = "/api/errors/batch",
    operation_id = "ingest_batch",
    tag = "ingest",
    request_body(content = Vec<NewError>, content_type = "application/json"),
    responses(
        (status = 200, body = Data<BatchResult>, description = "Each item accepted or rejected"),
        (status = 400, body = HmError, description = "Not an array or NDJSON, or too many items"),
        (status = 401, body = HmError, description = "No key, or one Sluice does not know"),
        (status = 403, body = HmError, description = "The key may not write"),
        (status = 413, body = HmError, description = "The body (or its decompressed form) is over the limit"),
        (status = 429, body = HmError, description = "Over the key's rate limit; see Retry-After"),
        (status = 503, body = HmError, description = "Backlog or memory budget full; see Retry-After"),
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
fn post_batch() {}

#[derive(OpenApi)]
#[openapi(paths(post_error, post_batch))]
pub struct Doc;
