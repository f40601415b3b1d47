//! The Backup platform's servers (`/api/v1/servers`): CRUD, a real
//! connection test, and the list of a server's databases.
//!
//! - Every route acts in the Bearer caller's tenant; another tenant's server
//!   answers 404 exactly like an unknown id and is never touched.
//! - Roles: `owner`, `admin` and `dba` create, update and delete servers;
//!   every role reads them, tests their connection and lists their databases.
//! - Secrets (`credentials.password`, `credentials.ssh_key`,
//!   `database.password`) are sealed with the [`SecretBox`] before they are
//!   stored, opened only to hand them to a database tool's environment, and
//!   never answered or logged.
//! - `test-connection` and `databases` run the database tools through
//!   `sluice-backup`'s engines, where the server's transport reaches them:
//!   on Sluice's host (`local`), over SSH (`ssh`), or in a container over
//!   SSH (`docker`). SSH host keys are trusted on first use, then pinned.
//!
//! [`SecretBox`]: sluice_storage::secrets::SecretBox

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{json, Value};
use sluice_auth::principal::{Principal, Role};
use sluice_backup::EngineKind;
use sluice_jobs::endpoint::Endpoint;
use sluice_storage::pg::servers::{self, Server, ServerFields};

use crate::audit::AuditNote;

use crate::auth::Member;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::openapi::backup::servers::{ConnectionTest, Databases, ServerRequest, ServerView};
use crate::openapi::backup::{BackupError, Deleted, MemberRefusals, Unprocessable};
use crate::validate::{object, Field, Validator};
use crate::ApiState;

const KINDS: &[&str] = &["local", "ssh", "docker"];
const DB_TYPES: &[&str] = &["postgresql", "mysql"];
/// The longest a connection test or database listing may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(20);
const SHORT: usize = 255;
const SECRET_MAX: usize = 1024;
const SSH_KEY_MAX: usize = 64 * 1024;
const TAGS_MAX_BYTES: usize = 16 * 1024;

fn require_writer(p: &Principal) -> ApiResult<()> {
    if matches!(p.role, Role::Owner | Role::Admin | Role::Dba) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "role {} may not create, change or delete servers",
            p.role.as_str()
        )))
    }
}

fn server_id(id: &str) -> ApiResult<i64> {
    id.parse::<i64>().map_err(|_| {
        ApiError::Fields(vec![FieldError {
            loc: vec!["path".into(), "id".into()],
            msg: "value is not a valid integer".into(),
            kind: "type_error.integer".into(),
        }])
    })
}

async fn load(state: &ApiState, p: &Principal, id: i64) -> ApiResult<Server> {
    let tenant = p.tenant_id;
    state
        .pg
        .run(|pg| servers::get(pg, tenant, id))
        .await?
        .ok_or_else(|| ApiError::not_found("server"))
}

fn rfc3339(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The answer for a server: every field but the secrets.
fn server_json(s: &Server) -> Value {
    let f = &s.fields;
    let database = f.db_type.as_ref().map(
        |t| json!({"type": t, "host": f.db_host, "port": f.db_port, "username": f.db_username}),
    );
    let credentials = f.ssh_username.as_ref().map(|u| json!({"username": u}));
    json!({
        "id": s.id,
        "name": f.name,
        "description": f.description,
        "type": f.kind,
        "environment": f.environment,
        "host": f.host,
        "port": f.port,
        "container": f.container,
        "tags": f.tags.0,
        "credentials": credentials,
        "database": database,
        "health_status": s.health_status,
        "last_heartbeat": s.last_heartbeat.as_ref().map(rfc3339),
        "created_at": rfc3339(&s.created_at),
        "updated_at": rfc3339(&s.updated_at),
    })
}

/// The caller's secrets, as given in the body (sealed later).
#[derive(Default)]
struct Secrets {
    ssh_password: Field<String>,
    ssh_key: Field<String>,
    db_password: Field<String>,
}

/// Reads a create (`old` none) or partial update (`old` the stored server)
/// body into the fields to store, secrets sealed; every failure is a 422.
fn read_body(state: &ApiState, body: &[u8], old: Option<&ServerFields>) -> ApiResult<ServerFields> {
    let obj = object(body)?;
    let mut v = Validator::new();
    let creating = old.is_none();
    let base = old.cloned().unwrap_or_default();

    let name = v.string(&obj, &["name"], SHORT);
    let kind = v.choice(&obj, &["type"], KINDS);
    let (name, kind) = if creating {
        (name.value(), kind.value())
    } else {
        // Present-but-null on a required field is refused; absent keeps it.
        (
            name.merge(Some(base.name.clone())),
            kind.merge(Some(base.kind.clone())),
        )
    };
    let name = v.require(name, &["name"]);
    let kind = v.require(kind, &["type"]);
    let description = v
        .string(&obj, &["description"], 4096)
        .merge(base.description.clone());
    let environment = v
        .string(&obj, &["environment"], SHORT)
        .merge(base.environment.clone());
    let host = v.string(&obj, &["host"], SHORT).merge(base.host.clone());
    let port = v
        .int(&obj, &["port"], 1, 65535)
        .merge(base.port.map(i64::from));
    let container = v
        .string(&obj, &["container"], SHORT)
        .merge(base.container.clone());
    let tags = match v.object(&obj, &["tags"]) {
        Field::Absent if creating => json!({}),
        Field::Absent => base.tags.0.clone(),
        Field::Null => json!({}),
        Field::Set(m) => {
            let t = Value::Object(m.clone());
            if t.to_string().len() > TAGS_MAX_BYTES {
                v.fail(FieldError::body(
                    &["tags"],
                    format!("tags may take at most {TAGS_MAX_BYTES} bytes of JSON"),
                    "value_error.any_str.max_length",
                ));
            }
            t
        }
    };

    // credentials and database: a field present replaces, null clears,
    // absent keeps (secrets included); null for the whole object clears it.
    let mut secrets = Secrets::default();
    let mut ssh_username = base.ssh_username.clone();
    let mut keep_ssh = true;
    match v.object(&obj, &["credentials"]) {
        Field::Absent => {}
        Field::Null => {
            ssh_username = None;
            keep_ssh = false;
        }
        Field::Set(c) => {
            ssh_username = v
                .string(c, &["credentials", "username"], SHORT)
                .merge(ssh_username);
            secrets.ssh_password = v.secret(c, &["credentials", "password"], SECRET_MAX);
            secrets.ssh_key = v.secret(c, &["credentials", "ssh_key"], SSH_KEY_MAX);
        }
    }

    let (mut db_type, mut db_host, mut db_port, mut db_username) = (
        base.db_type.clone(),
        base.db_host.clone(),
        base.db_port.map(i64::from),
        base.db_username.clone(),
    );
    let mut keep_db = true;
    match v.object(&obj, &["database"]) {
        Field::Absent => {}
        Field::Null => {
            (db_type, db_host, db_port, db_username) = (None, None, None, None);
            keep_db = false;
        }
        Field::Set(d) => {
            db_type = v.choice(d, &["database", "type"], DB_TYPES).merge(db_type);
            db_host = v.string(d, &["database", "host"], SHORT).merge(db_host);
            db_port = v.int(d, &["database", "port"], 1, 65535).merge(db_port);
            db_username = v
                .string(d, &["database", "username"], SHORT)
                .merge(db_username);
            secrets.db_password = v.secret(d, &["database", "password"], SECRET_MAX);
            let db_type = v.require(db_type.clone(), &["database", "type"]);
            v.require(db_host.clone(), &["database", "host"]);
            v.require(db_username.clone(), &["database", "username"]);
            if db_port.is_none() {
                db_port = db_type.map(|t| if t == "mysql" { 3306 } else { 5432 });
            }
        }
    }
    v.finish()?;

    let seal = |f: Field<String>, old: Option<Vec<u8>>, keep: bool| -> ApiResult<Option<Vec<u8>>> {
        let old = if keep { old } else { None };
        Ok(match f {
            Field::Absent => old,
            Field::Null => None,
            Field::Set(s) => Some(state.secrets.seal(&s)?),
        })
    };
    Ok(ServerFields {
        name: name.unwrap_or_default(),
        description,
        kind: kind.unwrap_or_default(),
        environment,
        host,
        port: port.and_then(|p| i32::try_from(p).ok()),
        container,
        tags: sqlx::types::Json(tags),
        ssh_username,
        ssh_password_sealed: seal(
            secrets.ssh_password,
            base.ssh_password_sealed.clone(),
            keep_ssh,
        )?,
        ssh_key_sealed: seal(secrets.ssh_key, base.ssh_key_sealed.clone(), keep_ssh)?,
        db_type,
        db_host,
        db_port: db_port.and_then(|p| i32::try_from(p).ok()),
        db_username,
        db_password_sealed: seal(
            secrets.db_password,
            base.db_password_sealed.clone(),
            keep_db,
        )?,
    })
}

/// Registers a server (it need not be reachable).
#[utoipa::path(
    post,
    path = "/api/v1/servers",
    operation_id = "servers_create",
    tag = "backup",
    request_body(content = ServerRequest, content_type = "application/json"),
    responses(
        (status = 201, body = ServerView, description = "The server created"),
        (status = 400, body = BackupError, description = "A secret could not be sealed"),
        (status = 422, body = Unprocessable, description = "Fields at fault"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn create(
    State(state): State<ApiState>,
    Member(p): Member,
    body: Bytes,
) -> ApiResult<(StatusCode, Extension<AuditNote>, Json<Value>)> {
    require_writer(&p)?;
    let fields = read_body(&state, &body, None)?;
    let tenant = p.tenant_id;
    let s = state
        .pg
        .run(|pg| servers::insert(pg, tenant, &fields))
        .await?;
    tracing::info!(server_id = s.id, tenant = %tenant, kind = %s.fields.kind, "server created");
    let note = AuditNote::new("server_create", "server", Some(s.id))
        .details(json!({"name": s.fields.name, "type": s.fields.kind}));
    Ok((StatusCode::CREATED, Extension(note), Json(server_json(&s))))
}

/// The tenant's servers.
#[utoipa::path(
    get,
    path = "/api/v1/servers",
    operation_id = "servers_list",
    tag = "backup",
    responses(
        (status = 200, body = Vec<ServerView>, description = "Every server of the tenant"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn list(State(state): State<ApiState>, Member(p): Member) -> ApiResult<Json<Value>> {
    let tenant = p.tenant_id;
    let all = state.pg.run(|pg| servers::list(pg, tenant)).await?;
    Ok(Json(Value::Array(all.iter().map(server_json).collect())))
}

#[utoipa::path(
    get,
    path = "/api/v1/servers/{id}",
    operation_id = "servers_get_one",
    tag = "backup",
    params(("id" = i64, Path, description = "The server's id")),
    responses(
        (status = 200, body = ServerView, description = "The server"),
        (status = 404, body = BackupError, description = "No such server in the tenant"),
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
    let s = load(&state, &p, server_id(&id)?).await?;
    Ok(Json(server_json(&s)))
}

/// A partial update: fields present replace, absent keep.
#[utoipa::path(
    put,
    path = "/api/v1/servers/{id}",
    operation_id = "servers_update",
    tag = "backup",
    params(("id" = i64, Path, description = "The server's id")),
    request_body(content = ServerRequest, content_type = "application/json", description = "Any subset of the fields"),
    responses(
        (status = 200, body = ServerView, description = "The server updated"),
        (status = 400, body = BackupError, description = "A secret could not be sealed"),
        (status = 404, body = BackupError, description = "No such server in the tenant"),
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
) -> ApiResult<(Extension<AuditNote>, Json<Value>)> {
    let id = server_id(&id)?;
    require_writer(&p)?;
    let old = load(&state, &p, id).await?;
    let fields = read_body(&state, &body, Some(&old.fields))?;
    let tenant = p.tenant_id;
    let s = state
        .pg
        .run(|pg| servers::update(pg, tenant, id, &fields))
        .await?
        .ok_or_else(|| ApiError::not_found("server"))?;
    tracing::info!(server_id = id, tenant = %tenant, "server updated");
    let note =
        AuditNote::new("server_update", "server", Some(id)).details(json!({"name": s.fields.name}));
    Ok((Extension(note), Json(server_json(&s))))
}

#[utoipa::path(
    delete,
    path = "/api/v1/servers/{id}",
    operation_id = "servers_delete",
    tag = "backup",
    params(("id" = i64, Path, description = "The server's id")),
    responses(
        (status = 200, body = Deleted, description = "The server is gone"),
        (status = 404, body = BackupError, description = "No such server in the tenant"),
        (status = 422, body = Unprocessable, description = "An id that is not an integer"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn delete(
    State(state): State<ApiState>,
    Member(p): Member,
    Path(id): Path<String>,
) -> ApiResult<(Extension<AuditNote>, Json<Value>)> {
    let id = server_id(&id)?;
    require_writer(&p)?;
    let tenant = p.tenant_id;
    if !state.pg.run(|pg| servers::delete(pg, tenant, id)).await? {
        return Err(ApiError::not_found("server"));
    }
    tracing::info!(server_id = id, tenant = %tenant, "server deleted");
    let note = AuditNote::new("server_delete", "server", Some(id));
    Ok((Extension(note), Json(json!({"id": id, "deleted": true}))))
}

/// The server's database endpoint, or why there is none usable (a
/// sentence for the caller).
async fn endpoint(state: &ApiState, s: &Server) -> ApiResult<Result<Endpoint, String>> {
    let pool = state
        .pg
        .run(|pg| async move { Ok::<_, sluice_storage::StorageError>(pg.clone()) })
        .await?;
    Ok(sluice_jobs::endpoint::load(&pool, &state.secrets, s).await?)
}

/// Really connects to the server's database; a failure is a 200 with
/// `success: false`.
#[utoipa::path(
    post,
    path = "/api/v1/servers/{id}/test-connection",
    operation_id = "servers_test_connection",
    tag = "backup",
    params(("id" = i64, Path, description = "The server's id")),
    responses(
        (status = 200, body = ConnectionTest, description = "Whether the database answered"),
        (status = 400, body = BackupError, description = "A stored secret cannot be opened"),
        (status = 404, body = BackupError, description = "No such server in the tenant"),
        (status = 422, body = Unprocessable, description = "An id that is not an integer"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn test_connection(
    State(state): State<ApiState>,
    Member(p): Member,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let s = load(&state, &p, server_id(&id)?).await?;
    let ep = match endpoint(&state, &s).await? {
        Ok(e) => e,
        Err(message) => return Ok(Json(json!({"success": false, "message": message}))),
    };
    let started = Instant::now();
    let answer = tokio::time::timeout(
        TOOL_TIMEOUT,
        ep.kind
            .engine()
            .server_version(&*ep.transport, &ep.connection),
    )
    .await;
    let latency_ms = (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
    let body = match answer {
        Ok(Ok(version)) => {
            if let Ok(pool) = state
                .pg
                .run(|pg| async move { Ok::<_, sluice_storage::StorageError>(pg.clone()) })
                .await
            {
                ep.remember_host_key(&pool).await;
            }
            json!({
            "success": true,
            "message": format!("Connection successful ({version})"),
            "latency_ms": latency_ms,
            })
        }
        Ok(Err(e)) => json!({"success": false, "message": e.to_string(), "latency_ms": latency_ms}),
        Err(_) => json!({
            "success": false,
            "message": format!("no answer within {} s", TOOL_TIMEOUT.as_secs()),
            "latency_ms": latency_ms,
        }),
    };
    tracing::info!(
        server_id = s.id,
        success = body["success"].as_bool(),
        latency_ms,
        "server connection tested"
    );
    Ok(Json(body))
}

/// The real databases on the server.
#[utoipa::path(
    get,
    path = "/api/v1/servers/{id}/databases",
    operation_id = "servers_databases",
    tag = "backup",
    params(("id" = i64, Path, description = "The server's id")),
    responses(
        (status = 200, body = Databases, description = "The server's databases"),
        (status = 400, body = BackupError, description = "The server has no usable database endpoint, or it did not answer"),
        (status = 404, body = BackupError, description = "No such server in the tenant"),
        (status = 422, body = Unprocessable, description = "An id that is not an integer"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn databases(
    State(state): State<ApiState>,
    Member(p): Member,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let s = load(&state, &p, server_id(&id)?).await?;
    let ep = endpoint(&state, &s).await?.map_err(ApiError::BadRequest)?;
    let kind = ep.kind;
    let found = tokio::time::timeout(
        TOOL_TIMEOUT,
        kind.engine().list_databases(&*ep.transport, &ep.connection),
    )
    .await
    .map_err(|_| {
        ApiError::BadRequest(format!(
            "the server's database did not answer within {} s",
            TOOL_TIMEOUT.as_secs()
        ))
    })?
    .map_err(|e| ApiError::BadRequest(format!("cannot list the server's databases: {e}")))?;
    let type_name = if kind == EngineKind::MySql {
        "mysql"
    } else {
        "postgresql"
    };
    let list: Vec<Value> = found
        .iter()
        .map(|d| {
            json!({
                "name": d.name,
                "size_mb": (d.size_bytes as f64 / 1_048_576.0 * 100.0).round() / 100.0,
                "size_bytes": d.size_bytes,
                "type": type_name,
            })
        })
        .collect();
    Ok(Json(json!({ "databases": list })))
}
