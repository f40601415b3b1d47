//! Decoding and validating one posted error into an [`ErrorEvent`]:
//! defaults, level check, PII scrubbing, then the fingerprint and group id.
//! Strings borrow from the request body unless they had JSON escapes or
//! scrubbing changed them. The bounds of [`sluice_storage::limits`] apply:
//! `source`, `environment` and `fingerprint` have a length limit, U+0000
//! becomes U+FFFD, and the context is bounded in depth ([`crate::context`]).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sluice_storage::limits;
use sluice_storage::model::{group_id, ErrorEvent, Level};
use uuid::Uuid;

use crate::fingerprint::fingerprint;
use crate::scrub::ScrubConfig;

/// A JSON string, borrowed from the body when it has no escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// The contract's request body.
#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(borrow, default)]
    level: Option<Str<'a>>,
    #[serde(borrow, default)]
    message: Option<Str<'a>>,
    #[serde(borrow, default)]
    stack_trace: Option<Str<'a>>,
    #[serde(borrow, default)]
    context: Option<&'a RawValue>,
    #[serde(borrow, default)]
    source: Option<Str<'a>>,
    #[serde(borrow, default)]
    environment: Option<Str<'a>>,
    #[serde(borrow, default)]
    url: Option<Str<'a>>,
    #[serde(borrow, default)]
    fingerprint: Option<Str<'a>>,
}

/// Facts about the request, the same for every event in it.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub tenant_id: Uuid,
    pub ts_ms: i64,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
}

/// A field's text when it has any, with U+0000 replaced (PostgreSQL text
/// cannot hold it). A borrowed string has no escapes, so no NUL either.
fn non_empty(s: Option<Str<'_>>) -> Option<Cow<'_, str>> {
    s.map(|s| s.0)
        .filter(|v| !v.trim().is_empty())
        .map(|v| match v {
            Cow::Owned(_) => limits::replace_nul(v),
            borrowed => borrowed,
        })
}

/// Refuses a field longer than the stores index.
fn bounded<'a>(
    name: &str,
    v: Option<Cow<'a, str>>,
    max: usize,
) -> Result<Option<Cow<'a, str>>, String> {
    match v {
        Some(v) if v.len() > max => Err(format!(
            "{name} is {} bytes; at most {max} are accepted",
            v.len()
        )),
        v => Ok(v),
    }
}

/// Parses and validates one event; the error is the client's message.
pub fn decode<'a>(
    bytes: &'a [u8],
    meta: &'a RequestMeta,
    scrub: &ScrubConfig,
) -> Result<ErrorEvent<'a>, String> {
    // Fields Sluice does not know are skipped, not stored, but a document
    // is bounded in depth all the same.
    limits::check_depth(bytes, limits::MAX_JSON_DEPTH)
        .map_err(|e| format!("invalid event: {e}"))?;
    let raw: RawEvent<'a> = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            format!("invalid event: {e}")
        } else {
            format!("malformed JSON: {e}")
        }
    })?;
    let message = non_empty(raw.message).ok_or("message is required")?;
    let level = match raw.level.as_ref().map(|l| l.0.as_ref()) {
        None => Level::Error,
        Some(l) => Level::parse(l).ok_or_else(|| {
            format!("unknown level {l:?}: expected error, warning, info, debug or critical")
        })?,
    };
    let context = match raw.context {
        None => None,
        Some(c) => crate::context::scrub(c.get(), scrub)?.map(Cow::Owned),
    };
    let client_fp = bounded(
        "fingerprint",
        non_empty(raw.fingerprint),
        limits::MAX_FINGERPRINT_BYTES,
    )?;
    let source = bounded("source", non_empty(raw.source), limits::MAX_SOURCE_BYTES)?
        .unwrap_or(Cow::Borrowed("unknown"));
    let environment = bounded(
        "environment",
        non_empty(raw.environment),
        limits::MAX_ENVIRONMENT_BYTES,
    )?;
    let message = scrub.cow(message);
    let stack_trace = non_empty(raw.stack_trace).map(|s| scrub.cow(s));
    let url = non_empty(raw.url).map(|s| scrub.cow(s));

    let fingerprint = match client_fp {
        Some(fp) => fp,
        None => Cow::Owned(fingerprint(&message, stack_trace.as_deref(), &source)),
    };
    Ok(ErrorEvent {
        tenant_id: meta.tenant_id,
        group_id: group_id(meta.tenant_id, &fingerprint),
        ts_ms: meta.ts_ms,
        level,
        message,
        stack_trace,
        context,
        source,
        environment,
        url,
        user_agent: meta.user_agent.as_deref().map(Cow::Borrowed),
        ip_address: meta.ip_address.as_deref().map(Cow::Borrowed),
        fingerprint,
    })
}

/// The contract's error object for an event just accepted: it describes
/// this occurrence (count 1); the group's running totals are read back
/// through `GET /api/errors/{id}` once a worker has stored it.
#[derive(Serialize)]
pub struct AcceptedView<'e> {
    id: Uuid,
    timestamp: &'e str,
    level: &'static str,
    message: &'e str,
    stack_trace: Option<&'e str>,
    context: Option<&'e RawValue>,
    source: &'e str,
    environment: Option<&'e str>,
    user_agent: Option<&'e str>,
    ip_address: Option<&'e str>,
    url: Option<&'e str>,
    fingerprint: &'e str,
    resolved: bool,
    count: u32,
    first_seen: &'e str,
    last_seen: &'e str,
    created_at: &'e str,
    updated_at: &'e str,
}

/// The accepted view of `ev`; `ts` is its time in RFC 3339.
pub fn accepted_view<'e>(ev: &'e ErrorEvent<'_>, ts: &'e str) -> AcceptedView<'e> {
    AcceptedView {
        id: ev.group_id,
        timestamp: ts,
        level: ev.level.as_str(),
        message: &ev.message,
        stack_trace: ev.stack_trace.as_deref(),
        // ingest wrote this text itself, so it parses
        context: ev
            .context
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok()),
        source: &ev.source,
        environment: ev.environment.as_deref(),
        user_agent: ev.user_agent.as_deref(),
        ip_address: ev.ip_address.as_deref(),
        url: ev.url.as_deref(),
        fingerprint: &ev.fingerprint,
        resolved: false,
        count: 1,
        first_seen: ts,
        last_seen: ts,
        created_at: ts,
        updated_at: ts,
    }
}

/// An event's time as the contract writes it.
pub fn rfc3339(ts_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ts_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> RequestMeta {
        RequestMeta {
            tenant_id: Uuid::from_u128(9),
            ts_ms: 1_700_000_000_000,
            user_agent: Some("ua".into()),
            ip_address: Some("1.2.3.4".into()),
        }
    }

    #[test]
    fn decodes_and_defaults() {
        let m = meta();
        let ev = decode(
            br#"{"message":"boom 42","context":{"password":"x"}}"#,
            &m,
            &ScrubConfig::default(),
        )
        .unwrap();
        assert_eq!(ev.level, Level::Error);
        assert_eq!(ev.source, "unknown");
        assert_eq!(ev.context.as_deref(), Some(r#"{"password":"[redacted]"}"#));
        assert_eq!(ev.group_id, group_id(ev.tenant_id, &ev.fingerprint));
        assert!(matches!(ev.message, Cow::Borrowed(_)), "no copy when clean");
        let custom = decode(
            br#"{"message":"m","fingerprint":"mine"}"#,
            &m,
            &ScrubConfig::default(),
        )
        .unwrap();
        assert_eq!(custom.fingerprint, "mine");
    }

    #[test]
    fn escapes_and_scrubbing_are_applied() {
        let m = meta();
        let ev = decode(
            br#"{"message":"mail bob@example.com","stack_trace":"a\nb \u00e9","url":"/x?token=abc"}"#,
            &m,
            &ScrubConfig::default(),
        )
        .unwrap();
        assert_eq!(ev.message, "mail [email]");
        assert_eq!(ev.stack_trace.as_deref(), Some("a\nb \u{e9}"));
        assert_eq!(ev.url.as_deref(), Some("/x?token=[redacted]"));
    }

    #[test]
    fn rejects_bad_input_clearly() {
        let s = ScrubConfig::default();
        let m = meta();
        assert!(decode(b"{", &m, &s)
            .unwrap_err()
            .starts_with("malformed JSON"));
        assert_eq!(
            decode(br#"{"level":"error"}"#, &m, &s).unwrap_err(),
            "message is required"
        );
        assert_eq!(
            decode(br#"{"message":"   "}"#, &m, &s).unwrap_err(),
            "message is required"
        );
        assert!(decode(br#"{"message":"m","level":"loud"}"#, &m, &s)
            .unwrap_err()
            .contains("unknown level"));
        assert!(decode(br#"{"message":"m","context":[1]}"#, &m, &s)
            .unwrap_err()
            .contains("object"));
        assert!(decode(br#"{"message":5}"#, &m, &s)
            .unwrap_err()
            .starts_with("invalid event"));
    }

    #[test]
    fn what_the_stores_cannot_hold_is_refused_or_normalised() {
        let s = ScrubConfig::default();
        let m = meta();
        // NUL: replaced, in fields, context values and keys
        let ev = decode(
            br#"{"message":"nul \u0000 here","source":"a\u0000","context":{"k":"a\u0000b","\u0000":1}}"#,
            &m,
            &s,
        )
        .unwrap();
        assert_eq!(ev.message, "nul \u{FFFD} here");
        assert_eq!(ev.source, "a\u{FFFD}");
        let ctx: serde_json::Value = serde_json::from_str(ev.context.as_deref().unwrap()).unwrap();
        assert_eq!(ctx, serde_json::json!({"k": "a\u{FFFD}b", "\u{FFFD}": 1}));
        // indexed fields: bounded
        let long = format!(r#"{{"message":"x","source":"{}"}}"#, "s".repeat(3000));
        assert!(decode(long.as_bytes(), &m, &s)
            .unwrap_err()
            .contains("source is 3000 bytes"));
        let env = format!(r#"{{"message":"x","environment":"{}"}}"#, "e".repeat(256));
        assert!(decode(env.as_bytes(), &m, &s)
            .unwrap_err()
            .contains("environment"));
        let ok = format!(r#"{{"message":"x","source":"{}"}}"#, "s".repeat(255));
        assert!(decode(ok.as_bytes(), &m, &s).is_ok());
        // depth: refused with a reason, never a crash
        let deep = format!(
            r#"{{"message":"x","context":{}1{}}}"#,
            r#"{"a":"#.repeat(30_000),
            "}".repeat(30_000)
        );
        assert!(decode(deep.as_bytes(), &m, &s)
            .unwrap_err()
            .contains("nested deeper than"));
        let fits = format!(
            r#"{{"message":"x","context":{}1{}}}"#,
            r#"{"a":"#.repeat(63),
            "}".repeat(63)
        );
        assert!(decode(fits.as_bytes(), &m, &s).is_ok());
        let unknown = format!(
            r#"{{"message":"x","extra":{}1{}}}"#,
            "[".repeat(64),
            "]".repeat(64)
        );
        assert!(decode(unknown.as_bytes(), &m, &s)
            .unwrap_err()
            .contains("nested deeper than 64"));
        // numbers outside f64: kept as strings, so every reader parses it
        let ev = decode(
            br#"{"message":"x","context":{"n":1e400,"m":[-1E999],"o":2.5}}"#,
            &m,
            &s,
        )
        .unwrap();
        let ctx: serde_json::Value = serde_json::from_str(ev.context.as_deref().unwrap()).unwrap();
        assert_eq!(
            ctx,
            serde_json::json!({"n": "1e400", "m": ["-1E999"], "o": 2.5})
        );
        // escapes that are not Unicode
        assert!(
            decode(br#"{"message":"x","context":{"k":"\ud800"}}"#, &m, &s)
                .unwrap_err()
                .contains("surrogate")
        );
        assert!(decode(br#"{"message":"\ud800"}"#, &m, &s).is_err());
    }

    #[test]
    fn the_view_is_the_contract_object() {
        let m = meta();
        let ev = decode(
            br#"{"message":"m","context":{"a":[1,2]},"source":"api"}"#,
            &m,
            &ScrubConfig::default(),
        )
        .unwrap();
        let ts = rfc3339(ev.ts_ms);
        let v = serde_json::to_value(accepted_view(&ev, &ts)).unwrap();
        assert_eq!(v["id"], ev.group_id.to_string());
        assert_eq!(v["context"], serde_json::json!({"a": [1, 2]}));
        assert_eq!(v["timestamp"], "2023-11-14T22:13:20.000Z");
        assert_eq!(v["count"], 1);
        assert_eq!(v["resolved"], false);
        assert_eq!(v["stack_trace"], serde_json::Value::Null);
        assert_eq!(v["source"], "api");
    }
}
