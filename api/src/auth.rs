//! Authentication. [`Caller`]: the Health Monitor routes' `X-API-Key` (or
//! a Bearer access token), looked up in the in-memory key directory, with
//! the role it acts with (the one place roles are enforced), then the
//! caller's rate limit for
//! the route's class (contract section 10: analytics 100/min, the rest
//! 500/min). [`Member`]: `Authorization: Bearer` (a JWT or an API key) with
//! `X-Tenant-ID`, for the Tracking routes and the identity routes.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sluice_auth::principal::{Principal, Role, Subject};
use sluice_storage::keys::KeyInfo;

use crate::error::ApiError;
use crate::ApiState;

/// The authenticated caller of a Health Monitor route: `X-API-Key`, or
/// `Authorization: Bearer` with an access token (or an API key), resolved
/// to a tenant and a role. Role checks live here only ([`Caller::require`]);
/// a handler calls it before it reads its body, so a forbidden request gets
/// `403` whatever the body.
pub struct Caller {
    pub principal: Principal,
    /// The API key used, when the caller came with one.
    pub key: Option<Arc<KeyInfo>>,
}

impl Caller {
    pub fn tenant(&self) -> uuid::Uuid {
        self.principal.tenant_id
    }

    pub fn role(&self) -> Role {
        self.principal.role
    }

    /// The key's or the user's id (what rate limits count against).
    pub fn subject_id(&self) -> uuid::Uuid {
        self.principal.subject.id()
    }

    /// Whether the caller's role grants `permission` (conventions,
    /// "Roles"): `read` every role; `write` (posting and resolving errors,
    /// rules, incidents) every role but viewer; `admin` (settings writes)
    /// owner and admin; `owner` the owner only.
    pub fn can(&self, permission: &str) -> bool {
        let role = self.principal.role;
        match permission {
            "read" => true,
            "write" => role.can_write(),
            "admin" => matches!(role, Role::Owner | Role::Admin),
            "owner" => role == Role::Owner,
            _ => false,
        }
    }

    pub fn require(&self, permission: &str) -> Result<(), ApiError> {
        if self.can(permission) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "the {} role does not allow this request",
                self.principal.role.as_str()
            )))
        }
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let h = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let caller = if let Some(key) = h("x-api-key") {
            let info = state.keys.authenticate(key.trim()).ok_or_else(|| {
                ApiError::Unauthorized("invalid, revoked or expired API key".into())
            })?;
            Caller {
                principal: Principal {
                    tenant_id: info.tenant_id,
                    tenant_slug: info.tenant_slug.clone(),
                    role: Role::of_key_permissions(&info.permissions),
                    subject: Subject::ApiKey(info.id),
                },
                key: Some(info),
            }
        } else if h("authorization").is_some() {
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
            Caller {
                principal: current(state, p).await?,
                key: None,
            }
        } else {
            return Err(ApiError::Unauthorized(
                "missing X-API-Key header or Bearer token".into(),
            ));
        };
        let limiter = if parts.uri.path().starts_with("/api/stats")
            || parts.uri.path().starts_with("/api/analytics")
        {
            &state.analytics_limiter
        } else {
            &state.general_limiter
        };
        limiter
            .check(caller.subject_id(), None)
            .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
        Ok(caller)
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
