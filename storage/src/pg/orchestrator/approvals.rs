//! Approval requests of migrations: one per submission, newest last.

use uuid::Uuid;

use crate::Result;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Approval {
    pub id: i64,
    pub tenant_id: Uuid,
    pub migration_id: i64,
    pub status: String,
    pub submitted_by: Option<Uuid>,
    pub submitted_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub notes: Option<String>,
}

macro_rules! columns {
    () => {
        "id, tenant_id, migration_id, status, submitted_by, submitted_at, expires_at, \
         reviewed_by, reviewed_at, notes"
    };
}

pub async fn insert(
    tx: &mut sqlx::PgConnection,
    tenant: Uuid,
    migration: i64,
    submitted_by: Option<Uuid>,
    expires_at: chrono::DateTime<chrono::Utc>,
) -> Result<Approval> {
    let sql = concat!(
        "INSERT INTO orch_approvals (tenant_id, migration_id, submitted_by, expires_at) \
         VALUES ($1, $2, $3, $4) RETURNING ",
        columns!()
    );
    Ok(sqlx::query_as::<_, Approval>(sql)
        .bind(tenant)
        .bind(migration)
        .bind(submitted_by)
        .bind(expires_at)
        .fetch_one(tx)
        .await?)
}

/// The migration's latest approval request.
pub async fn latest<'e>(
    ex: impl sqlx::PgExecutor<'e>,
    tenant: Uuid,
    migration: i64,
) -> Result<Option<Approval>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM orch_approvals WHERE tenant_id = $1 AND migration_id = $2 \
         ORDER BY id DESC LIMIT 1"
    );
    Ok(sqlx::query_as::<_, Approval>(sql)
        .bind(tenant)
        .bind(migration)
        .fetch_optional(ex)
        .await?)
}

/// Records a decision on a pending approval.
pub async fn decide(
    tx: &mut sqlx::PgConnection,
    id: i64,
    status: &str,
    reviewer: &str,
    reviewer_id: Option<Uuid>,
    notes: Option<&str>,
) -> Result<Approval> {
    let sql = concat!(
        "UPDATE orch_approvals SET status = $2, reviewed_by = $3, reviewer_id = $4, \
         reviewed_at = now(), notes = $5 WHERE id = $1 RETURNING ",
        columns!()
    );
    Ok(sqlx::query_as::<_, Approval>(sql)
        .bind(id)
        .bind(status)
        .bind(reviewer)
        .bind(reviewer_id)
        .bind(notes)
        .fetch_one(tx)
        .await?)
}
