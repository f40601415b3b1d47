//! Finished database operations: inserts from the workers and the DDL
//! drainer, history pages and dashboard figures for the API.

use chrono::{DateTime, Utc};
use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{OpOrigin, OpStatus, OperationEvent};
use crate::Result;

#[derive(Debug, Row, Serialize)]
pub struct OpRow<'a> {
    #[serde(with = "clickhouse::serde::uuid")]
    pub tenant_id: Uuid,
    pub operation_id: &'a str,
    pub event_id: &'a str,
    pub script_name: &'a str,
    pub script_type: &'a str,
    pub status: OpStatus,
    pub started_at: u32,
    pub started_ms: u64,
    pub completed_ms: u64,
    pub duration_ms: u64,
    pub error_message: &'a str,
    pub db_session_user: &'a str,
    pub affected_objects: &'a [String],
    pub statement: &'a str,
    pub origin: OpOrigin,
}

impl<'a> OpRow<'a> {
    pub fn new(event_id: &'a str, e: &'a OperationEvent) -> Self {
        OpRow {
            tenant_id: e.tenant_id,
            operation_id: &e.operation_id,
            event_id,
            script_name: &e.script_name,
            script_type: &e.script_type,
            status: e.status,
            started_at: (e.started_ms.max(0) / 1000) as u32,
            started_ms: e.started_ms.max(0) as u64,
            completed_ms: e.completed_ms.max(0) as u64,
            duration_ms: e.duration_ms.max(0) as u64,
            error_message: e.error_message.as_deref().unwrap_or(""),
            db_session_user: e.db_session_user.as_deref().unwrap_or(""),
            affected_objects: &e.affected_objects,
            statement: e.statement.as_deref().unwrap_or(""),
            origin: e.origin,
        }
    }
}

pub async fn insert(client: &Client, rows: &[OpRow<'_>]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut ins = client.insert::<OpRow<'static>>("operations").await?;
    for r in rows {
        ins.write(r).await?;
    }
    ins.end().await?;
    Ok(())
}

/// One history entry.
#[derive(Debug, Clone, Row, Deserialize)]
pub struct HistoryRow {
    pub operation_id: String,
    pub script_name: String,
    pub script_type: String,
    pub status: OpStatus,
    pub started_ms: u64,
    pub duration_ms: u64,
    pub error_message: String,
    pub db_session_user: String,
    pub affected_objects: Vec<String>,
    pub statement: String,
}

#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub script_type: Option<String>,
    pub status: Option<OpStatus>,
}

/// Newest first, since `since`; returns the page and the total matching.
pub async fn history(
    client: &Client,
    tenant_id: Uuid,
    since: DateTime<Utc>,
    filter: &HistoryFilter,
    limit: u64,
    offset: u64,
) -> Result<(Vec<HistoryRow>, u64)> {
    let mut cond = String::from("tenant_id = toUUID(?) AND started_at >= toDateTime(?)");
    if filter.script_type.is_some() {
        cond.push_str(" AND script_type = ?");
    }
    if filter.status.is_some() {
        cond.push_str(" AND status = ?");
    }
    let bind = |q: clickhouse::query::Query| {
        let mut q = q.bind(tenant_id.to_string()).bind(since.timestamp());
        if let Some(t) = &filter.script_type {
            q = q.bind(t.as_str());
        }
        if let Some(s) = filter.status {
            q = q.bind(s.as_str());
        }
        q
    };
    let rows = bind(client.query(&format!(
        "SELECT operation_id, script_name, script_type, status, started_ms, duration_ms, error_message,
                db_session_user, affected_objects, statement
         FROM operations WHERE {cond} ORDER BY started_ms DESC, completed_ms DESC, operation_id LIMIT ? OFFSET ?"
    )))
    .bind(limit)
    .bind(offset)
    .fetch_all::<HistoryRow>()
    .await?;
    let total = bind(client.query(&format!("SELECT count() FROM operations WHERE {cond}")))
        .fetch_one::<u64>()
        .await?;
    Ok((rows, total))
}

/// Dashboard figures over a window, from the hourly rollup.
#[derive(Debug, Clone, Default, Row, Deserialize, PartialEq)]
pub struct OpTotals {
    pub total: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub duration_sum: u64,
}

pub async fn totals(client: &Client, tenant_id: Uuid, since: DateTime<Utc>) -> Result<OpTotals> {
    let hour = since.timestamp() - since.timestamp().rem_euclid(3600);
    Ok(client
        .query(
            "SELECT sum(n) AS total, sumIf(n, status = 'FAILED') AS failed, sumIf(n, status = 'TIMEOUT') AS timed_out,
                    sum(d) AS duration_sum
             FROM (SELECT status, countMerge(ops) AS n, sumMerge(duration) AS d FROM operations_rollup_1h
                   WHERE tenant_id = toUUID(?) AND bucket >= toDateTime(?) GROUP BY status)",
        )
        .bind(tenant_id.to_string())
        .bind(hour)
        .fetch_one::<OpTotals>()
        .await?)
}
