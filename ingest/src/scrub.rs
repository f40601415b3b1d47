//! PII scrubbing, applied before anything is stored: e-mail addresses,
//! card numbers (Luhn-checked, so order ids survive), bearer tokens, API
//! keys and `key=value` secrets in strings, and the whole value of context
//! keys that name a secret.

use std::borrow::Cow;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;
use regex::{Captures, Regex};
use serde_json::Value;

/// What to scrub.
#[derive(Debug, Clone)]
pub struct ScrubConfig {
    pub enabled: bool,
    /// Context keys (case-insensitive substrings) whose values are replaced.
    pub sensitive_keys: Vec<String>,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            sensitive_keys: [
                "password",
                "passwd",
                "secret",
                "token",
                "authorization",
                "api_key",
                "apikey",
                "cookie",
                "credit_card",
                "card_number",
                "ssn",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
        }
    }
}

pub const REDACTED: &str = "[redacted]";

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
        .unwrap_or_else(|e| panic!("email pattern: {e}"))
});
static CARD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b\d(?:[ -]?\d){12,18}\b").unwrap_or_else(|e| panic!("card pattern: {e}"))
});
static SECRETS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)(?P<bearer>\bbearer\s+)[A-Za-z0-9\-._~+/]+=*",
        r"|(?P<kv>\b(?:api[_-]?key|access[_-]?token|token|secret|password|passwd|pwd)\s*[=:]\s*)[^\s&,;]+",
        r"|\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{8,}",
        r"|\bAKIA[0-9A-Z]{16}\b",
        r"|\bgh[pousr]_[A-Za-z0-9]{20,}",
        r"|\bxox[abprs]-[A-Za-z0-9-]{10,}",
        r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+",
    ))
    .unwrap_or_else(|e| panic!("secret pattern: {e}"))
});

/// Words every secret pattern contains: strings without any of them skip
/// the (case-insensitive, many-branched) secret pattern entirely.
static SECRET_HINTS: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build([
            "bearer", "key", "token", "secret", "passw", "pwd", "_live_", "_test_", "akia", "ghp_",
            "gho_", "ghu_", "ghs_", "ghr_", "xox", "eyj",
        ])
        .unwrap_or_else(|e| panic!("secret hints: {e}"))
});

/// Whether `s` has 13 or more digits in a row (single spaces or dashes
/// allowed between them): the least a card number needs.
fn has_long_digit_run(s: &str) -> bool {
    let mut run = 0;
    let mut prev_sep = false;
    for b in s.bytes() {
        if b.is_ascii_digit() {
            run += 1;
            prev_sep = false;
            if run >= 13 {
                return true;
            }
        } else if (b == b' ' || b == b'-') && run > 0 && !prev_sep {
            prev_sep = true;
        } else {
            run = 0;
            prev_sep = false;
        }
    }
    false
}

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Scrubs one string; borrows when nothing matched.
pub fn scrub_str(s: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(s);
    if SECRET_HINTS.is_match(s) && SECRETS.is_match(&out) {
        let replaced = SECRETS
            .replace_all(&out, |c: &Captures<'_>| {
                let lead = c
                    .name("bearer")
                    .or_else(|| c.name("kv"))
                    .map_or("", |m| m.as_str());
                format!("{lead}{REDACTED}")
            })
            .into_owned();
        out = Cow::Owned(replaced);
    }
    if out.contains('@') && EMAIL.is_match(&out) {
        out = Cow::Owned(EMAIL.replace_all(&out, "[email]").into_owned());
    }
    if has_long_digit_run(&out) && CARD.is_match(&out) {
        let replaced = CARD
            .replace_all(&out, |c: &Captures<'_>| {
                let digits: Vec<u8> = c
                    .get_match()
                    .as_str()
                    .bytes()
                    .filter(u8::is_ascii_digit)
                    .map(|b| b - b'0')
                    .collect();
                if (13..=19).contains(&digits.len()) && luhn(&digits) {
                    "[card]".to_string()
                } else {
                    c.get_match().as_str().to_string()
                }
            })
            .into_owned();
        out = Cow::Owned(replaced);
    }
    out
}

impl ScrubConfig {
    fn sensitive(&self, key: &str) -> bool {
        let k = key.to_ascii_lowercase();
        self.sensitive_keys.iter().any(|s| k.contains(s.as_str()))
    }

    /// Scrubs a string in place when enabled.
    pub fn string(&self, s: &mut String) {
        if !self.enabled {
            return;
        }
        if let Cow::Owned(o) = scrub_str(s) {
            *s = o;
        }
    }

    /// Scrubs a JSON value: sensitive keys lose their value; every other
    /// string is scrubbed as text.
    pub fn value(&self, v: &mut Value) {
        if !self.enabled {
            return;
        }
        match v {
            Value::String(s) => self.string(s),
            Value::Array(items) => items.iter_mut().for_each(|i| self.value(i)),
            Value::Object(map) => {
                for (k, val) in map.iter_mut() {
                    if self.sensitive(k) && !val.is_null() {
                        *val = Value::String(REDACTED.into());
                    } else {
                        self.value(val);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_lose_pii() {
        assert_eq!(
            scrub_str("mail bob.smith@example.com now"),
            "mail [email] now"
        );
        assert_eq!(
            scrub_str("card 4111 1111 1111 1111 declined"),
            "card [card] declined"
        );
        assert_eq!(
            scrub_str("order 1234567890123 failed"),
            "order 1234567890123 failed"
        );
        assert_eq!(
            scrub_str("Authorization: Bearer abc.def-123"),
            "Authorization: Bearer [redacted]"
        );
        assert_eq!(
            scrub_str("GET /x?api_key=XYZ123&a=1"),
            "GET /x?api_key=[redacted]&a=1"
        );
        assert_eq!(scrub_str("key sk_live_abcdefgh12345678"), "key [redacted]");
        assert!(matches!(scrub_str("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn digit_runs_gate_the_card_pattern() {
        assert!(has_long_digit_run("4111 1111 1111 1111"));
        assert!(has_long_digit_run("x 4111-1111-1111-1111 y"));
        assert!(!has_long_digit_run("order 12345 line 678 col 9"));
        assert!(!has_long_digit_run("ids 1234567 and 1234567"));
    }

    #[test]
    fn context_keys_are_redacted() {
        let cfg = ScrubConfig::default();
        let mut v = json!({"user_id": "12345", "Password": "hunter2", "nested": {"auth_token": "t", "email": "a@b.io"}, "list": ["x@y.com"]});
        cfg.value(&mut v);
        assert_eq!(
            v,
            json!({"user_id": "12345", "Password": "[redacted]", "nested": {"auth_token": "[redacted]", "email": "[email]"}, "list": ["[email]"]})
        );
        let off = ScrubConfig {
            enabled: false,
            ..ScrubConfig::default()
        };
        let mut w = json!({"password": "p"});
        off.value(&mut w);
        assert_eq!(w, json!({"password": "p"}));
    }
}
