//! Error occurrences: batch inserts from the workers, and the analytics
//! queries the API serves (read from the rollups).

use chrono::{DateTime, Utc};
use clickhouse::{Client, Row};
use serde::Deserialize;
use uuid::Uuid;

use crate::model::{ErrorEvent, Level};
use crate::Result;

/// One row of `error_events`.
#[derive(Debug)]
pub struct EventRow<'a> {
    pub tenant_id: Uuid,
    pub group_id: Uuid,
    pub event_id: &'a str,
    pub timestamp: u32,
    pub ts_ms: u64,
    pub level: Level,
    pub fingerprint: &'a str,
    pub message: &'a str,
    pub stack_trace: &'a str,
    pub context: &'a str,
    pub source: &'a str,
    pub environment: &'a str,
    pub url: &'a str,
    pub user_agent: &'a str,
    pub ip_address: &'a str,
}

impl<'a> EventRow<'a> {
    /// `event_id` is the event's identity: `<stream>/<entry id>/<index>`.
    pub fn new(event_id: &'a str, e: &'a ErrorEvent<'_>) -> Self {
        EventRow {
            tenant_id: e.tenant_id,
            group_id: e.group_id,
            event_id,
            timestamp: (e.ts_ms.max(0) / 1000) as u32,
            ts_ms: e.ts_ms.max(0) as u64,
            level: e.level,
            fingerprint: &e.fingerprint,
            message: &e.message,
            stack_trace: e.stack_trace.as_deref().unwrap_or(""),
            context: e.context.as_deref().unwrap_or(""),
            source: &e.source,
            environment: e.environment.as_deref().unwrap_or(""),
            url: e.url.as_deref().unwrap_or(""),
            user_agent: e.user_agent.as_deref().unwrap_or(""),
            ip_address: e.ip_address.as_deref().unwrap_or(""),
        }
    }

    /// Appends the row in ClickHouse's `RowBinary` format, columns in
    /// [`COLUMNS`] order.
    pub fn write_row_binary(&self, out: &mut Vec<u8>) {
        fn uuid(out: &mut Vec<u8>, u: &Uuid) {
            // RowBinary UUID: the high then the low 64 bits, each little-endian.
            let (hi, lo) = u.as_u64_pair();
            out.extend_from_slice(&hi.to_le_bytes());
            out.extend_from_slice(&lo.to_le_bytes());
        }
        fn string(out: &mut Vec<u8>, s: &str) {
            let mut n = s.len() as u64;
            loop {
                let byte = (n & 0x7f) as u8;
                n >>= 7;
                if n == 0 {
                    out.push(byte);
                    break;
                }
                out.push(byte | 0x80);
            }
            out.extend_from_slice(s.as_bytes());
        }
        uuid(out, &self.tenant_id);
        uuid(out, &self.group_id);
        string(out, self.event_id);
        out.extend_from_slice(&self.timestamp.to_le_bytes());
        out.extend_from_slice(&self.ts_ms.to_le_bytes());
        out.push(self.level as u8);
        for s in [
            self.fingerprint,
            self.message,
            self.stack_trace,
            self.context,
            self.source,
            self.environment,
            self.url,
            self.user_agent,
            self.ip_address,
        ] {
            string(out, s);
        }
    }
}

/// The columns [`EventRow::write_row_binary`] writes, in order.
pub const COLUMNS: &str = "tenant_id, group_id, event_id, timestamp, ts_ms, level, fingerprint, \
    message, stack_trace, context, source, environment, url, user_agent, ip_address";

/// Bytes encoded before they are sent, so a large batch streams to the
/// server instead of being held whole.
const SEND_EVERY: usize = 4 << 20;

/// The table's sort key, `(tenant_id, group_id, timestamp)`, compared as
/// ClickHouse compares it: a UUID by its second then its first half.
fn sort_key(r: &EventRow<'_>) -> (u64, u64, u64, u64, u32) {
    let (t_hi, t_lo) = r.tenant_id.as_u64_pair();
    let (g_hi, g_lo) = r.group_id.as_u64_pair();
    (t_lo, t_hi, g_lo, g_hi, r.timestamp)
}

/// Inserts rows as one `INSERT` (ClickHouse makes one part per day touched,
/// and the rollups one each), streamed in pieces of a few MiB. Rows go in
/// the table's order: ClickHouse sees the block is sorted and skips
/// reordering every column of it.
pub async fn insert(client: &Client, rows: &[EventRow<'_>]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut sorted: Vec<&EventRow<'_>> = rows.iter().collect();
    sorted.sort_by_key(|r| sort_key(r));
    let mut ins = client.insert_formatted_with(format!(
        "INSERT INTO error_events ({COLUMNS}) FORMAT RowBinary"
    ));
    let mut buf = Vec::with_capacity(SEND_EVERY + (64 << 10));
    for r in sorted {
        r.write_row_binary(&mut buf);
        if buf.len() >= SEND_EVERY {
            ins.send(bytes::Bytes::from(std::mem::take(&mut buf)))
                .await?;
            buf.reserve(SEND_EVERY + (64 << 10));
        }
    }
    if !buf.is_empty() {
        ins.send(bytes::Bytes::from(buf)).await?;
    }
    ins.end().await?;
    Ok(())
}

/// Occurrences of a tenant stored since `since` (from the rollups: the
/// hourly one for whole hours, the five-minute one for the part before).
pub async fn count_since(client: &Client, tenant_id: Uuid, since: DateTime<Utc>) -> Result<u64> {
    let secs = since.timestamp();
    let hour = secs - secs.rem_euclid(3600);
    let first_full_hour = if hour == secs { hour } else { hour + 3600 };
    let n: u64 = client
        .query(
            "SELECT
               (SELECT countMerge(events) FROM error_rollup_1h
                 WHERE tenant_id = toUUID(?) AND bucket >= toDateTime(?))
             + (SELECT countMerge(events) FROM error_rollup_5m
                 WHERE tenant_id = toUUID(?) AND bucket >= toDateTime(?) AND bucket < toDateTime(?))",
        )
        .bind(tenant_id.to_string())
        .bind(first_full_hour)
        .bind(tenant_id.to_string())
        .bind(secs - secs.rem_euclid(300))
        .bind(first_full_hour)
        .fetch_one::<u64>()
        .await?;
    Ok(n)
}

/// Trend bucket sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Hour,
    Day,
    Week,
    Month,
}

impl Bucket {
    fn expr(self) -> &'static str {
        match self {
            Bucket::Hour => "toUInt32(toStartOfHour(bucket, 'UTC'))",
            Bucket::Day => "toUInt32(toStartOfDay(bucket, 'UTC'))",
            Bucket::Week => "toUInt32(toDateTime(toMonday(bucket, 'UTC'), 'UTC'))",
            Bucket::Month => "toUInt32(toDateTime(toStartOfMonth(bucket, 'UTC'), 'UTC'))",
        }
    }
}

/// One trend bucket: its start (epoch seconds), occurrences, critical ones.
#[derive(Debug, Clone, Row, Deserialize, PartialEq)]
pub struct TrendPoint {
    pub start: u32,
    pub events: u64,
    pub critical: u64,
}

/// Occurrences per bucket since `since`, from the hourly rollup.
pub async fn trend(
    client: &Client,
    tenant_id: Uuid,
    since: DateTime<Utc>,
    bucket: Bucket,
) -> Result<Vec<TrendPoint>> {
    let sql = format!(
        "SELECT t AS start, sum(n) AS events, sumIf(n, level = 'critical') AS critical FROM (
           SELECT {} AS t, level, countMerge(events) AS n FROM error_rollup_1h
           WHERE tenant_id = toUUID(?) AND bucket >= toDateTime(?)
           GROUP BY t, level)
         GROUP BY t ORDER BY t",
        bucket.expr()
    );
    Ok(client
        .query(&sql)
        .bind(tenant_id.to_string())
        .bind(since.timestamp() - since.timestamp().rem_euclid(3600))
        .fetch_all::<TrendPoint>()
        .await?)
}

/// Stored occurrences of a tenant (optionally of one group), read from the
/// raw table: used by checks that must see exactly what was written.
pub async fn count_raw(client: &Client, tenant_id: Uuid, group_id: Option<Uuid>) -> Result<u64> {
    let (sql, group) = match group_id {
        Some(g) => (
            "SELECT count() FROM error_events WHERE tenant_id = toUUID(?) AND group_id = toUUID(?)",
            g.to_string(),
        ),
        None => (
            "SELECT count() FROM error_events WHERE tenant_id = toUUID(?) AND ? = ''",
            String::new(),
        ),
    };
    Ok(client
        .query(sql)
        .bind(tenant_id.to_string())
        .bind(group)
        .fetch_one::<u64>()
        .await?)
}

/// Deletes a group's occurrences (an asynchronous mutation).
pub async fn delete_group(client: &Client, tenant_id: Uuid, group_id: Uuid) -> Result<()> {
    client
        .query(
            "ALTER TABLE error_events DELETE WHERE tenant_id = toUUID(?) AND group_id = toUUID(?)",
        )
        .bind(tenant_id.to_string())
        .bind(group_id.to_string())
        .execute()
        .await?;
    Ok(())
}
