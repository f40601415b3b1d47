//! Error groups: list, read, resolve, delete.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use sluice_storage::ch::events;
use sluice_storage::limits;
use sluice_storage::live::Publisher;
use sluice_storage::model::{ErrorGroup, Level};
use sluice_storage::pg::error_groups::{self, ListFilter};
use uuid::Uuid;

use super::Params;
use crate::auth::Caller;
use crate::error::{ok, ok_of, ApiError, ApiResult, Envelope};
use crate::openapi::health_monitor as hm;
use crate::ApiState;

fn summary(g: &ErrorGroup) -> Value {
    json!({
        "id": g.id,
        "timestamp": g.timestamp,
        "level": g.level,
        "message": g.message,
        "source": g.source,
        "resolved": g.resolved,
        "count": g.count,
        "fingerprint": g.fingerprint,
        "first_seen": g.first_seen,
        "last_seen": g.last_seen,
    })
}

/// Longest `search` text accepted, in characters.
const MAX_SEARCH_CHARS: usize = 500;

fn parse_id(id: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found("error"))
}

/// The list's filters (`level`, `source`, `resolved`, `search`), shared
/// with the export. `search` matches the message and the stack trace.
pub fn list_filter(params: &Params) -> ApiResult<ListFilter> {
    let level = match params.str("level") {
        None => None,
        Some(l) => Some(
            Level::parse(l)
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "level must be one of error, warning, info, debug, critical".into(),
                    )
                })?
                .as_str()
                .to_string(),
        ),
    };
    Ok(ListFilter {
        level,
        source: params
            .bounded("source", limits::MAX_SOURCE_BYTES)?
            .map(str::to_string),
        resolved: params.bool("resolved")?,
        search: params
            .bounded("search", MAX_SEARCH_CHARS)?
            .map(str::to_string),
    })
}

#[utoipa::path(
    get,
    path = "/api/errors",
    operation_id = "errors_list",
    tag = "health-monitor",
    params(hm::ErrorFilter, hm::Paging),
    responses(
        (status = 200, body = hm::Data<hm::ErrorList>, description = "A page of error groups, most recent first"),
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
    caller.require("read")?;
    let limit = params.int("limit", 50, 1, 100)?;
    let offset = params.int("offset", 0, 0, i64::MAX)?;
    let filter = list_filter(&params)?;
    let (rows, total) = state
        .pg
        .run(|pg| error_groups::list(pg, caller.tenant(), &filter, limit, offset))
        .await?;
    Ok(ok(json!({
        "errors": rows.iter().map(summary).collect::<Vec<_>>(),
        "total": total,
        "page": (offset / limit).saturating_add(1),
        "limit": limit,
        "offset": offset,
    })))
}

#[utoipa::path(
    get,
    path = "/api/errors/{id}",
    operation_id = "errors_get_one",
    tag = "health-monitor",
    params(("id" = String, Path, description = "The error group's id (a UUID)")),
    responses(
        (status = 200, body = hm::Data<hm::ErrorObject>, description = "The error group"),
        (status = 404, body = hm::HmError, description = "No such error group in the tenant"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
pub async fn get_one(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Envelope<ErrorGroup>>> {
    caller.require("read")?;
    let id = parse_id(&id)?;
    let group = state
        .pg
        .run(|pg| error_groups::get(pg, caller.tenant(), id))
        .await?
        .ok_or_else(|| ApiError::not_found("error"))?;
    Ok(ok_of(group))
}

#[utoipa::path(
    put,
    path = "/api/errors/{id}/resolve",
    operation_id = "errors_resolve",
    tag = "health-monitor",
    params(("id" = String, Path, description = "The error group's id (a UUID)")),
    responses(
        (status = 200, body = hm::Data<hm::ResolvedAnswer>, description = "Resolved (`error_resolved` is published on /ws)"),
        (status = 404, body = hm::HmError, description = "No such error group in the tenant"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
pub async fn resolve(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require("write")?;
    let id = parse_id(&id)?;
    if !state
        .pg
        .run(|pg| error_groups::resolve(pg, caller.tenant(), id))
        .await?
    {
        return Err(ApiError::not_found("error"));
    }
    // `error_resolved` on the tenant's /ws; the resolve stands either way.
    let live = Publisher::new(state.redis.clone(), state.layout.prefix.clone());
    if let Err(e) = live
        .publish(caller.tenant(), "error_resolved", &json!({"id": id}))
        .await
    {
        tracing::warn!(error = %e, group = %id, "publishing error_resolved failed");
    }
    Ok(ok(json!({"status": "resolved"})))
}

#[utoipa::path(
    delete,
    path = "/api/errors/{id}",
    operation_id = "errors_delete",
    tag = "health-monitor",
    params(("id" = String, Path, description = "The error group's id (a UUID)")),
    responses(
        (status = 204, description = "Deleted, with its occurrences"),
        (status = 404, body = hm::HmError, description = "No such error group in the tenant"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require("write")?;
    let id = parse_id(&id)?;
    if !state
        .pg
        .run(|pg| error_groups::delete(pg, caller.tenant(), id))
        .await?
    {
        return Err(ApiError::not_found("error"));
    }
    // The occurrences go too; rollups keep their counts, as history.
    if let Err(e) = state
        .ch
        .run(|ch| events::delete_group(ch, caller.tenant(), id))
        .await
    {
        tracing::warn!(error = %e, group = %id, "deleting occurrences from clickhouse failed");
    }
    Ok(StatusCode::NO_CONTENT)
}
