//! The API tier's one error type, rendered in the Health Monitor envelope
//! `{"error": "...", "status": "error"}`. Store failures are logged with
//! their detail and answered with a generic message.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("rate limit exceeded for this API key")]
    RateLimited { retry_after: u64 },
    #[error(transparent)]
    Storage(#[from] sluice_storage::StorageError),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = match &self {
            ApiError::Storage(e) => {
                tracing::error!(error = %e, "store failure");
                "a backing store is unavailable, retry later".to_string()
            }
            other => other.to_string(),
        };
        let mut r = (
            self.status(),
            Json(serde_json::json!({"error": message, "status": "error"})),
        )
            .into_response();
        match self {
            ApiError::RateLimited { retry_after } => {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
            }
            ApiError::Storage(_) => {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        r
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// `{"data": ..., "status": "success"}`.
pub fn ok(data: serde_json::Value) -> Json<serde_json::Value> {
    Json(serde_json::json!({"data": data, "status": "success"}))
}
