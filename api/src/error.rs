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
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
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
            ApiError::Fields(_) | ApiError::Validation(_) => "VALIDATION_ERROR",
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
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Fields(errors) = &self {
            // Already in its final form: no ErrorInfo, so no family re-renders it.
            return (self.status(), Json(json!({ "detail": errors }))).into_response();
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
        let info = ErrorInfo {
            status: self.status(),
            code: self.code(),
            message: message.clone(),
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
        Family::Orchestrator => json!({"error": {
            "code": info.code,
            "message": info.message,
            "details": [],
            "traceId": format!("trace-{}", uuid::Uuid::new_v4().simple()),
            "timestamp": now(),
        }}),
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
        } else if path.starts_with("/api/v1/authentication/") {
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
    });
    render(Family::of_path(path), r)
}
