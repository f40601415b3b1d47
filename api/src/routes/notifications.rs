//! The Backup platform's notification channels
//! (`/api/v1/notifications/...`): CRUD of a tenant's channels and a real
//! test delivery. Delivery itself is `sluice-notify`'s.
//!
//! - Every route acts in the Bearer caller's tenant; another tenant's
//!   channel answers 404 exactly like an unknown id and is never touched.
//! - Roles: `owner`, `admin` and `dba` create, update, delete and test
//!   channels; every role lists and reads them.
//! - Secrets (`password`, a webhook's `secret`, Slack's `webhook_url`) are
//!   sealed with the [`SecretBox`] before they are stored and never
//!   answered: a stored secret shows as `"********"`.
//! - `POST /notifications/test` really delivers (with the retries of
//!   `sluice-notify`) and answers 200 either way: `success: false` with
//!   the reason when the receiver refused or could not be reached.
//!
//! [`SecretBox`]: sluice_storage::secrets::SecretBox

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Map, Value};
use sluice_auth::principal::{Principal, Role};
use sluice_notify::{registry, Level, Notification, Notifier};
use sluice_storage::live::Publisher;
use sluice_storage::pg::notification_channels::{
    self as store, ChannelFields, NotificationChannel,
};

use crate::auth::Member;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::openapi::backup::admin::{
    ChannelRequest, ChannelTestOutcome, ChannelTestRequest, ChannelView,
};
use crate::openapi::backup::{BackupError, Deleted, MemberRefusals, Unprocessable};
use crate::validate::{object, Field, Validator};
use crate::ApiState;

/// What a stored secret shows as.
const MASK: &str = "********";
const NAME_MAX: usize = 255;
const MESSAGE_MAX: usize = 4000;
const CONFIG_MAX_BYTES: usize = 16 * 1024;

fn require_manager(p: &Principal) -> ApiResult<()> {
    if matches!(p.role, Role::Owner | Role::Admin | Role::Dba) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "role {} may not manage or test notification channels",
            p.role.as_str()
        )))
    }
}

fn channel_id(id: &str) -> ApiResult<i64> {
    id.parse::<i64>().map_err(|_| {
        ApiError::Fields(vec![FieldError {
            loc: vec!["path".into(), "id".into()],
            msg: "value is not a valid integer".into(),
            kind: "type_error.integer".into(),
        }])
    })
}

async fn pool(state: &ApiState) -> ApiResult<sqlx::PgPool> {
    Ok(state
        .pg
        .run(|pg| async move { Ok::<_, sluice_storage::StorageError>(pg.clone()) })
        .await?)
}

async fn load(state: &ApiState, p: &Principal, id: i64) -> ApiResult<NotificationChannel> {
    let tenant = p.tenant_id;
    state
        .pg
        .run(|pg| store::get(pg, tenant, id))
        .await?
        .ok_or_else(|| ApiError::not_found("notification channel"))
}

fn rfc3339(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The answer for a channel: its public config, each stored secret masked.
fn channel_json(state: &ApiState, c: &NotificationChannel) -> Value {
    let mut config = match &c.fields.config.0 {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    if let Ok(full) = sluice_notify::open_config(&state.secrets, c) {
        for field in registry::secret_fields(&c.fields.kind) {
            if full.contains_key(*field) {
                config.insert((*field).to_string(), json!(MASK));
            }
        }
    }
    json!({
        "id": c.id,
        "name": c.fields.name,
        "type": c.fields.kind,
        "is_enabled": c.fields.is_enabled,
        "config": config,
        "created_at": rfc3339(&c.created_at),
        "updated_at": rfc3339(&c.updated_at),
    })
}

/// Reads a create (`old` none) or partial update body into the fields to
/// store, secrets sealed; every failure is a 422.
fn read_body(
    state: &ApiState,
    body: &[u8],
    old: Option<&NotificationChannel>,
) -> ApiResult<ChannelFields> {
    let obj = object(body)?;
    let mut v = Validator::new();
    let name = v.string(&obj, &["name"], NAME_MAX);
    let kind = v.choice(&obj, &["type"], registry::KINDS);
    let enabled = v.bool(&obj, &["is_enabled"]);
    let given = v.object(&obj, &["config"]);
    if let Field::Set(c) = &given {
        if Value::Object((*c).clone()).to_string().len() > CONFIG_MAX_BYTES {
            v.fail(FieldError::body(
                &["config"],
                format!("config may take at most {CONFIG_MAX_BYTES} bytes of JSON"),
                "value_error.any_str.max_length",
            ));
        }
    }
    let (name, kind, enabled) = match old {
        None => (name.value(), kind.value(), enabled.value().unwrap_or(true)),
        Some(o) => (
            name.merge(Some(o.fields.name.clone())),
            kind.merge(Some(o.fields.kind.clone())),
            enabled.value().unwrap_or(o.fields.is_enabled),
        ),
    };
    let name = v.require(name, &["name"]);
    let kind = v.require(kind, &["type"]);
    let type_changed = match (old, &kind) {
        (Some(o), Some(k)) => o.fields.kind != *k,
        _ => false,
    };
    // The whole config: on update, the stored one (secrets opened) with the
    // given fields laid over it (null removes a field) — unless the type
    // changes, which starts afresh.
    let mut config = match old {
        Some(o) if !type_changed => sluice_notify::open_config(&state.secrets, o)
            .map_err(|e| ApiError::Validation(e.to_string()))?,
        _ => Map::new(),
    };
    match given {
        Field::Set(c) => {
            for (k, val) in c {
                if val.is_null() {
                    config.remove(k);
                } else {
                    config.insert(k.clone(), val.clone());
                }
            }
        }
        Field::Null | Field::Absent if old.is_none() => {
            v.require(None::<()>, &["config"]);
        }
        _ => {}
    }
    let mut normalized = None;
    if let Some(k) = &kind {
        match registry::normalize(k, &config) {
            Ok(m) => normalized = Some(m),
            Err(problems) => {
                for p in problems {
                    v.fail(FieldError::body(
                        &["config", p.field.as_str()],
                        p.msg,
                        p.kind,
                    ));
                }
            }
        }
    }
    v.finish()?;
    let kind = kind.unwrap_or_default();
    let (public, sealed) =
        sluice_notify::seal_config(&state.secrets, &kind, normalized.unwrap_or_default())
            .map_err(|e| ApiError::Validation(e.to_string()))?;
    Ok(ChannelFields {
        name: name.unwrap_or_default(),
        kind,
        is_enabled: enabled,
        config: sqlx::types::Json(public),
        secrets_sealed: sealed,
    })
}

#[utoipa::path(
    post,
    path = "/api/v1/notifications/channels",
    operation_id = "notification_channels_create",
    tag = "backup",
    request_body(content = ChannelRequest, content_type = "application/json"),
    responses(
        (status = 201, body = ChannelView, description = "The channel created"),
        (status = 400, body = BackupError, description = "A value could not be stored"),
        (status = 422, body = Unprocessable, description = "Fields at fault"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn create(
    State(state): State<ApiState>,
    Member(p): Member,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_manager(&p)?;
    let fields = read_body(&state, &body, None)?;
    let tenant = p.tenant_id;
    let c = state
        .pg
        .run(|pg| store::insert(pg, tenant, &fields))
        .await?;
    tracing::info!(channel_id = c.id, tenant = %tenant, kind = %c.fields.kind, "notification channel created");
    Ok((StatusCode::CREATED, Json(channel_json(&state, &c))))
}

#[utoipa::path(
    get,
    path = "/api/v1/notifications/channels",
    operation_id = "notification_channels_list",
    tag = "backup",
    responses(
        (status = 200, body = Vec<ChannelView>, description = "Every channel of the tenant"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn list(State(state): State<ApiState>, Member(p): Member) -> ApiResult<Json<Value>> {
    let tenant = p.tenant_id;
    let all = state.pg.run(|pg| store::list(pg, tenant)).await?;
    Ok(Json(Value::Array(
        all.iter().map(|c| channel_json(&state, c)).collect(),
    )))
}

#[utoipa::path(
    get,
    path = "/api/v1/notifications/channels/{id}",
    operation_id = "notification_channels_get_one",
    tag = "backup",
    params(("id" = i64, Path, description = "The channel's id")),
    responses(
        (status = 200, body = ChannelView, description = "The channel"),
        (status = 404, body = BackupError, description = "No such channel in the tenant"),
        (status = 422, body = Unprocessable, description = "An id that is not an integer"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn get_one(
    State(state): State<ApiState>,
    Member(p): Member,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let c = load(&state, &p, channel_id(&id)?).await?;
    Ok(Json(channel_json(&state, &c)))
}

/// A partial update: fields present replace, absent keep.
#[utoipa::path(
    put,
    path = "/api/v1/notifications/channels/{id}",
    operation_id = "notification_channels_update",
    tag = "backup",
    params(("id" = i64, Path, description = "The channel's id")),
    request_body(content = ChannelRequest, content_type = "application/json", description = "Any subset of the fields"),
    responses(
        (status = 200, body = ChannelView, description = "The channel updated"),
        (status = 400, body = BackupError, description = "A value could not be stored"),
        (status = 404, body = BackupError, description = "No such channel in the tenant"),
        (status = 422, body = Unprocessable, description = "Fields at fault, or an id that is not an integer"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn update(
    State(state): State<ApiState>,
    Member(p): Member,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let id = channel_id(&id)?;
    require_manager(&p)?;
    let old = load(&state, &p, id).await?;
    let fields = read_body(&state, &body, Some(&old))?;
    let tenant = p.tenant_id;
    let c = state
        .pg
        .run(|pg| store::update(pg, tenant, id, &fields))
        .await?
        .ok_or_else(|| ApiError::not_found("notification channel"))?;
    tracing::info!(channel_id = id, tenant = %tenant, "notification channel updated");
    Ok(Json(channel_json(&state, &c)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/notifications/channels/{id}",
    operation_id = "notification_channels_delete",
    tag = "backup",
    params(("id" = i64, Path, description = "The channel's id")),
    responses(
        (status = 200, body = Deleted, description = "The channel is gone"),
        (status = 404, body = BackupError, description = "No such channel in the tenant"),
        (status = 422, body = Unprocessable, description = "An id that is not an integer"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn delete(
    State(state): State<ApiState>,
    Member(p): Member,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = channel_id(&id)?;
    require_manager(&p)?;
    let tenant = p.tenant_id;
    if !state.pg.run(|pg| store::delete(pg, tenant, id)).await? {
        return Err(ApiError::not_found("notification channel"));
    }
    tracing::info!(channel_id = id, tenant = %tenant, "notification channel deleted");
    Ok(Json(json!({"id": id, "deleted": true})))
}

/// Really delivers a message through a channel.
#[utoipa::path(
    post,
    path = "/api/v1/notifications/test",
    operation_id = "notifications_test",
    tag = "backup",
    request_body(content = ChannelTestRequest, content_type = "application/json"),
    responses(
        (status = 200, body = ChannelTestOutcome, description = "Delivered (success true), or why not (success false)"),
        (status = 404, body = BackupError, description = "No such channel (channel_id) in the tenant"),
        (status = 422, body = Unprocessable, description = "Fields at fault"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn test(
    State(state): State<ApiState>,
    Member(p): Member,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    require_manager(&p)?;
    let obj = object(&body)?;
    let mut v = Validator::new();
    let id = v.int(&obj, &["channel_id"], 1, i64::MAX).value();
    let id = v.require(id, &["channel_id"]);
    let message = v
        .string(&obj, &["message"], MESSAGE_MAX)
        .value()
        .unwrap_or_else(|| "Test notification from Sluice".to_string());
    v.finish()?;
    let c = load(&state, &p, id.unwrap_or_default()).await?;
    let Some(http) = state.notify_http.clone() else {
        return Ok(Json(json!({
            "success": false,
            "message": "notifications cannot be sent: the HTTP client could not be built",
        })));
    };
    let notifier = Notifier::new(
        pool(&state).await?,
        state.secrets.clone(),
        Publisher::new(state.redis.clone(), state.layout.prefix.clone()),
        http,
    );
    let n = Notification::new(Level::Info, "Test notification", message).with_details(json!({
        "channel_id": c.id,
        "channel_name": c.fields.name,
        "test": true,
    }));
    let o = notifier.test(&c, &n).await;
    let text = match &o.error {
        None => format!(
            "Test notification delivered through {} channel '{}'",
            c.fields.kind, c.fields.name
        ),
        Some(e) => format!("Delivery failed after {} attempt(s): {e}", o.attempts),
    };
    Ok(Json(json!({
        "success": o.delivered,
        "message": text,
        "attempts": o.attempts,
    })))
}
