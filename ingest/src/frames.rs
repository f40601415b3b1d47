//! Stack frames for fingerprinting: which lines of a stack trace are
//! frames, and a frame's normal form — paths reduced to their last
//! segment, line numbers, columns and addresses removed.
//!
//! Each scanner does by hand what the regular expression in its doc
//! comment describes (leftmost, greedy), which the tests check on random
//! input: the patterns were most of fingerprinting's time.

fn word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// A path segment character, `[A-Za-z0-9_.@-]`.
fn name(b: u8) -> bool {
    word(b) || matches!(b, b'.' | b'@' | b'-')
}

/// Characters of a path before its last segment: names, `~`, separators.
fn path(b: u8) -> bool {
    name(b) || matches!(b, b'~' | b'/' | b'\\')
}

fn sep(b: u8) -> bool {
    b == b'/' || b == b'\\'
}

/// `[A-Za-z0-9_]\.[A-Za-z0-9_]+:[0-9]` somewhere in `line`: a file name
/// and a line number, the mark of a frame in most languages.
fn has_file_line(line: &str) -> bool {
    let b = line.as_bytes();
    memchr::memchr_iter(b'.', b).any(|d| {
        if d == 0 || !word(b[d - 1]) {
            return false;
        }
        let mut e = d + 1;
        while e < b.len() && word(b[e]) {
            e += 1;
        }
        e > d + 1 && b.get(e) == Some(&b':') && b.get(e + 1).is_some_and(u8::is_ascii_digit)
    })
}

/// Whether a (trimmed) line of a stack trace is a frame.
pub fn looks_like_frame(line: &str) -> bool {
    line.starts_with("at ")
        || line.starts_with("File ")
        || line.starts_with('#')
        || line.contains(".rs:")
        || line.contains(".go:")
        || has_file_line(line)
}

/// Appends `s` to `out` with every path-like token replaced by its last
/// segment: `(?:[A-Za-z]:)?(?:[A-Za-z0-9_.@~-]*[/\\])+[A-Za-z0-9_.@-]+`.
fn reduce_paths(s: &str, out: &mut String) {
    let b = s.as_bytes();
    let mut done = 0; // bytes of `s` in `out`, and where matching resumes
    let mut i = 0;
    while i < b.len() {
        if !path(b[i]) {
            i += 1;
            continue;
        }
        // a run of path characters: b[start..end]
        let start = i;
        let mut end = i;
        while end < b.len() && path(b[end]) {
            end += 1;
        }
        i = end;
        // the last separator with a segment character after it
        let Some(last) = (start..end.saturating_sub(1))
            .rev()
            .find(|&k| sep(b[k]) && name(b[k + 1]))
        else {
            continue;
        };
        let mut seg_end = last + 1;
        while seg_end < end && name(b[seg_end]) {
            seg_end += 1;
        }
        // a drive letter (`C:`) right before the run belongs to the match
        let from =
            if start >= done + 2 && b[start - 1] == b':' && b[start - 2].is_ascii_alphabetic() {
                start - 2
            } else {
                start
            };
        out.push_str(&s[done..from]);
        out.push_str(&s[last + 1..seg_end]);
        done = seg_end;
        // what follows the match in this run is searched again
        i = seg_end;
    }
    out.push_str(&s[done..]);
}

/// Appends `s` to `out` without line numbers, columns and addresses:
/// `(?::[0-9]+)+|,? line [0-9]+|\+0x[0-9a-fA-F]+|0x[0-9a-fA-F]+`.
fn strip_noise(s: &str, out: &mut String) {
    let b = s.as_bytes();
    let digits = |from: usize| {
        b[from.min(b.len())..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    let hex = |from: usize| {
        b[from.min(b.len())..]
            .iter()
            .take_while(|c| c.is_ascii_hexdigit())
            .count()
    };
    let mut done = 0;
    let mut i = 0;
    while i < b.len() {
        let len = match b[i] {
            b':' => {
                // one or more `:digits`
                let mut j = i;
                while j < b.len() && b[j] == b':' && digits(j + 1) > 0 {
                    j += 1 + digits(j + 1);
                }
                j - i
            }
            b',' if b[i..].starts_with(b", line ") && digits(i + 7) > 0 => 7 + digits(i + 7),
            b' ' if b[i..].starts_with(b" line ") && digits(i + 6) > 0 => 6 + digits(i + 6),
            b'+' if b[i..].starts_with(b"+0x") && hex(i + 3) > 0 => 3 + hex(i + 3),
            b'0' if b[i..].starts_with(b"0x") && hex(i + 2) > 0 => 2 + hex(i + 2),
            _ => 0,
        };
        if len == 0 {
            i += 1;
            continue;
        }
        out.push_str(&s[done..i]);
        i += len;
        done = i;
    }
    out.push_str(&s[done..]);
}

/// A frame's normal form, appended to `out`: paths reduced, then noise
/// stripped, trimmed. `scratch` is reused between frames.
pub fn normalize_frame(line: &str, out: &mut String, scratch: &mut String) {
    scratch.clear();
    reduce_paths(line, scratch);
    let start = out.len();
    strip_noise(scratch, out);
    // trim what was appended, in place
    let trimmed_end = start + out[start..].trim_end().len();
    out.truncate(trimmed_end);
    let lead = out[start..].len() - out[start..].trim_start().len();
    out.replace_range(start..start + lead, "");
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    /// Random strings over `alphabet`, the same every run.
    fn random(alphabet: &[&str], n: usize) -> Vec<String> {
        let mut x = 0x853c_49e6_748f_ea9bu64;
        (0..n)
            .map(|_| {
                let mut t = String::new();
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                for _ in 0..(x % 30) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    t.push_str(alphabet[(x % alphabet.len() as u64) as usize]);
                }
                t
            })
            .collect()
    }

    fn by_regex(re: &Regex, s: &str, f: impl Fn(&str) -> String) -> String {
        re.replace_all(s, |c: &regex::Captures<'_>| f(&c[0]))
            .into_owned()
    }

    #[test]
    fn paths_reduce_as_the_pattern_does() {
        let re = Regex::new(r"(?:[A-Za-z]:)?(?:[A-Za-z0-9_.@~-]*[/\\])+[A-Za-z0-9_.@-]+").unwrap();
        let base = |m: &str| m.rsplit(['/', '\\']).next().unwrap_or(m).to_string();
        let mut cases: Vec<String> = [
            "at Database.connect (/app/src/db.js:10:5)",
            "File \"/usr/lib/app/x.py\", line 10, in f",
            "C:\\Users\\me\\app.cs:line 4",
            "at http://host/a/b.js:1:2",
            "ab:/x/y",
            "a/b/~",
            "a/b~c",
            "x/y~z/w",
            "ab/cX:/d/e",
            "/",
            "a/",
            "~/x",
            "@scope/pkg/index.js",
            "ünï/ç/é.rs",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        cases.extend(random(
            &[
                "a", "Z", "1", ".", "@", "-", "_", "~", "/", "\\", ":", " ", "(", "é",
            ],
            30_000,
        ));
        for s in cases {
            let mut got = String::new();
            reduce_paths(&s, &mut got);
            assert_eq!(got, by_regex(&re, &s, base), "{s:?}");
        }
    }

    #[test]
    fn noise_strips_as_the_pattern_does() {
        let re =
            Regex::new(r"(?::[0-9]+)+|,? line [0-9]+|\+0x[0-9a-fA-F]+|0x[0-9a-fA-F]+").unwrap();
        let mut cases: Vec<String> = [
            "db.js:10:5)",
            "x.py, line 10, in f",
            "x.py line 7",
            "lib.so+0x1f (0xdeadbeef)",
            "100x5",
            ":12:ab",
            ",line 3",
            "0x",
            "+0x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        cases.extend(random(
            &[
                ":", "1", "9", "0", "x", "f", "g", "+", ",", " ", " line ", "l", "é",
            ],
            30_000,
        ));
        for s in cases {
            let mut got = String::new();
            strip_noise(&s, &mut got);
            assert_eq!(got, by_regex(&re, &s, |_| String::new()), "{s:?}");
        }
    }

    #[test]
    fn file_lines_are_found_as_the_pattern_does() {
        let re = Regex::new(r"[A-Za-z0-9_]\.[A-Za-z0-9_]+:[0-9]").unwrap();
        let mut cases: Vec<String> = ["main.rs:12", "a.b:c", ".rs:1", "x.:1", "a.b.c:9", "é.rs:1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        cases.extend(random(&["a", "_", ".", ":", "1", " ", "é"], 30_000));
        for s in cases {
            assert_eq!(has_file_line(&s), re.is_match(&s), "{s:?}");
        }
    }
}
