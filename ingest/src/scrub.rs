//! PII scrubbing, applied before anything is stored: e-mail addresses,
//! card numbers (Luhn-checked, so order ids survive), bearer tokens, API
//! keys and `key=value` secrets in strings, and the whole value of context
//! keys that name a secret.

use std::borrow::Cow;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;
use regex::{Captures, Regex};

/// What to scrub.
#[derive(Debug, Clone)]
pub struct ScrubConfig {
    enabled: bool,
    /// Context keys containing one of these words (in any case) have their
    /// values replaced.
    sensitive_keys: std::sync::Arc<AhoCorasick>,
}

impl ScrubConfig {
    /// The words that make a context key sensitive, unless configured.
    pub const SENSITIVE_KEYS: [&'static str; 11] = [
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
    ];

    /// Scrubbing on or off, with `extra_keys` added to [`Self::SENSITIVE_KEYS`].
    pub fn new(enabled: bool, extra_keys: &[String]) -> Self {
        let words = Self::SENSITIVE_KEYS
            .iter()
            .map(|k| k.to_string())
            .chain(extra_keys.iter().filter(|k| !k.is_empty()).cloned());
        let matcher = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(words)
            .unwrap_or_else(|e| panic!("sensitive keys: {e}"));
        Self {
            enabled,
            sensitive_keys: std::sync::Arc::new(matcher),
        }
    }

    /// No scrubbing at all.
    pub fn disabled() -> Self {
        Self::new(false, &[])
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }
}

impl Default for ScrubConfig {
    fn default() -> Self {
        Self::new(true, &[])
    }
}

pub const REDACTED: &str = "[redacted]";

static CARD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b\d(?:[ -]?\d){12,18}\b").unwrap_or_else(|e| panic!("card pattern: {e}"))
});
static SECRETS: LazyLock<Regex> = LazyLock::new(|| {
    // Horizontal whitespace only: a secret and its key share a line, and
    // strings are scrubbed a line at a time.
    Regex::new(concat!(
        r"(?i)(?P<bearer>\bbearer[ \t]+)[A-Za-z0-9\-._~+/]+=*",
        r"|(?P<kv>\b(?:api[_-]?key|access[_-]?token|token|secret|password|passwd|pwd)[ \t]*[=:][ \t]*)[^\s&,;]+",
        r"|\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{8,}",
        r"|\bAKIA[0-9A-Z]{16}\b",
        r"|\bgh[pousr]_[A-Za-z0-9]{20,}",
        r"|\bxox[abprs]-[A-Za-z0-9-]{10,}",
        r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+",
    ))
    .unwrap_or_else(|e| panic!("secret pattern: {e}"))
});

/// Words every secret pattern contains: lines without any of them skip
/// the (case-insensitive, many-branched) secret pattern entirely. The
/// words people write in any case are searched in lower, Capitalised and
/// UPPER case (not every mix of cases); the token prefixes only as issued.
/// That lets the search use its SIMD prefilter: a case-insensitive
/// automaton was most of scrubbing's time.
static SECRET_HINTS: LazyLock<AhoCorasick> = LazyLock::new(|| {
    let words = ["bearer", "key", "token", "secret", "passw", "pwd"];
    let prefixes = [
        "_live_", "_test_", "AKIA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "xox", "eyJ",
    ];
    let mut variants: Vec<String> = prefixes.iter().map(|p| p.to_string()).collect();
    for w in words {
        let mut cap = w.to_string();
        if let Some(first) = cap.get_mut(..1) {
            first.make_ascii_uppercase();
        }
        variants.extend([w.to_string(), cap, w.to_ascii_uppercase()]);
    }
    AhoCorasick::builder()
        .match_kind(aho_corasick::MatchKind::LeftmostFirst)
        .build(&variants)
        .unwrap_or_else(|e| panic!("secret hints: {e}"))
});

/// The digits among 8 bytes: the high bit of each byte of the result is
/// set where that byte is an ASCII digit.
#[inline]
fn digit_mask(word: u64) -> u64 {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let y = word ^ 0x3030_3030_3030_3030; // digits become 0..=9
                                          // a byte is below 10 when its low seven bits minus 10 borrow and its
                                          // high bit is clear; setting the high bits first keeps bytes apart
    !((y | HIGH) - 0x0A0A_0A0A_0A0A_0A0A) & !y & HIGH
}

/// How many digits a [`digit_mask`] marks (without a `popcnt`, which
/// baseline x86-64 lacks): the marks shifted to the low bit of each byte,
/// summed into the top byte by one multiplication.
#[inline]
fn digit_count(mask: u64) -> u32 {
    ((mask >> 7).wrapping_mul(0x0101_0101_0101_0101) >> 56) as u32
}

/// Calls `found` where each run of 13 or more digits (single spaces or
/// dashes allowed between them, so at most 25 bytes) reaches its 13th
/// digit: the least a card number needs. Such a run lies within four
/// aligned 8-byte words holding 13 digits or more, so only those windows
/// are looked at byte by byte; elsewhere a word costs a few instructions.
pub fn long_digit_runs(s: &str, mut found: impl FnMut(usize)) {
    let b = s.as_bytes();
    let (mut c0, mut c1, mut c2) = (0u32, 0u32, 0u32);
    // the byte range of consecutive hot windows not yet scanned
    let mut region: Option<(usize, usize)> = None;
    let mut at = 0;
    while at < b.len() {
        let word = match b.get(at..at + 8) {
            Some(w) => u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]),
            None => {
                let mut w = [0u8; 8];
                w[..b.len() - at].copy_from_slice(&b[at..]);
                u64::from_le_bytes(w)
            }
        };
        let c3 = digit_count(digit_mask(word));
        if c0 + c1 + c2 + c3 >= 13 {
            let (from, to) = (at.saturating_sub(24), (at + 8).min(b.len()));
            region = match region {
                Some((start, end)) if from <= end => Some((start, to)),
                Some((start, end)) => {
                    scan_digit_runs(b, start, end, &mut found);
                    Some((from, to))
                }
                None => Some((from, to)),
            };
        }
        (c0, c1, c2) = (c1, c2, c3);
        at += 8;
    }
    if let Some((start, end)) = region {
        scan_digit_runs(b, start, end, &mut found);
    }
}

/// The byte-by-byte scan of [`long_digit_runs`] over `b[start..end]`.
fn scan_digit_runs(b: &[u8], start: usize, end: usize, found: &mut impl FnMut(usize)) {
    let mut run = 0u32;
    let mut prev_sep = false;
    for (i, &c) in b.iter().enumerate().take(end).skip(start) {
        if c.is_ascii_digit() {
            run += 1;
            prev_sep = false;
            if run == 13 {
                found(i);
            }
        } else if (c == b' ' || c == b'-') && run > 0 && !prev_sep {
            prev_sep = true;
        } else {
            run = 0;
            prev_sep = false;
        }
    }
}

fn has_long_digit_run(s: &str) -> bool {
    let mut any = false;
    long_digit_runs(s, |_| any = true);
    any
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

fn email_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn email_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

/// Replaces e-mail addresses with `[email]`: what the pattern
/// `[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}` matches (leftmost,
/// longest top-level domain), found from each `@` instead of by a regex.
fn replace_emails(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut done = 0; // bytes of `s` already in `out`
    for at in memchr::memchr_iter(b'@', b) {
        if at < done {
            continue;
        }
        let mut start = at;
        while start > done && email_local(b[start - 1]) {
            start -= 1;
        }
        if start == at {
            continue;
        }
        let mut run_end = at + 1;
        while run_end < b.len() && email_domain(b[run_end]) {
            run_end += 1;
        }
        // the last dot with a domain character before it and two letters
        // after it ends the address, with every letter that follows
        let Some(dot) = (at + 2..run_end.saturating_sub(2)).rev().find(|&d| {
            b[d] == b'.' && b[d + 1].is_ascii_alphabetic() && b[d + 2].is_ascii_alphabetic()
        }) else {
            continue;
        };
        let mut end = dot + 1;
        while end < run_end && b[end].is_ascii_alphabetic() {
            end += 1;
        }
        if out.is_empty() {
            out.reserve(s.len());
        }
        out.push_str(&s[done..start]);
        out.push_str("[email]");
        done = end;
    }
    if done == 0 {
        return Cow::Borrowed(s);
    }
    out.push_str(&s[done..]);
    Cow::Owned(out)
}

/// Which patterns a line may hold.
const SECRET: u8 = 1;
const EMAIL_AT: u8 = 2;
const CARD_RUN: u8 = 4;

/// Scrubs one line with the patterns its `flags` call for.
fn scrub_line(line: &str, flags: u8) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(line);
    if flags & SECRET != 0 && SECRETS.is_match(&out) {
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
    if flags & EMAIL_AT != 0 {
        if let Cow::Owned(o) = replace_emails(&out) {
            out = Cow::Owned(o);
        }
    }
    if flags & CARD_RUN != 0 && has_long_digit_run(&out) && CARD.is_match(&out) {
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
        if replaced != *out {
            out = Cow::Owned(replaced);
        }
    }
    out
}

/// Byte offsets in `s` where [`scrub_str`] may find something, sorted: hint
/// words, `@`, the 13th digit of long digit runs, and backslashes (in JSON
/// text an escape may hide any of those).
pub fn candidates(s: &str) -> Vec<usize> {
    let mut c: Vec<usize> = SECRET_HINTS.find_iter(s).map(|m| m.start()).collect();
    c.extend(memchr::memchr2_iter(b'@', b'\\', s.as_bytes()));
    long_digit_runs(s, |p| c.push(p));
    c.sort_unstable();
    c
}

/// Scrubs one string; borrows when nothing matched. The cheap scans (hint
/// words, `@`, digit runs) go over the whole string once; the patterns then
/// run only on the lines that hold a candidate.
pub fn scrub_str(s: &str) -> Cow<'_, str> {
    let bytes = s.as_bytes();
    // (line start, flags), in order of position; a line may appear twice.
    let mut marks: Vec<(usize, u8)> = Vec::new();
    let line_start = |p: usize| memchr::memrchr(b'\n', &bytes[..p]).map_or(0, |i| i + 1);
    for m in SECRET_HINTS.find_iter(s) {
        marks.push((line_start(m.start()), SECRET));
    }
    for p in memchr::memchr_iter(b'@', bytes) {
        marks.push((line_start(p), EMAIL_AT));
    }
    long_digit_runs(s, |p| marks.push((line_start(p), CARD_RUN)));
    if marks.is_empty() {
        return Cow::Borrowed(s);
    }
    marks.sort_unstable_by_key(|m| m.0);
    let mut out = String::new();
    let mut done = 0; // bytes of `s` already in `out`
    let mut i = 0;
    while i < marks.len() {
        let start = marks[i].0;
        let mut flags = 0;
        while i < marks.len() && marks[i].0 == start {
            flags |= marks[i].1;
            i += 1;
        }
        let end = memchr::memchr(b'\n', &bytes[start..]).map_or(s.len(), |e| start + e);
        if let Cow::Owned(line) = scrub_line(&s[start..end], flags) {
            if out.is_empty() {
                out.reserve(s.len() + 16);
            }
            out.push_str(&s[done..start]);
            out.push_str(&line);
            done = end;
        }
    }
    if out.is_empty() {
        // candidates, but no line matched a pattern
        return Cow::Borrowed(s);
    }
    out.push_str(&s[done..]);
    Cow::Owned(out)
}

impl ScrubConfig {
    /// Whether a context key names a secret: it contains one of the
    /// sensitive words, in any case.
    pub fn sensitive(&self, key: &str) -> bool {
        self.sensitive_keys.is_match(key)
    }

    /// Scrubs a string that may borrow from the request; still borrows
    /// when nothing matched.
    pub fn cow<'a>(&self, s: Cow<'a, str>) -> Cow<'a, str> {
        if !self.enabled {
            return s;
        }
        let changed = match scrub_str(&s) {
            Cow::Owned(o) => Some(o),
            Cow::Borrowed(_) => None,
        };
        changed.map_or(s, Cow::Owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn only_lines_with_candidates_change() {
        let stack = "Error: failed for ann@example.org\n    at f (a.js:1:2)\n    at g (b.js:3:4)\n  card 4111-1111-1111-1111 and token=abc123\nlast line";
        assert_eq!(
            scrub_str(stack),
            "Error: failed for [email]\n    at f (a.js:1:2)\n    at g (b.js:3:4)\n  card [card] and token=[redacted]\nlast line"
        );
        // hints and digits that match nothing leave the string borrowed
        let clean = "KeyError in lookup_key\n  at x (k.py:12)\n  order 1234567890123 failed";
        assert!(matches!(scrub_str(clean), Cow::Borrowed(_)));
        // a secret's key and value on different lines are not one secret
        assert_eq!(scrub_str("Bearer\nabc"), "Bearer\nabc");
        assert_eq!(
            scrub_str("x\nAuthorization: bearer abc"),
            "x\nAuthorization: bearer [redacted]"
        );
    }

    #[test]
    fn digit_mask_is_exact_for_every_byte() {
        for b in 0..=255u8 {
            let word = u64::from_le_bytes([b'x', b, b'x', b'x', b'x', b'x', b'x', b]);
            let want = if b.is_ascii_digit() {
                0x8000_0000_0000_8000
            } else {
                0
            };
            assert_eq!(digit_mask(word), want, "byte {b}");
        }
        let mixed = u64::from_le_bytes(*b"9a0/:5 \xff");
        assert_eq!(digit_mask(mixed), 0x0000_8000_0080_0080);
        assert_eq!(digit_count(digit_mask(mixed)), 3);
        assert_eq!(digit_count(digit_mask(u64::from_le_bytes(*b"12345678"))), 8);
    }

    #[test]
    fn the_word_filter_misses_no_digit_run() {
        // against the plain byte scan, on random strings of digits, spaces,
        // dashes and letters, at every alignment
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut t = String::new();
            for _ in 0..(x % 70) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                t.push(match x % 10 {
                    0..=5 => char::from(b'0' + (x >> 8) as u8 % 10),
                    6 => ' ',
                    7 => '-',
                    8 => 'a',
                    _ => ':',
                });
            }
            let mut fast = Vec::new();
            long_digit_runs(&t, |p| fast.push(p));
            let mut slow = Vec::new();
            scan_digit_runs(t.as_bytes(), 0, t.len(), &mut |p| slow.push(p));
            assert_eq!(fast, slow, "{t:?}");
        }
    }

    #[test]
    fn digit_runs_gate_the_card_pattern() {
        assert!(has_long_digit_run("4111 1111 1111 1111"));
        assert!(has_long_digit_run("x 4111-1111-1111-1111 y"));
        assert!(!has_long_digit_run("order 12345 line 678 col 9"));
        assert!(!has_long_digit_run("ids 1234567 and 1234567"));
    }

    #[test]
    fn emails_match_as_the_pattern_does() {
        let re = Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}").unwrap();
        for s in [
            "bob@example.com",
            "mail bob.smith+x@mail.example.co.uk, then",
            "a@b@c.com",
            "x@y.com@z.org",
            "@example.com",
            "bob@",
            "bob@localhost",
            "bob@example.c",
            "bob@example.com.",
            "bob@.com",
            "bob@a.bc-d.ef1",
            "bob@example.com.au-x tail",
            "one a@b.io two c@d.org three",
            "ünï a@b.io ç",
            "a@b.c.de",
            "a@b..de",
            "-@-.xx",
            "a@b.cd@e.fg",
        ] {
            let want = re.replace_all(s, "[email]");
            assert_eq!(replace_emails(s), want, "{s:?}");
        }
        // and on many random strings over the characters that matter
        let alphabet = [
            'a', 'b', '.', '@', '-', '_', '%', '+', '1', ' ', 'Z', '\u{e9}',
        ];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut t = String::new();
            for _ in 0..(x % 24) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                t.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            assert_eq!(replace_emails(&t), re.replace_all(&t, "[email]"), "{t:?}");
        }
    }

    #[test]
    fn sensitive_keys_match_in_any_case() {
        let cfg = ScrubConfig::default();
        assert!(cfg.sensitive("Password"));
        assert!(cfg.sensitive("x-auth-TOKEN"));
        assert!(cfg.sensitive("card_number"));
        assert!(!cfg.sensitive("user_id"));
        assert!(!cfg.sensitive("pass"));
        let extra = ScrubConfig::new(true, &["PIN".to_string()]);
        assert!(extra.sensitive("card_pin") && extra.sensitive("password"));
    }
}
