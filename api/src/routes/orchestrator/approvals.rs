//! `POST /migrations/{id}/submit-approval`, `/approve` and `/reject`
//! (conventions section 8). Submission opens an approval that expires after
//! [`APPROVAL_TTL_DAYS`]; only an Admin decides it, with notes; a decision
//! on an expired approval is refused (409) and the migration goes back to
//! `Draft`, to be submitted again. Each step is audited.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{json, Value};
use sluice_storage::pg::orchestrator::{approvals, migrations};
use sluice_storage::pg::users;
use sluice_storage::StorageError;

use super::access::{Action, Actor};
use super::{databases, ids, stamp};
use crate::audit::AuditNote;
use crate::auth::Member;
use crate::error::{ApiError, ApiResult};
use crate::openapi::orchestrator::{ApprovalDecided, ApprovalSubmitted, Decision};
use crate::openapi::orchestrator::{Conflicting, Missing, Refused};
use crate::openapi::tracking::TenantHeader;
use crate::validate::{object, Validator};
use crate::ApiState;

pub const APPROVAL_TTL_DAYS: i64 = 7;

/// Statuses a migration may be submitted from: a draft, or one whose last
/// approval or run is over (a resubmission).
const SUBMITTABLE: &[&str] = &["Draft", "Rejected", "Failed", "RolledBack"];

pub async fn pool(state: &ApiState) -> ApiResult<sqlx::PgPool> {
    Ok(state
        .pg
        .run(|pg| async move { Ok::<_, StorageError>(pg.clone()) })
        .await?)
}

/// Submit a migration for approval (expires after 7 days).
#[utoipa::path(
    post,
    path = "/api/v1/migrations/{id}/submit-approval",
    operation_id = "orch_approvals_submit",
    tag = "orchestrator",
    params(TenantHeader, ("id" = String, Path, description = "The migration's id (`mig-<n>`)")),
    responses(
        (status = 201, body = ApprovalSubmitted, description = "Submitted"),
        Refused, Missing, Conflicting,
    ),
    security(("bearerAuth" = []))
)]
pub async fn submit(
    State(state): State<ApiState>,
    Member(p): Member,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Extension<AuditNote>, Json<Value>)> {
    let actor = Actor::of(&p);
    let m = super::migrations::load(&state, actor.tenant, &id).await?;
    let db = databases::load(&state, actor.tenant, m.database_id).await?;
    actor.require(Action::Validate, &db.environment)?;
    let pool = pool(&state).await?;
    let mut tx = pool.begin().await.map_err(StorageError::from)?;
    let m = migrations::lock(&mut tx, actor.tenant, m.id)
        .await?
        .ok_or_else(|| ApiError::not_found("migration"))?;
    if !SUBMITTABLE.contains(&m.status.as_str()) {
        return Err(ApiError::Conflict(format!(
            "a {} migration cannot be submitted for approval",
            m.status
        )));
    }
    let expires = chrono::Utc::now() + chrono::Duration::days(APPROVAL_TTL_DAYS);
    let a = approvals::insert(&mut tx, actor.tenant, m.id, actor.user, expires).await?;
    migrations::set_status(&mut *tx, actor.tenant, m.id, "PendingApproval").await?;
    tx.commit().await.map_err(StorageError::from)?;
    tracing::info!(
        migration_id = m.id,
        approval_id = a.id,
        "migration submitted for approval"
    );
    let note = AuditNote::new("migration_submit_approval", "migration", Some(m.id)).details(
        json!({"approvalId": ids::format(ids::APPROVAL, a.id), "expiresAt": stamp(a.expires_at)}),
    );
    Ok((
        StatusCode::CREATED,
        Extension(note),
        Json(json!({
            "approvalId": ids::format(ids::APPROVAL, a.id),
            "migrationId": ids::format(ids::MIGRATION, m.id),
            "status": a.status,
            "submittedAt": stamp(a.submitted_at),
            "expiresAt": stamp(a.expires_at),
        })),
    ))
}

/// Approve a PendingApproval migration (Admin).
#[utoipa::path(
    post,
    path = "/api/v1/migrations/{id}/approve",
    operation_id = "orch_approvals_approve",
    tag = "orchestrator",
    params(TenantHeader, ("id" = String, Path, description = "The migration's id (`mig-<n>`)")),
    request_body(content = Option<Decision>, content_type = "application/json"),
    responses(
        (status = 200, body = ApprovalDecided, description = "Approved"),
        Refused, Missing, Conflicting,
    ),
    security(("bearerAuth" = []))
)]
pub async fn approve(
    state: State<ApiState>,
    member: Member,
    id: Path<String>,
    body: Bytes,
) -> ApiResult<(Extension<AuditNote>, Json<Value>)> {
    decide(state, member, id, body, "Approved").await
}

/// Reject a PendingApproval migration (Admin).
#[utoipa::path(
    post,
    path = "/api/v1/migrations/{id}/reject",
    operation_id = "orch_approvals_reject",
    tag = "orchestrator",
    params(TenantHeader, ("id" = String, Path, description = "The migration's id (`mig-<n>`)")),
    request_body(content = Option<Decision>, content_type = "application/json"),
    responses(
        (status = 200, body = ApprovalDecided, description = "Rejected"),
        Refused, Missing, Conflicting,
    ),
    security(("bearerAuth" = []))
)]
pub async fn reject(
    state: State<ApiState>,
    member: Member,
    id: Path<String>,
    body: Bytes,
) -> ApiResult<(Extension<AuditNote>, Json<Value>)> {
    decide(state, member, id, body, "Rejected").await
}

async fn decide(
    State(state): State<ApiState>,
    Member(p): Member,
    Path(id): Path<String>,
    body: Bytes,
    decision: &'static str,
) -> ApiResult<(Extension<AuditNote>, Json<Value>)> {
    let actor = Actor::of(&p);
    let m = super::migrations::load(&state, actor.tenant, &id).await?;
    let db = databases::load(&state, actor.tenant, m.database_id).await?;
    actor.require(Action::Review, &db.environment)?;
    let notes = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let obj = object(&body)?;
        let mut v = Validator::new();
        let n = v.string(&obj, &["notes"], 4000).value();
        v.finish()?;
        n
    };
    let reviewer = match actor.user {
        Some(u) => state
            .pg
            .run(|pg| users::by_id(pg, u))
            .await?
            .map(|u| u.username)
            .unwrap_or_else(|| u.to_string()),
        None => "api-key".to_string(),
    };
    let pool = pool(&state).await?;
    let mut tx = pool.begin().await.map_err(StorageError::from)?;
    let m = migrations::lock(&mut tx, actor.tenant, m.id)
        .await?
        .ok_or_else(|| ApiError::not_found("migration"))?;
    let pending = approvals::latest(&mut *tx, actor.tenant, m.id)
        .await?
        .filter(|a| a.status == "Pending" && m.status == "PendingApproval")
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "only a PendingApproval migration can be {}; this one is {}",
                decision.to_ascii_lowercase(),
                m.status
            ))
        })?;
    if pending.expires_at <= chrono::Utc::now() {
        approvals::decide(&mut tx, pending.id, "Expired", &reviewer, actor.user, None).await?;
        migrations::set_status(&mut *tx, actor.tenant, m.id, "Draft").await?;
        tx.commit().await.map_err(StorageError::from)?;
        return Err(ApiError::Conflict(format!(
            "the approval request expired at {}; submit the migration again",
            stamp(pending.expires_at)
        )));
    }
    let a = approvals::decide(
        &mut tx,
        pending.id,
        decision,
        &reviewer,
        actor.user,
        notes.as_deref(),
    )
    .await?;
    migrations::set_status(&mut *tx, actor.tenant, m.id, decision).await?;
    tx.commit().await.map_err(StorageError::from)?;
    tracing::info!(
        migration_id = m.id,
        approval_id = a.id,
        decision,
        "approval decided"
    );
    let action = if decision == "Approved" {
        "migration_approve"
    } else {
        "migration_reject"
    };
    let note = AuditNote::new(action, "migration", Some(m.id)).details(json!({
        "approvalId": ids::format(ids::APPROVAL, a.id),
        "notes": a.notes,
        "reviewedBy": a.reviewed_by,
    }));
    Ok((
        Extension(note),
        Json(json!({
            "approvalId": ids::format(ids::APPROVAL, a.id),
            "migrationId": ids::format(ids::MIGRATION, m.id),
            "status": a.status,
            "reviewedBy": a.reviewed_by,
            "reviewedAt": a.reviewed_at.map(stamp),
            "notes": a.notes,
        })),
    ))
}
