//! The Backup platform's backups and tasks (`/api/v1/backups`,
//! `/api/v1/tasks`): the API records and enqueues, the job workers do the
//! work (`sluice-jobs`), and nothing here waits for a database tool.
//!
//! - `POST /backups` answers at once: a pending backup, its apalis task id.
//!   The body and the server's tenant are checked here; whether the
//!   database exists is the job's to find out (it then ends `failed` with
//!   a readable `error_message`).
//! - `POST /backups/{id}/download` answers a URL that Sluice itself serves
//!   without a token: the backup id and the expiry signed with HMAC-SHA256
//!   under a key derived from `SLUICE_SECRET_KEY`. Deleting the backup
//!   makes every such URL answer 404.
//! - `POST /backups/{id}/restore` and `/verify` queue jobs; `GET
//!   /tasks/{task_id}` follows them.
//! - Roles: every role reads; `owner`, `admin`, `dba` and `operator` take,
//!   download and verify backups; `owner`, `admin` and `dba` restore and
//!   delete them (a restore replaces a database).
//! - Another tenant's backup, server or task answers 404, like an unknown id.

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sluice_auth::principal::{Principal, Role};
use sluice_jobs::backups::{enqueue_backup, BackupOrder, Queued, RestoreJob, VerifyJob};
use sluice_jobs::queue::{self, Kind};
use sluice_jobs::signing;
use sluice_storage::pg::backups::{self, Backup, Filter};
use sluice_storage::pg::{servers, tasks};

use crate::audit::AuditNote;
use crate::auth::Member;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::openapi::backup::backups::{
    BackupPage, BackupQueued, BackupRequest, BackupView, DownloadLink, DownloadRequest,
    RestoreRequest, TaskView, VerifyRequest,
};
use crate::openapi::backup::{BackupError, Deleted, JobQueued, MemberRefusals, Unprocessable};
use crate::routes::Params;
use crate::validate::{object, Field, Validator};
use crate::ApiState;

const DB_TYPES: &[&str] = &["postgresql", "mysql"];
const COMPRESSIONS: &[&str] = &["zstd", "gzip", "none"];
const BACKUP_TYPES: &[&str] = &["full"];
const STRATEGIES: &[&str] = &["hash", "randomize", "null"];
const STATUSES: &[&str] = &["pending", "running", "completed", "failed"];
/// Download URLs live one hour unless the request asks otherwise, and at
/// most seven days.
const DOWNLOAD_TTL: i64 = 3600;
const DOWNLOAD_TTL_MAX: i64 = 7 * 24 * 3600;
const MAX_RULES: usize = 256;

fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

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

const TAKERS: &[Role] = &[Role::Owner, Role::Admin, Role::Dba, Role::Operator];
const RESTORERS: &[Role] = &[Role::Owner, Role::Admin, Role::Dba];

fn path_id(id: &str) -> ApiResult<i64> {
    id.parse::<i64>().map_err(|_| {
        ApiError::Fields(vec![FieldError {
            loc: vec!["path".into(), "id".into()],
            msg: "value is not a valid integer".into(),
            kind: "type_error.integer".into(),
        }])
    })
}

/// The answer for a backup: the contract's fields and Sluice's own.
pub fn backup_json(b: &Backup) -> Value {
    json!({
        "id": b.id,
        "server_id": b.server_id,
        "database_name": b.database_name,
        "db_type": b.db_type,
        "backup_type": b.backup_type,
        "status": b.status,
        "size_bytes": b.size_bytes,
        "storage_path": b.storage_path,
        "is_encrypted": b.is_encrypted,
        "is_compressed": b.compression_type != "none",
        "compression_type": b.compression_type,
        "checksum": b.checksum,
        "started_at": b.started_at.as_ref().map(rfc3339),
        "completed_at": b.completed_at.as_ref().map(rfc3339),
        "duration_seconds": b.duration_seconds,
        "error_message": b.error_message,
        "task_id": b.task_id,
        "verified_at": b.verified_at.as_ref().map(rfc3339),
        "verification": b.verify_status.as_ref().map(|s| json!({
            "status": s,
            "details": b.verify_details.as_ref().map(|d| d.0.clone()),
        })),
        "created_at": rfc3339(&b.created_at),
    })
}

async fn load(state: &ApiState, p: &Principal, id: i64) -> ApiResult<Backup> {
    let tenant = p.tenant_id;
    state
        .pg
        .run(|pg| backups::get(pg, tenant, id))
        .await?
        .ok_or_else(|| ApiError::not_found("backup"))
}

fn job_error(e: sluice_jobs::JobError) -> ApiError {
    ApiError::Storage(sluice_storage::StorageError::Invalid(e.to_string()))
}

fn valid_database_name(v: &mut Validator, name: &Option<String>, path: &[&str]) {
    if let Some(n) = name {
        if sluice_backup::engine::validate_database_name(n).is_err() {
            v.fail(FieldError::body(
                path,
                "use 1 to 63 ASCII letters, digits, '_' or '-'",
                "value_error.str.regex",
            ));
        }
    }
}

/// Queues a backup; the job finds out whether the database is there.
#[utoipa::path(
    post,
    path = "/api/v1/backups",
    operation_id = "backups_create",
    tag = "backup",
    request_body(content = BackupRequest, content_type = "application/json"),
    responses(
        (status = 201, body = BackupQueued, description = "The backup job queued"),
        (status = 400, body = BackupError, description = "The job could not be queued"),
        (status = 404, body = BackupError, description = "No such server (server_id) in the tenant"),
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
    require(&p, TAKERS, "take backups")?;
    let obj = object(&body)?;
    let mut v = Validator::new();
    let server_id = v.int(&obj, &["server_id"], 1, i64::MAX).value();
    let server_id = v.require(server_id, &["server_id"]);
    let database = v.string(&obj, &["database_name"], 63).value();
    let database = v.require(database, &["database_name"]);
    valid_database_name(&mut v, &database, &["database_name"]);
    let db_type = v.choice(&obj, &["db_type"], DB_TYPES).value();
    let backup_type = v
        .choice(&obj, &["backup_type"], BACKUP_TYPES)
        .value()
        .unwrap_or_else(|| "full".into());
    let compress = v.bool(&obj, &["compress"]).value();
    let compression = v.choice(&obj, &["compression_type"], COMPRESSIONS).value();
    let encrypt = v.bool(&obj, &["encrypt"]).value().unwrap_or(true);
    let compression = match (compress, compression) {
        (Some(false), Some(c)) if c != "none" => {
            v.fail(FieldError::body(
                &["compression_type"],
                "compress is false: compression_type must be 'none' or absent",
                "value_error.const",
            ));
            c
        }
        (Some(false), _) => "none".to_string(),
        (_, Some(c)) => c,
        (_, None) => "zstd".to_string(),
    };
    v.finish()?;
    let (Some(server_id), Some(database)) = (server_id, database) else {
        return Err(ApiError::BadRequest(
            "server_id and database_name are required".into(),
        ));
    };
    let tenant = p.tenant_id;
    let server = state
        .pg
        .run(|pg| servers::get(pg, tenant, server_id))
        .await?
        .ok_or_else(|| ApiError::not_found("server"))?;
    let server_type = server.fields.db_type.clone();
    let db_type = match (db_type, server_type) {
        (Some(asked), Some(has)) if asked != has => {
            return Err(ApiError::Fields(vec![FieldError::body(
                &["db_type"],
                format!("server {server_id}'s database is {has}, not {asked}"),
                "value_error.const",
            )]))
        }
        (Some(asked), _) => asked,
        (None, Some(has)) => has,
        (None, None) => return Err(ApiError::Fields(vec![FieldError::missing(&["db_type"])])),
    };

    let pool = state
        .pg
        .run(|pg| async move { Ok::<_, sluice_storage::StorageError>(pg.clone()) })
        .await?;
    let mut tx = pool
        .begin()
        .await
        .map_err(sluice_storage::StorageError::from)?;
    let order = BackupOrder {
        server_id,
        database_name: &database,
        db_type: &db_type,
        backup_type: &backup_type,
        compression_type: &compression,
        encrypt,
        schedule_id: None,
    };
    let Queued { backup: b, task_id } =
        enqueue_backup(&mut tx, &state.job_namespace, tenant, &order)
            .await
            .map_err(job_error)?;
    tx.commit()
        .await
        .map_err(sluice_storage::StorageError::from)?;
    tracing::info!(backup_id = b.id, task_id = %task_id, server_id, database = %database, "backup queued");
    let note = AuditNote::new("backup_create", "backup", Some(b.id)).details(json!({
        "database": database,
        "backup_type": backup_type,
        "server_id": server_id,
        "task_id": task_id,
    }));
    Ok((
        StatusCode::CREATED,
        Extension(note),
        Json(json!({
            "id": b.id,
            "status": "pending",
            "message": "Backup job queued",
            "task_id": task_id,
        })),
    ))
}

/// Backups, newest first; the filters combine.
#[utoipa::path(
    get,
    path = "/api/v1/backups",
    operation_id = "backups_list",
    tag = "backup",
    params(("server_id" = Option<i64>, Query, description = "Only this server's"),
        ("db_type" = Option<crate::openapi::backup::servers::DbType>, Query, description = "Only this database type"),
        ("status" = Option<crate::openapi::backup::backups::JobStatus>, Query, description = "Only in this state"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "Page size (default 100)"),
        ("offset" = Option<i64>, Query, minimum = 0, description = "Matches skipped (default 0)"),),
    responses(
        (status = 200, body = BackupPage, description = "A page of backups"),
        (status = 400, body = BackupError, description = "A malformed query string"),
        (status = 422, body = Unprocessable, description = "Query parameters at fault"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn list(
    State(state): State<ApiState>,
    Member(p): Member,
    q: Params,
) -> ApiResult<Json<Value>> {
    let mut errors = Vec::new();
    let mut query_error = |name: &str, msg: &str| {
        errors.push(FieldError {
            loc: vec!["query".into(), name.into()],
            msg: msg.into(),
            kind: "value_error".into(),
        })
    };
    let server_id = match q.str("server_id").map(str::parse::<i64>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            query_error("server_id", "value is not a valid integer");
            None
        }
    };
    let db_type = q.str("db_type").map(str::to_owned);
    if db_type.as_deref().is_some_and(|t| !DB_TYPES.contains(&t)) {
        query_error("db_type", "permitted: 'postgresql', 'mysql'");
    }
    let status = q.str("status").map(str::to_owned);
    if status.as_deref().is_some_and(|s| !STATUSES.contains(&s)) {
        query_error(
            "status",
            "permitted: 'pending', 'running', 'completed', 'failed'",
        );
    }
    let limit = q.str("limit").map(str::parse::<i64>).transpose();
    let offset = q.str("offset").map(str::parse::<i64>).transpose();
    let (limit, offset) = match (limit, offset) {
        (Ok(l), Ok(o)) => (l.unwrap_or(100), o.unwrap_or(0)),
        _ => {
            query_error("limit", "limit and offset must be integers");
            (100, 0)
        }
    };
    if !(1..=1000).contains(&limit) {
        query_error("limit", "ensure 1 <= limit <= 1000");
    }
    if offset < 0 {
        query_error("offset", "ensure offset >= 0");
    }
    if !errors.is_empty() {
        return Err(ApiError::Fields(errors));
    }
    let tenant = p.tenant_id;
    let filter = Filter {
        server_id,
        db_type,
        status,
    };
    let (total, items) = state
        .pg
        .run(|pg| backups::list(pg, tenant, &filter, limit, offset))
        .await?;
    Ok(Json(json!({
        "total": total,
        "items": items.iter().map(backup_json).collect::<Vec<_>>(),
    })))
}

#[utoipa::path(
    get,
    path = "/api/v1/backups/{id}",
    operation_id = "backups_get_one",
    tag = "backup",
    params(("id" = i64, Path, description = "The backup's id")),
    responses(
        (status = 200, body = BackupView, description = "The backup"),
        (status = 404, body = BackupError, description = "No such backup in the tenant"),
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
    let b = load(&state, &p, path_id(&id)?).await?;
    Ok(Json(backup_json(&b)))
}

/// Removes the stored object, then the record.
#[utoipa::path(
    delete,
    path = "/api/v1/backups/{id}",
    operation_id = "backups_delete",
    tag = "backup",
    params(("id" = i64, Path, description = "The backup's id")),
    responses(
        (status = 200, body = Deleted, description = "The backup and its object are gone"),
        (status = 400, body = BackupError, description = "The backup store refused the delete"),
        (status = 404, body = BackupError, description = "No such backup in the tenant"),
        (status = 409, body = BackupError, description = "The backup is running"),
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
    let id = path_id(&id)?;
    require(&p, RESTORERS, "delete backups")?;
    let b = load(&state, &p, id).await?;
    if b.status == "running" {
        return Err(ApiError::Conflict(
            "the backup is running; delete it once it has completed or failed".into(),
        ));
    }
    // Object first, then the record: a failure in between leaves a record
    // whose object is gone (visible, deletable again), never an orphan
    // object nobody can see.
    state
        .backup_store
        .delete(&b.object_key)
        .await
        .map_err(|e| {
            ApiError::Storage(sluice_storage::StorageError::Invalid(format!(
                "backup store: {e}"
            )))
        })?;
    let tenant = p.tenant_id;
    if !state.pg.run(|pg| backups::delete(pg, tenant, id)).await? {
        return Err(ApiError::not_found("backup"));
    }
    tracing::info!(backup_id = id, "backup deleted");
    let note = AuditNote::new("backup_delete", "backup", Some(id))
        .details(json!({"database": b.database_name}));
    Ok((Extension(note), Json(json!({"id": id, "deleted": true}))))
}

/// The public base URL of this Sluice, for a download link.
fn base_url(state: &ApiState, headers: &HeaderMap) -> ApiResult<String> {
    super::public_base_url(state, headers).ok_or_else(|| {
        ApiError::BadRequest(
            "a Host header is needed to build the download URL (or set SLUICE_PUBLIC_URL)".into(),
        )
    })
}

/// A signed URL for a completed backup's object.
#[utoipa::path(
    post,
    path = "/api/v1/backups/{id}/download",
    operation_id = "backups_download",
    tag = "backup",
    params(("id" = i64, Path, description = "The backup's id")),
    request_body(content = Option<DownloadRequest>, content_type = "application/json", description = "Optional; may be empty"),
    responses(
        (status = 200, body = DownloadLink, description = "The URL and when it expires"),
        (status = 400, body = BackupError, description = "No Host to build the URL from, or the backup store failed"),
        (status = 404, body = BackupError, description = "No such backup in the tenant"),
        (status = 409, body = BackupError, description = "The backup is not completed"),
        (status = 422, body = Unprocessable, description = "Fields at fault, or an id that is not an integer"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn download(
    State(state): State<ApiState>,
    Member(p): Member,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let id = path_id(&id)?;
    require(&p, TAKERS, "download backups")?;
    let ttl = if body.iter().all(u8::is_ascii_whitespace) {
        DOWNLOAD_TTL
    } else {
        let obj = object(&body)?;
        let mut v = Validator::new();
        let ttl = v.int(&obj, &["expires_in"], 60, DOWNLOAD_TTL_MAX).value();
        v.finish()?;
        ttl.unwrap_or(DOWNLOAD_TTL)
    };
    let b = load(&state, &p, id).await?;
    if b.status != "completed" {
        return Err(ApiError::Conflict(format!(
            "backup {id} is {}: only a completed backup can be downloaded",
            b.status
        )));
    }
    // S3: the bucket's own presigned URL; the local store: Sluice's.
    let presigned = state
        .backup_store
        .presigned_get(
            &b.object_key,
            std::time::Duration::from_secs(ttl.unsigned_abs()),
        )
        .await
        .map_err(|e| {
            ApiError::Storage(sluice_storage::StorageError::Invalid(format!(
                "backup store: {e}"
            )))
        })?;
    let expires = Utc::now().timestamp() + ttl;
    if let Some(url) = presigned {
        let expires_at = DateTime::<Utc>::from_timestamp(expires, 0).unwrap_or_else(Utc::now);
        return Ok(Json(json!({
            "download_url": url,
            "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })));
    }
    let expires_at = DateTime::<Utc>::from_timestamp(expires, 0).unwrap_or_else(Utc::now);
    let signature = signing::download_signature(&state.signing_secret, id, expires);
    let url = format!(
        "{}/api/v1/backups/{id}/file?expires={expires}&signature={signature}",
        base_url(&state, &headers)?
    );
    Ok(Json(json!({
        "download_url": url,
        "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })))
}

/// Serves a backup's object to whoever holds a valid signed URL.
/// The object of a backup, for whoever holds a valid signed URL (from
/// `download`); no credentials.
#[utoipa::path(
    get,
    path = "/api/v1/backups/{id}/file",
    operation_id = "backups_file",
    tag = "backup",
    params(
        ("id" = i64, Path, description = "The backup's id"),
        ("expires" = Option<i64>, Query, description = "The URL's expiry (Unix seconds)"),
        ("signature" = Option<String>, Query, description = "The URL's HMAC"),
    ),
    responses(
        (status = 200, content_type = "application/octet-stream", body = Vec<u8>, description = "The stored object's bytes (X-Checksum: its checksum)"),
        (status = 400, body = BackupError, description = "A malformed query string"),
        (status = 403, body = BackupError, description = "Not signed, a wrong signature, or expired"),
        (status = 404, body = BackupError, description = "No such backup, or its object is gone"),
        (status = 503, body = BackupError, description = "A backing store is unavailable; see Retry-After"),
    ),
    security(())
)]
pub async fn file(State(state): State<ApiState>, Path(id): Path<String>, q: Params) -> Response {
    let refuse = |status: StatusCode, why: &str| {
        (
            status,
            Json(json!({"detail": why, "code": if status == StatusCode::NOT_FOUND { "NOT_FOUND" } else { "FORBIDDEN" }, "timestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)})),
        )
            .into_response()
    };
    let Ok(id) = id.parse::<i64>() else {
        return refuse(StatusCode::NOT_FOUND, "not found");
    };
    let (Some(expires), Some(sig)) = (
        q.str("expires").and_then(|e| e.parse::<i64>().ok()),
        q.str("signature"),
    ) else {
        return refuse(StatusCode::FORBIDDEN, "this download URL is not signed");
    };
    if !signing::check_download(&state.signing_secret, id, expires, sig) {
        return refuse(
            StatusCode::FORBIDDEN,
            "this download URL's signature is not valid",
        );
    }
    if expires < Utc::now().timestamp() {
        return refuse(StatusCode::FORBIDDEN, "this download URL has expired");
    }
    let found = state.pg.run(|pg| backups::get_any(pg, id)).await;
    let b = match found {
        Ok(Some(b)) if b.status == "completed" => b,
        Ok(_) => return refuse(StatusCode::NOT_FOUND, "this backup no longer exists"),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let stream = match state.backup_store.read(&b.object_key).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(backup_id = id, error = %e, "backup object unreadable");
            return refuse(StatusCode::NOT_FOUND, "this backup's object is gone");
        }
    };
    let name = b
        .object_key
        .rsplit('/')
        .next()
        .unwrap_or("backup")
        .to_string();
    tracing::info!(backup_id = id, "backup downloaded");
    let mut res = Response::new(Body::from_stream(stream));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(n) = b.size_bytes {
        h.insert(header::CONTENT_LENGTH, n.into());
    }
    if let Ok(v) = header::HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some(c) = b
        .checksum
        .as_deref()
        .and_then(|c| header::HeaderValue::from_str(c).ok())
    {
        h.insert("x-checksum", c);
    }
    res
}

/// Reads `masking_rules` (column → strategy), every failure a 422.
fn masking_rules(
    v: &mut Validator,
    obj: &serde_json::Map<String, Value>,
) -> Option<BTreeMap<String, String>> {
    let mask = v
        .bool(obj, &["mask_sensitive_data"])
        .value()
        .unwrap_or(false);
    let rules = match v.object(obj, &["masking_rules"]) {
        Field::Set(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    if rules.len() > MAX_RULES {
        v.fail(FieldError::body(
            &["masking_rules"],
            format!("at most {MAX_RULES} rules"),
            "value_error.list.max_items",
        ));
    }
    let mut out = BTreeMap::new();
    for (column, strategy) in &rules {
        if column.is_empty() || column.len() > 63 {
            v.fail(FieldError::body(
                &["masking_rules", column],
                "a column name of 1 to 63 bytes",
                "value_error",
            ));
            continue;
        }
        match strategy.as_str() {
            Some(s) if STRATEGIES.contains(&s) => {
                out.insert(column.clone(), s.to_string());
            }
            _ => v.fail(FieldError::body(
                &["masking_rules", column],
                "value is not a valid enumeration member; permitted: 'hash', 'randomize', 'null'",
                "type_error.enum",
            )),
        }
    }
    (mask && !out.is_empty()).then_some(out)
}

/// Queues a restore of a completed backup, masking columns if asked.
#[utoipa::path(
    post,
    path = "/api/v1/backups/{id}/restore",
    operation_id = "backups_restore",
    tag = "backup",
    params(("id" = i64, Path, description = "The backup's id")),
    request_body(content = RestoreRequest, content_type = "application/json"),
    responses(
        (status = 202, body = JobQueued, description = "The restore job queued"),
        (status = 400, body = BackupError, description = "The job could not be queued"),
        (status = 404, body = BackupError, description = "No such backup, or no such target server, in the tenant"),
        (status = 409, body = BackupError, description = "The backup is not completed"),
        (status = 422, body = Unprocessable, description = "Fields at fault (an unknown masking strategy included), or an id that is not an integer"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn restore(
    State(state): State<ApiState>,
    Member(p): Member,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Extension<AuditNote>, Json<Value>)> {
    let id = path_id(&id)?;
    require(&p, RESTORERS, "restore backups")?;
    let obj = object(&body)?;
    let mut v = Validator::new();
    let target_server = v.int(&obj, &["target_server_id"], 1, i64::MAX).value();
    let target_db = v.string(&obj, &["target_database"], 63).value();
    let target_db = v.require(target_db, &["target_database"]);
    valid_database_name(&mut v, &target_db, &["target_database"]);
    let masking = masking_rules(&mut v, &obj);
    v.finish()?;
    let Some(target_db) = target_db else {
        return Err(ApiError::BadRequest("target_database is required".into()));
    };
    let b = load(&state, &p, id).await?;
    if b.status != "completed" {
        return Err(ApiError::Conflict(format!(
            "backup {id} is {}: only a completed backup can be restored",
            b.status
        )));
    }
    let tenant = p.tenant_id;
    let target_server = target_server.unwrap_or(b.server_id);
    state
        .pg
        .run(|pg| servers::get(pg, tenant, target_server))
        .await?
        .ok_or_else(|| ApiError::not_found("server"))?;
    let task_id = queue::new_task_id();
    let masked = masking.is_some();
    let job = RestoreJob {
        task_id: task_id.clone(),
        tenant,
        backup_id: id,
        target_server_id: target_server,
        target_database: target_db.clone(),
        masking,
    };
    enqueue(&state, Kind::Restore, &task_id, tenant, id, &job).await?;
    tracing::info!(backup_id = id, task_id = %task_id, target_server, target = %target_db, "restore queued");
    let note = AuditNote::new("backup_restore", "backup", Some(id)).details(json!({
        "target_server_id": target_server,
        "target_database": target_db,
        "mask_sensitive_data": masked,
        "task_id": task_id,
    }));
    Ok((
        StatusCode::ACCEPTED,
        Extension(note),
        Json(json!({"task_id": task_id, "status": "pending", "message": "Restore job queued"})),
    ))
}

async fn enqueue(
    state: &ApiState,
    kind: Kind,
    task_id: &str,
    tenant: uuid::Uuid,
    resource: i64,
    job: &impl serde::Serialize,
) -> ApiResult<()> {
    let pool = state
        .pg
        .run(|pg| async move { Ok::<_, sluice_storage::StorageError>(pg.clone()) })
        .await?;
    let mut tx = pool
        .begin()
        .await
        .map_err(sluice_storage::StorageError::from)?;
    queue::push(
        &mut tx,
        &state.job_namespace,
        kind,
        task_id,
        tenant,
        Some(resource),
        job,
    )
    .await
    .map_err(job_error)?;
    tx.commit()
        .await
        .map_err(sluice_storage::StorageError::from)?;
    Ok(())
}

/// Queues a verification: the backup restored into a scratch database and checked.
#[utoipa::path(
    post,
    path = "/api/v1/backups/{id}/verify",
    operation_id = "backups_verify",
    tag = "backup",
    params(("id" = i64, Path, description = "The backup's id")),
    request_body(content = Option<VerifyRequest>, content_type = "application/json", description = "Optional; may be empty"),
    responses(
        (status = 202, body = JobQueued, description = "The verification job queued"),
        (status = 400, body = BackupError, description = "The job could not be queued"),
        (status = 404, body = BackupError, description = "No such backup, or no such server, in the tenant"),
        (status = 409, body = BackupError, description = "The backup is not completed"),
        (status = 422, body = Unprocessable, description = "Fields at fault, or an id that is not an integer"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn verify(
    State(state): State<ApiState>,
    Member(p): Member,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Extension<AuditNote>, Json<Value>)> {
    let id = path_id(&id)?;
    require(&p, TAKERS, "verify backups")?;
    let server_id = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let obj = object(&body)?;
        let mut v = Validator::new();
        let s = v.int(&obj, &["server_id"], 1, i64::MAX).value();
        v.finish()?;
        s
    };
    let b = load(&state, &p, id).await?;
    if b.status != "completed" {
        return Err(ApiError::Conflict(format!(
            "backup {id} is {}: only a completed backup can be verified",
            b.status
        )));
    }
    let tenant = p.tenant_id;
    if let Some(s) = server_id {
        state
            .pg
            .run(|pg| servers::get(pg, tenant, s))
            .await?
            .ok_or_else(|| ApiError::not_found("server"))?;
    }
    let task_id = queue::new_task_id();
    let job = VerifyJob {
        task_id: task_id.clone(),
        tenant,
        backup_id: id,
        server_id,
    };
    enqueue(&state, Kind::Verify, &task_id, tenant, id, &job).await?;
    tracing::info!(backup_id = id, task_id = %task_id, "verification queued");
    let note = AuditNote::new("backup_verify", "backup", Some(id))
        .details(json!({"server_id": server_id, "task_id": task_id}));
    Ok((
        StatusCode::ACCEPTED,
        Extension(note),
        Json(
            json!({"task_id": task_id, "status": "pending", "message": "Verification job queued"}),
        ),
    ))
}

/// A background job's state.
#[utoipa::path(
    get,
    path = "/api/v1/tasks/{task_id}",
    operation_id = "tasks_get_one",
    tag = "backup",
    params(("task_id" = String, Path, description = "The task id a queued job answered")),
    responses(
        (status = 200, body = TaskView, description = "The task"),
        (status = 404, body = BackupError, description = "No such task in the tenant"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn task(
    State(state): State<ApiState>,
    Member(p): Member,
    Path(task_id): Path<String>,
) -> ApiResult<Json<Value>> {
    // No stored task id holds a control character (nor could Postgres
    // take a NUL): such an id is simply unknown.
    if task_id.is_empty() || task_id.len() > 64 || task_id.chars().any(char::is_control) {
        return Err(ApiError::not_found("task"));
    }
    let tenant = p.tenant_id;
    let t = state
        .pg
        .run(|pg| tasks::get(pg, tenant, &task_id))
        .await?
        .ok_or_else(|| ApiError::not_found("task"))?;
    Ok(Json(json!({
        "task_id": t.id,
        "type": t.kind,
        "status": t.status,
        "progress": if t.status == "completed" { 100.0 } else { t.progress },
        "error": t.error,
        "resource_id": t.resource_id,
        "attempts": t.attempts,
        "created_at": rfc3339(&t.created_at),
        "started_at": t.started_at.as_ref().map(rfc3339),
        "finished_at": t.finished_at.as_ref().map(rfc3339),
    })))
}
