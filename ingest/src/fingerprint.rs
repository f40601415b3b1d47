//! Grouping (contract section 9): an error's fingerprint is the xxh3 hash
//! of its normalised message, its first three stack frames normalised, and
//! its source. Normalising removes what differs between occurrences of the
//! same bug: ids, numbers, addresses, quoted values, line numbers, paths.

use std::sync::LazyLock;

use regex::Regex;

use crate::frames;

/// How many stack frames take part in the fingerprint.
pub const FRAMES: usize = 3;

static MESSAGE_TOKENS: LazyLock<Regex> = LazyLock::new(|| {
    // No capture groups: matches are classified by hand, which keeps the
    // regex on its fast (DFA) path. ASCII word boundaries and digits: the
    // Unicode ones make a much larger automaton for no gain on ids.
    Regex::new(concat!(
        r#""[^"]*"|'[^']*'|`[^`]*`"#,
        r"|[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
        r"|(?-u:\b)[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?-u:\b)",
        r"|(?-u:\b)[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?-u:\b)(?::[0-9]+)?",
        r"|(?-u:\b)0[xX][0-9a-fA-F]+(?-u:\b)|(?-u:\b)[0-9a-fA-F]*[0-9][0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*(?-u:\b)|(?-u:\b)[0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*[0-9][0-9a-fA-F]*(?-u:\b)",
        r"|-?[0-9]+(?:\.[0-9]+)?",
    ))
    .unwrap_or_else(|e| panic!("message token pattern: {e}"))
});

/// The placeholder for one matched token.
fn placeholder(tok: &str) -> &str {
    let b = tok.as_bytes();
    match b.first() {
        Some(b'"' | b'\'' | b'`') => "<str>",
        _ if tok.contains('@') => "<email>",
        _ if b.len() == 36 && b[8] == b'-' && b[13] == b'-' => "<uuid>",
        _ if tok.bytes().filter(|c| *c == b'.').count() == 3
            && tok
                .bytes()
                .all(|c| c.is_ascii_digit() || c == b'.' || c == b':') =>
        {
            "<ip>"
        }
        _ if tok.starts_with("0x")
            || tok.starts_with("0X")
            || tok.bytes().any(|c| matches!(c, b'a'..=b'f' | b'A'..=b'F')) =>
        {
            "<hex>"
        }
        _ => "<num>",
    }
}

/// Replaces every match of `re` in `s` with `f(match)`, without captures.
fn replace_matches(re: &Regex, s: &str, f: impl for<'m> Fn(&'m str) -> &'m str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for m in re.find_iter(s) {
        out.push_str(&s[last..m.start()]);
        out.push_str(f(m.as_str()));
        last = m.end();
    }
    out.push_str(&s[last..]);
    out
}

pub fn normalize_message(message: &str) -> String {
    replace_matches(&MESSAGE_TOKENS, message.trim(), placeholder)
}

/// The first [`FRAMES`] frames of a stack trace, normalised, one a line.
pub fn normalize_stack(stack: &str) -> String {
    let mut out = String::new();
    let mut scratch = String::new();
    for line in stack
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && frames::looks_like_frame(l))
        .take(FRAMES)
    {
        frames::normalize_frame(line, &mut out, &mut scratch);
        out.push('\n');
    }
    out
}

/// The fingerprint: 16 hex characters of xxh3-64.
pub fn fingerprint(message: &str, stack_trace: Option<&str>, source: &str) -> String {
    let mut buf = normalize_message(message);
    buf.push('\n');
    if let Some(st) = stack_trace {
        buf.push_str(&normalize_stack(st));
    }
    buf.push('\n');
    buf.push_str(source);
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(buf.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_normalise_variable_parts() {
        assert_eq!(
            normalize_message(
                "User 12345 not found in 'users' (id 550e8400-e29b-41d4-a716-446655440000)"
            ),
            "User <num> not found in <str> (id <uuid>)"
        );
        assert_eq!(
            normalize_message("connect to 10.0.0.12:5432 failed for bob@example.com at 0x7ffe12"),
            "connect to <ip> failed for <email> at <hex>"
        );
        assert_eq!(normalize_message("hash deadbeef01 bad"), "hash <hex> bad");
        assert_eq!(
            normalize_message("Database connection failed"),
            "Database connection failed"
        );
    }

    #[test]
    fn stacks_keep_three_frames_without_lines_or_paths() {
        let a = "Error: Connection timeout\n    at Database.connect (/app/src/db.js:10:5)\n    at Pool.get (/app/node_modules/pg/pool.js:99:1)\n    at main (/app/index.js:3:9)\n    at run (/app/run.js:1:1)";
        let b = "Error: Connection timeout\n    at Database.connect (/srv/v2/src/db.js:12:7)\n    at Pool.get (/srv/v2/node_modules/pg/pool.js:101:3)\n    at main (/srv/v2/index.js:4:1)\n    at other (/x.js:1:1)";
        assert_eq!(normalize_stack(a), normalize_stack(b));
        assert_eq!(
            normalize_stack(a),
            "at Database.connect (db.js)\nat Pool.get (pool.js)\nat main (index.js)\n"
        );
        let py =
            "Traceback (most recent call last):\n  File \"/usr/lib/app/x.py\", line 10, in f\n";
        assert_eq!(normalize_stack(py), "File \"x.py\", in f\n");
    }

    #[test]
    fn fingerprints_group_and_separate() {
        let f1 = fingerprint("Timeout after 30s for order 991", None, "backend");
        let f2 = fingerprint("Timeout after 45s for order 12", None, "backend");
        let f3 = fingerprint("Timeout after 45s for order 12", None, "frontend");
        let f4 = fingerprint("Disk full", None, "backend");
        assert_eq!(f1, f2);
        assert_ne!(f2, f3);
        assert_ne!(f1, f4);
        assert_eq!(f1.len(), 16);
    }
}
