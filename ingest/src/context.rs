//! An event's `context`, scrubbed while it is re-written. The text (valid
//! JSON: the request parser checked it) is scanned once for what scrubbing
//! looks for — hint words, `@`, long digit runs — and then copied token by
//! token: strings holding none of those are copied as they are, without
//! decoding; the others are decoded, scrubbed and written again; values of
//! sensitive keys become `"[redacted]"`. No tree is built, and keys keep
//! the client's order. Insignificant whitespace is dropped.

use std::borrow::Cow;

use crate::scrub::{self, ScrubConfig, REDACTED};

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
    };
    w.value(start)
        .ok_or_else(|| "invalid context: not well-formed JSON".to_string())?;
    Ok(Some(w.out))
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
}

impl Writer<'_> {
    fn bytes(&self) -> &[u8] {
        self.raw.as_bytes()
    }

    /// Writes the value at `i` (no whitespace before it); returns its end.
    fn value(&mut self, i: usize) -> Option<usize> {
        match *self.bytes().get(i)? {
            b'{' => self.object(i),
            b'[' => self.array(i),
            b'"' => self.string(i),
            _ => {
                // a number, true, false or null: copied as written
                let e = skip_value(self.bytes(), i)?;
                self.out.push_str(self.raw.get(i..e)?);
                Some(e)
            }
        }
    }

    /// Copies or scrubs the string opening at `i`.
    fn string(&mut self, i: usize) -> Option<usize> {
        let e = string_end(self.bytes(), i)?;
        let lit = self.raw.get(i..e)?;
        let first = self.candidates.partition_point(|&p| p < i);
        if self.candidates.get(first).is_none_or(|&p| p >= e) {
            self.out.push_str(lit);
            return Some(e);
        }
        let text: Cow<'_, str> = serde_json::from_str(lit).ok()?;
        match scrub::scrub_str(&text) {
            Cow::Borrowed(_) => self.out.push_str(lit),
            Cow::Owned(s) => push_json_string(&mut self.out, &s),
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
            let sensitive = self.cfg.enabled() && {
                let key: Cow<'_, str> = if key_lit.contains('\\') {
                    serde_json::from_str(key_lit).ok()?
                } else {
                    Cow::Borrowed(key_lit.get(1..key_lit.len() - 1)?)
                };
                self.cfg.sensitive(&key)
            };
            self.out.push_str(key_lit);
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
