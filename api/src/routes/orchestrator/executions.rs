//! `POST /migrations/{id}/execute`, `GET /migrations/{id}/executions/{eid}`
//! and `POST /migrations/{id}/executions/{eid}/rollback` (conventions
//! sections 9 and 10).
//!
//! Execute checks roles, the approval and the phases, then records a
//! `Running` execution and queues its `migration` job in one transaction.
//! The execution row is the database's lock: a partial unique index admits
//! one `Running` execution per registered database, so a second execute —
//! from this process or any other — gets 409 `CONFLICT`. Manual rollback
//! takes the same lock while it runs, synchronously.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{json, Map, Value};
use sluice_jobs::migrations::{self as job, Cluster, MigrationJob};
use sluice_jobs::queue::{self, Kind};
use sluice_orchestrator::executor::{self, Phase, PhaseReport, PhaseStatus};
use sluice_orchestrator::{objects, script};
use sluice_storage::pg::orchestrator::executions::{self, Execution, NewExecution};
use sluice_storage::pg::orchestrator::{approvals, migrations};
use sluice_storage::StorageError;

use super::access::{Action, Actor};
use super::approvals::pool;
use super::databases::{self, ENVIRONMENTS};
use super::migrations::STRATEGIES;
use super::{ids, stamp};
use crate::audit::AuditNote;
use crate::auth::Member;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::openapi::orchestrator::executions::{
    ExecuteRequest, ExecutionStarted, ExecutionView, RollbackRequest, RolledBack,
};
use crate::openapi::orchestrator::{Conflicting, Missing, Refused};
use crate::openapi::tracking::TenantHeader;
use crate::validate::{object, Validator};
use crate::ApiState;

/// An execution as `GET …/executions/{id}` answers it.
pub fn view(e: &Execution) -> Value {
    let metrics = |k: &str| e.metrics.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "executionId": ids::format(ids::EXECUTION, e.id),
        "migrationId": ids::format(ids::MIGRATION, e.migration_id),
        "status": e.status,
        "dryRun": e.dry_run,
        "strategy": e.strategy,
        "startedAt": stamp(e.started_at),
        "completedAt": e.completed_at.map(stamp),
        "currentPhase": e.current_phase,
        "progress": e.progress,
        "estimatedDuration": e.estimated_duration,
        "performanceMetrics": {
            "avgQueryLatencyMs": metrics("avgQueryLatencyMs"),
            "p99QueryLatencyMs": metrics("p99QueryLatencyMs"),
            "replicationLagSeconds": metrics("replicationLagSeconds"),
        },
        "thresholds": e.thresholds,
        "phases": e.phases,
        "haltReason": e.halt_reason,
        "rollbackReason": e.rollback_reason,
        "rollbackCompletedAt": e.rollback_completed_at.map(stamp),
        "rollbackDuration": e.rollback_duration,
    })
}

/// A positive number field of the `thresholds` object.
fn threshold(v: &mut Validator, t: &Map<String, Value>, key: &str) -> Option<f64> {
    match t.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_f64().is_some_and(|x| x > 0.0 && x.is_finite()) => {
            n.as_f64()
        }
        Some(_) => {
            v.fail(FieldError::body(
                &["thresholds", key],
                "a positive number is expected",
                "type_error.float",
            ));
            None
        }
    }
}

/// Queue an execution of the migration, phase by phase.
#[utoipa::path(
    post,
    path = "/api/v1/migrations/{id}/execute",
    operation_id = "orch_executions_execute",
    tag = "orchestrator",
    params(TenantHeader, ("id" = String, Path, description = "The migration's id (`mig-<n>`)")),
    request_body(content = Option<ExecuteRequest>, content_type = "application/json"),
    responses(
        (status = 202, body = ExecutionStarted, description = "Queued and running"),
        Refused, Missing, Conflicting,
    ),
    security(("bearerAuth" = []))
)]
pub async fn execute(
    State(state): State<ApiState>,
    Member(p): Member,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Extension<AuditNote>, Json<Value>)> {
    let actor = Actor::of(&p);
    let m = super::migrations::load(&state, actor.tenant, &id).await?;
    let db = databases::load(&state, actor.tenant, m.database_id).await?;
    let obj = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        object(&body)?
    };
    let mut v = Validator::new();
    let environment = v.choice(&obj, &["environment"], ENVIRONMENTS).value();
    let strategy = v.choice(&obj, &["strategy"], STRATEGIES).value();
    let dry_run = v.bool(&obj, &["dryRun"]).value().unwrap_or(false);
    let mut requested_phases: Option<Vec<String>> = None;
    match obj.get("phases") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => {
            let mut names = Vec::new();
            for (i, x) in a.iter().enumerate() {
                match x.as_str() {
                    Some(s) => names.push(s.to_string()),
                    None => v.fail(FieldError::body(
                        &["phases", &i.to_string()],
                        "a phase is a replica id or \"master\"",
                        "type_error.str",
                    )),
                }
            }
            requested_phases = Some(names);
        }
        Some(_) => v.fail(FieldError::body(
            &["phases"],
            "phases is a list of replica ids and \"master\"",
            "type_error.list",
        )),
    }
    let mut thresholds = json!({});
    if let Some(t) = v.object(&obj, &["thresholds"]).value() {
        let lat = threshold(&mut v, t, "maxLatencyIncreasePercent");
        let lag = threshold(&mut v, t, "maxReplicationLagSeconds");
        thresholds = json!({"maxLatencyIncreasePercent": lat, "maxReplicationLagSeconds": lag});
    }
    v.finish()?;
    actor.require(Action::Execute, &db.environment)?;
    if let Some(env) = &environment {
        if *env != db.environment {
            return Err(ApiError::Invalid {
                field: "environment".into(),
                message: format!(
                    "the database is registered as {}, not {env}",
                    db.environment
                ),
            });
        }
    }
    let strategy = strategy.unwrap_or_else(|| m.strategy.clone());
    let replica_ids = job::replica_ids(&db.replicas);
    let phases: Vec<String> = match (strategy.as_str(), requested_phases) {
        ("Immediate", None) => vec!["master".into()],
        ("Immediate", Some(given)) if given == ["master"] => given,
        ("Immediate", Some(_)) => {
            return Err(ApiError::Invalid {
                field: "phases".into(),
                message: "the Immediate strategy runs one phase, \"master\"".into(),
            })
        }
        (_, None) => replica_ids
            .iter()
            .cloned()
            .chain(std::iter::once("master".to_string()))
            .collect(),
        (_, Some(given)) => given,
    };
    if phases.is_empty() {
        return Err(ApiError::Invalid {
            field: "phases".into(),
            message: "at least one phase is needed".into(),
        });
    }
    for (i, name) in phases.iter().enumerate() {
        if name != "master" && !replica_ids.contains(name) {
            return Err(ApiError::Invalid {
                field: "phases".into(),
                message: format!("{name:?} is neither \"master\" nor a replica of this database"),
            });
        }
        if phases[..i].contains(name) {
            return Err(ApiError::Invalid {
                field: "phases".into(),
                message: format!("{name:?} is repeated"),
            });
        }
    }
    let script = script::parse(&m.migration_script).map_err(|e| ApiError::Invalid {
        field: "migrationScript".into(),
        message: e.to_string(),
    })?;
    let estimated = i64::try_from(objects::estimate_duration_secs(&script))
        .unwrap_or(i64::MAX)
        .saturating_mul(phases.len() as i64);

    let pool = pool(&state).await?;
    let mut tx = pool.begin().await.map_err(StorageError::from)?;
    let m = migrations::lock(&mut tx, actor.tenant, m.id)
        .await?
        .ok_or_else(|| ApiError::not_found("migration"))?;
    if m.status == "Running" {
        return Err(ApiError::Conflict(
            "this migration is running already".into(),
        ));
    }
    if !dry_run {
        if m.status == "Succeeded" {
            return Err(ApiError::Conflict(
                "this migration has been applied; roll its execution back first".into(),
            ));
        }
        if m.requires_approval {
            if m.status != "Approved" {
                return Err(ApiError::ApprovalRequired(format!(
                    "this migration requires an approval and is {}",
                    m.status
                )));
            }
            let a = approvals::latest(&mut *tx, actor.tenant, m.id).await?;
            if a.as_ref()
                .is_none_or(|a| a.expires_at <= chrono::Utc::now())
            {
                migrations::set_status(&mut *tx, actor.tenant, m.id, "Draft").await?;
                tx.commit().await.map_err(StorageError::from)?;
                return Err(ApiError::ApprovalRequired(
                    "the approval has expired; submit the migration again".into(),
                ));
            }
        } else if matches!(m.status.as_str(), "PendingApproval" | "Rejected") {
            return Err(ApiError::Conflict(format!(
                "this migration is {}; it cannot be executed",
                m.status
            )));
        }
    }
    let pending: Vec<PhaseReport> = phases
        .iter()
        .map(|n| PhaseReport {
            name: n.clone(),
            status: PhaseStatus::Pending,
            started_at: None,
            completed_at: None,
            error: None,
        })
        .collect();
    let task_id = queue::new_task_id();
    let new = NewExecution {
        migration_id: m.id,
        database_id: db.id,
        dry_run,
        strategy: strategy.clone(),
        phases: job::phases_json(&pending),
        current_phase: phases.first().cloned(),
        thresholds,
        estimated_duration: estimated,
        task_id: task_id.clone(),
    };
    let Some(e) = executions::insert(&mut tx, actor.tenant, &new, actor.user).await? else {
        return Err(ApiError::Conflict(
            "another execution is running on this database".into(),
        ));
    };
    if !dry_run {
        migrations::set_status(&mut *tx, actor.tenant, m.id, "Running").await?;
    }
    let payload = MigrationJob {
        task_id: task_id.clone(),
        tenant: actor.tenant,
        execution_id: e.id,
    };
    queue::push(
        &mut tx,
        &state.job_namespace,
        Kind::Migration,
        &task_id,
        actor.tenant,
        Some(e.id),
        &payload,
    )
    .await
    .map_err(|e| ApiError::Storage(StorageError::Invalid(e.to_string())))?;
    tx.commit().await.map_err(StorageError::from)?;
    tracing::info!(migration_id = m.id, execution_id = e.id, task_id = %task_id, dry_run, strategy = %strategy, phases = ?phases, "migration execution queued");
    let note = AuditNote::new("migration_execute", "migration", Some(m.id)).details(json!({
        "executionId": ids::format(ids::EXECUTION, e.id),
        "dryRun": dry_run,
        "strategy": strategy,
        "phases": phases,
        "thresholds": e.thresholds,
    }));
    Ok((
        StatusCode::ACCEPTED,
        Extension(note),
        Json(json!({
            "executionId": ids::format(ids::EXECUTION, e.id),
            "migrationId": ids::format(ids::MIGRATION, m.id),
            "status": "Running",
            "dryRun": dry_run,
            "startedAt": stamp(e.started_at),
            "estimatedDuration": estimated,
            "currentPhase": e.current_phase,
            "phases": e.phases,
        })),
    ))
}

async fn load(
    state: &ApiState,
    tenant: uuid::Uuid,
    migration: &str,
    execution: &str,
) -> ApiResult<Execution> {
    let m = ids::require(ids::MIGRATION, migration, "execution")?;
    let e = ids::require(ids::EXECUTION, execution, "execution")?;
    state
        .pg
        .run(|pg| executions::get(pg, tenant, m, e))
        .await?
        .ok_or_else(|| ApiError::not_found("execution"))
}

/// An execution's status, phases and measurements.
#[utoipa::path(
    get,
    path = "/api/v1/migrations/{id}/executions/{execution_id}",
    operation_id = "orch_executions_get_one",
    tag = "orchestrator",
    params(TenantHeader, ("id" = String, Path, description = "The migration's id (`mig-<n>`)"), ("execution_id" = String, Path, description = "The execution's id (`exec-<n>`)")),
    responses(
        (status = 200, body = ExecutionView, description = "The execution"),
        Refused, Missing,
    ),
    security(("bearerAuth" = []))
)]
pub async fn get_one(
    State(state): State<ApiState>,
    Member(p): Member,
    Path((migration, execution)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(view(
        &load(&state, p.tenant_id, &migration, &execution).await?,
    )))
}

/// Roll back a Succeeded execution with the migration's rollbackScript.
#[utoipa::path(
    post,
    path = "/api/v1/migrations/{id}/executions/{execution_id}/rollback",
    operation_id = "orch_executions_rollback",
    tag = "orchestrator",
    params(TenantHeader, ("id" = String, Path, description = "The migration's id (`mig-<n>`)"), ("execution_id" = String, Path, description = "The execution's id (`exec-<n>`)")),
    request_body(content = RollbackRequest, content_type = "application/json"),
    responses(
        (status = 200, body = RolledBack, description = "Rolled back"),
        Refused, Missing, Conflicting,
    ),
    security(("bearerAuth" = []))
)]
pub async fn rollback(
    State(state): State<ApiState>,
    Member(p): Member,
    Path((migration, execution)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<(Extension<AuditNote>, Json<Value>)> {
    let actor = Actor::of(&p);
    let e = load(&state, actor.tenant, &migration, &execution).await?;
    let m = super::migrations::load(&state, actor.tenant, &migration).await?;
    let db = databases::load(&state, actor.tenant, m.database_id).await?;
    let obj = object(&body)?;
    let mut v = Validator::new();
    let reason = v.string(&obj, &["reason"], 2000).value();
    let reason = v.require(reason, &["reason"]);
    v.finish()?;
    let Some(reason) = reason else {
        return Err(ApiError::Invalid {
            field: "reason".into(),
            message: "a reason is required".into(),
        });
    };
    actor.require(Action::Execute, &db.environment)?;
    let Some(rb_text) = m
        .rollback_script
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    else {
        return Err(ApiError::Conflict(
            "this migration has no rollbackScript".into(),
        ));
    };
    let rb = script::parse(rb_text).map_err(|e| ApiError::Invalid {
        field: "rollbackScript".into(),
        message: e.to_string(),
    })?;
    if e.status != "Succeeded" || e.dry_run {
        return Err(ApiError::Conflict(format!(
            "only a Succeeded execution can be rolled back; this one is {}{}",
            e.status,
            if e.dry_run { " (a dry run)" } else { "" }
        )));
    }
    let cluster = Cluster::open(&state.secrets, &db)
        .map_err(|e| ApiError::Conflict(format!("the database's registration is unusable: {e}")))?;
    let tenant = actor.tenant;
    let claimed = state
        .pg
        .run(|pg| executions::claim_for_rollback(pg, tenant, m.id, e.id))
        .await?
        .ok_or_else(|| {
            ApiError::Conflict("another execution or rollback is running on this database".into())
        })?;
    let mut phases = job::phases_of(&claimed.phases);
    let applied: Vec<Phase> = phases
        .iter()
        .filter(|r| r.status == PhaseStatus::Succeeded)
        .filter_map(|r| {
            cluster.target(&r.name).map(|t| Phase {
                name: r.name.clone(),
                target: t.clone(),
            })
        })
        .collect();
    let started = std::time::Instant::now();
    tracing::info!(execution_id = e.id, phases = applied.len(), reason = %reason, "manual rollback");
    let result = executor::rollback(&rb, &applied).await;
    let duration = started.elapsed().as_secs_f64();
    let failure = match result {
        Ok(reports) => {
            for r in reports {
                if let Some(p) = phases.iter_mut().find(|p| p.name == r.name) {
                    *p = r;
                }
            }
            applied
                .iter()
                .filter_map(|a| phases.iter().find(|p| p.name == a.name))
                .find(|p| p.status != PhaseStatus::RolledBack)
                .map(|p| {
                    format!(
                        "phase {} was not rolled back: {}",
                        p.name,
                        p.error.as_deref().unwrap_or("no reason given")
                    )
                })
        }
        Err(err) => Some(err.to_string()),
    };
    let status = if failure.is_none() {
        "RolledBack"
    } else {
        "Failed"
    };
    let phases_json = job::phases_json(&phases);
    let done = state
        .pg
        .run(|pg| executions::rolled_back(pg, e.id, status, &phases_json, &reason, duration))
        .await?;
    state
        .pg
        .run(|pg| migrations::set_status(pg, tenant, m.id, status))
        .await?;
    let note = AuditNote::new("migration_rollback", "migration", Some(m.id)).details(json!({
        "executionId": ids::format(ids::EXECUTION, e.id),
        "reason": reason,
        "status": status,
        "error": failure,
        "durationSeconds": duration,
    }));
    if let Some(f) = failure {
        tracing::error!(execution_id = e.id, error = %f, "manual rollback incomplete");
        return Err(ApiError::Conflict(format!(
            "the rollback did not complete: {f}"
        )));
    }
    Ok((
        Extension(note),
        Json(json!({
            "executionId": ids::format(ids::EXECUTION, done.id),
            "status": done.status,
            "rollbackCompletedAt": done.rollback_completed_at.map(stamp),
            "rollbackDuration": duration,
        })),
    ))
}
