//! Route handlers, one module per group.

pub mod alerts;
pub mod analytics;
pub mod audit_log;
pub mod backups;
pub mod commands;
pub mod dead_letters;
pub mod errors;
// Health Monitor: export and retention settings (issue 12)
pub mod error_export;
pub mod error_retention;
pub mod health;
pub mod identity;
pub mod monitoring;
pub mod notifications;
pub mod orchestrator;
pub mod retention;
pub mod schedules;
pub mod servers;
pub mod settings;
pub mod tracking;
pub mod users;

use std::collections::HashMap;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::error::ApiError;

/// The public base URL of this Sluice (`scheme://host[:port]`, no trailing
/// slash): `SLUICE_PUBLIC_URL` when set, else the request's `Host` (https
/// when `X-Forwarded-Proto` says so); `None` without either.
pub fn public_base_url(state: &crate::ApiState, headers: &axum::http::HeaderMap) -> Option<String> {
    if let Some(u) = &state.public_url {
        return Some(u.trim_end_matches('/').to_string());
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))?;
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    Some(format!("{scheme}://{host}"))
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound("not found".into())
}

tokio::task_local! {
    static TRACE_ID: String;
}

/// The trace id of the request being served (its span's `trace_id`), or a
/// fresh one outside a request.
pub fn trace_id() -> String {
    TRACE_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| format!("trace-{}", uuid::Uuid::new_v4().simple()))
}

/// A span per request, with method, path, a trace id (which the
/// orchestrator's error answers carry as `traceId`) and the answer's status.
pub async fn trace(req: Request, next: Next) -> Response {
    let id = format!("trace-{}", uuid::Uuid::new_v4().simple());
    let span = tracing::info_span!("api", method = %req.method(), path = %req.uri().path(), trace_id = %id, status = tracing::field::Empty);
    TRACE_ID
        .scope(
            id,
            async move {
                let res = next.run(req).await;
                tracing::Span::current().record("status", res.status().as_u16());
                res
            }
            .instrument(span),
        )
        .await
}

/// Query parameters, parsed by hand so every bad value gets a clear 400
/// (a NUL anywhere in them included: no store takes it).
pub struct Params(pub HashMap<String, String>);

impl Params {
    pub fn str(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// A text parameter of at most `max` bytes.
    pub fn bounded(&self, name: &str, max: usize) -> Result<Option<&str>, ApiError> {
        match self.str(name) {
            Some(v) if v.len() > max => Err(ApiError::BadRequest(format!(
                "{name} is longer than {max} bytes"
            ))),
            v => Ok(v),
        }
    }

    pub fn int(&self, name: &str, default: i64, min: i64, max: i64) -> Result<i64, ApiError> {
        match self.str(name) {
            None => Ok(default),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::BadRequest(format!(
                    "{name} must be an integer between {min} and {max}"
                ))),
            },
        }
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.str(name) {
            None => Ok(None),
            Some("true" | "1") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            Some(_) => Err(ApiError::BadRequest(format!(
                "{name} must be true or false"
            ))),
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let axum::extract::Query(map) =
            axum::extract::Query::<HashMap<String, String>>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))?;
        // No store holds U+0000 in text, and no parameter means it.
        if let Some(name) = map
            .iter()
            .find(|(k, v)| k.contains('\0') || v.contains('\0'))
            .map(|(k, _)| k)
        {
            return Err(ApiError::BadRequest(format!(
                "query parameter {:?} holds a NUL character",
                name.replace('\0', "\\0")
            )));
        }
        Ok(Params(map))
    }
}
