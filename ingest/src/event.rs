//! Decoding and validating one posted error into an [`ErrorEvent`]:
//! defaults, level check, PII scrubbing, then the fingerprint and group id.

use serde::Deserialize;
use serde_json::Value;
use sluice_storage::model::{group_id, ErrorEvent, Level};
use uuid::Uuid;

use crate::fingerprint::fingerprint;
use crate::scrub::ScrubConfig;

/// The contract's request body.
#[derive(Debug, Deserialize)]
struct RawEvent {
    level: Option<String>,
    message: Option<String>,
    stack_trace: Option<String>,
    context: Option<Value>,
    source: Option<String>,
    environment: Option<String>,
    url: Option<String>,
    fingerprint: Option<String>,
}

/// Facts about the request, the same for every event in it.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub tenant_id: Uuid,
    pub ts_ms: i64,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
}

const MAX_FINGERPRINT: usize = 256;

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|v| !v.trim().is_empty())
}

/// Parses and validates one event; the error is the client's message.
pub fn decode(bytes: &[u8], meta: &RequestMeta, scrub: &ScrubConfig) -> Result<ErrorEvent, String> {
    let raw: RawEvent = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            format!("invalid event: {e}")
        } else {
            format!("malformed JSON: {e}")
        }
    })?;
    let mut message = non_empty(raw.message).ok_or("message is required")?;
    let level = match raw.level.as_deref() {
        None => Level::Error,
        Some(l) => Level::parse(l).ok_or_else(|| {
            format!("unknown level {l:?}: expected error, warning, info, debug or critical")
        })?,
    };
    let mut context = match raw.context {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v),
        Some(_) => return Err("context must be a JSON object".into()),
    };
    let mut stack_trace = non_empty(raw.stack_trace);
    let mut url = non_empty(raw.url);
    let source = non_empty(raw.source).unwrap_or_else(|| "unknown".to_string());
    if let Some(fp) = &raw.fingerprint {
        if fp.len() > MAX_FINGERPRINT {
            return Err(format!("fingerprint longer than {MAX_FINGERPRINT} bytes"));
        }
    }

    scrub.string(&mut message);
    if let Some(st) = stack_trace.as_mut() {
        scrub.string(st);
    }
    if let Some(u) = url.as_mut() {
        scrub.string(u);
    }
    if let Some(c) = context.as_mut() {
        scrub.value(c);
    }

    let fingerprint = match non_empty(raw.fingerprint) {
        Some(fp) => fp,
        None => fingerprint(&message, stack_trace.as_deref(), &source),
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
        environment: non_empty(raw.environment),
        url,
        user_agent: meta.user_agent.clone(),
        ip_address: meta.ip_address.clone(),
        fingerprint,
    })
}

/// The contract's error object for an event just accepted: it describes
/// this occurrence (count 1); the group's running totals are read back
/// through `GET /api/errors/{id}` once a worker has stored it.
pub fn accepted_view(ev: &ErrorEvent) -> Value {
    let ts = ev
        .timestamp()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    serde_json::json!({
        "id": ev.group_id,
        "timestamp": ts,
        "level": ev.level.as_str(),
        "message": ev.message,
        "stack_trace": ev.stack_trace,
        "context": ev.context,
        "source": ev.source,
        "environment": ev.environment,
        "user_agent": ev.user_agent,
        "ip_address": ev.ip_address,
        "url": ev.url,
        "fingerprint": ev.fingerprint,
        "resolved": false,
        "count": 1,
        "first_seen": ts,
        "last_seen": ts,
        "created_at": ts,
        "updated_at": ts,
    })
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
        let ev = decode(
            br#"{"message":"boom 42","context":{"password":"x"}}"#,
            &meta(),
            &ScrubConfig::default(),
        )
        .unwrap();
        assert_eq!(ev.level, Level::Error);
        assert_eq!(ev.source, "unknown");
        assert_eq!(
            ev.context,
            Some(serde_json::json!({"password": "[redacted]"}))
        );
        assert_eq!(ev.group_id, group_id(ev.tenant_id, &ev.fingerprint));
        let custom = decode(
            br#"{"message":"m","fingerprint":"mine"}"#,
            &meta(),
            &ScrubConfig::default(),
        )
        .unwrap();
        assert_eq!(custom.fingerprint, "mine");
    }

    #[test]
    fn rejects_bad_input_clearly() {
        let s = ScrubConfig::default();
        assert!(decode(b"{", &meta(), &s)
            .unwrap_err()
            .starts_with("malformed JSON"));
        assert_eq!(
            decode(br#"{"level":"error"}"#, &meta(), &s).unwrap_err(),
            "message is required"
        );
        assert!(decode(br#"{"message":"m","level":"loud"}"#, &meta(), &s)
            .unwrap_err()
            .contains("unknown level"));
        assert!(decode(br#"{"message":"m","context":[1]}"#, &meta(), &s)
            .unwrap_err()
            .contains("object"));
        assert!(decode(br#"{"message":5}"#, &meta(), &s)
            .unwrap_err()
            .starts_with("invalid event"));
    }
}
