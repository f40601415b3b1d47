//! The Backup platform's retention policies (`/api/v1/retention-policies`):
//! CRUD of restic-style keep rules, and a dry run answering which of a
//! database's completed backups a policy would delete now and which rule
//! keeps each of the others. The deleting itself is the workers' retention
//! sweep (`sluice_jobs::sweep`).
//!
//! - A rule not given is null; a rule is a whole number >= 0 (negative or
//!   not an integer: 422 at its field); `name` is required.
//! - Roles: `owner`, `admin` and `dba` create, change and delete policies;
//!   every role reads them and asks for dry runs.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};
use sluice_auth::principal::Principal;
use sluice_jobs::sweep;
use sluice_storage::pg::backups;
use sluice_storage::pg::retention_policies::{self, Policy, PolicyFields};
use sluice_storage::pg::servers;

use crate::auth::Member;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::openapi::backup::schedules::{DryRun, PolicyRequest, PolicyView};
use crate::openapi::backup::{BackupError, Deleted, MemberRefusals, Unprocessable};
use crate::routes::schedules::{path_id, require_writer, rfc3339};
use crate::routes::Params;
use crate::validate::{object, Validator};
use crate::ApiState;

const RULES: [&str; 5] = [
    "keep_last_n",
    "keep_days",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
];
/// The largest value a rule takes (about 270 years of days).
const RULE_MAX: i64 = 100_000;

fn policy_json(p: &Policy) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "description": p.description,
        "keep_last_n": p.keep_last_n,
        "keep_days": p.keep_days,
        "keep_daily": p.keep_daily,
        "keep_weekly": p.keep_weekly,
        "keep_monthly": p.keep_monthly,
        "created_at": rfc3339(&p.created_at),
        "updated_at": rfc3339(&p.updated_at),
    })
}

async fn load(state: &ApiState, p: &Principal, id: i64) -> ApiResult<Policy> {
    let tenant = p.tenant_id;
    state
        .pg
        .run(|pg| retention_policies::get(pg, tenant, id))
        .await?
        .ok_or_else(|| ApiError::not_found("retention policy"))
}

/// Reads a create (`old` none) or partial update body; every failure a 422.
fn read_body(body: &[u8], old: Option<&PolicyFields>) -> ApiResult<PolicyFields> {
    let obj = object(body)?;
    let mut v = Validator::new();
    let base = old.cloned().unwrap_or_default();
    let name = v.string(&obj, &["name"], 255);
    let name = match old {
        None => name.value(),
        Some(o) => name.merge(Some(o.name.clone())),
    };
    let name = v.require(name, &["name"]);
    let description = v
        .string(&obj, &["description"], 4096)
        .merge(base.description.clone());
    let olds = [
        base.keep_last_n,
        base.keep_days,
        base.keep_daily,
        base.keep_weekly,
        base.keep_monthly,
    ];
    let mut rules = [None; 5];
    for (i, rule) in RULES.iter().enumerate() {
        rules[i] = v
            .int(&obj, &[rule], 0, RULE_MAX)
            .merge(olds[i].map(i64::from))
            .and_then(|n| i32::try_from(n).ok());
    }
    v.finish()?;
    Ok(PolicyFields {
        name: name.unwrap_or_default(),
        description,
        keep_last_n: rules[0],
        keep_days: rules[1],
        keep_daily: rules[2],
        keep_weekly: rules[3],
        keep_monthly: rules[4],
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/retention-policies",
    operation_id = "retention_policies_list",
    tag = "backup",
    responses(
        (status = 200, body = Vec<PolicyView>, description = "Every retention policy of the tenant"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn list(State(state): State<ApiState>, Member(p): Member) -> ApiResult<Json<Value>> {
    let tenant = p.tenant_id;
    let all = state
        .pg
        .run(|pg| retention_policies::list(pg, tenant))
        .await?;
    Ok(Json(Value::Array(all.iter().map(policy_json).collect())))
}

#[utoipa::path(
    post,
    path = "/api/v1/retention-policies",
    operation_id = "retention_policies_create",
    tag = "backup",
    request_body(content = PolicyRequest, content_type = "application/json"),
    responses(
        (status = 201, body = PolicyView, description = "The retention policy created"),
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
    require_writer(&p, "retention policies")?;
    let f = read_body(&body, None)?;
    let tenant = p.tenant_id;
    let policy = state
        .pg
        .run(|pg| retention_policies::insert(pg, tenant, &f))
        .await?;
    tracing::info!(policy_id = policy.id, "retention policy created");
    Ok((StatusCode::CREATED, Json(policy_json(&policy))))
}

#[utoipa::path(
    get,
    path = "/api/v1/retention-policies/{id}",
    operation_id = "retention_policies_get_one",
    tag = "backup",
    params(("id" = i64, Path, description = "The policy's id")),
    responses(
        (status = 200, body = PolicyView, description = "The retention policy"),
        (status = 404, body = BackupError, description = "No such retention policy in the tenant"),
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
    let policy = load(&state, &p, path_id(&id)?).await?;
    Ok(Json(policy_json(&policy)))
}

/// A partial update: fields present replace, absent keep.
#[utoipa::path(
    put,
    path = "/api/v1/retention-policies/{id}",
    operation_id = "retention_policies_update",
    tag = "backup",
    params(("id" = i64, Path, description = "The policy's id")),
    request_body(content = PolicyRequest, content_type = "application/json", description = "Any subset of the fields"),
    responses(
        (status = 200, body = PolicyView, description = "The retention policy updated"),
        (status = 404, body = BackupError, description = "No such retention policy in the tenant"),
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
    let id = path_id(&id)?;
    require_writer(&p, "retention policies")?;
    let old = load(&state, &p, id).await?;
    let f = read_body(&body, Some(&old.fields()))?;
    let tenant = p.tenant_id;
    let policy = state
        .pg
        .run(|pg| retention_policies::update(pg, tenant, id, &f))
        .await?
        .ok_or_else(|| ApiError::not_found("retention policy"))?;
    tracing::info!(policy_id = id, "retention policy updated");
    Ok(Json(policy_json(&policy)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/retention-policies/{id}",
    operation_id = "retention_policies_delete",
    tag = "backup",
    params(("id" = i64, Path, description = "The policy's id")),
    responses(
        (status = 200, body = Deleted, description = "The retention policy is gone"),
        (status = 404, body = BackupError, description = "No such retention policy in the tenant"),
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
    let id = path_id(&id)?;
    require_writer(&p, "retention policies")?;
    let tenant = p.tenant_id;
    if !state
        .pg
        .run(|pg| retention_policies::delete(pg, tenant, id))
        .await?
    {
        return Err(ApiError::not_found("retention policy"));
    }
    tracing::info!(policy_id = id, "retention policy deleted");
    Ok(Json(json!({"id": id, "deleted": true})))
}

/// `GET /retention-policies/{id}/dry-run?server_id=&database_name=`.
#[utoipa::path(
    get,
    path = "/api/v1/retention-policies/{id}/dry-run",
    operation_id = "retention_policies_dry_run",
    tag = "backup",
    params(("id" = i64, Path, description = "The policy's id"),
        ("server_id" = i64, Query, description = "The server whose backups are judged"),
        ("database_name" = String, Query, pattern = "^[A-Za-z0-9_-]{1,63}$", description = "The database whose backups are judged"),),
    responses(
        (status = 200, body = DryRun, description = "What the policy keeps and deletes"),
        (status = 400, body = BackupError, description = "A malformed query string"),
        (status = 404, body = BackupError, description = "No such policy, or no such server, in the tenant"),
        (status = 422, body = Unprocessable, description = "Query parameters at fault, or an id that is not an integer"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn dry_run(
    State(state): State<ApiState>,
    Member(p): Member,
    Path(id): Path<String>,
    q: Params,
) -> ApiResult<Json<Value>> {
    let id = path_id(&id)?;
    let mut errors = Vec::new();
    let query_error = |name: &str, msg: &str, kind: &str| FieldError {
        loc: vec!["query".into(), name.into()],
        msg: msg.into(),
        kind: kind.into(),
    };
    let server_id = match q.str("server_id").map(str::parse::<i64>) {
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            errors.push(query_error(
                "server_id",
                "value is not a valid integer",
                "type_error.integer",
            ));
            None
        }
        None => {
            errors.push(query_error(
                "server_id",
                "field required",
                "value_error.missing",
            ));
            None
        }
    };
    let database = q.str("database_name").map(str::to_owned);
    match &database {
        None => errors.push(query_error(
            "database_name",
            "field required",
            "value_error.missing",
        )),
        Some(d) if sluice_backup::engine::validate_database_name(d).is_err() => {
            errors.push(query_error(
                "database_name",
                "use 1 to 63 ASCII letters, digits, '_' or '-'",
                "value_error.str.regex",
            ))
        }
        Some(_) => {}
    }
    let (Some(server_id), Some(database), true) = (server_id, database, errors.is_empty()) else {
        return Err(ApiError::Fields(errors));
    };
    let policy = load(&state, &p, id).await?;
    let tenant = p.tenant_id;
    state
        .pg
        .run(|pg| servers::get(pg, tenant, server_id))
        .await?
        .ok_or_else(|| ApiError::not_found("server"))?;
    let completed = state
        .pg
        .run(|pg| backups::completed_of_database(pg, tenant, server_id, &database))
        .await?;
    let now = Utc::now();
    let times: Vec<_> = completed.iter().map(|b| (b.id, b.created_at)).collect();
    let kept = sweep::rules(&policy).keep(&times, now);
    let mut keep = Vec::new();
    let mut delete = Vec::new();
    for b in &completed {
        match kept.get(&b.id) {
            Some(reasons) => keep.push(json!({
                "id": b.id,
                "created_at": rfc3339(&b.created_at),
                "size_bytes": b.size_bytes,
                "kept_by": reasons.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            })),
            None => delete.push(json!({
                "id": b.id,
                "created_at": rfc3339(&b.created_at),
                "size_bytes": b.size_bytes,
            })),
        }
    }
    Ok(Json(json!({
        "policy_id": policy.id,
        "server_id": server_id,
        "database_name": database,
        "evaluated_at": rfc3339(&now),
        "keep": keep,
        "delete": delete,
    })))
}
