//! One posted error (`POST /api/errors`): [`sluice_ingest::event::decode`],
//! which also scrubs the context (ingest/src/context.rs).
//!
//! What it accepts must be what the request said, with U+0000 replaced
//! and scrubbed (compared with an independent reading of the request
//! through `serde_json::Value`), with nothing left to scrub; must survive
//! the stream (wire encode, then decode, gives the same event); must decode
//! to the same event when posted again; and must be something every store
//! and reader can hold (issue 8, findings 1 to 3: no NUL, indexed fields
//! within their limits, a context any JSON reader parses back).

use std::borrow::Cow;

use serde_json::Value;
use sluice_ingest::event::{self, RequestMeta};
use sluice_ingest::fingerprint::fingerprint;
use sluice_ingest::scrub::{scrub_str, ScrubConfig, REDACTED};
use sluice_storage::limits::{self, replace_nul};
use sluice_storage::model::{group_id, ErrorEvent, Level};
use sluice_storage::wire;

/// The most an indexed text column (`error_groups.source`, in
/// `(tenant_id, source, last_seen)`) can hold whatever the text: a btree
/// index row is at most 2,704 bytes, less the row header, the tenant id,
/// the timestamp and the text's own header.
pub const INDEXED_TEXT_MAX: usize = 2_600;
const _: () = assert!(limits::MAX_SOURCE_BYTES <= INDEXED_TEXT_MAX);
const _: () = assert!(limits::MAX_FINGERPRINT_BYTES <= INDEXED_TEXT_MAX);

pub fn check(data: &[u8]) {
    let meta = super::meta();
    let scrub = ScrubConfig::default();
    match event::decode(data, &meta, &scrub) {
        Ok(ev) => accepted(data, &ev, &meta, &scrub),
        Err(reason) => assert!(!reason.is_empty(), "a refusal without a reason"),
    }
}

/// The properties of `ev`, accepted from the request body `input`.
pub fn accepted(input: &[u8], ev: &ErrorEvent<'_>, meta: &RequestMeta, scrub: &ScrubConfig) {
    assert!(scrub.enabled(), "the checks assume scrubbing is on");
    assert_eq!(ev.tenant_id, meta.tenant_id);
    assert_eq!(ev.ts_ms, meta.ts_ms);
    assert_eq!(ev.user_agent.as_deref(), meta.user_agent.as_deref());
    assert_eq!(ev.ip_address.as_deref(), meta.ip_address.as_deref());
    assert!(!ev.message.trim().is_empty(), "accepted a blank message");
    assert!(!ev.fingerprint.trim().is_empty(), "a blank fingerprint");
    assert_eq!(ev.group_id, group_id(ev.tenant_id, &ev.fingerprint));
    for (field, text) in [
        ("message", Some(&ev.message)),
        ("stack_trace", ev.stack_trace.as_ref()),
        ("url", ev.url.as_ref()),
    ] {
        if let Some(text) = text {
            assert_eq!(scrub_str(text), *text, "{field} still has PII to scrub");
        }
    }
    // An independent reading of the request; `None` where serde_json's
    // own limits (128 levels, f64 numbers) stop it.
    if let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(input) {
        as_requested(&req, ev, scrub);
    }
    let context = ev.context.as_deref().map(readable_context);
    store_safe(ev, context.as_ref());
    reply(ev, context.as_ref());
    stream_round_trip(std::slice::from_ref(ev));
    posted_again(ev, meta, scrub);
}

/// Each field is the request's, defaulted and scrubbed as documented.
fn as_requested(req: &serde_json::Map<String, Value>, ev: &ErrorEvent<'_>, scrub: &ScrubConfig) {
    let text = |k: &str| {
        req.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(|s| replace_nul(Cow::Borrowed(s)).into_owned())
    };
    let scrubbed_text = |k: &str| text(k).map(|s| scrub_str(&s).into_owned());
    let message = scrubbed_text("message").expect("accepted without a message");
    assert_eq!(ev.message, message);
    assert_eq!(
        ev.stack_trace.as_deref(),
        scrubbed_text("stack_trace").as_deref()
    );
    assert_eq!(ev.url.as_deref(), scrubbed_text("url").as_deref());
    assert_eq!(ev.source, text("source").as_deref().unwrap_or("unknown"));
    assert_eq!(ev.environment.as_deref(), text("environment").as_deref());
    let level = req
        .get("level")
        .and_then(Value::as_str)
        .map_or(Some(Level::Error), Level::parse);
    assert_eq!(Some(ev.level), level);
    match text("fingerprint") {
        Some(fp) => assert_eq!(ev.fingerprint, *fp),
        None => assert_eq!(
            ev.fingerprint,
            fingerprint(&ev.message, ev.stack_trace.as_deref(), &ev.source)
        ),
    }
    match req.get("context") {
        None | Some(Value::Null) => assert!(ev.context.is_none()),
        Some(sent) => {
            let stored = ev.context.as_deref().expect("the context was dropped");
            let stored: Value = serde_json::from_str(stored).expect("a readable context");
            if let Some(want) = scrubbed(sent, scrub) {
                assert_eq!(stored, want, "context scrubbed wrongly");
            }
        }
    }
}

/// The plain definition of context scrubbing: U+0000 replaced in every
/// key and string, every string scrubbed, the value of every sensitive key
/// (but `null`) redacted. `None` when replacing U+0000 makes two keys of an
/// object the same (which one wins then depends on their order, which a
/// `Value` does not keep).
pub fn scrubbed(v: &Value, cfg: &ScrubConfig) -> Option<Value> {
    let text = |s: &str| replace_nul(Cow::Borrowed(s)).into_owned();
    Some(match v {
        Value::String(s) => Value::String(scrub_str(&text(s)).into_owned()),
        Value::Array(a) => Value::Array(a.iter().map(|x| scrubbed(x, cfg)).collect::<Option<_>>()?),
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            for (k, x) in m {
                let k = text(k);
                let x = if cfg.sensitive(&k) && !x.is_null() {
                    Value::String(REDACTED.into())
                } else {
                    scrubbed(x, cfg)?
                };
                if out.insert(k, x).is_some() {
                    return None;
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

/// The stored context read back as the API reads it: a JSON object within
/// the depth limit.
fn readable_context(text: &str) -> Value {
    let v: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("accepted a context readers cannot parse ({e}): {text:.200}"));
    assert!(v.is_object(), "the context is not an object: {text:.200}");
    assert!(
        super::nesting_depth(text.as_bytes()) < limits::MAX_JSON_DEPTH,
        "a context deeper than the limit"
    );
    v
}

/// What Postgres refuses: NUL in text, `\u0000` in jsonb, an indexed
/// text past the btree row limit.
fn store_safe(ev: &ErrorEvent<'_>, context: Option<&Value>) {
    for (field, text) in [
        ("message", Some(&ev.message)),
        ("stack_trace", ev.stack_trace.as_ref()),
        ("source", Some(&ev.source)),
        ("environment", ev.environment.as_ref()),
        ("url", ev.url.as_ref()),
        ("fingerprint", Some(&ev.fingerprint)),
    ] {
        assert!(
            !text.is_some_and(|t| t.contains('\0')),
            "accepted a NUL in {field}"
        );
    }
    assert!(
        !context.is_some_and(has_nul),
        "accepted \\u0000 in the context"
    );
    for (field, len, max) in [
        ("source", ev.source.len(), limits::MAX_SOURCE_BYTES),
        (
            "environment",
            ev.environment.as_deref().map_or(0, str::len),
            limits::MAX_ENVIRONMENT_BYTES,
        ),
        (
            "fingerprint",
            ev.fingerprint.len(),
            limits::MAX_FINGERPRINT_BYTES,
        ),
    ] {
        assert!(len <= max, "accepted a {field} of {len} bytes");
    }
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(m) => m.iter().any(|(k, x)| k.contains('\0') || has_nul(x)),
        _ => false,
    }
}

/// The 201 answer describes the event.
fn reply(ev: &ErrorEvent<'_>, context: Option<&Value>) {
    let ts = event::rfc3339(ev.ts_ms);
    let view = serde_json::to_value(event::accepted_view(ev, &ts)).expect("the answer is JSON");
    assert_eq!(view["id"], ev.group_id.to_string());
    assert_eq!(view["message"], *ev.message);
    assert_eq!(view["source"], *ev.source);
    assert_eq!(view["fingerprint"], *ev.fingerprint);
    assert_eq!(view["level"], ev.level.as_str());
    assert_eq!(view["context"], context.cloned().unwrap_or_default());
}

/// Events reach the workers unchanged through a stream entry.
pub fn stream_round_trip(events: &[ErrorEvent<'_>]) {
    let bytes = wire::encode(events);
    let back = wire::decode("0-0", &bytes).expect("ingest's own entry decodes");
    assert_eq!(back, events, "an event changed through the stream");
}

/// Posting the accepted event again gives the same event.
fn posted_again(ev: &ErrorEvent<'_>, meta: &RequestMeta, scrub: &ScrubConfig) {
    let s = |t: &str| serde_json::to_string(t).expect("a str serializes");
    let mut body = format!(
        r#"{{"message":{},"level":"{}","source":{},"fingerprint":{}"#,
        s(&ev.message),
        ev.level.as_str(),
        s(&ev.source),
        s(&ev.fingerprint)
    );
    for (k, v) in [
        ("stack_trace", &ev.stack_trace),
        ("environment", &ev.environment),
        ("url", &ev.url),
    ] {
        if let Some(v) = v {
            body.push_str(&format!(",\"{k}\":{}", s(v)));
        }
    }
    if let Some(c) = &ev.context {
        body.push_str(&format!(",\"context\":{c}"));
    }
    body.push('}');
    let again = event::decode(body.as_bytes(), meta, scrub)
        .unwrap_or_else(|e| panic!("an accepted event, posted again, is refused: {e}"));
    assert_eq!(again, *ev, "an accepted event, posted again, changes");
}
