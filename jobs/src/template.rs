//! Command templates: finding their `{{name}}` variables and substituting
//! values so that each becomes exactly one shell word (pure; no I/O).
//!
//! A variable is `{{` + a name of ASCII letters, digits and `_` + `}}`;
//! any other `{{…` is literal text. A value made only of
//! `A–Z a–z 0–9 _ @ % + = : , . / -` (and not empty) is inserted as it
//! is; any other value is single-quoted the POSIX way, exactly as Python's
//! `shlex.quote` does (`'` becomes `'"'"'`), so `;`, `$( )`, backticks,
//! spaces, quotes and newlines in a value are literal text to `sh`.

use std::collections::{BTreeSet, HashMap};

/// A piece of a template: literal text or a variable's name.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn pieces(template: &str) -> Vec<Piece<'_>> {
    let bytes = template.as_bytes();
    let mut out = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'{' && bytes[i + 1] == b'{' {
            let name_start = i + 2;
            let mut j = name_start;
            while j < bytes.len() && is_name_char(bytes[j]) {
                j += 1;
            }
            if j > name_start && bytes.get(j..j + 2) == Some(b"}}") {
                if text_start < i {
                    out.push(Piece::Text(&template[text_start..i]));
                }
                out.push(Piece::Var(&template[name_start..j]));
                i = j + 2;
                text_start = i;
                continue;
            }
        }
        i += 1;
    }
    if text_start < template.len() {
        out.push(Piece::Text(&template[text_start..]));
    }
    out
}

/// The names of the variables `template` uses, each once, sorted.
pub fn variables(template: &str) -> BTreeSet<&str> {
    pieces(template)
        .into_iter()
        .filter_map(|p| match p {
            Piece::Var(n) => Some(n),
            Piece::Text(_) => None,
        })
        .collect()
}

/// `value` as one shell word, as Python's `shlex.quote` writes it.
pub fn quote(value: &str) -> String {
    let safe = !value.is_empty()
        && value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&c));
    if safe {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', "'\"'\"'"))
    }
}

/// The template with every variable replaced by its quoted value, or the
/// names of the variables `values` lacks (sorted). Values the template
/// does not name are ignored.
pub fn render(template: &str, values: &HashMap<String, String>) -> Result<String, Vec<String>> {
    let parts = pieces(template);
    let missing: BTreeSet<&str> = parts
        .iter()
        .filter_map(|p| match p {
            Piece::Var(n) if !values.contains_key(*n) => Some(*n),
            _ => None,
        })
        .collect();
    if !missing.is_empty() {
        return Err(missing.into_iter().map(str::to_owned).collect());
    }
    let mut out = String::with_capacity(template.len());
    for p in parts {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(n) => out.push_str(&quote(values.get(n).map(String::as_str).unwrap_or(""))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Python 3's `shlex.quote` output for each input, computed by hand
    /// from its definition (and checked with python3 where present).
    #[test]
    fn quotes_exactly_like_shlex_quote() {
        let cases = [
            ("myapp_web", "myapp_web"),
            ("a@b%c+d=e:f,g.h/i-j", "a@b%c+d=e:f,g.h/i-j"),
            ("", "''"),
            ("a b", "'a b'"),
            ("; touch /tmp/x", "'; touch /tmp/x'"),
            ("$(touch /tmp/x)", "'$(touch /tmp/x)'"),
            ("`id`", "'`id`'"),
            ("it's", "'it'\"'\"'s'"),
            ("'", "''\"'\"''"),
            ("\"double\"", "'\"double\"'"),
            ("line1\nline2", "'line1\nline2'"),
            ("tab\there", "'tab\there'"),
            ("*", "'*'"),
            ("~user", "'~user'"),
            ("a\\b", "'a\\b'"),
            ("é", "'é'"),
            ("$HOME", "'$HOME'"),
            ("x|y&z>w<v", "'x|y&z>w<v'"),
        ];
        for (value, want) in cases {
            assert_eq!(quote(value), want, "{value:?}");
        }
    }

    #[test]
    fn agrees_with_python_where_present() {
        let values = [
            "",
            "plain",
            "a b",
            "it's",
            "; rm -rf /",
            "$(id)",
            "`id`",
            "x\ny",
            "'\"'",
            "é",
            "--flag=1",
            "a\tb",
        ];
        let script = "import shlex,sys,json\nfor v in json.load(sys.stdin): print(json.dumps(shlex.quote(v)))";
        let Ok(mut child) = std::process::Command::new("python3")
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            return; // no python3 here: the table above still holds
        };
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin
                .write_all(serde_json::to_string(&values).unwrap().as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let lines: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), values.len());
        for (v, py) in values.iter().zip(lines) {
            assert_eq!(quote(v), py, "{v:?}");
        }
    }

    #[test]
    fn every_value_is_one_literal_word_to_sh() {
        let values = [
            "; touch /tmp/sluice-never",
            "$(touch /tmp/sluice-never)",
            "`touch /tmp/sluice-never`",
            "a b  c",
            "it's \"quoted\"",
            "line1\nline2",
            "",
            "*",
            "&& echo hacked",
        ];
        for v in values {
            let line = render("printf '%s\\0' {{v}}", &vars(&[("v", v)])).unwrap();
            let out = std::process::Command::new("sh")
                .args(["-c", &line])
                .output()
                .unwrap();
            assert!(out.status.success());
            assert_eq!(out.stdout, format!("{v}\0").into_bytes(), "{v:?}");
        }
    }

    #[test]
    fn finds_variables_and_leaves_other_braces() {
        let t = "docker restart {{container_name}} && echo {{ not }} {{a1_B}} {{}} {{x-y}} {{container_name}}{";
        assert_eq!(
            variables(t).into_iter().collect::<Vec<_>>(),
            vec!["a1_B", "container_name"]
        );
        let out = render(t, &vars(&[("container_name", "web"), ("a1_B", "v w")])).unwrap();
        assert_eq!(
            out,
            "docker restart web && echo {{ not }} 'v w' {{}} {{x-y}} web{"
        );
        assert_eq!(variables("df -h").len(), 0);
        assert_eq!(render("df -h", &vars(&[("extra", "x")])).unwrap(), "df -h");
        assert_eq!(render("{{{a}}}", &vars(&[("a", "1")])).unwrap(), "{1}");
    }

    #[test]
    fn names_every_missing_variable() {
        let err = render("echo {{b}} {{a}} {{b}} {{c}}", &vars(&[("c", "1")])).unwrap_err();
        assert_eq!(err, vec!["a".to_string(), "b".to_string()]);
    }
}
