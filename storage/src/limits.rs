//! What the stores can hold, said once: the bounds every writer checks
//! before data is accepted, and every reader can rely on.
//!
//! - JSON is nested at most [`MAX_JSON_DEPTH`] levels wherever Sluice
//!   reads it ([`check_depth`], [`from_slice`]): deeper input is refused
//!   before any recursive parser sees it.
//! - Text that Postgres indexes is bounded (a btree row holds at most
//!   2,704 bytes): [`MAX_SOURCE_BYTES`], [`MAX_ENVIRONMENT_BYTES`],
//!   [`MAX_FINGERPRINT_BYTES`].
//! - PostgreSQL text and jsonb cannot hold U+0000: it is replaced by
//!   U+FFFD ([`replace_nul`]), so the event is kept and the spot is visible.

use std::borrow::Cow;

use serde::Deserialize;

use crate::model::{group_id, ErrorEvent};

/// Deepest nesting of objects and arrays accepted in any JSON document
/// (the document's own top level counts as one).
pub const MAX_JSON_DEPTH: usize = 64;
/// Longest `source` of an error event, in bytes (indexed).
pub const MAX_SOURCE_BYTES: usize = 255;
/// Longest `environment` of an error event, in bytes (filtered on).
pub const MAX_ENVIRONMENT_BYTES: usize = 255;
/// Longest client `fingerprint`, in bytes.
pub const MAX_FINGERPRINT_BYTES: usize = 256;
/// What U+0000 becomes in stored text.
pub const NUL_REPLACEMENT: char = '\u{FFFD}';

/// A JSON document nested deeper than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("JSON nested deeper than {max} levels")]
pub struct TooDeep {
    pub max: usize,
}

/// Why a JSON body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error(transparent)]
    TooDeep(#[from] TooDeep),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Checks that `bytes`, taken as JSON, nests objects and arrays at most
/// `max` deep. Brackets inside strings do not count. It does not validate
/// the JSON otherwise: the parser that follows does.
pub fn check_depth(bytes: &[u8], max: usize) -> Result<(), TooDeep> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // skip the string: to the next quote not escaped
                i += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &bytes[i.min(bytes.len())..]) {
                        None => return Ok(()),
                        Some(off) => {
                            let j = i + off;
                            if bytes[j] == b'\\' {
                                i = j + 2;
                            } else {
                                i = j + 1;
                                break;
                            }
                        }
                    }
                }
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Err(TooDeep { max });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// `serde_json::from_slice`, after [`check_depth`] with [`MAX_JSON_DEPTH`].
pub fn from_slice<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, JsonError> {
    check_depth(bytes, MAX_JSON_DEPTH)?;
    Ok(serde_json::from_slice(bytes)?)
}

/// `s` with every U+0000 replaced by [`NUL_REPLACEMENT`]; borrowed (no
/// copy) when it holds none.
pub fn replace_nul(s: Cow<'_, str>) -> Cow<'_, str> {
    if !s.as_bytes().contains(&0) {
        return s;
    }
    Cow::Owned(s.replace('\0', "\u{FFFD}"))
}

/// An event stored before these limits held (a dead letter written by an
/// older ingest), with U+0000 replaced as ingest replaces it today, in its
/// fields and in its context's keys and strings; the group id follows a
/// changed fingerprint. What cannot be fixed without losing data (an
/// over-long `source`, a context no JSON reader takes) is left as it is.
/// Returns whether anything changed.
pub fn normalise(ev: &mut ErrorEvent<'_>) -> bool {
    fn fix(s: &mut Cow<'_, str>) -> bool {
        if !s.as_bytes().contains(&0) {
            return false;
        }
        *s = Cow::Owned(s.replace('\0', "\u{FFFD}"));
        true
    }
    let mut changed = false;
    for s in [&mut ev.message, &mut ev.source, &mut ev.fingerprint] {
        changed |= fix(s);
    }
    for s in [
        &mut ev.stack_trace,
        &mut ev.environment,
        &mut ev.url,
        &mut ev.user_agent,
        &mut ev.ip_address,
    ]
    .into_iter()
    .flatten()
    {
        changed |= fix(s);
    }
    if changed {
        ev.group_id = group_id(ev.tenant_id, &ev.fingerprint);
    }
    if let Some(ctx) = &mut ev.context {
        if ctx.contains("\\u0000") {
            if let Some(text) = without_nul(ctx) {
                *ctx = Cow::Owned(text);
                changed = true;
            }
        }
    }
    changed
}

/// A JSON text with U+0000 replaced in every key and string, or `None`
/// when it does not parse (or holds none).
fn without_nul(text: &str) -> Option<String> {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) if s.contains('\0') => {
                *s = s.replace('\0', "\u{FFFD}");
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(walk),
            serde_json::Value::Object(m) => {
                let old = std::mem::take(m);
                for (k, mut x) in old {
                    walk(&mut x);
                    m.insert(k.replace('\0', "\u{FFFD}"), x);
                }
            }
            _ => {}
        }
    }
    check_depth(text.as_bytes(), MAX_JSON_DEPTH).ok()?;
    let mut v: serde_json::Value = serde_json::from_str(text).ok()?;
    walk(&mut v);
    serde_json::to_string(&v).ok()
}

/// Whether a JSON number's text is one every reader can hold (a finite
/// f64; integers of any length within that range are fine).
pub fn number_fits(text: &str) -> bool {
    // Only an exponent or hundreds of digits can leave f64's range.
    if text.len() < 300 && !text.bytes().any(|b| b == b'e' || b == b'E') {
        return true;
    }
    text.parse::<f64>().is_ok_and(f64::is_finite)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(n: usize) -> String {
        format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n))
    }

    #[test]
    fn depth_counts_containers_not_strings() {
        assert!(check_depth(nested(64).as_bytes(), 64).is_ok());
        assert_eq!(
            check_depth(nested(65).as_bytes(), 64),
            Err(TooDeep { max: 64 })
        );
        assert!(check_depth(nested(30_000).as_bytes(), 64).is_err());
        let in_strings = format!("{{\"a\":\"{}\\\"[[\"}}", "[".repeat(500));
        assert!(check_depth(in_strings.as_bytes(), 2).is_ok());
        assert!(check_depth(b"[[[]]]", 3).is_ok());
        assert!(check_depth(b"[[[[]]]]", 3).is_err());
        // unterminated string: not this check's business
        assert!(check_depth(b"{\"a\":\"\\", 1).is_ok());
    }

    #[test]
    fn from_slice_refuses_deep_documents_before_parsing() {
        let v: serde_json::Value = from_slice(nested(10).as_bytes()).unwrap();
        assert!(v.is_object());
        let deep = from_slice::<serde_json::Value>(nested(100).as_bytes());
        assert!(matches!(deep, Err(JsonError::TooDeep(_))));
        assert!(matches!(
            from_slice::<serde_json::Value>(b"{"),
            Err(JsonError::Json(_))
        ));
    }

    #[test]
    fn nul_is_replaced_and_clean_text_not_copied() {
        assert_eq!(replace_nul("a\0b".into()), "a\u{FFFD}b");
        assert!(matches!(replace_nul(Cow::Borrowed("ab")), Cow::Borrowed(_)));
    }

    #[test]
    fn old_events_are_normalised_as_ingest_does_now() {
        let tenant = uuid::Uuid::from_u128(7);
        let mut ev = ErrorEvent {
            tenant_id: tenant,
            group_id: group_id(tenant, "f\0p"),
            ts_ms: 1,
            level: crate::model::Level::Error,
            message: "nul \0 here".into(),
            stack_trace: None,
            context: Some(r#"{"k":"a\u0000b","\u0000":[1,"\u0000"],"n":2}"#.into()),
            source: "s".into(),
            environment: Some("e\0".into()),
            url: None,
            user_agent: None,
            ip_address: None,
            fingerprint: "f\0p".into(),
        };
        assert!(normalise(&mut ev));
        assert_eq!(ev.message, "nul \u{FFFD} here");
        assert_eq!(ev.environment.as_deref(), Some("e\u{FFFD}"));
        assert_eq!(ev.group_id, group_id(tenant, "f\u{FFFD}p"));
        let ctx: serde_json::Value = serde_json::from_str(ev.context.as_deref().unwrap()).unwrap();
        assert_eq!(
            ctx,
            serde_json::json!({"k": "a\u{FFFD}b", "\u{FFFD}": [1, "\u{FFFD}"], "n": 2})
        );
        // nothing to do: nothing changed
        assert!(!normalise(&mut ev));
    }

    #[test]
    fn numbers_outside_f64_do_not_fit() {
        assert!(number_fits("1"));
        assert!(number_fits("-12.5e10"));
        assert!(number_fits("123456789012345678901234567890"));
        assert!(number_fits("1e308"));
        assert!(!number_fits("1e400"));
        assert!(!number_fits("-1E999"));
        assert!(!number_fits(&"9".repeat(400)));
    }
}
