//! Authentication for the Health Monitor routes: `X-API-Key`, looked up in
//! the in-memory key directory, then the key's rate limit for the route's
//! class (contract section 10: analytics 100/min, the rest 500/min).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sluice_storage::keys::KeyInfo;

use crate::error::ApiError;
use crate::ApiState;

/// The authenticated caller of a route.
pub struct Caller(pub Arc<KeyInfo>);

impl Caller {
    pub fn tenant(&self) -> uuid::Uuid {
        self.0.tenant_id
    }

    pub fn require(&self, permission: &str) -> Result<(), ApiError> {
        if self.0.can(permission) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "this API key lacks the permission for this call",
            ))
        }
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let key = parts
            .headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized("missing X-API-Key header"))?;
        let info = state
            .keys
            .authenticate(key.trim())
            .ok_or(ApiError::Unauthorized("invalid or revoked API key"))?;
        let limiter = if parts.uri.path().starts_with("/api/stats")
            || parts.uri.path().starts_with("/api/analytics")
        {
            &state.analytics_limiter
        } else {
            &state.general_limiter
        };
        limiter
            .check(info.id, None)
            .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
        Ok(Caller(info))
    }
}
