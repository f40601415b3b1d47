//! The Backup platform's saved commands (`/api/v1/commands`): CRUD, and
//! executions queued as `command` jobs (`sluice-jobs`), which run the
//! substituted template with `sh -c` on the server's transport.
//!
//! - Substitution happens here, when execution is asked: every `{{name}}`
//!   becomes exactly one shell word (`sluice_jobs::template`), a variable
//!   the template names but `variables` lacks is a 422 at
//!   `["body", "variables", "<name>"]`, extra variables are ignored. The
//!   execution records the substituted `command_text`.
//! - Roles: `owner`, `admin` and `dba` create, change, delete and execute
//!   commands; `operator` executes them; `developer` and `viewer` only read
//!   (commands and executions). An API key's role follows its permissions.
//! - Another tenant's command, execution or server is 404, like an unknown
//!   id, and is never touched.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sluice_auth::principal::{Principal, Role, Subject};
use sluice_jobs::commands::CommandJob;
use sluice_jobs::queue::{self, Kind};
use sluice_jobs::template;
use sluice_storage::pg::commands::{self, Command, CommandFields, Execution, NewExecution};
use sluice_storage::pg::{servers, users};

use crate::audit::AuditNote;
use crate::auth::Member;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::openapi::backup::commands::{
    CommandRequest, CommandView, ExecuteRequest, ExecutionQueued, ExecutionView,
};
use crate::openapi::backup::{BackupError, Deleted, MemberRefusals, Unprocessable};
use crate::routes::Params;
use crate::validate::{object, Field, Validator};
use crate::ApiState;

/// `shell` runs with `sh -c` on the server; `docker` (the contract's
/// example type) is the same: its template calls `docker` itself.
const KINDS: &[&str] = &["shell", "docker"];
const SHORT: usize = 255;
const TEMPLATE_MAX: usize = 64 * 1024;
const VALUE_MAX: usize = 64 * 1024;
const VARIABLES_MAX: usize = 256;
/// The longest substituted command (well under any `ARG_MAX`).
const TEXT_MAX: usize = 256 * 1024;

const EDITORS: &[Role] = &[Role::Owner, Role::Admin, Role::Dba];
const RUNNERS: &[Role] = &[Role::Owner, Role::Admin, Role::Dba, Role::Operator];

fn require(p: &Principal, roles: &[Role], what: &str) -> ApiResult<()> {
    if roles.contains(&p.role) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "role {} may not {what}",
            p.role.as_str()
        )))
    }
}

fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn path_id(id: &str) -> ApiResult<i64> {
    id.parse::<i64>().map_err(|_| {
        ApiError::Fields(vec![FieldError {
            loc: vec!["path".into(), "id".into()],
            msg: "value is not a valid integer".into(),
            kind: "type_error.integer".into(),
        }])
    })
}

fn command_json(c: &Command) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "description": c.description,
        "command_template": c.command_template,
        "type": c.kind,
        "tags": c.tags,
        "variables": template::variables(&c.command_template).into_iter().collect::<Vec<_>>(),
        "created_by": c.created_by,
        "created_at": rfc3339(&c.created_at),
        "updated_at": rfc3339(&c.updated_at),
    })
}

fn execution_json(e: &Execution) -> Value {
    json!({
        "id": e.id,
        "command_id": e.command_id,
        "server_id": e.server_id,
        "command_text": e.command_text,
        "status": e.status,
        "exit_code": e.exit_code,
        "stdout": e.stdout,
        "stderr": e.stderr,
        "stdout_truncated_bytes": e.stdout_dropped_bytes,
        "stderr_truncated_bytes": e.stderr_dropped_bytes,
        "error_message": e.error_message,
        "duration_seconds": e.duration_seconds,
        "executed_by": e.executed_by,
        "started_at": e.started_at.as_ref().map(rfc3339),
        "completed_at": e.completed_at.as_ref().map(rfc3339),
        "created_at": rfc3339(&e.created_at),
        "task_id": e.task_id,
    })
}

async fn load(state: &ApiState, p: &Principal, id: i64) -> ApiResult<Command> {
    let tenant = p.tenant_id;
    state
        .pg
        .run(|pg| commands::get(pg, tenant, id))
        .await?
        .ok_or_else(|| ApiError::not_found("command"))
}

/// Who the caller is, by name (a user's username; an API key as
/// `api-key:<id>`), and the user's id.
async fn caller_name(state: &ApiState, p: &Principal) -> ApiResult<(String, Option<uuid::Uuid>)> {
    match p.subject {
        Subject::User(id) => {
            let user = state.pg.run(|pg| users::by_id(pg, id)).await?;
            let name = user
                .map(|u| u.username)
                .unwrap_or_else(|| format!("user:{id}"));
            Ok((name, Some(id)))
        }
        Subject::ApiKey(id) => Ok((format!("api-key:{id}"), None)),
    }
}

/// Reads a create (`old` none) or partial update body; failures are 422s.
fn read_body(body: &[u8], old: Option<&Command>) -> ApiResult<CommandFields> {
    let obj = object(body)?;
    let mut v = Validator::new();
    let name = v.string(&obj, &["name"], SHORT);
    let tpl = v.string(&obj, &["command_template"], TEMPLATE_MAX);
    let kind = v.choice(&obj, &["type"], KINDS);
    let description = v.string(&obj, &["description"], 4096);
    let tags = v.string(&obj, &["tags"], 1024);
    let fields = match old {
        None => CommandFields {
            name: v.require(name.value(), &["name"]).unwrap_or_default(),
            command_template: v
                .require(tpl.value(), &["command_template"])
                .unwrap_or_default(),
            kind: kind.value().unwrap_or_else(|| "shell".into()),
            description: description.value(),
            tags: tags.value(),
        },
        Some(c) => {
            // Present-but-null on a required field is refused; absent keeps it.
            let name = v.require(name.merge(Some(c.name.clone())), &["name"]);
            let tpl = v.require(
                tpl.merge(Some(c.command_template.clone())),
                &["command_template"],
            );
            CommandFields {
                name: name.unwrap_or_default(),
                command_template: tpl.unwrap_or_default(),
                kind: match kind {
                    Field::Set(k) => k,
                    _ => c.kind.clone(),
                },
                description: description.merge(c.description.clone()),
                tags: tags.merge(c.tags.clone()),
            }
        }
    };
    v.finish()?;
    Ok(fields)
}

#[utoipa::path(
    post,
    path = "/api/v1/commands",
    operation_id = "commands_create",
    tag = "backup",
    request_body(content = CommandRequest, content_type = "application/json"),
    responses(
        (status = 201, body = CommandView, description = "The command created"),
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
    require(&p, EDITORS, "create commands")?;
    let fields = read_body(&body, None)?;
    let (by, by_id) = caller_name(&state, &p).await?;
    let tenant = p.tenant_id;
    let c = state
        .pg
        .run(|pg| commands::insert(pg, tenant, &fields, &by, by_id))
        .await?;
    tracing::info!(command_id = c.id, tenant = %tenant, created_by = %by, "command created");
    Ok((StatusCode::CREATED, Json(command_json(&c))))
}

#[utoipa::path(
    get,
    path = "/api/v1/commands",
    operation_id = "commands_list",
    tag = "backup",
    responses(
        (status = 200, body = Vec<CommandView>, description = "Every command of the tenant"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn list(State(state): State<ApiState>, Member(p): Member) -> ApiResult<Json<Value>> {
    let tenant = p.tenant_id;
    let all = state.pg.run(|pg| commands::list(pg, tenant)).await?;
    Ok(Json(Value::Array(all.iter().map(command_json).collect())))
}

#[utoipa::path(
    get,
    path = "/api/v1/commands/{id}",
    operation_id = "commands_get_one",
    tag = "backup",
    params(("id" = i64, Path, description = "The command's id")),
    responses(
        (status = 200, body = CommandView, description = "The command"),
        (status = 404, body = BackupError, description = "No such command in the tenant"),
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
    let c = load(&state, &p, path_id(&id)?).await?;
    Ok(Json(command_json(&c)))
}

/// A partial update: fields present replace, absent keep.
#[utoipa::path(
    put,
    path = "/api/v1/commands/{id}",
    operation_id = "commands_update",
    tag = "backup",
    params(("id" = i64, Path, description = "The command's id")),
    request_body(content = CommandRequest, content_type = "application/json", description = "Any subset of the fields"),
    responses(
        (status = 200, body = CommandView, description = "The command updated"),
        (status = 404, body = BackupError, description = "No such command in the tenant"),
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
    require(&p, EDITORS, "change commands")?;
    let old = load(&state, &p, id).await?;
    let fields = read_body(&body, Some(&old))?;
    let tenant = p.tenant_id;
    let c = state
        .pg
        .run(|pg| commands::update(pg, tenant, id, &fields))
        .await?
        .ok_or_else(|| ApiError::not_found("command"))?;
    tracing::info!(command_id = id, tenant = %tenant, "command updated");
    Ok(Json(command_json(&c)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/commands/{id}",
    operation_id = "commands_delete",
    tag = "backup",
    params(("id" = i64, Path, description = "The command's id")),
    responses(
        (status = 200, body = Deleted, description = "The command is gone"),
        (status = 404, body = BackupError, description = "No such command in the tenant"),
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
    require(&p, EDITORS, "delete commands")?;
    let tenant = p.tenant_id;
    if !state.pg.run(|pg| commands::delete(pg, tenant, id)).await? {
        return Err(ApiError::not_found("command"));
    }
    tracing::info!(command_id = id, tenant = %tenant, "command deleted");
    Ok(Json(json!({"id": id, "deleted": true})))
}

/// The `variables` object as text values: strings as they are, numbers
/// and booleans as their JSON text; anything else is a 422.
fn read_variables(
    v: &mut Validator,
    obj: &serde_json::Map<String, Value>,
) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let Field::Set(vars) = v.object(obj, &["variables"]) else {
        return out;
    };
    if vars.len() > VARIABLES_MAX {
        v.fail(FieldError::body(
            &["variables"],
            format!("at most {VARIABLES_MAX} variables"),
            "value_error.dict.max_items",
        ));
        return out;
    }
    for (name, value) in vars {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                v.fail(FieldError::body(
                    &["variables", name],
                    "str type expected",
                    "type_error.str",
                ));
                continue;
            }
        };
        if text.len() > VALUE_MAX {
            v.fail(FieldError::body(
                &["variables", name],
                format!("ensure this value has at most {VALUE_MAX} bytes"),
                "value_error.any_str.max_length",
            ));
        } else if text.contains('\0') {
            v.fail(FieldError::body(
                &["variables", name],
                "the value holds a NUL character",
                "value_error.str.nul",
            ));
        } else {
            out.insert(name.clone(), text);
        }
    }
    out
}

/// Queues the command, its variables substituted, on a server.
#[utoipa::path(
    post,
    path = "/api/v1/commands/{id}/execute",
    operation_id = "commands_execute",
    tag = "backup",
    params(("id" = i64, Path, description = "The command's id")),
    request_body(content = ExecuteRequest, content_type = "application/json"),
    responses(
        (status = 202, body = ExecutionQueued, description = "The execution queued"),
        (status = 400, body = BackupError, description = "The job could not be queued"),
        (status = 404, body = BackupError, description = "No such command, or no such server, in the tenant"),
        (status = 422, body = Unprocessable, description = "Fields at fault (a variable the template names but variables lacks included), or an id that is not an integer"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn execute(
    State(state): State<ApiState>,
    Member(p): Member,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Extension<AuditNote>, Json<Value>)> {
    let id = path_id(&id)?;
    require(&p, RUNNERS, "execute commands")?;
    let obj = object(&body)?;
    let mut v = Validator::new();
    let server_id = v.int(&obj, &["server_id"], 1, i64::MAX).value();
    let server_id = v.require(server_id, &["server_id"]);
    let values = read_variables(&mut v, &obj);
    let c = load(&state, &p, id).await?;
    let text = match template::render(&c.command_template, &values) {
        Ok(t) => Some(t),
        Err(missing) => {
            for name in missing {
                v.fail(FieldError::body(
                    &["variables", &name],
                    format!("the template uses {{{{{name}}}}} but no value was given"),
                    "value_error.missing",
                ));
            }
            None
        }
    };
    if text.as_ref().is_some_and(|t| t.len() > TEXT_MAX) {
        v.fail(FieldError::body(
            &["variables"],
            format!("the substituted command would exceed {TEXT_MAX} bytes"),
            "value_error.any_str.max_length",
        ));
    }
    v.finish()?;
    let (Some(server_id), Some(text)) = (server_id, text) else {
        return Err(ApiError::BadRequest("server_id is required".into()));
    };
    let tenant = p.tenant_id;
    state
        .pg
        .run(|pg| servers::get(pg, tenant, server_id))
        .await?
        .ok_or_else(|| ApiError::not_found("server"))?;
    let (by, by_id) = caller_name(&state, &p).await?;

    let task_id = queue::new_task_id();
    let pool = state
        .pg
        .run(|pg| async move { Ok::<_, sluice_storage::StorageError>(pg.clone()) })
        .await?;
    let mut tx = pool
        .begin()
        .await
        .map_err(sluice_storage::StorageError::from)?;
    let e = commands::insert_execution(
        &mut *tx,
        tenant,
        &NewExecution {
            command_id: c.id,
            server_id,
            command_text: &text,
            executed_by: &by,
            executed_by_user_id: by_id,
            task_id: &task_id,
        },
    )
    .await?;
    let job = CommandJob {
        task_id: task_id.clone(),
        tenant,
        execution_id: e.id,
    };
    queue::push(
        &mut tx,
        &state.job_namespace,
        Kind::Command,
        &task_id,
        tenant,
        Some(e.id),
        &job,
    )
    .await
    .map_err(|e| ApiError::Storage(sluice_storage::StorageError::Invalid(e.to_string())))?;
    tx.commit()
        .await
        .map_err(sluice_storage::StorageError::from)?;
    tracing::info!(command_id = c.id, execution_id = e.id, task_id = %task_id, server_id, executed_by = %by, "command execution queued");
    let note = AuditNote::new("command_execute", "command", Some(c.id)).details(json!({
        "execution_id": e.id,
        "server_id": server_id,
        "command_text": e.command_text,
        "task_id": task_id,
    }));
    Ok((
        StatusCode::ACCEPTED,
        Extension(note),
        Json(json!({
            "execution_id": e.id,
            "status": "pending",
            "task_id": task_id,
        })),
    ))
}

/// The command's executions, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/commands/{id}/executions",
    operation_id = "commands_executions",
    tag = "backup",
    params(("id" = i64, Path, description = "The command's id"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "Page size (default 100)"),
        ("offset" = Option<i64>, Query, minimum = 0, description = "Executions skipped (default 0)"),),
    responses(
        (status = 200, body = Vec<ExecutionView>, description = "The executions"),
        (status = 400, body = BackupError, description = "A query parameter at fault"),
        (status = 404, body = BackupError, description = "No such command in the tenant"),
        (status = 422, body = Unprocessable, description = "An id that is not an integer"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn executions(
    State(state): State<ApiState>,
    Member(p): Member,
    Path(id): Path<String>,
    q: Params,
) -> ApiResult<Json<Value>> {
    let id = path_id(&id)?;
    let limit = q.int("limit", 100, 1, 1000)?;
    let offset = q.int("offset", 0, 0, i64::MAX)?;
    let c = load(&state, &p, id).await?;
    let tenant = p.tenant_id;
    let list = state
        .pg
        .run(|pg| commands::list_executions(pg, tenant, c.id, limit, offset))
        .await?;
    Ok(Json(Value::Array(
        list.iter().map(execution_json).collect(),
    )))
}
