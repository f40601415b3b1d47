//! The API tier's one error type. Each variant has a status and a code;
//! the body is rendered in the envelope of the contract a route belongs to
//! ([`Family`]), chosen once per route group by [`family_layer`]. Store
//! failures are logged with their detail and answered generically.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// One request validation failure, as the Backup contract reports it:
/// `{"loc": ["body", "field"], "msg": "...", "type": "..."}`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FieldError {
    pub loc: Vec<String>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl FieldError {
    /// A failure of the body field at `path` (`["database", "port"]`).
    pub fn body(path: &[&str], msg: impl Into<String>, kind: &str) -> Self {
        let mut loc = vec!["body".to_string()];
        loc.extend(path.iter().map(|p| p.to_string()));
        Self {
            loc,
            msg: msg.into(),
            kind: kind.to_string(),
        }
    }

    /// A required field that is absent (or null).
    pub fn missing(path: &[&str]) -> Self {
        Self::body(path, "field required", "value_error.missing")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Request validation failures: 422 `{"detail": [FieldError, ...]}` in
    /// every family (the Backup contract's form; FastAPI's).
    #[error("request validation failed")]
    Fields(Vec<FieldError>),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// One request field at fault: 400 `VALIDATION_ERROR` naming it (the
    /// orchestrator's `details: [{field, message}]`).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// 409 `APPROVAL_REQUIRED`: a migration that needs an approval it
    /// lacks.
    #[error("{0}")]
    ApprovalRequired(String),
    #[error("rate limit exceeded")]
    RateLimited { retry_after: u64 },
    #[error(transparent)]
    Storage(#[from] sluice_storage::StorageError),
    /// A store known to be down (its circuit is open): refused at once.
    #[error(transparent)]
    StoreDown(sluice_storage::breaker::Open),
}

impl From<sluice_storage::breaker::CallError> for ApiError {
    fn from(e: sluice_storage::breaker::CallError) -> Self {
        match e {
            sluice_storage::breaker::CallError::Open(o) => ApiError::StoreDown(o),
            sluice_storage::breaker::CallError::Storage(e) => ApiError::Storage(e),
        }
    }
}

impl ApiError {
    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(format!("{what} not found"))
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::ApprovalRequired(_) => StatusCode::CONFLICT,
            ApiError::Fields(_) | ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Storage(sluice_storage::StorageError::Invalid(_)) => StatusCode::BAD_REQUEST,
            ApiError::Storage(_) | ApiError::StoreDown(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "INVALID_REQUEST",
            ApiError::Fields(_) | ApiError::Validation(_) | ApiError::Invalid { .. } => {
                "VALIDATION_ERROR"
            }
            ApiError::ApprovalRequired(_) => "APPROVAL_REQUIRED",
            ApiError::Unauthorized(_) => "AUTH_FAILED",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::Conflict(_) => "CONFLICT",
            ApiError::RateLimited { .. } => "RATE_LIMITED",
            ApiError::Storage(sluice_storage::StorageError::Invalid(_)) => "INVALID_REQUEST",
            ApiError::Storage(_) | ApiError::StoreDown(_) => "DATABASE_ERROR",
        }
    }
}

/// What a family renderer needs, carried on the response.
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The request fields at fault, `(field, message)`.
    pub details: Vec<(String, String)>,
    /// The body is final in every family but the orchestrator's (the
    /// Backup contract's 422 `{"detail": [...]}`).
    pub keep_body: bool,
}

/// A field location (`["body", "replicas", "0", "connectionString"]`) as
/// the orchestrator names fields: `replicas[0].connectionString`.
fn field_name(loc: &[String]) -> String {
    let mut out = String::new();
    for part in loc.iter().skip(1) {
        if part.parse::<usize>().is_ok() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Fields(errors) = &self {
            // Final in every family but the orchestrator's, which re-renders
            // it from the details.
            let details: Vec<(String, String)> = errors
                .iter()
                .map(|e| (field_name(&e.loc), e.msg.clone()))
                .collect();
            let message = match details.first() {
                Some((f, m)) if !f.is_empty() => format!("{f}: {m}"),
                Some((_, m)) => m.clone(),
                None => "request validation failed".into(),
            };
            let mut r = (self.status(), Json(json!({ "detail": errors }))).into_response();
            r.extensions_mut().insert(ErrorInfo {
                status: self.status(),
                code: "VALIDATION_ERROR",
                message,
                details,
                keep_body: true,
            });
            return r;
        }
        let message = match &self {
            ApiError::Storage(sluice_storage::StorageError::Invalid(m)) => m.clone(),
            ApiError::Storage(e) => {
                tracing::error!(error = %e, "store failure");
                "a backing store is unavailable, retry later".to_string()
            }
            ApiError::StoreDown(o) => {
                format!("{} is unavailable, retry later", o.store.as_str())
            }
            other => other.to_string(),
        };
        let details = match &self {
            ApiError::Invalid { field, message } => vec![(field.clone(), message.clone())],
            _ => Vec::new(),
        };
        let info = ErrorInfo {
            status: self.status(),
            code: self.code(),
            message: message.clone(),
            details,
            keep_body: false,
        };
        let mut r = (
            info.status,
            Json(json!({"error": message, "status": "error"})),
        )
            .into_response();
        match self {
            ApiError::RateLimited { retry_after } => {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
            }
            ApiError::Storage(sluice_storage::StorageError::Invalid(_)) => {}
            ApiError::Storage(_) => {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            ApiError::StoreDown(o) => {
                r.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(o.retry_after.as_secs().max(1)),
                );
            }
            _ => {}
        }
        r.extensions_mut().insert(info);
        r
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// `{"data": ..., "status": "success"}` (Health Monitor).
pub fn ok(data: serde_json::Value) -> Json<serde_json::Value> {
    Json(json!({"data": data, "status": "success"}))
}

/// The Health Monitor envelope around any serializable answer, written
/// without building a `Value` tree first (stored JSON passes through as
/// it is).
#[derive(serde::Serialize)]
pub struct Envelope<T> {
    data: T,
    status: &'static str,
}

/// `{"data": ..., "status": "success"}` for a typed answer.
pub fn ok_of<T: serde::Serialize>(data: T) -> Json<Envelope<T>> {
    Json(Envelope {
        data,
        status: "success",
    })
}

/// `{"success": true, "message": ..., "data": ...}` (Database Tracking).
pub fn tracking_ok(message: &str, data: serde_json::Value) -> Json<serde_json::Value> {
    Json(json!({"success": true, "message": message, "data": data}))
}

/// The four contracts' error envelopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `{"error": "...", "status": "error"}`
    HealthMonitor,
    /// `{"success": false, "error": "...", "error_code": "...", "timestamp": "..."}`
    Tracking,
    /// `{"detail": "...", "code": "...", "timestamp": "..."}`
    Backup,
    /// `{"error": {"code", "message", "details", "traceId", "timestamp"}}`
    Orchestrator,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Re-renders an error response in `family`'s envelope.
pub fn render(family: Family, mut res: Response) -> Response {
    let Some(info) = res.extensions_mut().remove::<ErrorInfo>() else {
        return res;
    };
    if info.keep_body && family != Family::Orchestrator {
        return res;
    }
    let body = match family {
        Family::HealthMonitor => return res,
        Family::Tracking => {
            let code = match info.code {
                "FORBIDDEN" => "AUTH_FAILED",
                "VALIDATION_ERROR" | "CONFLICT" => "INVALID_REQUEST",
                c => c,
            };
            json!({"success": false, "error": info.message, "error_code": code, "timestamp": now()})
        }
        Family::Backup => json!({"detail": info.message, "code": info.code, "timestamp": now()}),
        Family::Orchestrator => {
            let (status, code) = match (info.status, info.code) {
                (StatusCode::UNPROCESSABLE_ENTITY, _) | (_, "INVALID_REQUEST") => {
                    (StatusCode::BAD_REQUEST, "VALIDATION_ERROR")
                }
                (s, "AUTH_FAILED") => (s, "UNAUTHORIZED"),
                (s, "RATE_LIMITED") => (s, "RATE_LIMIT_EXCEEDED"),
                (s, c) => (s, c),
            };
            res.headers_mut().remove(header::CONTENT_LENGTH);
            *res.status_mut() = status;
            let trace_id = crate::routes::trace_id();
            tracing::info!(trace_id = %trace_id, code, status = status.as_u16(), message = %info.message, "request refused");
            let details: Vec<serde_json::Value> = info
                .details
                .iter()
                .map(|(f, m)| json!({"field": f, "message": m}))
                .collect();
            json!({"error": {
                "code": code,
                "message": info.message,
                "details": details,
                "traceId": trace_id,
                "timestamp": now(),
            }})
        }
    };
    let (mut parts, _) = res.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body.to_string()))
}

/// A layer rendering a route group's errors in `family`'s envelope.
pub fn family_layer(
    family: Family,
) -> tower::util::MapResponseLayer<impl Fn(Response) -> Response + Clone> {
    tower::util::MapResponseLayer::new(move |res: Response| render(family, res))
}

impl Family {
    /// The family of the route group `path` belongs to (as [`crate::router`]
    /// groups them), for answers made outside the router.
    pub fn of_path(path: &str) -> Family {
        if path.starts_with("/api/v1/tracking/") {
            Family::Tracking
        } else if path.starts_with("/api/v1/auth/") || path.starts_with("/api/v1/servers") {
            Family::Backup
        } else if path.starts_with("/api/v1/authentication/")
            || path.starts_with("/api/v1/migrations")
            || path.starts_with("/api/v1/databases")
        {
            Family::Orchestrator
        } else {
            Family::HealthMonitor
        }
    }
}

/// The 408 for a request whose body arrived too slowly (the listener cut
/// it off), in the envelope of `path`'s contract.
pub fn body_timeout(path: &str) -> Response {
    let message = "request body did not arrive in time";
    let mut r = (
        StatusCode::REQUEST_TIMEOUT,
        Json(json!({"error": message, "status": "error"})),
    )
        .into_response();
    r.extensions_mut().insert(ErrorInfo {
        status: StatusCode::REQUEST_TIMEOUT,
        code: "REQUEST_TIMEOUT",
        message: message.to_string(),
        details: Vec::new(),
        keep_body: false,
    });
    render(Family::of_path(path), r)
}
