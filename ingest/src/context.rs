//! An event's `context`, scrubbed while it is re-written. The text (valid
//! JSON: the request parser checked it) is scanned once for what scrubbing
//! looks for — hint words, `@`, long digit runs — and then copied token by
//! token: strings holding none of those are copied as they are, without
//! decoding; the others are decoded, scrubbed and written again; values of
//! sensitive keys become `"[redacted]"`. No tree is built, and keys keep
//! the client's order. Insignificant whitespace is dropped.
//!
//! What the stores cannot hold is dealt with here too (see
//! [`sluice_storage::limits`]): nesting deeper than the limit and string
//! escapes that are not Unicode (lone surrogates) are refused; `\u0000`
//! becomes U+FFFD; a number outside f64's range is kept as a string of its
//! text, so every reader can read the context back.

use std::borrow::Cow;

use sluice_storage::limits::{self, MAX_JSON_DEPTH};

use crate::scrub::{self, ScrubConfig, REDACTED};

/// Deepest nesting inside a context: the context sits one level inside
/// the event, and the event's document is bounded by [`MAX_JSON_DEPTH`].
pub const MAX_CONTEXT_DEPTH: usize = MAX_JSON_DEPTH - 1;

/// The scrubbed text of a context given as raw JSON: `None` for `null`,
/// an error for anything but an object.
pub fn scrub(raw: &str, cfg: &ScrubConfig) -> Result<Option<String>, String> {
    let b = raw.as_bytes();
    let start = skip_ws(b, 0);
    match b.get(start) {
        Some(b'n') => return Ok(None),
        Some(b'{') => {}
        _ => return Err("context must be a JSON object".into()),
    }
    let mut w = Writer {
        raw,
        cfg,
        out: String::with_capacity(raw.len() + 16),
        candidates: if cfg.enabled() {
            scrub::candidates(raw)
        } else {
            Vec::new()
        },
        depth: 0,
        refusal: None,
    };
    match w.value(start) {
        Some(_) => Ok(Some(w.out)),
        None => Err(w
            .refusal
            .unwrap_or_else(|| "invalid context: not well-formed JSON".to_string())),
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// The end (one past the closing quote) of the string opening at `i`.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        j += memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        if b[j] == b'"' {
            return Some(j + 1);
        }
        j += 2; // an escape and the character it escapes
    }
}

/// The end of the (well-formed) value at `i`, without looking inside
/// strings beyond finding where they end.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match *b.get(j)? {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut e = i;
            while e < b.len() && !matches!(b[e], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                e += 1;
            }
            (e > i).then_some(e)
        }
    }
}

struct Writer<'a> {
    raw: &'a str,
    cfg: &'a ScrubConfig,
    out: String,
    /// Sorted byte offsets where scrubbing may find something.
    candidates: Vec<usize>,
    /// Containers open around the current value.
    depth: usize,
    /// Why the context is refused, when it is well-formed JSON but not
    /// something the stores can hold.
    refusal: Option<String>,
}

impl Writer<'_> {
    fn bytes(&self) -> &[u8] {
        self.raw.as_bytes()
    }

    /// Writes the value at `i` (no whitespace before it); returns its end.
    fn value(&mut self, i: usize) -> Option<usize> {
        match *self.bytes().get(i)? {
            b'{' | b'[' => {
                self.depth += 1;
                if self.depth > MAX_CONTEXT_DEPTH {
                    return self.refuse(format!(
                        "context nested deeper than {MAX_CONTEXT_DEPTH} levels"
                    ));
                }
                let end = if self.bytes()[i] == b'{' {
                    self.object(i)
                } else {
                    self.array(i)
                };
                self.depth -= 1;
                end
            }
            b'"' => self.string(i),
            _ => {
                // a number, true, false or null: copied as written, but a
                // number no f64 holds is kept as the string of its text
                let e = skip_value(self.bytes(), i)?;
                let lit = self.raw.get(i..e)?;
                let number = lit.starts_with(|c: char| c == '-' || c.is_ascii_digit());
                if !number || limits::number_fits(lit) {
                    self.out.push_str(lit);
                } else {
                    push_json_string(&mut self.out, lit);
                }
                Some(e)
            }
        }
    }

    fn refuse<T>(&mut self, why: String) -> Option<T> {
        self.refusal = Some(why);
        None
    }

    /// The text of a string literal that has `\u` escapes, checked: a
    /// lone surrogate is refused, U+0000 replaced. `None` (and a refusal)
    /// when it is not Unicode.
    fn unescape(&mut self, lit: &str) -> Option<String> {
        match serde_json::from_str::<String>(lit) {
            Ok(text) => Some(limits::replace_nul(text.into()).into_owned()),
            Err(_) => self.refuse(
                "context holds a string escape that is not Unicode (a lone surrogate)".into(),
            ),
        }
    }

    /// Copies or scrubs the string opening at `i`.
    fn string(&mut self, i: usize) -> Option<usize> {
        let e = string_end(self.bytes(), i)?;
        let lit = self.raw.get(i..e)?;
        let first = self.candidates.partition_point(|&p| p < i);
        let candidate = self.candidates.get(first).is_some_and(|&p| p < e);
        let escaped = has_unicode_escape(lit);
        if !candidate && !escaped {
            self.out.push_str(lit);
            return Some(e);
        }
        let text: Cow<'_, str> = if escaped {
            Cow::Owned(self.unescape(lit)?)
        } else {
            serde_json::from_str(lit).ok()?
        };
        let scrubbed = if candidate {
            scrub::scrub_str(&text)
        } else {
            Cow::Borrowed(text.as_ref())
        };
        match scrubbed {
            // unchanged, and nothing replaced in it: as the client wrote it
            Cow::Borrowed(_) if !text.contains(limits::NUL_REPLACEMENT) => self.out.push_str(lit),
            other => push_json_string(&mut self.out, &other),
        }
        Some(e)
    }

    fn object(&mut self, i: usize) -> Option<usize> {
        self.out.push('{');
        let mut j = skip_ws(self.bytes(), i + 1);
        if self.bytes().get(j) == Some(&b'}') {
            self.out.push('}');
            return Some(j + 1);
        }
        loop {
            let key_end = string_end(self.bytes(), j)?;
            let key_lit = self.raw.get(j..key_end)?;
            let key: Cow<'_, str> = if has_unicode_escape(key_lit) {
                Cow::Owned(self.unescape(key_lit)?)
            } else if key_lit.contains('\\') {
                serde_json::from_str(key_lit).ok()?
            } else {
                Cow::Borrowed(key_lit.get(1..key_lit.len() - 1)?)
            };
            let sensitive = self.cfg.enabled() && self.cfg.sensitive(&key);
            if key.contains(limits::NUL_REPLACEMENT) && has_unicode_escape(key_lit) {
                push_json_string(&mut self.out, &key);
            } else {
                self.out.push_str(key_lit);
            }
            j = skip_ws(self.bytes(), key_end);
            if self.bytes().get(j) != Some(&b':') {
                return None;
            }
            self.out.push(':');
            j = skip_ws(self.bytes(), j + 1);
            j = if sensitive {
                self.redact(j)?
            } else {
                self.value(j)?
            };
            match self.separator(j, '}')? {
                Ok(next) => j = next,
                Err(end) => return Some(end),
            }
        }
    }

    /// After an item of a container closed by `close`: a comma (the next
    /// item's start is `Ok`) or the close (the container's end is `Err`),
    /// written either way.
    fn separator(&mut self, j: usize, close: char) -> Option<Result<usize, usize>> {
        let j = skip_ws(self.bytes(), j);
        let c = char::from(*self.bytes().get(j)?);
        if c == ',' {
            self.out.push(',');
            Some(Ok(skip_ws(self.bytes(), j + 1)))
        } else if c == close {
            self.out.push(close);
            Some(Err(j + 1))
        } else {
            None
        }
    }

    fn array(&mut self, i: usize) -> Option<usize> {
        self.out.push('[');
        let mut j = skip_ws(self.bytes(), i + 1);
        if self.bytes().get(j) == Some(&b']') {
            self.out.push(']');
            return Some(j + 1);
        }
        loop {
            j = self.value(j)?;
            match self.separator(j, ']')? {
                Ok(next) => j = next,
                Err(end) => return Some(end),
            }
        }
    }

    /// Writes `"[redacted]"` for the value at `i` (`null` stays `null`)
    /// and returns its end.
    fn redact(&mut self, i: usize) -> Option<usize> {
        let end = skip_value(self.bytes(), i)?;
        if self.raw.get(i..end) == Some("null") {
            self.out.push_str("null");
        } else {
            push_json_string(&mut self.out, REDACTED);
        }
        Some(end)
    }
}

/// Whether a string literal has a `\u` escape (which may be U+0000 or a
/// lone surrogate, neither of which Postgres' jsonb takes).
fn has_unicode_escape(lit: &str) -> bool {
    let b = lit.as_bytes();
    memchr::memchr_iter(b'\\', b).any(|i| b.get(i + 1) == Some(&b'u'))
}

fn push_json_string(out: &mut String, s: &str) {
    // A str always serializes.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn scrubbed(v: &Value) -> Value {
        let text = scrub(&v.to_string(), &ScrubConfig::default())
            .unwrap()
            .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn sensitive_keys_and_pii_are_scrubbed_at_any_depth() {
        let v = json!({
            "user_id": "12345", "Password": "hunter2", "n": -3, "f": 1.5, "ok": true, "none": null,
            "nested": {"auth_token": {"deep": 1}, "email": "a@b.io", "token_list": [1, 2], "secret": null},
            "list": ["x@y.com", 4111111111111111u64, {"card_number": "4111 1111 1111 1111"}],
            "quote\"key": "line\nbreak \u{e9} with \"bob@example.com\"",
            "esc\\u0070assword": "p"
        });
        assert_eq!(
            scrubbed(&v),
            json!({
                "user_id": "12345", "Password": "[redacted]", "n": -3, "f": 1.5, "ok": true, "none": null,
                "nested": {"auth_token": "[redacted]", "email": "[email]", "token_list": "[redacted]", "secret": null},
                "list": ["[email]", 4111111111111111u64, {"card_number": "[redacted]"}],
                "quote\"key": "line\nbreak \u{e9} with \"[email]\"",
                "esc\\u0070assword": "p"
            })
        );
    }

    #[test]
    fn escaped_keys_are_read_before_matching() {
        let text = scrub(r#"{"pass\u0077ord":"x","a\\b":1}"#, &ScrubConfig::default()).unwrap();
        assert_eq!(
            text.as_deref(),
            Some(r#"{"pass\u0077ord":"[redacted]","a\\b":1}"#)
        );
    }

    #[test]
    fn text_is_kept_as_written_and_whitespace_dropped() {
        let text = scrub(
            " {\"b\" : [ ], \"a\":{ },\n \"c\": [1.50, 2e3, \"\\u00e9\"] } ",
            &ScrubConfig::default(),
        )
        .unwrap();
        assert_eq!(
            text.as_deref(),
            Some(r#"{"b":[],"a":{},"c":[1.50,2e3,"\u00e9"]}"#)
        );
    }

    #[test]
    fn only_objects_are_contexts() {
        let cfg = ScrubConfig::default();
        assert_eq!(scrub("null", &cfg), Ok(None));
        assert!(scrub("[1]", &cfg).unwrap_err().contains("object"));
        assert!(scrub("\"x\"", &cfg).unwrap_err().contains("object"));
        assert!(scrub("{\"a\":", &cfg).is_err());
        assert!(scrub("{\"a\" 1}", &cfg).is_err());
        let off = ScrubConfig::disabled();
        assert_eq!(
            scrub(r#"{"password":"p","m":"a@b.io"}"#, &off)
                .unwrap()
                .as_deref(),
            Some(r#"{"password":"p","m":"a@b.io"}"#)
        );
    }

    #[test]
    fn scrubbing_matches_scrubbing_each_string() {
        // the candidate scan must not skip a string scrub_str would change
        let generator = sluice_loadtest_like();
        for ctx in generator {
            let v: Value = serde_json::from_str(&ctx).unwrap();
            let want = reference(&v, &ScrubConfig::default());
            assert_eq!(scrubbed(&v), want, "{ctx}");
        }
    }

    /// The plain definition: every string scrubbed, sensitive keys redacted.
    fn reference(v: &Value, cfg: &ScrubConfig) -> Value {
        match v {
            Value::String(s) => Value::String(crate::scrub::scrub_str(s).into_owned()),
            Value::Array(a) => Value::Array(a.iter().map(|x| reference(x, cfg)).collect()),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| {
                        let x = if cfg.sensitive(k) && !x.is_null() {
                            Value::String(REDACTED.into())
                        } else {
                            reference(x, cfg)
                        };
                        (k.clone(), x)
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn sluice_loadtest_like() -> Vec<String> {
        let values = [
            "\"ann@example.org\"",
            "\"4111 1111 1111 1111\"",
            "\"Bearer abc.def\"",
            "\"token=xyz\"",
            "\"plain\"",
            "\"id 1234567890123\"",
            "\"AKIAABCDEFGHIJKLMNOP\"",
            "\"a\\nb@c.de\"",
            "12",
            "null",
            "[\"x@y.io\", 3]",
        ];
        let keys = ["\"user\"", "\"api_key\"", "\"note\"", "\"Cookie\"", "\"n\""];
        let mut out = Vec::new();
        let mut x = 7u64;
        let mut next = || {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) as usize
        };
        for _ in 0..2000 {
            let mut s = String::from("{");
            for k in 0..next() % 5 {
                if k > 0 {
                    s.push(',');
                }
                let key = keys[next() % keys.len()];
                // the key with a number before its closing quote: unique
                s.push_str(&format!(
                    "{}{k}\":{}",
                    &key[..key.len() - 1],
                    values[next() % values.len()]
                ));
            }
            s.push('}');
            out.push(s);
        }
        out
    }
}
