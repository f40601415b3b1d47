//! Dead letters: events the stores refused for good (see [`crate::failure`])
//! and stream entries that could not be decoded, set aside so that nothing
//! behind them waits.
//!
//! Each shard's streams have a dead-letter stream beside them, in the same
//! Redis Cluster slot: `{prefix}:errors:{N}:dead` and `{prefix}:ops:{N}:dead`.
//! A tenant's streams are all on one shard, so are its dead letters. A dead
//! letter holds one event (as a one-event wire envelope, or an operation's
//! JSON) with where it came from (`stream`, `entry`, `index`), its tenant,
//! the store that refused it, the reason (a [`Reason`] label) and the
//! store's error text, the time, and which stores already hold it.
//!
//! A listing reads at most 10,000 entries of each stream per call (page
//! with `before`).
//!
//! Each dead-letter stream keeps at most about `max_len` entries (`XTRIM
//! MAXLEN ~` after each write); what the trim removes is counted in
//! `{prefix}:dead-trimmed:{N}`.
//!
//! *Replay* appends the event to its shard's stream again (in one `MULTI`
//! with the dead letter's deletion), carrying its first identity in the
//! [`ORIGIN_FIELD`] field: a store that already holds it (ClickHouse, when
//! Postgres refused it) is not given it twice. It is stored normally if the
//! cause was fixed, or comes back here. *Drop* deletes it.

use deadpool_redis::redis::{self, streams::StreamRangeReply, Value};
use serde::Serialize;
use uuid::Uuid;

use crate::failure::Reason;
use crate::model::ErrorEvent;
use crate::ops::OP_FIELD;
use crate::streams::StreamLayout;
use crate::{wire, Result, StorageError};

/// The field of a replayed entry naming the event's first identity,
/// `<stream>/<entry id>/<index>`.
pub const ORIGIN_FIELD: &str = "o";

/// The default bound of each dead-letter stream.
pub const DEFAULT_MAX_LEN: usize = 100_000;

/// Entries a listing reads from one stream at most.
const SCAN_MAX: usize = 10_000;

/// Which streams a dead letter came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Errors,
    Operations,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Errors => "errors",
            Kind::Operations => "operations",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "errors" => Some(Kind::Errors),
            "operations" => Some(Kind::Operations),
            _ => None,
        }
    }

    fn payload_field(self) -> &'static str {
        match self {
            Kind::Errors => wire::FIELD,
            Kind::Operations => OP_FIELD,
        }
    }
}

/// The store that refused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Postgres,
    Clickhouse,
    /// Refused before any store: the entry could not be decoded.
    Decode,
}

impl Store {
    pub fn name(self) -> &'static str {
        match self {
            Store::Postgres => "postgres",
            Store::Clickhouse => "clickhouse",
            Store::Decode => "decode",
        }
    }
}

/// A dead letter about to be written.
#[derive(Debug, Clone)]
pub struct NewDeadLetter {
    pub kind: Kind,
    pub shard: u16,
    /// Unknown for an entry that could not be decoded.
    pub tenant_id: Option<Uuid>,
    pub store: Store,
    pub reason: Reason,
    /// The store's error text ([`crate::StorageError::detail`]).
    pub error: String,
    /// Where the event was first read: stream key, entry id, and its index
    /// in the entry (none for a whole undecodable entry).
    pub stream: String,
    pub entry_id: String,
    pub index: Option<u32>,
    /// ClickHouse holds it already (Postgres refused it afterwards).
    pub in_clickhouse: bool,
    /// Events in `payload`.
    pub events: u32,
    /// A one-event wire envelope, an operation's JSON, or the raw entry.
    pub payload: Vec<u8>,
}

impl NewDeadLetter {
    /// The event's first identity, as stores key it.
    pub fn origin(&self) -> String {
        match self.index {
            Some(i) => format!("{}/{}/{i}", self.stream, self.entry_id),
            None => format!("{}/{}", self.stream, self.entry_id),
        }
    }
}

/// Splits an origin `<stream>/<entry id>[/<index>]` into its parts.
pub fn split_origin(origin: &str) -> Option<(&str, &str, Option<u32>)> {
    let (head, last) = origin.rsplit_once('/')?;
    match last.parse::<u32>() {
        Ok(i) if head.contains('/') => {
            let (stream, entry) = head.rsplit_once('/')?;
            Some((stream, entry, Some(i)))
        }
        _ => Some((head, last, None)),
    }
}

/// The dead-letter stream of a shard's stream of `kind`.
pub fn key(layout: &StreamLayout, kind: Kind, shard: u16) -> String {
    match kind {
        Kind::Errors => format!("{}:dead", layout.errors_key(shard)),
        Kind::Operations => format!("{}:dead", layout.ops_key(shard)),
    }
}

fn trimmed_key(layout: &StreamLayout, shard: u16) -> String {
    format!("{}:dead-trimmed:{{{shard}}}", layout.prefix)
}

/// Writes dead letters, then trims each stream written to about
/// `max_len` entries. Returns how many older ones the trim removed.
pub async fn push(
    conn: &mut deadpool_redis::Connection,
    layout: &StreamLayout,
    letters: &[NewDeadLetter],
    max_len: usize,
) -> Result<u64> {
    if letters.is_empty() {
        return Ok(0);
    }
    let now = chrono::Utc::now().timestamp_millis();
    let mut pipe = redis::pipe();
    let mut touched: Vec<(Kind, u16)> = Vec::new();
    for l in letters {
        // A tenant's dead letters live on its shard, wherever the entry was.
        let shard = l.tenant_id.map_or(l.shard, |t| layout.shard_of(t));
        let mut cmd = redis::cmd("XADD");
        cmd.arg(key(layout, l.kind, shard))
            .arg("*")
            .arg("tenant")
            .arg(l.tenant_id.map(|t| t.to_string()).unwrap_or_default())
            .arg("store")
            .arg(l.store.name())
            .arg("reason")
            .arg(l.reason.label())
            .arg("error")
            .arg(&l.error)
            .arg("stream")
            .arg(&l.stream)
            .arg("entry")
            .arg(&l.entry_id)
            .arg("at")
            .arg(now)
            .arg("stored")
            .arg(if l.in_clickhouse { "clickhouse" } else { "" })
            .arg(wire::COUNT_FIELD)
            .arg(l.events);
        if let Some(i) = l.index {
            cmd.arg("index").arg(i);
        }
        cmd.arg(l.kind.payload_field()).arg(&l.payload[..]);
        pipe.add_command(cmd).ignore();
        if !touched.contains(&(l.kind, shard)) {
            touched.push((l.kind, shard));
        }
    }
    for (kind, shard) in &touched {
        pipe.cmd("XTRIM")
            .arg(key(layout, *kind, *shard))
            .arg("MAXLEN")
            .arg("~")
            .arg(max_len.max(1));
    }
    let trims: Vec<u64> = pipe.query_async(conn).await?;
    let mut total = 0;
    let mut count = redis::pipe();
    for ((_, shard), n) in touched.iter().zip(&trims) {
        if *n > 0 {
            count
                .cmd("INCRBY")
                .arg(trimmed_key(layout, *shard))
                .arg(*n)
                .ignore();
            total += n;
        }
    }
    if total > 0 {
        let () = count.query_async(conn).await?;
    }
    Ok(total)
}

/// A dead letter as read back: what operators see.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// `<kind>-<shard>-<stream entry id>`, e.g. `errors-1-1700000000000-0`.
    pub id: String,
    pub kind: Kind,
    pub tenant_id: Option<Uuid>,
    pub store: String,
    pub reason: String,
    pub error: String,
    pub stream: String,
    pub entry_id: String,
    pub index: Option<u32>,
    /// When it was set aside (RFC 3339).
    pub dead_at: Option<String>,
    /// Stores that hold it already.
    pub stored_in: Vec<String>,
    /// The event, decoded (null when it cannot be).
    pub event: serde_json::Value,
    #[serde(skip)]
    payload: Vec<u8>,
    #[serde(skip)]
    events: u32,
    #[serde(skip)]
    shard: u16,
    #[serde(skip)]
    dead_entry: String,
}

/// A dead letter's id, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadId {
    pub kind: Kind,
    pub shard: u16,
    pub entry: String,
}

impl DeadId {
    pub fn parse(s: &str) -> Option<DeadId> {
        let mut parts = s.splitn(3, '-');
        let kind = Kind::parse(parts.next()?)?;
        let shard = parts.next()?.parse().ok()?;
        let entry = parts.next()?;
        valid_entry_id(entry).then(|| DeadId {
            kind,
            shard,
            entry: entry.to_string(),
        })
    }
}

fn valid_entry_id(s: &str) -> bool {
    let mut parts = s.split('-');
    let ok = |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.parse::<u64>().is_ok());
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

fn field_str(map: &std::collections::HashMap<String, Value>, name: &str) -> String {
    map.get(name)
        .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
        .unwrap_or_default()
}

fn event_json(kind: Kind, entry: &str, payload: &[u8]) -> serde_json::Value {
    match kind {
        Kind::Errors => match wire::decode(entry, payload) {
            Ok(events) if events.len() == 1 => error_json(&events[0]),
            _ => serde_json::Value::Null,
        },
        Kind::Operations => serde_json::from_slice(payload).unwrap_or(serde_json::Value::Null),
    }
}

fn error_json(e: &ErrorEvent<'_>) -> serde_json::Value {
    serde_json::json!({
        "group_id": e.group_id,
        "timestamp": chrono::DateTime::from_timestamp_millis(e.ts_ms).map(|t| t.to_rfc3339()),
        "level": e.level.as_str(),
        "message": e.message,
        "source": e.source,
        "stack_trace": e.stack_trace,
        "context": e.context,
        "environment": e.environment,
        "url": e.url,
        "user_agent": e.user_agent,
        "ip_address": e.ip_address,
        "fingerprint": e.fingerprint,
    })
}

fn parse(kind: Kind, shard: u16, sid: redis::streams::StreamId) -> DeadLetter {
    let map = &sid.map;
    let payload = match map.get(kind.payload_field()) {
        Some(Value::BulkString(b)) => b.clone(),
        _ => Vec::new(),
    };
    let entry_id = field_str(map, "entry");
    let tenant_id = Uuid::parse_str(&field_str(map, "tenant")).ok();
    let dead_at = field_str(map, "at")
        .parse::<i64>()
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339());
    let stored = field_str(map, "stored");
    DeadLetter {
        id: DeadId {
            kind,
            shard,
            entry: sid.id.clone(),
        }
        .to_id(),
        kind,
        tenant_id,
        store: field_str(map, "store"),
        // entries written before reasons existed were undecodable ones
        reason: Some(field_str(map, "reason"))
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| Reason::Undecodable.label().to_string()),
        error: field_str(map, "error"),
        stream: field_str(map, "stream"),
        index: field_str(map, "index").parse().ok(),
        dead_at,
        stored_in: if stored.is_empty() {
            Vec::new()
        } else {
            vec![stored]
        },
        event: event_json(kind, &entry_id, &payload),
        entry_id,
        events: field_str(map, wire::COUNT_FIELD).parse().unwrap_or(1),
        payload,
        shard,
        dead_entry: sid.id,
    }
}

/// What a listing shows.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only this tenant's (the API always sets it; the CLI may not).
    pub tenant_id: Option<Uuid>,
    /// Only those set aside before this stream entry id (`<ms>-<seq>`),
    /// to page backwards.
    pub before: Option<String>,
    pub limit: usize,
}

/// Dead letters, newest first. A tenant's are read from its shard only.
pub async fn list(
    conn: &mut deadpool_redis::Connection,
    layout: &StreamLayout,
    filter: &ListFilter,
) -> Result<Vec<DeadLetter>> {
    if let Some(b) = &filter.before {
        if !valid_entry_id(b) {
            return Err(StorageError::Invalid(
                "before must be a dead letter's stream entry id (<ms>-<seq>)".into(),
            ));
        }
    }
    let limit = filter.limit.clamp(1, 1000);
    let shards: Vec<u16> = match filter.tenant_id {
        Some(t) => vec![layout.shard_of(t)],
        None => (0..layout.shards).collect(),
    };
    let mut found = Vec::new();
    for shard in shards {
        for kind in [Kind::Errors, Kind::Operations] {
            let stream = key(layout, kind, shard);
            let mut end = match &filter.before {
                Some(b) => format!("({b}"),
                None => "+".to_string(),
            };
            let mut scanned = 0usize;
            let mut mine = 0usize;
            while scanned < SCAN_MAX && mine < limit {
                let page = (limit * 4).clamp(100, 1000);
                let reply: StreamRangeReply = redis::cmd("XREVRANGE")
                    .arg(&stream)
                    .arg(&end)
                    .arg("-")
                    .arg("COUNT")
                    .arg(page)
                    .query_async(conn)
                    .await?;
                let n = reply.ids.len();
                scanned += n;
                for sid in reply.ids {
                    end = format!("({}", sid.id);
                    let d = parse(kind, shard, sid);
                    if filter.tenant_id.is_none() || d.tenant_id == filter.tenant_id {
                        mine += 1;
                        found.push(d);
                    }
                }
                if n < page {
                    break;
                }
            }
        }
    }
    // newest first over every stream read
    found.sort_by_key(|d| std::cmp::Reverse(entry_order(&d.dead_entry)));
    found.truncate(limit);
    Ok(found)
}

/// Every dead letter (of `tenant_id` when given), oldest first per stream:
/// what `replay --all` and `drop --all` act on. Reads whole streams.
pub async fn ids(
    conn: &mut deadpool_redis::Connection,
    layout: &StreamLayout,
    tenant_id: Option<Uuid>,
) -> Result<Vec<DeadId>> {
    const PAGE: usize = 1000;
    let shards: Vec<u16> = match tenant_id {
        Some(t) => vec![layout.shard_of(t)],
        None => (0..layout.shards).collect(),
    };
    let mut out = Vec::new();
    for shard in shards {
        for kind in [Kind::Errors, Kind::Operations] {
            let stream = key(layout, kind, shard);
            let mut start = "-".to_string();
            loop {
                let reply: StreamRangeReply = redis::cmd("XRANGE")
                    .arg(&stream)
                    .arg(&start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(PAGE)
                    .query_async(conn)
                    .await?;
                let n = reply.ids.len();
                for sid in reply.ids {
                    start = format!("({}", sid.id);
                    let tenant = Uuid::parse_str(&field_str(&sid.map, "tenant")).ok();
                    if tenant_id.is_none() || tenant == tenant_id {
                        out.push(DeadId {
                            kind,
                            shard,
                            entry: sid.id,
                        });
                    }
                }
                if n < PAGE {
                    break;
                }
            }
        }
    }
    Ok(out)
}

impl DeadId {
    /// Its text form, as [`DeadLetter::id`] shows it.
    pub fn to_id(&self) -> String {
        format!("{}-{}-{}", self.kind.name(), self.shard, self.entry)
    }
}

fn entry_order(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// One dead letter; none when it does not exist or belongs to another
/// tenant than `tenant_id` (when given).
pub async fn get(
    conn: &mut deadpool_redis::Connection,
    layout: &StreamLayout,
    id: &DeadId,
    tenant_id: Option<Uuid>,
) -> Result<Option<DeadLetter>> {
    if id.shard >= layout.shards {
        return Ok(None);
    }
    let reply: StreamRangeReply = redis::cmd("XRANGE")
        .arg(key(layout, id.kind, id.shard))
        .arg(&id.entry)
        .arg(&id.entry)
        .query_async(conn)
        .await?;
    Ok(reply
        .ids
        .into_iter()
        .next()
        .map(|sid| parse(id.kind, id.shard, sid))
        .filter(|d| tenant_id.is_none() || d.tenant_id == tenant_id))
}

/// Appends the dead letter's event to its shard's stream again and deletes
/// the dead letter, atomically. Returns the new stream entry's id, or none
/// when there is no such dead letter (for `tenant_id`).
pub async fn replay(
    conn: &mut deadpool_redis::Connection,
    layout: &StreamLayout,
    id: &DeadId,
    tenant_id: Option<Uuid>,
) -> Result<Option<String>> {
    let Some(d) = get(conn, layout, id, tenant_id).await? else {
        return Ok(None);
    };
    let origin = match d.index {
        Some(i) => format!("{}/{}/{i}", d.stream, d.entry_id),
        None => format!("{}/{}", d.stream, d.entry_id),
    };
    let mut pipe = redis::pipe();
    pipe.atomic();
    match d.kind {
        Kind::Errors => {
            let payload = normalised(&d.entry_id, &d.payload);
            pipe.cmd("XADD")
                .arg(layout.errors_key(d.shard))
                .arg("*")
                .arg(wire::COUNT_FIELD)
                .arg(d.events)
                .arg(wire::FIELD)
                .arg(payload.as_deref().unwrap_or(&d.payload[..]))
                .arg(ORIGIN_FIELD)
                .arg(&origin);
            pipe.cmd("INCRBY")
                .arg(layout.backlog_key(d.shard))
                .arg(d.events)
                .ignore();
        }
        Kind::Operations => {
            pipe.cmd("XADD")
                .arg(layout.ops_key(d.shard))
                .arg("*")
                .arg(OP_FIELD)
                .arg(&d.payload[..])
                .arg(ORIGIN_FIELD)
                .arg(&origin);
        }
    }
    pipe.cmd("XDEL")
        .arg(key(layout, d.kind, d.shard))
        .arg(&d.dead_entry)
        .ignore();
    let (new_id,): (String,) = pipe.query_async(conn).await?;
    Ok(Some(new_id))
}

/// A dead letter's events as ingest would accept them today
/// ([`crate::limits::normalise`]: an older ingest let U+0000 through),
/// re-encoded; `None` when nothing changed or it does not decode.
fn normalised(entry_id: &str, payload: &[u8]) -> Option<Vec<u8>> {
    let mut events = wire::decode(entry_id, payload).ok()?;
    let mut changed = false;
    for ev in &mut events {
        changed |= crate::limits::normalise(ev);
    }
    changed.then(|| wire::encode(&events))
}

/// Deletes a dead letter; false when there is no such one (for `tenant_id`).
pub async fn drop(
    conn: &mut deadpool_redis::Connection,
    layout: &StreamLayout,
    id: &DeadId,
    tenant_id: Option<Uuid>,
) -> Result<bool> {
    let Some(d) = get(conn, layout, id, tenant_id).await? else {
        return Ok(false);
    };
    let n: u64 = redis::cmd("XDEL")
        .arg(key(layout, d.kind, d.shard))
        .arg(&d.dead_entry)
        .query_async(conn)
        .await?;
    Ok(n == 1)
}

/// Dead letters held now, over every shard and kind, and how many the
/// bound has trimmed away so far.
pub async fn totals(
    conn: &mut deadpool_redis::Connection,
    layout: &StreamLayout,
) -> Result<(u64, u64)> {
    let mut pipe = redis::pipe();
    for shard in 0..layout.shards {
        for kind in [Kind::Errors, Kind::Operations] {
            pipe.cmd("XLEN").arg(key(layout, kind, shard));
        }
        pipe.cmd("GET").arg(trimmed_key(layout, shard));
    }
    let replies: Vec<Option<u64>> = pipe.query_async(conn).await?;
    let (mut held, mut trimmed) = (0, 0);
    for (i, n) in replies.into_iter().enumerate() {
        if i % 3 == 2 {
            trimmed += n.unwrap_or(0);
        } else {
            held += n.unwrap_or(0);
        }
    }
    Ok((held, trimmed))
}

/// Removes a layout's dead-letter streams and counters (tests).
pub async fn destroy(conn: &mut deadpool_redis::Connection, layout: &StreamLayout) -> Result<()> {
    let mut pipe = redis::pipe();
    for shard in 0..layout.shards {
        for kind in [Kind::Errors, Kind::Operations] {
            pipe.cmd("DEL").arg(key(layout, kind, shard)).ignore();
        }
        pipe.cmd("DEL").arg(trimmed_key(layout, shard)).ignore();
    }
    let () = pipe.query_async(conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_origins_parse() {
        let id = DeadId::parse("errors-1-1700000000000-3").unwrap();
        assert_eq!(id.kind, Kind::Errors);
        assert_eq!(id.shard, 1);
        assert_eq!(id.entry, "1700000000000-3");
        assert!(DeadId::parse("operations-0-17-0").is_some());
        for bad in [
            "",
            "errors",
            "errors-1",
            "errors-x-1-0",
            "nope-1-1-0",
            "errors-1-1-0-0",
            "errors-1-a-0",
        ] {
            assert_eq!(DeadId::parse(bad), None, "{bad}");
        }
        assert_eq!(
            split_origin("p:errors:{0}/17-0/4"),
            Some(("p:errors:{0}", "17-0", Some(4)))
        );
        assert_eq!(
            split_origin("p:ops:{0}/17-0"),
            Some(("p:ops:{0}", "17-0", None))
        );
    }
}
