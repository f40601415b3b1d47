//! Attaching a user's PostgreSQL database to DDL tracking, draining its
//! queue into the operations table, and detaching it cleanly. Shared by
//! the API, the `sluice track-db` command and the workers.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;

use crate::ch::operations::{self, OpRow};
use crate::ch::Keyed;
use crate::ddl::{self, DdlRecord};
use crate::model::{OpOrigin, OpStatus, OperationEvent};
use crate::pg::tracked_databases::{self, TrackedDatabase};
use crate::secrets::SecretBox;
use crate::{Result, StorageError};

/// Rows drained per transaction.
pub const DRAIN_BATCH: i64 = 500;

/// A small pool to a tracked database.
pub async fn connect(url: &str) -> Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await?)
}

/// Registers a database: checks the URL connects, installs the trigger and
/// queue there, and stores the URL encrypted.
pub async fn attach(
    pg: &PgPool,
    secrets: &SecretBox,
    tenant_id: Uuid,
    name: &str,
    url: &str,
) -> Result<TrackedDatabase> {
    let target = connect(url)
        .await
        .map_err(|e| StorageError::Invalid(format!("cannot connect to the database: {e}")))?;
    ddl::install(&target).await?;
    target.close().await;
    tracked_databases::insert(pg, tenant_id, name, &secrets.seal(url)?).await
}

/// The operation a recorded DDL statement becomes.
pub fn to_operation(tenant_id: Uuid, db: Uuid, r: &DdlRecord) -> (String, OperationEvent) {
    let event_id = format!("ddl:{db}:{}", r.id);
    let operation_id = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(event_id.as_bytes()));
    let first = r.affected_objects.first().map(String::as_str).unwrap_or("");
    let ms = r.occurred_at.timestamp_millis();
    let ev = OperationEvent {
        tenant_id,
        operation_id,
        script_name: format!("{} {first}", r.command_tag).trim().to_string(),
        script_type: "DDL".into(),
        status: OpStatus::Completed,
        started_ms: ms,
        completed_ms: ms,
        duration_ms: 0,
        error_message: None,
        db_session_user: Some(r.session_user.clone()),
        affected_objects: r.affected_objects.clone(),
        statement: Some(r.statement.clone()),
        origin: OpOrigin::Ddl,
    };
    (event_id, ev)
}

/// Drains one batch of a tracked database's queue into ClickHouse. Rows
/// already stored (a drain whose commit failed) are skipped by id, so the
/// operations table holds each statement once. Returns rows drained.
pub async fn drain_once(
    target: &PgPool,
    ch: &clickhouse::Client,
    tenant_id: Uuid,
    db: Uuid,
) -> Result<usize> {
    ddl::drain(target, DRAIN_BATCH, |records| async move {
        let events: Vec<(String, OperationEvent)> = records
            .iter()
            .map(|r| to_operation(tenant_id, db, r))
            .collect();
        let todo = crate::ch::unstored(
            ch,
            Keyed::Operations,
            events.iter().collect(),
            |e| e.started_ms,
            |e| e.tenant_id,
        )
        .await?;
        let rows: Vec<OpRow<'_>> = todo.iter().map(|(id, e)| OpRow::new(id, e)).collect();
        operations::insert(ch, &rows).await
    })
    .await
}

/// Drains what is left, removes the trigger and queue, and forgets the
/// database. False when the tenant has no such database.
pub async fn detach(
    pg: &PgPool,
    ch: &clickhouse::Client,
    secrets: &SecretBox,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<bool> {
    let Some(db) = tracked_databases::get(pg, tenant_id, id).await? else {
        return Ok(false);
    };
    let url = secrets.open(&db.url_ciphertext)?;
    let target = connect(&url).await?;
    while drain_once(&target, ch, tenant_id, id).await? > 0 {}
    ddl::uninstall(&target).await?;
    target.close().await;
    tracked_databases::delete(pg, tenant_id, id).await
}
