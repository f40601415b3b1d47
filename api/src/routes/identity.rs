//! Logging in, registering, refreshing and "who am I": the backup
//! platform's `/api/v1/auth/*` and the migration orchestrator's
//! `/api/v1/authentication/login`. Both issue the same JWTs.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_auth::principal::Subject;
use sluice_auth::token::TenantClaim;
use sluice_auth::{password, AuthError};
use sluice_storage::breaker::CallError;
use sluice_storage::pg::{tenants, users};
use sluice_storage::StorageError;
use uuid::Uuid;

use crate::audit::{Actor, AuditNote, ClientIp};
use crate::auth::Member;
use crate::error::{ApiError, ApiResult};
use crate::openapi::backup::identity::{
    LoginRequest, Me, RefreshRequest, RegisterRequest, Registered, TokenPair,
};
use crate::openapi::backup::{BackupError, MemberRefusals};
use crate::ApiState;

#[derive(Deserialize)]
struct Credentials {
    username: Option<String>,
    password: Option<String>,
}

/// JSON, or a form as OAuth2 password clients send.
fn parse_body<T: for<'de> Deserialize<'de>>(headers: &HeaderMap, body: &Bytes) -> ApiResult<T> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        serde_urlencoded::from_bytes(body)
            .map_err(|e| ApiError::Validation(format!("invalid form body: {e}")))
    } else {
        sluice_storage::limits::from_slice(body)
            .map_err(|e| ApiError::Validation(format!("invalid JSON body: {e}")))
    }
}

fn bad_credentials() -> ApiError {
    ApiError::Unauthorized(AuthError::BadCredentials.to_string())
}

/// Checks a username and password (argon2 off the async workers).
async fn authenticate(state: &ApiState, creds: Credentials) -> ApiResult<users::User> {
    let (Some(username), Some(pw)) = (creds.username, creds.password) else {
        return Err(ApiError::Validation(
            "username and password are required".into(),
        ));
    };
    // No stored username holds a NUL (nor could Postgres take one): such a
    // name is simply unknown.
    let username = username.trim();
    let user = if username.contains('\0') {
        None
    } else {
        state.pg.run(|pg| users::by_username(pg, username)).await?
    };
    // Hash even for unknown users, so timing does not reveal which exist.
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| state.dummy_hash.clone());
    let ok = tokio::task::spawn_blocking(move || password::verify(&pw, &hash))
        .await
        .unwrap_or(false);
    match user {
        Some(u) if ok && u.is_active => Ok(u),
        _ => Err(bad_credentials()),
    }
}

struct Pair {
    access: sluice_auth::token::Issued,
    refresh: sluice_auth::token::Issued,
}

async fn issue(state: &ApiState, user: &users::User) -> ApiResult<(Pair, Vec<users::Membership>)> {
    let members = state.pg.run(|pg| users::memberships(pg, user.id)).await?;
    let claims = members
        .iter()
        .map(|m| TenantClaim {
            id: m.tenant_id,
            slug: m.slug.clone(),
            role: m.role.clone(),
        })
        .collect();
    let internal = |_| ApiError::Unauthorized("could not issue a token".into());
    let access = state
        .tokens
        .access(user.id, &user.username, claims)
        .map_err(internal)?;
    let refresh = state
        .tokens
        .refresh(user.id, &user.username)
        .map_err(internal)?;
    state
        .pg
        .run(|pg| users::store_refresh(pg, refresh.jti, user.id, refresh.expires_at))
        .await?;
    Ok((Pair { access, refresh }, members))
}

fn token_body(state: &ApiState, p: &Pair) -> Value {
    json!({
        "access_token": p.access.token,
        "refresh_token": p.refresh.token,
        "token_type": "bearer",
        "expires_in": state.tokens.access_ttl.num_seconds(),
    })
}

/// A login attempt, throttled ([`crate::throttle`]) and audited
/// (`login` / `login_failed`, in each tenant of the username tried).
async fn attempt(
    state: &ApiState,
    ip: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(users::User, AuditNote), Response> {
    let creds: Credentials = parse_body(headers, body).map_err(IntoResponse::into_response)?;
    // No store holds U+0000 in text, and no username or password has it.
    if [&creds.username, &creds.password]
        .into_iter()
        .flatten()
        .any(|s| s.contains('\0'))
    {
        return Err(ApiError::Validation(
            "username and password may not hold a NUL character".into(),
        )
        .into_response());
    }
    let tried = creds.username.as_deref().unwrap_or("").trim().to_string();
    let refused = match crate::throttle::check(state, &tried, ip).await {
        Ok(()) => None,
        Err(e) => Some(("throttled", e)),
    };
    let result = match refused {
        Some(r) => Err(r),
        None => match authenticate(state, creds).await {
            Ok(u) => Ok(u),
            Err(e @ ApiError::Unauthorized(_)) => {
                crate::throttle::failed(state, &tried, ip).await;
                Err(("bad_credentials", e))
            }
            Err(e) => return Err(e.into_response()),
        },
    };
    match result {
        Ok(user) => {
            crate::throttle::succeeded(state, &tried).await;
            let tenants = state
                .pg
                .run(|pg| users::memberships(pg, user.id))
                .await
                .map(|m| m.iter().map(|m| m.tenant_id).collect())
                .unwrap_or_default();
            let note = AuditNote::new("login", "user", None).actor(Actor {
                tenants,
                user: Some(user.id),
                username: user.username.clone(),
            });
            Ok((user, note))
        }
        Err((reason, e)) => {
            // the tenants of the username tried, so their admins see it
            let known = if tried.contains('\0') {
                None
            } else {
                state
                    .pg
                    .run(|pg| users::by_username(pg, &tried))
                    .await
                    .ok()
                    .flatten()
            };
            let tenants = match &known {
                Some(u) => state
                    .pg
                    .run(|pg| users::memberships(pg, u.id))
                    .await
                    .map(|m| m.iter().map(|m| m.tenant_id).collect())
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            let note = AuditNote::new("login_failed", "user", None)
                .details(json!({"reason": reason}))
                .actor(Actor {
                    tenants,
                    user: known.map(|u| u.id),
                    username: tried.chars().take(128).collect(),
                });
            let mut res = e.into_response();
            res.extensions_mut().insert(note);
            Err(res)
        }
    }
}

/// Logs in with a username and password: an access and a refresh token.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    operation_id = "auth_login",
    tag = "backup",
    request_body(content(
        (LoginRequest = "application/json"),
        (LoginRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, body = TokenPair, description = "Logged in"),
        (status = 401, body = BackupError, description = "Wrong username or password, or a deactivated user"),
        (status = 422, body = BackupError, description = "A body that is not JSON (or a form), or without username or password"),
        (status = 429, body = BackupError, description = "Too many failed logins for this user or address; see Retry-After"),
        (status = 503, body = BackupError, description = "A backing store is unavailable; see Retry-After"),
    ),
    security(())
)]
pub async fn login(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (user, note) = match attempt(&state, ip.as_deref(), &headers, &body).await {
        Ok(x) => x,
        Err(res) => return res,
    };
    match issue(&state, &user).await {
        Ok((pair, _)) => {
            tracing::info!(user = %user.id, "login");
            (Extension(note), Json(token_body(&state, &pair))).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// The strongest role a user holds anywhere, as the orchestrator shows it.
fn display_role(members: &[users::Membership]) -> String {
    let best = users::ROLES
        .iter()
        .find(|r| members.iter().any(|m| m.role == **r))
        .copied()
        .unwrap_or("viewer");
    let mut c = best.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// The orchestrator's login: a JWT for `Authorization: Bearer`.
#[utoipa::path(
    post,
    path = "/api/v1/authentication/login",
    tag = "orchestrator",
    request_body(content(
        (crate::openapi::orchestrator::LoginRequest = "application/json"),
        (crate::openapi::orchestrator::LoginRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, body = crate::openapi::orchestrator::LoginAnswer, description = "Logged in"),
        (status = 400, body = crate::openapi::orchestrator::OrchError, description = "Invalid body, or username or password missing (VALIDATION_ERROR)"),
        (status = 401, body = crate::openapi::orchestrator::OrchError, description = "Wrong username or password (UNAUTHORIZED)"),
        (status = 429, body = crate::openapi::orchestrator::OrchError, description = "Too many failed logins (RATE_LIMIT_EXCEEDED); see Retry-After"),
        (status = 503, body = crate::openapi::orchestrator::OrchError, description = "A store is unavailable (DATABASE_ERROR); see Retry-After"),
    ),
    security(())
)]
pub async fn orchestrator_login(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (user, note) = match attempt(&state, ip.as_deref(), &headers, &body).await {
        Ok(x) => x,
        Err(res) => return res,
    };
    let (pair, members) = match issue(&state, &user).await {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    (
        Extension(note),
        Json(json!({
            "token": pair.access.token,
            "refreshToken": pair.refresh.token,
            "expiresAt": pair.access.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "user": {
                "username": user.username,
                "role": crate::routes::orchestrator::access::role_name(&display_role(&members)),
            },
        })),
    )
        .into_response()
}

#[derive(Deserialize)]
struct Registration {
    username: Option<String>,
    password: Option<String>,
    email: Option<String>,
    full_name: Option<String>,
}

fn slug_of(username: &str) -> String {
    let s: String = username
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.trim_matches('-').chars().take(40).collect()
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/register",
    operation_id = "auth_register",
    tag = "backup",
    request_body(content(
        (RegisterRequest = "application/json"),
        (RegisterRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 201, body = Registered, description = "The user and the tenant they own"),
        (status = 400, body = BackupError, description = "A value no store can hold"),
        (status = 409, body = BackupError, description = "The username is taken"),
        (status = 422, body = BackupError, description = "An invalid body, username, password or email"),
        (status = 503, body = BackupError, description = "A backing store is unavailable; see Retry-After"),
    ),
    security(())
)]
/// Creates a user and a tenant of their own, which they own.
pub async fn register(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let r: Registration = parse_body(&headers, &body)?;
    let username = r.username.map(|u| u.trim().to_string()).unwrap_or_default();
    let valid_name = (3..=64).contains(&username.len())
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c));
    if !valid_name {
        return Err(ApiError::Validation(
            "username must be 3 to 64 characters: letters, digits, . _ @ -".into(),
        ));
    }
    let pw = r.password.unwrap_or_default();
    if pw.chars().count() < 8 {
        return Err(ApiError::Validation(
            "password must be at least 8 characters".into(),
        ));
    }
    if [&r.email, &r.full_name]
        .iter()
        .any(|f| f.as_deref().is_some_and(|v| v.contains('\0')))
    {
        return Err(ApiError::Validation(
            "email and full_name may not hold a NUL character".into(),
        ));
    }
    if let Some(e) = &r.email {
        if !e.contains('@') {
            return Err(ApiError::Validation(
                "email is not an e-mail address".into(),
            ));
        }
    }
    if state
        .pg
        .run(|pg| users::by_username(pg, &username))
        .await?
        .is_some()
    {
        return Err(ApiError::Conflict("username is already taken".into()));
    }
    let hash = tokio::task::spawn_blocking(move || password::hash(&pw))
        .await
        .map_err(|_| ApiError::Validation("could not hash the password".into()))?
        .map_err(|_| ApiError::Validation("could not hash the password".into()))?;
    let new_user = users::NewUser {
        username: &username,
        email: r.email.as_deref(),
        full_name: r.full_name.as_deref(),
        password_hash: &hash,
    };
    let user = state
        .pg
        .run(|pg| users::create(pg, &new_user))
        .await
        .map_err(|e| match e {
            CallError::Storage(StorageError::Invalid(m)) => ApiError::Conflict(m),
            other => other.into(),
        })?;
    let slug = format!(
        "{}-{}",
        slug_of(&username),
        &Uuid::new_v4().simple().to_string()[..6]
    );
    let tenant = state
        .pg
        .run(|pg| tenants::ensure(pg, &slug, &username))
        .await?;
    state
        .pg
        .run(|pg| users::set_membership(pg, tenant.id, user.id, "owner"))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": user.id,
            "username": user.username,
            "email": user.email,
            "full_name": user.full_name,
            "role": "owner",
            "is_active": user.is_active,
            "created_at": user.created_at,
            "tenant": {"id": tenant.id, "slug": tenant.slug, "name": tenant.name},
        })),
    ))
}

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/refresh",
    operation_id = "auth_refresh",
    tag = "backup",
    request_body(content(
        (RefreshRequest = "application/json"),
        (RefreshRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, body = TokenPair, description = "A new pair; the refresh token given is used up"),
        (status = 401, body = BackupError, description = "An invalid, expired or already used refresh token"),
        (status = 422, body = BackupError, description = "An invalid body, or no refresh_token"),
        (status = 503, body = BackupError, description = "A backing store is unavailable; see Retry-After"),
    ),
    security(())
)]
/// Trades a refresh token (once) for a new pair.
pub async fn refresh(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let b: RefreshBody = parse_body(&headers, &body)?;
    let token = b
        .refresh_token
        .ok_or_else(|| ApiError::Validation("refresh_token is required".into()))?;
    let invalid =
        || ApiError::Unauthorized("invalid, expired or already used refresh token".into());
    let claims = state
        .tokens
        .verify(&token, "refresh")
        .map_err(|_| invalid())?;
    if !state
        .pg
        .run(|pg| users::use_refresh(pg, claims.jti, claims.sub))
        .await?
    {
        return Err(invalid());
    }
    let user = state
        .pg
        .run(|pg| users::by_id(pg, claims.sub))
        .await?
        .filter(|u| u.is_active)
        .ok_or_else(invalid)?;
    let (pair, _) = issue(&state, &user).await?;
    Ok(Json(token_body(&state, &pair)))
}

#[utoipa::path(
    get,
    path = "/api/v1/auth/me",
    operation_id = "auth_me",
    tag = "backup",
    responses(
        (status = 200, body = Me, description = "The caller"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
/// Who the caller is, and which tenants it belongs to with which role.
pub async fn me(State(state): State<ApiState>, Member(p): Member) -> ApiResult<Json<Value>> {
    match p.subject {
        Subject::User(id) => {
            let user = state
                .pg
                .run(|pg| users::by_id(pg, id))
                .await?
                .ok_or_else(|| ApiError::Unauthorized("user no longer exists".into()))?;
            let members = state.pg.run(|pg| users::memberships(pg, id)).await?;
            Ok(Json(json!({
                "type": "user",
                "id": user.id,
                "username": user.username,
                "email": user.email,
                "full_name": user.full_name,
                "is_active": user.is_active,
                "created_at": user.created_at,
                "current_tenant": {"id": p.tenant_id, "slug": p.tenant_slug, "role": p.role.as_str()},
                "tenants": members.iter().map(|m| json!({
                    "id": m.tenant_id, "slug": m.slug, "name": m.name, "role": m.role,
                })).collect::<Vec<_>>(),
            })))
        }
        Subject::ApiKey(id) => Ok(Json(json!({
            "type": "api_key",
            "id": id,
            "current_tenant": {"id": p.tenant_id, "slug": p.tenant_slug, "role": p.role.as_str()},
            "tenants": [{"id": p.tenant_id, "slug": p.tenant_slug, "role": p.role.as_str()}],
        }))),
    }
}
