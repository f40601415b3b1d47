//! Authentication. [`Caller`]: the Health Monitor routes' `X-API-Key`,
//! looked up in the in-memory key directory, then the key's rate limit for
//! the route's class (contract section 10: analytics 100/min, the rest
//! 500/min). [`Member`]: `Authorization: Bearer` (a JWT or an API key) with
//! `X-Tenant-ID`, for the Tracking routes and the identity routes.

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
                "this API key lacks the permission for this call".into(),
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
            .ok_or_else(|| ApiError::Unauthorized("missing X-API-Key header".into()))?;
        let info = state
            .keys
            .authenticate(key.trim())
            .ok_or_else(|| ApiError::Unauthorized("invalid or revoked API key".into()))?;
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

/// A Bearer caller acting in one tenant (see [`sluice_auth::principal`]).
pub struct Member(pub sluice_auth::principal::Principal);

impl FromRequestParts<ApiState> for Member {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let h = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let p = sluice_auth::principal::resolve(
            h("authorization"),
            h("x-tenant-id"),
            &state.keys,
            &state.tokens,
        )
        .map_err(|e| match e {
            sluice_auth::AuthError::WrongTenant => ApiError::Forbidden(e.to_string()),
            _ => ApiError::Unauthorized(e.to_string()),
        })?;
        current(state, p).await.map(Member)
    }
}

/// A token's user as they are now: a deactivated or deleted user, or one
/// no longer in the tenant, is refused; a changed role applies. The answer
/// is reused for [`crate::ApiConfig::member_check_ttl`], which bounds how
/// long a revoked token keeps working.
pub async fn current(
    state: &ApiState,
    mut p: sluice_auth::principal::Principal,
) -> Result<sluice_auth::principal::Principal, ApiError> {
    let sluice_auth::principal::Subject::User(user) = p.subject else {
        return Ok(p);
    };
    let key = (user, p.tenant_id);
    let role = match state.member_cache.get(&key).await {
        Some(r) => r,
        None => {
            let r = state
                .pg
                .run(|pg| sluice_storage::pg::users::active_role(pg, user, key.1))
                .await?;
            state.member_cache.insert(key, r.clone()).await;
            r
        }
    };
    let role = role.ok_or_else(|| {
        ApiError::Unauthorized("this user is deactivated or no longer a member".into())
    })?;
    p.role = role.parse().unwrap_or(sluice_auth::principal::Role::Viewer);
    Ok(p)
}
