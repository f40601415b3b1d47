//! `POST /migrations`, `GET /migrations`, `GET /migrations/{id}` and
//! `POST /migrations/{id}/validate`. A script is parsed with PostgreSQL's
//! own grammar when it is created (a syntax error is a 400 naming its
//! line) and linted; the effective risk level is the higher of the
//! requested one and the lint's, and a Production target or a High or
//! Critical level requires an approval (conventions section 6).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{json, Value};
use sluice_orchestrator::lint::{self, Severity};
use sluice_orchestrator::risk::RiskLevel;
use sluice_orchestrator::script::{self, Script};
use sluice_orchestrator::{dryrun, objects};
use sluice_storage::pg::orchestrator::migrations::{self, Migration, NewMigration};

use super::access::{Action, Actor, OrchRole};
use super::{databases, ids, limit, stamp};
use crate::audit::AuditNote;
use crate::auth::Member;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::openapi::orchestrator::migrations::{
    MigrationList, MigrationRequest, MigrationStatus, MigrationView, ValidateRequest, Validation,
};
use crate::openapi::orchestrator::{Conflicting, Missing, Refused, Throttled};
use crate::openapi::tracking::TenantHeader;
use crate::routes::Params;
use crate::validate::{object, Validator};
use crate::ApiState;

pub const STATUSES: &[&str] = &[
    "Draft",
    "PendingApproval",
    "Approved",
    "Rejected",
    "Running",
    "Succeeded",
    "Failed",
    "RolledBack",
];
pub const STRATEGIES: &[&str] = &["Immediate", "Phased"];
const RISKS: &[&str] = &["Low", "Medium", "High", "Critical"];
/// The longest script taken (bytes).
const SCRIPT_MAX: usize = 1 << 20;

/// A migration as `GET /migrations/{id}` answers it.
pub fn view(m: &Migration) -> Value {
    json!({
        "migrationId": ids::format(ids::MIGRATION, m.id),
        "name": m.name,
        "description": m.description,
        "targetDatabaseId": ids::format(ids::DATABASE, m.database_id),
        "migrationScript": m.migration_script,
        "rollbackScript": m.rollback_script,
        "strategy": m.strategy,
        "riskLevel": m.risk_level,
        "requiresApproval": m.requires_approval,
        "tags": m.tags,
        "status": m.status,
        "createdAt": stamp(m.created_at),
        "updatedAt": stamp(m.updated_at),
    })
}

fn parse_field(field: &str, text: &str) -> Result<Script, ApiError> {
    script::parse(text).map_err(|e| ApiError::Invalid {
        field: field.into(),
        message: format!("SQL syntax error: {e}"),
    })
}

/// Create a migration (a Draft); its script is parsed and linted.
#[utoipa::path(
    post,
    path = "/api/v1/migrations",
    operation_id = "orch_migrations_create",
    tag = "orchestrator",
    params(TenantHeader),
    request_body(content = MigrationRequest, content_type = "application/json"),
    responses(
        (status = 201, body = MigrationView, description = "Created"),
        Refused, Throttled,
    ),
    security(("bearerAuth" = []))
)]
pub async fn create(
    State(state): State<ApiState>,
    Member(p): Member,
    body: Bytes,
) -> ApiResult<(StatusCode, Extension<AuditNote>, Json<Value>)> {
    let actor = Actor::of(&p);
    limit::check(&state, p.subject.id()).await?;
    if matches!(actor.role, OrchRole::Viewer | OrchRole::Dba) {
        return Err(ApiError::Forbidden(format!(
            "the {} role may not create migrations",
            actor.role.as_str()
        )));
    }
    let obj = object(&body)?;
    let mut v = Validator::new();
    let name = v.string(&obj, &["name"], 200).value();
    let name = v.require(name, &["name"]);
    let target = v.string(&obj, &["targetDatabaseId"], 100).value();
    let target = v.require(target, &["targetDatabaseId"]);
    let script_text = v.secret(&obj, &["migrationScript"], SCRIPT_MAX).value();
    let script_text = v.require(
        script_text.filter(|s| !s.trim().is_empty()),
        &["migrationScript"],
    );
    let rollback_text = v
        .secret(&obj, &["rollbackScript"], SCRIPT_MAX)
        .value()
        .filter(|s| !s.trim().is_empty());
    let description = v.string(&obj, &["description"], 2000).value();
    let strategy = v.choice(&obj, &["strategy"], STRATEGIES).value();
    let risk = v.choice(&obj, &["riskLevel"], RISKS).value();
    let mut tags = Vec::new();
    match obj.get("tags") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.len() <= 50 => {
            for (i, t) in a.iter().enumerate() {
                match t.as_str() {
                    Some(s) if !s.is_empty() && s.len() <= 100 && !s.contains('\0') => {
                        tags.push(s.to_string())
                    }
                    _ => v.fail(FieldError::body(
                        &["tags", &i.to_string()],
                        "a tag is a string of 1 to 100 characters",
                        "type_error.str",
                    )),
                }
            }
        }
        Some(_) => v.fail(FieldError::body(
            &["tags"],
            "tags is a list of at most 50 strings",
            "type_error.list",
        )),
    }
    v.finish()?;
    let (Some(name), Some(target), Some(script_text)) = (name, target, script_text) else {
        return Err(ApiError::BadRequest(
            "name, targetDatabaseId and migrationScript are required".into(),
        ));
    };
    let unknown = || ApiError::Invalid {
        field: "targetDatabaseId".into(),
        message: format!("no registered database has the id {target:?}"),
    };
    let db_id = ids::parse(ids::DATABASE, &target).ok_or_else(unknown)?;
    let db = databases::load(&state, actor.tenant, db_id)
        .await
        .map_err(|_| unknown())?;
    actor.require(Action::Create, &db.environment)?;
    let script = parse_field("migrationScript", &script_text)?;
    if let Some(rb) = &rollback_text {
        parse_field("rollbackScript", rb)?;
    }
    let findings = lint::lint(&script);
    let requested = risk
        .as_deref()
        .and_then(|r| r.parse::<RiskLevel>().ok())
        .unwrap_or_default();
    let effective = requested.max(lint::derived_level(&findings));
    let requires_approval = db.environment == "Production" || effective >= RiskLevel::High;
    let new = NewMigration {
        database_id: db.id,
        name,
        description,
        migration_script: script_text,
        rollback_script: rollback_text,
        strategy: strategy.unwrap_or_else(|| "Phased".into()),
        requested_risk: requested.as_str().into(),
        risk_level: effective.as_str().into(),
        requires_approval,
        tags,
    };
    let tenant = actor.tenant;
    let m = state
        .pg
        .run(|pg| migrations::insert(pg, tenant, &new, actor.user))
        .await?;
    tracing::info!(migration_id = m.id, database_id = db.id, risk = %m.risk_level, requires_approval, findings = findings.len(), "migration created");
    let note = AuditNote::new("migration_create", "migration", Some(m.id)).details(json!({
        "name": m.name,
        "targetDatabaseId": ids::format(ids::DATABASE, db.id),
        "riskLevel": m.risk_level,
        "requiresApproval": m.requires_approval,
    }));
    Ok((StatusCode::CREATED, Extension(note), Json(view(&m))))
}

/// The tenant's migrations, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/migrations",
    operation_id = "orch_migrations_list",
    tag = "orchestrator",
    params(TenantHeader,
        ("status" = Option<MigrationStatus>, Query, description = "Only migrations in this status"),
        ("database" = Option<String>, Query, description = "Only migrations of this database (`db-<n>`)"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Page size (default 20)"),
        ("offset" = Option<i64>, Query, minimum = 0, maximum = 2147483647, description = "Migrations skipped (default 0)")),
    responses(
        (status = 200, body = MigrationList, description = "A page of migrations"),
        Refused,
    ),
    security(("bearerAuth" = []))
)]
pub async fn list(
    State(state): State<ApiState>,
    Member(p): Member,
    params: Params,
) -> ApiResult<Json<Value>> {
    let bad = |field: &str, message: String| ApiError::Invalid {
        field: field.into(),
        message,
    };
    let status = match params.str("status") {
        None => None,
        Some(s) if STATUSES.contains(&s) => Some(s.to_string()),
        Some(s) => {
            return Err(bad(
                "status",
                format!("{s:?} is not a status; one of {}", STATUSES.join(", ")),
            ))
        }
    };
    // Another shape names no database of anyone's: an empty page.
    let database = params
        .str("database")
        .map(|d| ids::parse(ids::DATABASE, d).unwrap_or(0));
    let limit = params
        .int("limit", 20, 1, 100)
        .map_err(|_| bad("limit", "limit is an integer from 1 to 100".into()))?;
    let offset = params
        .int("offset", 0, 0, i64::from(i32::MAX))
        .map_err(|_| bad("offset", "offset is a non-negative integer".into()))?;
    let tenant = p.tenant_id;
    let (rows, total) = state
        .pg
        .run(|pg| migrations::list(pg, tenant, status.as_deref(), database, limit, offset))
        .await?;
    let items: Vec<Value> = rows
        .iter()
        .map(|m| {
            json!({
                "migrationId": ids::format(ids::MIGRATION, m.id),
                "name": m.name,
                "status": m.status,
                "targetDatabase": ids::format(ids::DATABASE, m.database_id),
                "riskLevel": m.risk_level,
                "createdAt": stamp(m.created_at),
            })
        })
        .collect();
    Ok(Json(json!({
        "migrations": items,
        "total": total,
        "limit": limit,
        "offset": offset,
    })))
}

/// The tenant's migration `id` (a public id), or 404.
pub async fn load(state: &ApiState, tenant: uuid::Uuid, id: &str) -> ApiResult<Migration> {
    let n = ids::require(ids::MIGRATION, id, "migration")?;
    state
        .pg
        .run(|pg| migrations::get(pg, tenant, n))
        .await?
        .ok_or_else(|| ApiError::not_found("migration"))
}

/// One migration.
#[utoipa::path(
    get,
    path = "/api/v1/migrations/{id}",
    operation_id = "orch_migrations_get_one",
    tag = "orchestrator",
    params(TenantHeader, ("id" = String, Path, description = "The migration's id (`mig-<n>`)")),
    responses(
        (status = 200, body = MigrationView, description = "The migration"),
        Refused, Missing,
    ),
    security(("bearerAuth" = []))
)]
pub async fn get_one(
    State(state): State<ApiState>,
    Member(p): Member,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(view(&load(&state, p.tenant_id, &id).await?)))
}

/// Lint the migration's script, and with `dryRun` run it on the master in a transaction that is rolled back.
#[utoipa::path(
    post,
    path = "/api/v1/migrations/{id}/validate",
    operation_id = "orch_migrations_validate",
    tag = "orchestrator",
    params(TenantHeader, ("id" = String, Path, description = "The migration's id (`mig-<n>`)")),
    request_body(content = Option<ValidateRequest>, content_type = "application/json"),
    responses(
        (status = 200, body = Validation, description = "The findings"),
        Refused, Missing, Conflicting,
    ),
    security(("bearerAuth" = []))
)]
pub async fn validate(
    State(state): State<ApiState>,
    Member(p): Member,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(Extension<AuditNote>, Json<Value>)> {
    let actor = Actor::of(&p);
    let m = load(&state, actor.tenant, &id).await?;
    let dry_run = if body.iter().all(u8::is_ascii_whitespace) {
        false
    } else {
        let obj = object(&body)?;
        let mut v = Validator::new();
        let d = v.bool(&obj, &["dryRun"]).value();
        v.finish()?;
        d.unwrap_or(false)
    };
    let db = databases::load(&state, actor.tenant, m.database_id).await?;
    actor.require(Action::Validate, &db.environment)?;
    let script = parse_field("migrationScript", &m.migration_script)?;
    let findings = lint::lint(&script);
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for f in &findings {
        match f.severity {
            Severity::Error => errors.push(json!({
                "rule": f.rule, "message": f.message, "line": f.line,
                "recommendation": f.recommendation,
            })),
            Severity::Warning => warnings.push(json!({
                "rule": f.rule, "message": f.message, "line": f.line,
                "recommendation": f.recommendation,
            })),
        }
    }
    let mut affected = objects::affected_objects(&script);
    let mut has_conflicts = false;
    if dry_run {
        let cluster = sluice_jobs::migrations::Cluster::open(&state.secrets, &db).map_err(|e| {
            ApiError::Conflict(format!("the database's registration is unusable: {e}"))
        })?;
        match dryrun::dry_run(&script, &cluster.master).await {
            Ok(report) => {
                has_conflicts = !report.errors.is_empty();
                for e in report.errors {
                    errors.push(json!({"rule": "dry-run", "message": e}));
                }
                for s in report.skipped {
                    warnings.push(json!({
                        "rule": "dry-run-skipped",
                        "message": s,
                        "recommendation": "This statement cannot run inside a transaction, so the dry run did not try it; it runs for real on execution.",
                    }));
                }
                for t in report.touched {
                    if !affected.contains(&t) {
                        affected.push(t);
                    }
                }
            }
            Err(e) => errors.push(json!({"rule": "dry-run", "message": format!("the dry run could not run on the master: {e}")})),
        }
    }
    let is_valid = errors.is_empty();
    let answer = json!({
        "isValid": is_valid,
        "errors": errors,
        "warnings": warnings,
        "estimatedDuration": objects::estimate_duration_secs(&script),
        "riskLevel": m.risk_level,
        "dependencyCheck": {"hasConflicts": has_conflicts, "affectedObjects": affected},
    });
    let note = AuditNote::new("migration_validate", "migration", Some(m.id)).details(json!({
        "dryRun": dry_run,
        "isValid": is_valid,
        "findings": findings.iter().map(|f| f.rule).collect::<Vec<_>>(),
    }));
    Ok((Extension(note), Json(answer)))
}
