//! `GET /api/admin/dead-letters`, `POST /api/admin/dead-letters/{id}/replay`,
//! `DELETE /api/admin/dead-letters/{id}`: the caller's tenant's dead
//! letters (events the stores refused), for an `X-API-Key` with the
//! `admin` permission. The logic is in [`sluice_storage::dead_letters`].

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use sluice_storage::dead_letters::{self, DeadId, ListFilter};
use sluice_storage::StorageError;

use super::Params;
use crate::auth::Caller;
use crate::error::{ok, ApiError, ApiResult};
use crate::openapi::health_monitor as hm;
use crate::ApiState;

fn parse_id(id: &str) -> ApiResult<DeadId> {
    DeadId::parse(id).ok_or_else(|| ApiError::not_found("dead letter"))
}

async fn conn(state: &ApiState) -> ApiResult<deadpool_redis::Connection> {
    Ok(state.redis.get().await.map_err(StorageError::from)?)
}

#[utoipa::path(
    get,
    path = "/api/admin/dead-letters",
    operation_id = "dead_letters_list",
    tag = "health-monitor",
    params(("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "Default 50"), ("before" = Option<String>, Query, description = "`next_before` of the previous page")),
    responses(
        (status = 200, body = hm::Data<hm::DeadLetters>, description = "Events the stores refused, newest first"),
        (status = 400, body = hm::HmError, description = "A parameter or the body is invalid"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    params: Params,
) -> ApiResult<Json<Value>> {
    caller.require("admin")?;
    let limit = params.int("limit", 50, 1, 1000)?;
    let filter = ListFilter {
        tenant_id: Some(caller.tenant()),
        before: params.str("before").map(str::to_string),
        limit: limit as usize,
    };
    let mut c = conn(&state).await?;
    let letters = dead_letters::list(&mut c, &state.layout, &filter).await?;
    // the next page starts before the oldest of this one
    let next = letters
        .last()
        .filter(|_| letters.len() == filter.limit)
        .and_then(|d| DeadId::parse(&d.id))
        .map(|d| d.entry);
    Ok(ok(json!({
        "dead_letters": letters,
        "count": letters.len(),
        "limit": limit,
        "next_before": next,
    })))
}

#[utoipa::path(
    post,
    path = "/api/admin/dead-letters/{id}/replay",
    operation_id = "dead_letters_replay",
    tag = "health-monitor",
    params(("id" = String, Path, description = "The dead letter's id")),
    responses(
        (status = 200, body = hm::Data<hm::Replayed>, description = "Appended to its stream again"),
        (status = 404, body = hm::HmError, description = "No such dead letter in the tenant"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
pub async fn replay(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require("admin")?;
    let id = parse_id(&id)?;
    let mut c = conn(&state).await?;
    let entry = dead_letters::replay(&mut c, &state.layout, &id, Some(caller.tenant()))
        .await?
        .ok_or_else(|| ApiError::not_found("dead letter"))?;
    tracing::info!(tenant = %caller.tenant(), dead_letter = ?id, %entry, "dead letter replayed");
    Ok(ok(json!({"status": "replayed", "entry_id": entry})))
}

#[utoipa::path(
    delete,
    path = "/api/admin/dead-letters/{id}",
    operation_id = "dead_letters_drop",
    tag = "health-monitor",
    params(("id" = String, Path, description = "The dead letter's id")),
    responses(
        (status = 204, description = "Dropped"),
        (status = 404, body = hm::HmError, description = "No such dead letter in the tenant"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
pub async fn drop(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require("admin")?;
    let id = parse_id(&id)?;
    let mut c = conn(&state).await?;
    if !dead_letters::drop(&mut c, &state.layout, &id, Some(caller.tenant())).await? {
        return Err(ApiError::not_found("dead letter"));
    }
    tracing::info!(tenant = %caller.tenant(), dead_letter = ?id, "dead letter dropped");
    Ok(StatusCode::NO_CONTENT)
}
