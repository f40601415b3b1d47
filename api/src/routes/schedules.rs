//! The Backup platform's schedules (`/api/v1/schedules`): CRUD of cron
//! schedules whose backups the workers' scheduler queues
//! (`sluice_jobs::schedules`).
//!
//! - `cron_expression` is five-field cron evaluated in `timezone` (IANA),
//!   both checked here (422 at their field); `next_run` is the first match
//!   after now, in UTC, and null while the schedule is disabled.
//! - `server_id` and `retention_policy_id` must be the caller's tenant's
//!   (404 otherwise, like an unknown id).
//! - Roles: `owner`, `admin` and `dba` create, change and delete
//!   schedules; every role reads them.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sluice_auth::principal::{Principal, Role};
use sluice_jobs::cron::{CronError, CronSchedule};
use sluice_storage::pg::schedules::{self, Schedule, ScheduleFields};
use sluice_storage::pg::{retention_policies, servers};

use crate::auth::Member;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::openapi::backup::schedules::{ScheduleRequest, ScheduleView};
use crate::openapi::backup::{BackupError, Deleted, MemberRefusals, Unprocessable};
use crate::validate::{object, Validator};
use crate::ApiState;

const COMPRESSIONS: &[&str] = &["zstd", "gzip", "none"];
const BACKUP_TYPES: &[&str] = &["full"];
const SHORT: usize = 255;

pub(crate) fn require_writer(p: &Principal, what: &str) -> ApiResult<()> {
    if matches!(p.role, Role::Owner | Role::Admin | Role::Dba) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "role {} may not change {what}",
            p.role.as_str()
        )))
    }
}

pub(crate) fn path_id(id: &str) -> ApiResult<i64> {
    id.parse::<i64>().map_err(|_| {
        ApiError::Fields(vec![FieldError {
            loc: vec!["path".into(), "id".into()],
            msg: "value is not a valid integer".into(),
            kind: "type_error.integer".into(),
        }])
    })
}

pub(crate) fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn schedule_json(s: &Schedule) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "server_id": s.server_id,
        "database_name": s.database_name,
        "cron_expression": s.cron_expression,
        "timezone": s.timezone,
        "backup_type": s.backup_type,
        "compression_type": s.compression_type,
        "encrypt": s.encrypt,
        "retention_policy_id": s.retention_policy_id,
        "enabled": s.enabled,
        "notify_on_success": s.notify_on_success,
        "notify_on_failure": s.notify_on_failure,
        "last_run": s.last_run.as_ref().map(rfc3339),
        "next_run": s.next_run.as_ref().map(rfc3339),
        "created_at": rfc3339(&s.created_at),
        "updated_at": rfc3339(&s.updated_at),
    })
}

async fn load(state: &ApiState, p: &Principal, id: i64) -> ApiResult<Schedule> {
    let tenant = p.tenant_id;
    state
        .pg
        .run(|pg| schedules::get(pg, tenant, id))
        .await?
        .ok_or_else(|| ApiError::not_found("schedule"))
}

/// Reads a create (`old` none) or partial update body; every failure a
/// 422. Answers the fields and the parsed schedule.
fn read_body(
    body: &[u8],
    old: Option<&ScheduleFields>,
) -> ApiResult<(ScheduleFields, CronSchedule)> {
    let obj = object(body)?;
    let mut v = Validator::new();
    let creating = old.is_none();
    let base = old.cloned().unwrap_or_else(|| ScheduleFields {
        timezone: "UTC".into(),
        backup_type: "full".into(),
        compression_type: "zstd".into(),
        encrypt: true,
        enabled: true,
        notify_on_failure: true,
        ..Default::default()
    });
    let keep = |f: crate::validate::Field<String>, old: &str| {
        if creating {
            f.value()
        } else {
            f.merge(Some(old.to_string()))
        }
    };
    let name = keep(v.string(&obj, &["name"], SHORT), &base.name);
    let name = v.require(name, &["name"]);
    let description = v
        .string(&obj, &["description"], 4096)
        .merge(base.description.clone());
    let server_id = v.int(&obj, &["server_id"], 1, i64::MAX);
    let server_id = if creating {
        server_id.value()
    } else {
        server_id.merge(Some(base.server_id))
    };
    let server_id = v.require(server_id, &["server_id"]);
    let database = keep(v.string(&obj, &["database_name"], 63), &base.database_name);
    let database = v.require(database, &["database_name"]);
    if let Some(d) = &database {
        if sluice_backup::engine::validate_database_name(d).is_err() {
            v.fail(FieldError::body(
                &["database_name"],
                "use 1 to 63 ASCII letters, digits, '_' or '-'",
                "value_error.str.regex",
            ));
        }
    }
    let cron = keep(
        v.string(&obj, &["cron_expression"], SHORT),
        &base.cron_expression,
    );
    let cron = v.require(cron, &["cron_expression"]);
    let tz = v
        .string(&obj, &["timezone"], 64)
        .merge(Some(base.timezone.clone()));
    let tz = v.require(tz, &["timezone"]);
    let backup_type = v
        .choice(&obj, &["backup_type"], BACKUP_TYPES)
        .merge(Some(base.backup_type.clone()));
    let backup_type = v.require(backup_type, &["backup_type"]);
    let compression = v
        .choice(&obj, &["compression_type"], COMPRESSIONS)
        .merge(Some(base.compression_type.clone()));
    let compression = v.require(compression, &["compression_type"]);
    let mut bool_field = |name: &str, old: bool| {
        let f = v.bool(&obj, &[name]);
        if f == crate::validate::Field::Null {
            v.fail(FieldError::missing(&[name]));
        }
        f.value().unwrap_or(old)
    };
    let encrypt = bool_field("encrypt", base.encrypt);
    let enabled = bool_field("enabled", base.enabled);
    let notify_on_success = bool_field("notify_on_success", base.notify_on_success);
    let notify_on_failure = bool_field("notify_on_failure", base.notify_on_failure);
    let policy = v
        .int(&obj, &["retention_policy_id"], 1, i64::MAX)
        .merge(base.retention_policy_id);
    let mut parsed = None;
    if let (Some(c), Some(z)) = (&cron, &tz) {
        match CronSchedule::parse(c, z) {
            Ok(s) => parsed = Some(s),
            Err(CronError::TimeZone(_)) => v.fail(FieldError::body(
                &["timezone"],
                format!("unknown time zone {z:?}; use an IANA name such as Europe/Berlin"),
                "value_error.timezone",
            )),
            Err(e @ CronError::Expression(_)) => {
                v.fail(FieldError::body(
                    &["cron_expression"],
                    e.to_string(),
                    "value_error.cron",
                ));
                // The zone may be wrong as well: say so at once.
                if sluice_jobs::cron::parse_timezone(z).is_err() {
                    v.fail(FieldError::body(
                        &["timezone"],
                        format!("unknown time zone {z:?}; use an IANA name such as Europe/Berlin"),
                        "value_error.timezone",
                    ));
                }
            }
        }
    }
    v.finish()?;
    let fields = ScheduleFields {
        name: name.unwrap_or_default(),
        description,
        server_id: server_id.unwrap_or_default(),
        database_name: database.unwrap_or_default(),
        cron_expression: cron.unwrap_or_default(),
        timezone: tz.unwrap_or_default(),
        backup_type: backup_type.unwrap_or_default(),
        compression_type: compression.unwrap_or_default(),
        encrypt,
        retention_policy_id: policy,
        enabled,
        notify_on_success,
        notify_on_failure,
    };
    let parsed = parsed
        .ok_or_else(|| ApiError::BadRequest("cron_expression and timezone are required".into()))?;
    Ok((fields, parsed))
}

/// The server and the policy a schedule names must be the tenant's.
async fn check_refs(state: &ApiState, p: &Principal, f: &ScheduleFields) -> ApiResult<()> {
    let tenant = p.tenant_id;
    let server = f.server_id;
    state
        .pg
        .run(|pg| servers::get(pg, tenant, server))
        .await?
        .ok_or_else(|| ApiError::not_found("server"))?;
    if let Some(policy) = f.retention_policy_id {
        state
            .pg
            .run(|pg| retention_policies::get(pg, tenant, policy))
            .await?
            .ok_or_else(|| ApiError::not_found("retention policy"))?;
    }
    Ok(())
}

fn next_run(f: &ScheduleFields, c: &CronSchedule) -> Option<DateTime<Utc>> {
    if f.enabled {
        c.next_after(Utc::now())
    } else {
        None
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/schedules",
    operation_id = "schedules_list",
    tag = "backup",
    responses(
        (status = 200, body = Vec<ScheduleView>, description = "Every schedule of the tenant"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn list(State(state): State<ApiState>, Member(p): Member) -> ApiResult<Json<Value>> {
    let tenant = p.tenant_id;
    let all = state.pg.run(|pg| schedules::list(pg, tenant)).await?;
    Ok(Json(Value::Array(all.iter().map(schedule_json).collect())))
}

/// A cron schedule of backups; `next_run` is computed in `timezone`.
#[utoipa::path(
    post,
    path = "/api/v1/schedules",
    operation_id = "schedules_create",
    tag = "backup",
    request_body(content = ScheduleRequest, content_type = "application/json"),
    responses(
        (status = 201, body = ScheduleView, description = "The schedule created"),
        (status = 404, body = BackupError, description = "No such server (server_id) or retention policy (retention_policy_id) in the tenant"),
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
    require_writer(&p, "schedules")?;
    let (f, cron) = read_body(&body, None)?;
    check_refs(&state, &p, &f).await?;
    let tenant = p.tenant_id;
    let next = next_run(&f, &cron);
    let s = state
        .pg
        .run(|pg| schedules::insert(pg, &state.job_namespace, tenant, &f, next))
        .await?;
    tracing::info!(schedule_id = s.id, cron = %s.cron_expression, tz = %s.timezone, "schedule created");
    Ok((StatusCode::CREATED, Json(schedule_json(&s))))
}

#[utoipa::path(
    get,
    path = "/api/v1/schedules/{id}",
    operation_id = "schedules_get_one",
    tag = "backup",
    params(("id" = i64, Path, description = "The schedule's id")),
    responses(
        (status = 200, body = ScheduleView, description = "The schedule"),
        (status = 404, body = BackupError, description = "No such schedule in the tenant"),
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
    let s = load(&state, &p, path_id(&id)?).await?;
    Ok(Json(schedule_json(&s)))
}

/// A partial update: fields present replace, absent keep.
#[utoipa::path(
    put,
    path = "/api/v1/schedules/{id}",
    operation_id = "schedules_update",
    tag = "backup",
    params(("id" = i64, Path, description = "The schedule's id")),
    request_body(content = ScheduleRequest, content_type = "application/json", description = "Any subset of the fields"),
    responses(
        (status = 200, body = ScheduleView, description = "The schedule updated"),
        (status = 404, body = BackupError, description = "No such schedule in the tenant"),
        (status = 404, body = BackupError, description = "No such server (server_id) or retention policy (retention_policy_id) in the tenant"),
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
    require_writer(&p, "schedules")?;
    let old = load(&state, &p, id).await?;
    let before = old.fields();
    let (f, cron) = read_body(&body, Some(&before))?;
    check_refs(&state, &p, &f).await?;
    // The next run moves only when the time it follows changed.
    let next = if f.enabled == before.enabled
        && f.cron_expression == before.cron_expression
        && f.timezone == before.timezone
        && old.next_run.is_some()
    {
        old.next_run
    } else {
        next_run(&f, &cron)
    };
    let tenant = p.tenant_id;
    let s = state
        .pg
        .run(|pg| schedules::update(pg, tenant, id, &f, next))
        .await?
        .ok_or_else(|| ApiError::not_found("schedule"))?;
    tracing::info!(schedule_id = id, "schedule updated");
    Ok(Json(schedule_json(&s)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/schedules/{id}",
    operation_id = "schedules_delete",
    tag = "backup",
    params(("id" = i64, Path, description = "The schedule's id")),
    responses(
        (status = 200, body = Deleted, description = "The schedule is gone"),
        (status = 404, body = BackupError, description = "No such schedule in the tenant"),
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
    require_writer(&p, "schedules")?;
    let tenant = p.tenant_id;
    if !state.pg.run(|pg| schedules::delete(pg, tenant, id)).await? {
        return Err(ApiError::not_found("schedule"));
    }
    tracing::info!(schedule_id = id, "schedule deleted");
    Ok(Json(json!({"id": id, "deleted": true})))
}
