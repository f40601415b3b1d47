//! Health Monitor settings (contract section 6, conventions "API keys",
//! "Team", "Integrations"): `/api/settings/api-keys` (list, create,
//! revoke, rotate), `/api/settings/team` (members and invitations) and
//! `/api/settings/integrations` (configure, test). Every handler checks the
//! caller's role ([`Caller::require`]) before it reads its body.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use sluice_notify::{registry, Channel, Level, Notification};
use sluice_storage::keys;
use sluice_storage::pg::api_keys::{self, NewKey};
use sluice_storage::pg::settings::{self, IntegrationRow, Joiner, KeyRow, TeamRow};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ok, ApiError, ApiResult};
use crate::openapi::health_monitor as hm;
use crate::routes::users;
use crate::ApiState;

/// The permissions a key may carry.
const PERMISSIONS: &[&str] = &["read", "write", "admin"];
/// The roles a team member may hold.
const ROLES: &[&str] = &["owner", "admin", "developer", "viewer"];
/// Rotation's default grace period.
const DEFAULT_GRACE_SECS: i64 = 3600;
const NAME_MAX: usize = 200;
/// How long an invitation can be accepted.
const INVITE_TTL_DAYS: i64 = 7;
/// What an invitation token starts with.
const INVITE_PREFIX: &str = "inv_";
const EMAIL_MAX: usize = 320;

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn opt_ts(t: Option<DateTime<Utc>>) -> Value {
    t.map(|t| Value::String(ts(t))).unwrap_or(Value::Null)
}

/// The body as a JSON object; an empty body is `None`.
fn body_object(body: &[u8]) -> ApiResult<Option<Map<String, Value>>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(_) => Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        )),
        Err(e) => Err(ApiError::BadRequest(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}

fn required_object(body: &[u8]) -> ApiResult<Map<String, Value>> {
    body_object(body)?.ok_or_else(|| ApiError::BadRequest("a JSON body is required".into()))
}

fn parse_uuid(id: &str, what: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found(what))
}

async fn pool(state: &ApiState) -> ApiResult<sqlx::PgPool> {
    Ok(state
        .pg
        .run(|pg| async move { Ok::<_, sluice_storage::StorageError>(pg.clone()) })
        .await?)
}

// ---- API keys ----

/// The project id Sluice's DSNs carry: the Sentry endpoints take any
/// decimal project id, the key alone choosing the tenant.
pub const SENTRY_PROJECT_ID: u32 = 1;

/// A Sentry DSN for `key` (the full key, or its masked preview in lists:
/// only a key's hash is stored); `None` when the public address is unknown.
fn dsn(base: Option<&str>, key: &str) -> Option<String> {
    let (scheme, rest) = base?.split_once("://")?;
    Some(format!("{scheme}://{key}@{rest}/{SENTRY_PROJECT_ID}"))
}

fn key_json(k: &KeyRow) -> Value {
    json!({
        "id": k.id.to_string(),
        "name": k.name,
        "key_preview": k.key_preview,
        "permissions": k.permissions,
        "last_used": opt_ts(k.last_used_at),
        "created_at": ts(k.created_at),
        "expires_at": opt_ts(k.expires_at),
    })
}

/// Reloads this process' key directory so a change applies at once (other
/// processes pick it up at their next reload, within seconds).
async fn reload_keys(state: &ApiState) {
    if let Ok(pg) = pool(state).await {
        if let Err(e) = state.keys.refresh(&pg).await {
            tracing::warn!(error = %e, "api key directory reload after a change failed");
        }
    }
}

/// `GET /api/settings/api-keys`.
#[utoipa::path(
    get,
    path = "/api/settings/api-keys",
    operation_id = "settings_list_keys",
    tag = "health-monitor",
    responses(
        (status = 200, body = hm::Data<hm::ApiKeys>, description = "The tenant's keys, masked"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
pub async fn list_keys(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    caller.require("read")?;
    let tenant = caller.tenant();
    let keys = state.pg.run(|pg| settings::list_keys(pg, tenant)).await?;
    let base = super::public_base_url(&state, &headers);
    let items: Vec<Value> = keys
        .iter()
        .map(|k| {
            let mut v = key_json(k);
            v["dsn"] = json!(dsn(base.as_deref(), &k.key_preview));
            v
        })
        .collect();
    Ok(ok(json!({ "api_keys": items })))
}

/// `POST /api/settings/api-keys`: `{name, permissions, expires_at?}`;
/// `201` with the key, whose full secret only this answer shows.
#[utoipa::path(
    post,
    path = "/api/settings/api-keys",
    operation_id = "settings_create_key",
    tag = "health-monitor",
    request_body(content = hm::ApiKeyRequest, content_type = "application/json"),
    responses(
        (status = 201, body = hm::Data<hm::ApiKeySecret>, description = "The key; its secret is shown only here"),
        (status = 400, body = hm::HmError, description = "A parameter or the body is invalid"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
pub async fn create_key(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    caller.require("admin")?;
    let obj = required_object(&body)?;
    let name = match obj.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= NAME_MAX => {
            s.trim().to_string()
        }
        Some(Value::String(s)) if !s.trim().is_empty() => {
            return Err(ApiError::BadRequest(format!(
                "name is longer than {NAME_MAX} characters"
            )))
        }
        _ => return Err(ApiError::BadRequest("name is required".into())),
    };
    let permissions: Vec<String> = match obj.get("permissions") {
        Some(Value::Array(a)) if !a.is_empty() => {
            let mut out: Vec<String> = Vec::new();
            for p in a {
                match p.as_str() {
                    Some(p) if PERMISSIONS.contains(&p) => {
                        if !out.iter().any(|x| x == p) {
                            out.push(p.to_string());
                        }
                    }
                    _ => {
                        return Err(ApiError::BadRequest(
                            "permissions must be a non-empty subset of read, write, admin".into(),
                        ))
                    }
                }
            }
            out
        }
        _ => {
            return Err(ApiError::BadRequest(
                "permissions must be a non-empty subset of read, write, admin".into(),
            ))
        }
    };
    let expires_at = match obj.get("expires_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let t = DateTime::parse_from_rfc3339(s.trim())
                .map_err(|_| ApiError::BadRequest("expires_at is not an ISO 8601 time".into()))?
                .with_timezone(&Utc);
            if t <= Utc::now() {
                return Err(ApiError::BadRequest("expires_at is in the past".into()));
            }
            Some(t)
        }
        Some(_) => {
            return Err(ApiError::BadRequest(
                "expires_at is not an ISO 8601 time".into(),
            ))
        }
    };
    let tenant = caller.tenant();
    let new = NewKey {
        tenant_id: tenant,
        name: &name,
        permissions: &permissions,
        rate_limit_per_min: None,
        expires_at,
    };
    let pg = pool(&state).await?;
    let (id, plaintext) = api_keys::create(&pg, &new).await?;
    let row = settings::get_key(&pg, tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("API key"))?;
    reload_keys(&state).await;
    tracing::info!(key = %id, "API key created");
    let mut v = key_json(&row);
    v["dsn"] = json!(dsn(
        super::public_base_url(&state, &headers).as_deref(),
        &plaintext
    ));
    v["key"] = Value::String(plaintext);
    Ok((StatusCode::CREATED, ok(v)))
}

/// `DELETE /api/settings/api-keys/{id}`: `204`; the key (and any grace
/// period of a rotation) stops working within the directory's reload.
#[utoipa::path(
    delete,
    path = "/api/settings/api-keys/{id}",
    operation_id = "settings_revoke_key",
    tag = "health-monitor",
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 204, description = "Revoked; refused everywhere within seconds"),
        (status = 404, body = hm::HmError, description = "No such key in the tenant"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
pub async fn revoke_key(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require("admin")?;
    let id = parse_uuid(&id, "API key")?;
    let tenant = caller.tenant();
    if !state.pg.run(|pg| api_keys::revoke(pg, tenant, id)).await? {
        return Err(ApiError::not_found("API key"));
    }
    reload_keys(&state).await;
    tracing::info!(key = %id, "API key revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/settings/api-keys/{id}/rotate`: `{"grace_seconds"?}`; `200`
/// with the key and its new secret; the old one works for the grace period.
#[utoipa::path(
    post,
    path = "/api/settings/api-keys/{id}/rotate",
    operation_id = "settings_rotate_key",
    tag = "health-monitor",
    params(("id" = String, Path, description = "The key's id")),
    request_body(content = Option<hm::RotateRequest>, content_type = "application/json"),
    responses(
        (status = 200, body = hm::Data<hm::ApiKeySecret>, description = "The new secret; the old one works for the grace period"),
        (status = 400, body = hm::HmError, description = "A parameter or the body is invalid"),
        (status = 404, body = hm::HmError, description = "No such key in the tenant"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
pub async fn rotate_key(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    caller.require("admin")?;
    let grace = match body_object(&body)?
        .as_ref()
        .and_then(|o| o.get("grace_seconds"))
    {
        None | Some(Value::Null) => DEFAULT_GRACE_SECS,
        Some(v) => match v.as_i64() {
            Some(n) if n >= 0 => n.min(i64::from(i32::MAX)),
            _ => {
                return Err(ApiError::BadRequest(
                    "grace_seconds must be an integer >= 0".into(),
                ))
            }
        },
    };
    let id = parse_uuid(&id, "API key")?;
    let tenant = caller.tenant();
    let (row, plaintext) = state
        .pg
        .run(|pg| settings::rotate_key(pg, tenant, id, grace))
        .await?
        .ok_or_else(|| ApiError::not_found("API key"))?;
    reload_keys(&state).await;
    tracing::info!(key = %id, grace_seconds = grace, "API key rotated");
    let mut v = key_json(&row);
    v["key"] = Value::String(plaintext);
    v["grace_seconds"] = json!(grace);
    Ok(ok(v))
}

// ---- Team ----

fn member_json(m: &TeamRow) -> Value {
    let mut v = json!({
        "id": m.id.to_string(),
        "name": m.name,
        "email": m.email,
        "role": m.role,
        "status": m.status,
        "last_active": opt_ts(m.last_active),
        "created_at": ts(m.created_at),
    });
    if let Some(t) = m.expires_at {
        v["expires_at"] = Value::String(ts(t));
    }
    v
}

/// `GET /api/settings/team`: the active members, then the invitees.
#[utoipa::path(
    get,
    path = "/api/settings/team",
    operation_id = "settings_team",
    tag = "health-monitor",
    responses(
        (status = 200, body = hm::Data<hm::Team>, description = "Members, then invitees"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
pub async fn team(State(state): State<ApiState>, caller: Caller) -> ApiResult<impl IntoResponse> {
    caller.require("read")?;
    let tenant = caller.tenant();
    let rows = state.pg.run(|pg| settings::team(pg, tenant)).await?;
    let items: Vec<Value> = rows.iter().map(member_json).collect();
    Ok(ok(json!({ "members": items })))
}

/// A plausible address: one `@`, a non-empty local part, a dotted domain,
/// no spaces.
fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && s.len() <= EMAIL_MAX
}

/// `POST /api/settings/team/invite`: `{email, role}`; `201` with the
/// invitee, `409` when the email is already in the tenant.
#[utoipa::path(
    post,
    path = "/api/settings/team/invite",
    operation_id = "settings_invite",
    tag = "health-monitor",
    request_body(content = hm::InviteRequest, content_type = "application/json"),
    responses(
        (status = 201, body = hm::Data<hm::TeamMember>, description = "The invitee"),
        (status = 400, body = hm::HmError, description = "A parameter or the body is invalid"),
        (status = 409, body = hm::HmError, description = "The email is already in the team"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
pub async fn invite(
    State(state): State<ApiState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    caller.require("admin")?;
    let obj = required_object(&body)?;
    let email = match obj.get("email").and_then(Value::as_str).map(str::trim) {
        Some(e) if valid_email(e) => e.to_string(),
        _ => return Err(ApiError::BadRequest("email is not a valid address".into())),
    };
    let role = match obj.get("role").and_then(Value::as_str) {
        Some(r) if ROLES.contains(&r) => r.to_string(),
        _ => {
            return Err(ApiError::BadRequest(
                "role must be one of owner, admin, developer, viewer".into(),
            ))
        }
    };
    if role == "owner" {
        // Only an owner hands out `owner` (as on /api/v1/users).
        caller.require("owner")?;
    }
    let tenant = caller.tenant();
    let token = keys::token(INVITE_PREFIX);
    let token_hash = keys::hash(&token);
    let expires_at = Utc::now() + chrono::Duration::days(INVITE_TTL_DAYS);
    let row = state
        .pg
        .run(|pg| settings::invite(pg, tenant, &email, &role, &token_hash, expires_at))
        .await?
        .ok_or_else(|| ApiError::Conflict("this email is already in the team".into()))?;
    tracing::info!(member = %row.id, "team member invited");
    let mut v = member_json(&row);
    // The only answer that shows the token: only its hash is stored.
    v["invite_token"] = Value::String(token);
    Ok((StatusCode::CREATED, ok(v)))
}

/// The user of a Bearer access token, if the request has one; `401` for a
/// bad one.
fn bearer_user(state: &ApiState, headers: &HeaderMap) -> ApiResult<Option<Uuid>> {
    let Some(h) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let token = h
        .to_str()
        .ok()
        .and_then(|h| h.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or_else(|| ApiError::Unauthorized("expected a Bearer access token".into()))?;
    let claims = state
        .tokens
        .verify(token, "access")
        .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
    Ok(Some(claims.sub))
}

fn invitation_gone() -> ApiError {
    ApiError::NotFound("invitation not found, expired or already accepted".into())
}

/// `POST /api/settings/team/accept`: `{token, username, password,
/// full_name?}` creates the invitee's account, or `{token}` with the
/// Bearer access token of an existing account adds that user; either way
/// `201` with the member (the invited role, `active`) and its `tenant_id`.
/// The token is the credential: `404` when it is unknown, expired or used.
#[utoipa::path(
    post,
    path = "/api/settings/team/accept",
    operation_id = "settings_accept",
    tag = "health-monitor",
    request_body(content = hm::AcceptRequest, content_type = "application/json"),
    responses(
        (status = 201, body = hm::Data<hm::TeamMember>, description = "The new member, with `tenant_id`"),
        (status = 400, body = hm::HmError, description = "A field is missing or invalid"),
        (status = 401, body = hm::HmError, description = "A Bearer token that is invalid or expired"),
        (status = 404, body = hm::HmError, description = "The token is unknown, expired or used"),
        (status = 409, body = hm::HmError, description = "The username is taken, or the account is already a member"),
        (status = 503, body = hm::HmError, description = "A backing store is unavailable"),
    ),
    security((), ("bearerAuth" = []))
)]
#[tracing::instrument(skip_all)]
pub async fn accept(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let existing = bearer_user(&state, &headers)?;
    let obj = required_object(&body)?;
    let token = match obj.get("token") {
        Some(Value::String(t)) if !t.trim().is_empty() => t.trim().to_string(),
        _ => return Err(ApiError::BadRequest("token is required".into())),
    };
    let token_hash = keys::hash(&token);
    let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::trim);
    let new_user = match existing {
        Some(_) => None,
        None => {
            let username = text("username")
                .filter(|u| users::username_ok(u))
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "username must be 3 to 64 characters: letters, digits, . _ @ -".into(),
                    )
                })?;
            let password = obj
                .get("password")
                .and_then(Value::as_str)
                .filter(|p| (users::PASSWORD_MIN..=1024).contains(&p.chars().count()))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "password must have at least {} characters",
                        users::PASSWORD_MIN
                    ))
                })?;
            let full_name = match obj.get("full_name") {
                None | Some(Value::Null) => None,
                Some(Value::String(n)) if n.chars().count() <= NAME_MAX => Some(n.trim()),
                Some(_) => {
                    return Err(ApiError::BadRequest(format!(
                        "full_name must be a string of at most {NAME_MAX} characters"
                    )))
                }
            };
            Some((username.to_string(), password.to_string(), full_name))
        }
    };
    let th = token_hash.to_vec();
    if !state
        .pg
        .run(|pg| settings::invitation_pending(pg, &th))
        .await?
    {
        return Err(invitation_gone());
    }
    let password_hash = match &new_user {
        Some((_, pw, _)) => Some(users::hash(pw.clone()).await?),
        None => None,
    };
    let joiner = match (&new_user, &password_hash, existing) {
        (Some((username, _, full_name)), Some(hash), _) => Joiner::New {
            username,
            full_name: *full_name,
            password_hash: hash,
        },
        (_, _, Some(user)) => Joiner::Existing(user),
        _ => {
            return Err(ApiError::BadRequest(
                "username and password are required".into(),
            ))
        }
    };
    let pool = pool(&state).await?;
    let (tenant, row) = match settings::accept_invitation(&pool, &token_hash, joiner).await {
        Ok(Some(found)) => found,
        Ok(None) => return Err(invitation_gone()),
        Err(sluice_storage::StorageError::Invalid(m)) => return Err(ApiError::Conflict(m)),
        Err(e) => return Err(e.into()),
    };
    state.member_cache.invalidate(&(row.id, tenant)).await;
    tracing::info!(%tenant, member = %row.id, role = %row.role, "invitation accepted");
    let mut v = member_json(&row);
    v["tenant_id"] = Value::String(tenant.to_string());
    Ok((StatusCode::CREATED, ok(v)))
}

// ---- Integrations ----

/// The integrations every tenant has (configured or not).
const INTEGRATIONS: &[&str] = &["slack", "webhook", "email"];
/// Field names that are secrets whatever the integration.
const SECRET_NAMES: &[&str] = &["password", "token", "secret", "api_key", "webhook_url"];

/// At most the last 4 characters of a secret (none of a short one).
fn mask(v: &Value) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::String(s) => {
            let chars: Vec<char> = s.chars().collect();
            if chars.len() <= 8 {
                Value::String("****".into())
            } else {
                let tail: String = chars[chars.len() - 4..].iter().collect();
                Value::String(format!("****{tail}"))
            }
        }
        _ => Value::String("****".into()),
    }
}

fn is_secret(kind: &str, field: &str) -> bool {
    SECRET_NAMES.contains(&field) || registry::secret_fields(kind).contains(&field)
}

/// A stored integration's whole config (secrets opened).
fn open(state: &ApiState, row: &IntegrationRow) -> ApiResult<Map<String, Value>> {
    Ok(settings::open_config(&state.secrets, row)?)
}

fn integration_json(state: &ApiState, name: &str, row: Option<&IntegrationRow>) -> Value {
    let Some(row) = row else {
        return json!({"name": name, "status": "disconnected", "config": {}, "last_test": null});
    };
    let config: Map<String, Value> = match open(state, row) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(integration = name, error = %e, "integration secrets unreadable");
            match &row.config.0 {
                Value::Object(m) => m.clone(),
                _ => Map::new(),
            }
        }
    };
    let masked: Map<String, Value> = config
        .into_iter()
        .map(|(k, v)| {
            let v = if is_secret(name, &k) { mask(&v) } else { v };
            (k, v)
        })
        .collect();
    let status = if row.last_ok == Some(false) {
        "error"
    } else {
        "connected"
    };
    json!({
        "name": name,
        "status": status,
        "config": masked,
        "last_test": opt_ts(row.last_test),
    })
}

/// `GET /api/settings/integrations`: slack, webhook and email always.
#[utoipa::path(
    get,
    path = "/api/settings/integrations",
    operation_id = "settings_integrations",
    tag = "health-monitor",
    responses(
        (status = 200, body = hm::Data<hm::Integrations>, description = "slack, webhook and email, secrets masked"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
pub async fn integrations(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<impl IntoResponse> {
    caller.require("read")?;
    let tenant = caller.tenant();
    let rows = state
        .pg
        .run(|pg| settings::integrations(pg, tenant))
        .await?;
    let mut items: Vec<Value> = INTEGRATIONS
        .iter()
        .map(|n| integration_json(&state, n, rows.iter().find(|r| r.name == *n)))
        .collect();
    items.extend(
        rows.iter()
            .filter(|r| !INTEGRATIONS.contains(&r.name.as_str()))
            .map(|r| integration_json(&state, &r.name, Some(r))),
    );
    Ok(ok(json!({ "integrations": items })))
}

fn known(name: &str) -> ApiResult<&'static str> {
    INTEGRATIONS
        .iter()
        .copied()
        .find(|n| *n == name)
        .ok_or_else(|| ApiError::not_found("integration"))
}

/// `PUT /api/settings/integrations/{name}`: `{"config": {...}}`; `200`
/// with the integration, connected, its secrets masked.
#[utoipa::path(
    put,
    path = "/api/settings/integrations/{name}",
    operation_id = "settings_configure",
    tag = "health-monitor",
    params(("name" = String, Path, description = "slack, webhook or email")),
    request_body(content = hm::IntegrationRequest, content_type = "application/json"),
    responses(
        (status = 200, body = hm::Data<hm::Integration>, description = "Configured, secrets masked"),
        (status = 400, body = hm::HmError, description = "A parameter or the body is invalid"),
        (status = 404, body = hm::HmError, description = "No such integration"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant(), integration = %name))]
pub async fn configure(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    caller.require("admin")?;
    let kind = known(&name)?;
    let obj = required_object(&body)?;
    let Some(Value::Object(config)) = obj.get("config") else {
        return Err(ApiError::BadRequest("config must be an object".into()));
    };
    let config = registry::normalize(kind, config).map_err(|problems| {
        let text: Vec<String> = problems
            .iter()
            .map(|p| format!("config.{}: {}", p.field, p.msg))
            .collect();
        ApiError::BadRequest(text.join("; "))
    })?;
    let (public, sealed) = sluice_notify::seal_config(&state.secrets, kind, config)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let tenant = caller.tenant();
    let row = state
        .pg
        .run(|pg| settings::put_integration(pg, tenant, kind, public, sealed))
        .await?;
    tracing::info!("integration configured");
    Ok(ok(integration_json(&state, kind, Some(&row))))
}

/// `POST /api/settings/integrations/{name}/test`: sends a test message
/// through the product's channel of that type now; `200` with
/// `{"success": true, ...}` when delivered, `502` when not.
#[utoipa::path(
    post,
    path = "/api/settings/integrations/{name}/test",
    operation_id = "settings_test",
    tag = "health-monitor",
    params(("name" = String, Path, description = "slack, webhook or email")),
    responses(
        (status = 200, body = hm::Data<hm::IntegrationTest>, description = "A test message was delivered"),
        (status = 400, body = hm::HmError, description = "A parameter or the body is invalid"),
        (status = 404, body = hm::HmError, description = "No such integration"),
        (status = 502, body = hm::HmError, description = "The test message was not delivered"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant(), integration = %name))]
pub async fn test(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::response::Response> {
    caller.require("admin")?;
    let kind = known(&name)?;
    let tenant = caller.tenant();
    let row = state
        .pg
        .run(|pg| settings::integration(pg, tenant, kind))
        .await?
        .ok_or_else(|| ApiError::BadRequest(format!("the {kind} integration is not configured")))?;
    let config = open(&state, &row)?;
    let http = state
        .notify_http
        .clone()
        .ok_or_else(|| ApiError::BadRequest("the HTTP client could not be built".into()))?;
    let n = Notification::new(
        Level::Info,
        "Test notification",
        format!("Test message from Sluice Health Monitor ({kind} integration)"),
    )
    .with_details(json!({"integration": kind, "test": true}))
    .as_test();
    let outcome = match registry::build(kind, &config, &http) {
        Ok(ch) => ch.send(&n).await,
        Err(e) => Err(e),
    };
    let delivered = outcome.is_ok();
    state
        .pg
        .run(|pg| settings::record_test(pg, tenant, kind, delivered))
        .await?;
    let now = ts(Utc::now());
    match outcome {
        Ok(()) => Ok(ok(json!({
            "success": true,
            "integration": kind,
            "message": format!("test message delivered through {kind}"),
            "last_test": now,
        }))
        .into_response()),
        Err(e) => {
            tracing::info!(error = %e, "integration test failed");
            Ok((
                StatusCode::BAD_GATEWAY,
                axum::Json(json!({
                    "error": format!("test message not delivered: {e}"),
                    "status": "error",
                })),
            )
                .into_response())
        }
    }
}
