//! The format of error events inside a Redis stream entry.
//!
//! An entry carries many events, so Redis, the workers and the
//! de-duplication records pay per entry rather than per event. It has two
//! fields: [`COUNT_FIELD`], how many events it holds (read without
//! decoding, for batch sizes and the backlog counter), and [`FIELD`], a
//! binary envelope: one [`VERSION`] byte, then one or more *chunks* back to
//! back. A chunk is what one request contributed: a header with its tenant,
//! arrival time, user agent and client address, then its events.
//!
//! Chunks are postcard (varints and length-prefixed UTF-8), so a worker
//! decodes an entry without copying a string; a newer worker reads older
//! versions by the version byte.

use std::borrow::Cow;

use deadpool_redis::redis;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{ErrorEvent, Level};
use crate::{Result, StorageError};

/// The stream entry field that carries the envelope.
pub const FIELD: &str = "b";
/// The stream entry field that holds the number of events in it.
pub const COUNT_FIELD: &str = "n";
/// The envelope's first byte.
pub const VERSION: u8 = 1;

/// A chunk's header: what its events share.
#[derive(Serialize, Deserialize)]
struct Header<'a> {
    tenant_id: [u8; 16],
    ts_ms: i64,
    #[serde(borrow)]
    user_agent: Option<&'a str>,
    #[serde(borrow)]
    ip_address: Option<&'a str>,
    events: u32,
}

#[derive(Serialize, Deserialize)]
struct Event<'a> {
    group_id: [u8; 16],
    level: u8,
    fingerprint: &'a str,
    message: &'a str,
    #[serde(borrow)]
    stack_trace: Option<&'a str>,
    #[serde(borrow)]
    context: Option<&'a str>,
    source: &'a str,
    #[serde(borrow)]
    environment: Option<&'a str>,
    #[serde(borrow)]
    url: Option<&'a str>,
}

fn same_origin(a: &ErrorEvent<'_>, b: &ErrorEvent<'_>) -> bool {
    a.tenant_id == b.tenant_id
        && a.ts_ms == b.ts_ms
        && a.user_agent == b.user_agent
        && a.ip_address == b.ip_address
}

fn put<T: Serialize>(out: &mut Vec<u8>, v: &T) {
    // Serializing strings and integers into a Vec cannot fail.
    let buf = std::mem::take(out);
    *out = postcard::to_extend(v, buf).unwrap_or_default();
}

/// Appends `events` to `out` as chunks (a new chunk wherever the origin
/// changes), without the version byte: the sink joins chunks of many
/// requests into one envelope.
pub fn encode_chunks(events: &[ErrorEvent<'_>], out: &mut Vec<u8>) {
    let mut start = 0;
    while start < events.len() {
        let first = &events[start];
        let len = events[start..]
            .iter()
            .take_while(|e| same_origin(first, e))
            .count();
        put(
            out,
            &Header {
                tenant_id: *first.tenant_id.as_bytes(),
                ts_ms: first.ts_ms,
                user_agent: first.user_agent.as_deref(),
                ip_address: first.ip_address.as_deref(),
                events: len as u32,
            },
        );
        for e in &events[start..start + len] {
            put(
                out,
                &Event {
                    group_id: *e.group_id.as_bytes(),
                    level: e.level as u8,
                    fingerprint: &e.fingerprint,
                    message: &e.message,
                    stack_trace: e.stack_trace.as_deref(),
                    context: e.context.as_deref(),
                    source: &e.source,
                    environment: e.environment.as_deref(),
                    url: e.url.as_deref(),
                },
            );
        }
        start += len;
    }
}

/// A whole envelope holding `events` (tests and tools; the sink joins
/// chunks of many requests with [`Envelope`]).
pub fn encode(events: &[ErrorEvent<'_>]) -> Vec<u8> {
    let mut out = vec![VERSION];
    encode_chunks(events, &mut out);
    out
}

/// An envelope made of chunks that live elsewhere: written straight into
/// the Redis command as one argument, without joining them first.
#[derive(Debug, Default)]
pub struct Envelope<'a> {
    chunks: Vec<&'a [u8]>,
    bytes: usize,
    events: u32,
}

impl<'a> Envelope<'a> {
    /// Adds a chunk made by [`encode_chunks`] holding `events` events.
    pub fn push(&mut self, chunk: &'a [u8], events: u32) {
        self.chunks.push(chunk);
        self.bytes += chunk.len();
        self.events += events;
    }

    /// Its size on the wire, version byte included.
    pub fn len(&self) -> usize {
        self.bytes + 1
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    pub fn events(&self) -> u32 {
        self.events
    }

    /// The whole envelope as one buffer (tests and tools).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        v.push(VERSION);
        for c in &self.chunks {
            v.extend_from_slice(c);
        }
        v
    }
}

impl redis::ToRedisArgs for Envelope<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write;
        let mut w = out.writer_for_next_arg();
        // Writing into the command's own buffer cannot fail.
        let _ = w.write_all(&[VERSION]);
        for c in &self.chunks {
            let _ = w.write_all(c);
        }
    }
}

fn wire_err(entry_id: &str, reason: impl std::fmt::Display) -> StorageError {
    StorageError::Wire {
        id: entry_id.to_string(),
        reason: reason.to_string(),
    }
}

fn opt(s: Option<&str>) -> Option<Cow<'_, str>> {
    s.map(Cow::Borrowed)
}

/// Decodes an envelope; every string borrows from `bytes`.
pub fn decode<'a>(entry_id: &str, bytes: &'a [u8]) -> Result<Vec<ErrorEvent<'a>>> {
    let (version, mut rest) = bytes
        .split_first()
        .ok_or_else(|| wire_err(entry_id, "empty envelope"))?;
    if *version != VERSION {
        return Err(wire_err(
            entry_id,
            format!("envelope version {version}; this worker reads {VERSION}"),
        ));
    }
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (h, tail): (Header<'a>, _) =
            postcard::take_from_bytes(rest).map_err(|e| wire_err(entry_id, e))?;
        rest = tail;
        let tenant_id = Uuid::from_bytes(h.tenant_id);
        // a corrupt count must not reserve gigabytes: an event takes bytes
        out.reserve((h.events as usize).min(rest.len()));
        for _ in 0..h.events {
            let (e, tail): (Event<'a>, _) =
                postcard::take_from_bytes(rest).map_err(|e| wire_err(entry_id, e))?;
            rest = tail;
            let level = Level::from_code(e.level)
                .ok_or_else(|| wire_err(entry_id, format!("unknown level {}", e.level)))?;
            out.push(ErrorEvent {
                tenant_id,
                group_id: Uuid::from_bytes(e.group_id),
                ts_ms: h.ts_ms,
                level,
                message: Cow::Borrowed(e.message),
                stack_trace: opt(e.stack_trace),
                context: opt(e.context),
                source: Cow::Borrowed(e.source),
                environment: opt(e.environment),
                url: opt(e.url),
                user_agent: opt(h.user_agent),
                ip_address: opt(h.ip_address),
                fingerprint: Cow::Borrowed(e.fingerprint),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(tenant: u128, ts_ms: i64, msg: &str) -> ErrorEvent<'static> {
        ErrorEvent {
            tenant_id: Uuid::from_u128(tenant),
            group_id: Uuid::from_u128(8),
            ts_ms,
            level: Level::Warning,
            message: Cow::Owned(msg.to_string()),
            stack_trace: None,
            context: Some(Cow::Borrowed(r#"{"a":1}"#)),
            source: Cow::Borrowed("backend"),
            environment: Some(Cow::Borrowed("prod")),
            url: None,
            user_agent: None,
            ip_address: Some(Cow::Borrowed("10.0.0.1")),
            fingerprint: Cow::Borrowed("abc"),
        }
    }

    #[test]
    fn round_trip_keeps_every_field_and_origin() {
        let mut b = ev(7, 1_700_000_000_123, "m\nwith \"quotes\" and ünïcode");
        b.stack_trace = Some(Cow::Borrowed("at x (a.js:1:2)\nat y"));
        b.user_agent = Some(Cow::Borrowed("ua/1"));
        b.level = Level::Critical;
        let events = vec![ev(7, 1_700_000_000_123, "a"), b, ev(9, 5, "other tenant")];
        let bytes = encode(&events);
        assert_eq!(decode("1-0", &bytes).unwrap(), events);
    }

    #[test]
    fn envelopes_join_chunks_of_many_requests() {
        let mut one = Vec::new();
        encode_chunks(&[ev(1, 10, "a"), ev(1, 10, "b")], &mut one);
        let mut two = Vec::new();
        encode_chunks(&[ev(2, 20, "c")], &mut two);
        let mut env = Envelope::default();
        env.push(&one, 2);
        env.push(&two, 1);
        assert_eq!(env.events(), 3);
        assert_eq!(env.len(), one.len() + two.len() + 1);
        // what Redis receives is the same single buffer
        let arg = redis::ToRedisArgs::to_redis_args(&env);
        assert_eq!(arg, vec![env.to_vec()]);
        let got: Vec<String> = decode("1-0", &env.to_vec())
            .unwrap()
            .into_iter()
            .map(|e| format!("{}:{}", e.tenant_id.as_u128(), e.message))
            .collect();
        assert_eq!(got, ["1:a", "1:b", "2:c"]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode("1-0", b"").is_err());
        assert!(decode("1-0", b"\x09abc").is_err());
        let mut bytes = encode(&[ev(1, 1, "x")]);
        bytes.truncate(bytes.len() - 3);
        assert!(decode("1-0", &bytes).is_err());
        assert!(decode("1-0", br#"{"message":"old json"}"#).is_err());
    }
}
