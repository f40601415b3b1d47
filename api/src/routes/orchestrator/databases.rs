//! `POST /databases`, `GET /databases`, `GET /databases/{id}`: registered
//! databases, a master and its replicas. Connection strings are sealed
//! before they are stored and never answered, logged or echoed in an error;
//! `health` is measured when asked (reused for at most 5 seconds).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{json, Map, Value};
use sluice_jobs::migrations::Cluster;
use sluice_orchestrator::health::{self, Health};
use sluice_orchestrator::target::Target;
use sluice_storage::pg::orchestrator::databases::{self, Database, NewDatabase};

use super::access::{Action, Actor};
use super::{ids, stamp};
use crate::audit::AuditNote;
use crate::auth::Member;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::openapi::orchestrator::{DatabaseList, DatabaseView, RegisterDatabase};
use crate::openapi::orchestrator::{Missing, Refused};
use crate::openapi::tracking::TenantHeader;
use crate::validate::{object, Validator};
use crate::ApiState;

pub const ENVIRONMENTS: &[&str] = &["Production", "Staging", "QA", "Development"];
const REPLICA_ROLES: &[&str] = &["AsyncReplica", "SyncReplica"];
const MAX_REPLICAS: usize = 32;
/// How long one health measurement may take (the contract's answer must
/// come within 30 s, even for unreachable hosts).
const HEALTH_TIMEOUT: Duration = Duration::from_secs(8);

/// The contract's `health` object.
pub fn health_json(h: &Health) -> Value {
    json!({
        "isHealthy": h.is_healthy,
        "activeConnections": h.active_connections,
        "replicationLag": h.replication_lag,
    })
}

/// A registration as answered: never its connection strings.
fn view(d: &Database, health: Value) -> Value {
    let replicas: Vec<Value> = d
        .replicas
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| json!({"replicaId": r.get("replicaId"), "role": r.get("role")}))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "databaseId": ids::format(ids::DATABASE, d.id),
        "name": d.name,
        "type": d.db_type,
        "environment": d.environment,
        "replicas": replicas,
        "health": health,
        "createdAt": stamp(d.created_at),
    })
}

/// The database's health, measured now or within the last 5 seconds.
async fn measured(state: &ApiState, d: &Database) -> Value {
    if let Some(h) = state.orch_health.get(&d.id).await {
        return h;
    }
    let h = match Cluster::open(&state.secrets, d) {
        Ok(c) => health_json(&health::measure(&c.master, &c.replicas, HEALTH_TIMEOUT).await),
        Err(e) => {
            tracing::warn!(database_id = d.id, error = %e, "connection strings unreadable");
            json!({"isHealthy": false, "activeConnections": null, "replicationLag": null})
        }
    };
    state.orch_health.insert(d.id, h.clone()).await;
    h
}

/// A connection string field: present, parsable, sealed.
fn connection(
    state: &ApiState,
    v: &mut Validator,
    obj: &Map<String, Value>,
    path: &[&str],
    field: &str,
) -> Result<Option<(Target, Vec<u8>)>, ApiError> {
    let raw = v.secret(obj, path, 4096).value();
    let Some(raw) = v.require(raw, path) else {
        return Ok(None);
    };
    match Target::parse(&raw) {
        Ok(t) => {
            let sealed = state.secrets.seal(&raw).map_err(|e| {
                ApiError::Storage(sluice_storage::StorageError::Invalid(e.to_string()))
            })?;
            Ok(Some((t, sealed)))
        }
        Err(e) => {
            v.fail(FieldError::body(
                path,
                format!("{field} is not a valid connection string: {e}"),
                "value_error.connection_string",
            ));
            Ok(None)
        }
    }
}

/// Register a database: a master and its replicas.
#[utoipa::path(
    post,
    path = "/api/v1/databases",
    operation_id = "orch_databases_register",
    tag = "orchestrator",
    params(TenantHeader),
    request_body(content = RegisterDatabase, content_type = "application/json"),
    responses(
        (status = 201, body = DatabaseView, description = "Registered"),
        Refused,
    ),
    security(("bearerAuth" = []))
)]
pub async fn register(
    State(state): State<ApiState>,
    Member(p): Member,
    body: Bytes,
) -> ApiResult<(StatusCode, Extension<AuditNote>, Json<Value>)> {
    let actor = Actor::of(&p);
    let obj = object(&body)?;
    let mut v = Validator::new();
    let name = v.string(&obj, &["name"], 200).value();
    let name = v.require(name, &["name"]);
    let db_type = v.choice(&obj, &["type"], &["PostgreSQL"]).value();
    let environment = v.choice(&obj, &["environment"], ENVIRONMENTS).value();
    let environment = v.require(environment, &["environment"]);
    let master = connection(
        &state,
        &mut v,
        &obj,
        &["masterConnectionString"],
        "masterConnectionString",
    )?;
    let mut replicas = Vec::new();
    let mut seen = Vec::new();
    match obj.get("replicas") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.len() > MAX_REPLICAS => v.fail(FieldError::body(
            &["replicas"],
            format!("at most {MAX_REPLICAS} replicas"),
            "value_error.list.max_items",
        )),
        Some(Value::Array(a)) => {
            for (i, r) in a.iter().enumerate() {
                let idx = i.to_string();
                let Some(r) = r.as_object() else {
                    v.fail(FieldError::body(
                        &["replicas", &idx],
                        "value is not a valid dict",
                        "type_error.dict",
                    ));
                    continue;
                };
                let id = v.string(r, &["replicas", &idx, "replicaId"], 100).value();
                let id = v.require(id, &["replicas", &idx, "replicaId"]);
                if let Some(id) = &id {
                    if id == "master" || seen.contains(id) {
                        v.fail(FieldError::body(
                            &["replicas", &idx, "replicaId"],
                            format!("replicaId {id:?} is reserved or repeated"),
                            "value_error.unique",
                        ));
                    }
                    seen.push(id.clone());
                }
                let role = v
                    .choice(r, &["replicas", &idx, "role"], REPLICA_ROLES)
                    .value()
                    .unwrap_or_else(|| "AsyncReplica".into());
                let conn = connection(
                    &state,
                    &mut v,
                    r,
                    &["replicas", &idx, "connectionString"],
                    "connectionString",
                )?;
                if let (Some(id), Some(conn)) = (id, conn) {
                    replicas.push((id, role, conn));
                }
            }
        }
        Some(_) => v.fail(FieldError::body(
            &["replicas"],
            "value is not a valid list",
            "type_error.list",
        )),
    }
    v.finish()?;
    let (Some(name), Some(environment), Some((_, master_sealed))) = (name, environment, master)
    else {
        return Err(ApiError::BadRequest(
            "name, environment and masterConnectionString are required".into(),
        ));
    };
    actor.require(Action::Register, &environment)?;
    let new = NewDatabase {
        name,
        db_type: db_type.unwrap_or_else(|| "PostgreSQL".into()),
        environment,
        master_sealed,
        replicas: Value::Array(
            replicas
                .iter()
                .map(|(id, role, _)| json!({"replicaId": id, "role": role}))
                .collect(),
        ),
        replica_conns_sealed: replicas.into_iter().map(|(_, _, (_, s))| s).collect(),
    };
    let tenant = actor.tenant;
    let d = state
        .pg
        .run(|pg| databases::insert(pg, tenant, &new, actor.user))
        .await?;
    let health = measured(&state, &d).await;
    tracing::info!(database_id = d.id, environment = %d.environment, replicas = d.replica_conns_sealed.len(), "database registered");
    let note = AuditNote::new("database_register", "orch_database", Some(d.id)).details(json!({
        "name": d.name,
        "environment": d.environment,
        "replicas": d.replicas,
    }));
    Ok((StatusCode::CREATED, Extension(note), Json(view(&d, health))))
}

/// The tenant's registered databases, each with its health.
#[utoipa::path(
    get,
    path = "/api/v1/databases",
    operation_id = "orch_databases_list",
    tag = "orchestrator",
    params(TenantHeader),
    responses(
        (status = 200, body = DatabaseList, description = "Registered databases"),
        Refused,
    ),
    security(("bearerAuth" = []))
)]
pub async fn list(State(state): State<ApiState>, Member(p): Member) -> ApiResult<Json<Value>> {
    let tenant = p.tenant_id;
    let all = state.pg.run(|pg| databases::list(pg, tenant)).await?;
    let mut out = Vec::with_capacity(all.len());
    for d in &all {
        out.push(view(d, measured(&state, d).await));
    }
    Ok(Json(json!({"databases": out, "total": all.len()})))
}

/// The tenant's registration `id`, or 404.
pub async fn load(state: &ApiState, tenant: uuid::Uuid, id: i64) -> ApiResult<Database> {
    state
        .pg
        .run(|pg| databases::get(pg, tenant, id))
        .await?
        .ok_or_else(|| ApiError::not_found("database"))
}

/// One registered database, with its health.
#[utoipa::path(
    get,
    path = "/api/v1/databases/{id}",
    operation_id = "orch_databases_get_one",
    tag = "orchestrator",
    params(TenantHeader, ("id" = String, Path, description = "The database's id (`db-<n>`)")),
    responses(
        (status = 200, body = DatabaseView, description = "The database"),
        Refused, Missing,
    ),
    security(("bearerAuth" = []))
)]
pub async fn get_one(
    State(state): State<ApiState>,
    Member(p): Member,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = ids::require(ids::DATABASE, &id, "database")?;
    let d = load(&state, p.tenant_id, id).await?;
    let health = measured(&state, &d).await;
    Ok(Json(view(&d, health)))
}
