//! Masking a PostgreSQL SQL script's `COPY … FROM stdin;` blocks.
//!
//! Outside data, lines pass through unchanged; a line starting `COPY ` is
//! held until its end and parsed (`COPY schema.table (col, "Col", …) FROM
//! stdin;`, identifiers possibly quoted). Each following line is one row in
//! COPY text format until the line `\.`: fields separated by tabs, `\N` for
//! NULL, and backslash escapes (`\t \n \r \\ \b \f \v`, octal `\123`, hex
//! `\x7f`) for everything else, so a raw tab or newline is always a
//! delimiter. Fields of unmatched columns stream through; a matched field is
//! held (capped at [`MAX_HELD`]), decoded, masked and encoded again.
//!
//! The filter does not lex SQL: a line inside a multi-line statement (a
//! function body, say) that itself reads `COPY … FROM stdin;` would be
//! taken for a COPY header. `pg_restore` never writes data any other way,
//! so real table data is never missed; such a function body could only be
//! over-masked, and would then most likely fail the restore.

use super::{Filter, MaskError, Masker, Strategy, MAX_HELD};

const COPY: &[u8] = b"COPY ";
const FROM_STDIN: &str = " FROM stdin;";

enum State {
    /// At a line's start in SQL, holding the bytes matching `COPY `.
    LineStart,
    /// In a SQL line that is not a COPY header: pass it through.
    Sql,
    /// In a COPY header line (held whole).
    Header,
    /// In a COPY block's rows.
    Copy,
}

/// The PostgreSQL script filter (see the module docs).
pub struct CopyFilter<'r> {
    masker: Masker<'r>,
    state: State,
    /// The COPY header, or the start of a line that may become one.
    line: Vec<u8>,
    /// The strategy of each column of the current COPY block.
    columns: Vec<Option<Strategy>>,
    /// Index of the current field in the current row.
    field: usize,
    /// The raw bytes of the current field when it is masked.
    held: Vec<u8>,
    /// The first bytes and the length of the current unmasked field (to
    /// recognise the `\.` line).
    head: [u8; 2],
    field_len: usize,
}

impl<'r> CopyFilter<'r> {
    pub fn new(masker: Masker<'r>) -> Self {
        Self {
            masker,
            state: State::LineStart,
            line: Vec::new(),
            columns: Vec::new(),
            field: 0,
            held: Vec::new(),
            head: [0; 2],
            field_len: 0,
        }
    }

    fn end_header(&mut self, out: &mut Vec<u8>) -> Result<(), MaskError> {
        match parse_copy_header(&self.line)? {
            Some(names) => {
                self.columns = names.iter().map(|n| self.masker.strategy_for(n)).collect();
                self.state = State::Copy;
                self.field = 0;
                self.field_len = 0;
            }
            None => self.state = State::LineStart,
        }
        out.extend_from_slice(&self.line);
        self.line.clear();
        Ok(())
    }

    /// Ends the current field with `delim` (a tab or a newline).
    fn end_field(&mut self, delim: u8, out: &mut Vec<u8>) {
        let end_of_data = delim == b'\n' && self.field == 0;
        match self.columns.get(self.field).copied().flatten() {
            Some(strategy) => {
                if end_of_data && self.held == b"\\." {
                    out.extend_from_slice(&self.held);
                    self.state = State::LineStart;
                } else {
                    let value = decode_field(&self.held);
                    let masked = self.masker.apply(strategy, value.as_deref());
                    encode_field(masked.as_deref(), out);
                }
                self.held.clear();
            }
            None => {
                if end_of_data && self.field_len == 2 && &self.head == b"\\." {
                    self.state = State::LineStart;
                }
            }
        }
        out.push(delim);
        self.field_len = 0;
        self.field = if delim == b'\t' { self.field + 1 } else { 0 };
    }
}

impl Filter for CopyFilter<'_> {
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), MaskError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::LineStart => {
                    let b = input[i];
                    self.line.push(b);
                    i += 1;
                    if !COPY.starts_with(&self.line) {
                        out.extend_from_slice(&self.line);
                        self.line.clear();
                        if b != b'\n' {
                            self.state = State::Sql;
                        }
                    } else if self.line.len() == COPY.len() {
                        self.state = State::Header;
                    }
                }
                State::Sql => match input[i..].iter().position(|&b| b == b'\n') {
                    Some(n) => {
                        out.extend_from_slice(&input[i..=i + n]);
                        i += n + 1;
                        self.state = State::LineStart;
                    }
                    None => {
                        out.extend_from_slice(&input[i..]);
                        i = input.len();
                    }
                },
                State::Header => {
                    let rest = &input[i..];
                    let (take, done) = match rest.iter().position(|&b| b == b'\n') {
                        Some(n) => (n + 1, true),
                        None => (rest.len(), false),
                    };
                    if self.line.len() + take > MAX_HELD {
                        return Err(MaskError::TooLong {
                            what: "COPY header",
                            limit: MAX_HELD,
                        });
                    }
                    self.line.extend_from_slice(&rest[..take]);
                    i += take;
                    if done {
                        self.end_header(out)?;
                    }
                }
                State::Copy => {
                    let rest = &input[i..];
                    let found = rest.iter().position(|&b| b == b'\t' || b == b'\n');
                    let run = &rest[..found.unwrap_or(rest.len())];
                    if self.columns.get(self.field).copied().flatten().is_some() {
                        if self.held.len() + run.len() > MAX_HELD {
                            return Err(MaskError::TooLong {
                                what: "masked value",
                                limit: MAX_HELD,
                            });
                        }
                        self.held.extend_from_slice(run);
                    } else {
                        let start = self.field_len;
                        for (k, &b) in run.iter().take(2usize.saturating_sub(start)).enumerate() {
                            self.head[start + k] = b;
                        }
                        self.field_len = start.saturating_add(run.len());
                        out.extend_from_slice(run);
                    }
                    i += run.len();
                    if let Some(n) = found {
                        self.end_field(rest[n], out);
                        i += 1;
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), MaskError> {
        match self.state {
            State::LineStart | State::Sql => {
                out.append(&mut self.line);
                Ok(())
            }
            // A header without its newline is not followed by data.
            State::Header => {
                out.append(&mut self.line);
                Ok(())
            }
            State::Copy => {
                self.held.clear();
                Err(MaskError::Truncated)
            }
        }
    }
}

/// Parses `COPY name (col, …) FROM stdin;` (with its line end) into the
/// column names, quotes removed. `None` for a line that is not a COPY from
/// stdin (e.g. `COPY … TO stdout`), which carries no data to mask.
pub fn parse_copy_header(line: &[u8]) -> Result<Option<Vec<String>>, MaskError> {
    let malformed = |why: &str| MaskError::Malformed(format!("COPY header: {why}"));
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\n', '\r']);
    let Some(body) = text
        .strip_prefix("COPY ")
        .and_then(|t| t.strip_suffix(FROM_STDIN))
    else {
        return Ok(None);
    };
    let mut p = Cursor {
        s: body.as_bytes(),
        i: 0,
    };
    // The table's qualified name.
    loop {
        p.ident().ok_or_else(|| malformed("no table name"))?;
        if p.peek() == Some(b'.') {
            p.i += 1;
        } else {
            break;
        }
    }
    p.skip_spaces();
    let mut columns = Vec::new();
    if p.peek() == Some(b'(') {
        p.i += 1;
        loop {
            p.skip_spaces();
            columns.push(p.ident().ok_or_else(|| malformed("bad column name"))?);
            p.skip_spaces();
            match p.peek() {
                Some(b',') => p.i += 1,
                Some(b')') => {
                    p.i += 1;
                    break;
                }
                _ => return Err(malformed("unterminated column list")),
            }
        }
    }
    p.skip_spaces();
    if p.i != p.s.len() {
        return Err(malformed("unexpected text after the column list"));
    }
    Ok(Some(columns))
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    /// An identifier, quoted (`"a ""b"""`) or not; its real name.
    fn ident(&mut self) -> Option<String> {
        if self.peek() == Some(b'"') {
            self.i += 1;
            let mut name = Vec::new();
            loop {
                match self.peek()? {
                    b'"' if self.s.get(self.i + 1) == Some(&b'"') => {
                        name.push(b'"');
                        self.i += 2;
                    }
                    b'"' => {
                        self.i += 1;
                        return String::from_utf8(name).ok();
                    }
                    b => {
                        name.push(b);
                        self.i += 1;
                    }
                }
            }
        }
        let start = self.i;
        while let Some(b) = self.peek() {
            if matches!(b, b' ' | b'.' | b'(' | b')' | b',') {
                break;
            }
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }
}

/// Decodes one COPY text field; `None` for `\N`.
pub fn decode_field(raw: &[u8]) -> Option<Vec<u8>> {
    if raw == b"\\N" {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        i += 1;
        if b != b'\\' || i == raw.len() {
            out.push(b);
            continue;
        }
        let c = raw[i];
        i += 1;
        match c {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            b'x' if raw.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut v = 0u32;
                for _ in 0..2 {
                    match raw.get(i).and_then(|&d| char::from(d).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            other => out.push(other),
        }
    }
    Some(out)
}

/// Encodes a value as a COPY text field (`\N` for NULL).
pub fn encode_field(value: Option<&[u8]>, out: &mut Vec<u8>) {
    let Some(value) = value else {
        out.extend_from_slice(b"\\N");
        return;
    };
    for &b in value {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0b => out.extend_from_slice(b"\\v"),
            other => out.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::MaskingRules;

    fn rules() -> MaskingRules {
        MaskingRules::parse(
            b"k".to_vec(),
            [("email", "hash"), ("phone", "randomize"), ("ssn", "null")],
        )
        .unwrap()
    }

    /// Runs `input` through the filter in pieces of `piece` bytes.
    fn run(rules: &MaskingRules, input: &[u8], piece: usize) -> Result<Vec<u8>, MaskError> {
        let mut f = CopyFilter::new(Masker::new(rules).unwrap());
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            f.feed(chunk, &mut out)?;
        }
        f.finish(&mut out)?;
        Ok(out)
    }

    #[test]
    fn headers() {
        let h = parse_copy_header(b"COPY public.\"Users\" (id, \"Email\", \"a \"\"b\"\", (c)\", email_verified) FROM stdin;\n").unwrap();
        assert_eq!(
            h,
            Some(vec![
                "id".into(),
                "Email".into(),
                "a \"b\", (c)".into(),
                "email_verified".into()
            ])
        );
        assert_eq!(
            parse_copy_header(b"COPY public.t  FROM stdin;\n").unwrap(),
            Some(vec![])
        );
        assert_eq!(
            parse_copy_header(b"COPY public.t (a) TO stdout;\n").unwrap(),
            None
        );
        assert!(parse_copy_header(b"COPY public.t (a FROM stdin;\n").is_err());
    }

    #[test]
    fn field_escapes_round_trip() {
        assert_eq!(decode_field(b"\\N"), None);
        assert_eq!(decode_field(b"\\\\N").unwrap(), b"\\N");
        assert_eq!(
            decode_field(b"a\\tb\\nc\\\\d\\re\\b\\f\\v").unwrap(),
            b"a\tb\nc\\d\re\x08\x0c\x0b"
        );
        assert_eq!(
            decode_field(b"\\101\\0\\x41\\x4a\\xg\\q").unwrap(),
            b"A\0AJxgq"
        );
        assert_eq!(decode_field(b"\xc3\xa9").unwrap(), "é".as_bytes());
        let mut out = Vec::new();
        encode_field(Some(b"a\tb\nc\\d\re"), &mut out);
        assert_eq!(out, b"a\\tb\\nc\\\\d\\re");
        assert_eq!(decode_field(&out).unwrap(), b"a\tb\nc\\d\re");
        out.clear();
        encode_field(None, &mut out);
        assert_eq!(out, b"\\N");
    }

    #[test]
    fn masks_only_matched_columns_in_any_piece_size() {
        let r = rules();
        let m = Masker::new(&r).unwrap();
        let script = "SET x = 1;\n\
            COPY public.\"Users\" (id, \"Email\", email_verified, phone, ssn, note) FROM stdin;\n\
            1\ta\\tb@x.org\tt\t+1 555\t123-45\tn\\\\o\\te é\n\
            2\t\\N\t\\N\t\\N\t\\N\t\\N\n\
            \\.\n\
            COPY public.other (email) FROM stdin;\n\
            a\\tb@x.org\n\
            \\.\n\
            SELECT 'COPY x (email) FROM stdin;';\n";
        let hashed = String::from_utf8(m.hash(b"a\tb@x.org")).unwrap();
        for piece in [1, 2, 3, 7, 64, 1 << 16] {
            let out = String::from_utf8(run(&r, script.as_bytes(), piece).unwrap()).unwrap();
            let lines: Vec<&str> = out.lines().collect();
            assert_eq!(lines[0], "SET x = 1;");
            assert_eq!(
                lines[1],
                "COPY public.\"Users\" (id, \"Email\", email_verified, phone, ssn, note) FROM stdin;"
            );
            let f: Vec<&str> = lines[2].split('\t').collect();
            assert_eq!(f[0], "1");
            assert_eq!(f[1], hashed);
            assert_eq!(f[2], "t");
            assert_ne!(f[3], "+1 555");
            assert_eq!(f[3].len(), 6);
            assert!(f[3].starts_with("+") && f[3].as_bytes()[2] == b' ');
            assert_eq!(f[4], "\\N");
            assert_eq!(f[5], "n\\\\o\\te é");
            let f: Vec<&str> = lines[3].split('\t').collect();
            assert_eq!(f[1], "\\N");
            assert_eq!(f[2], "\\N");
            assert_eq!(f[3].len(), 8);
            assert_ne!(f[3], "\\N");
            assert_eq!(f[4], "\\N");
            assert_eq!(f[5], "\\N");
            assert_eq!(lines[4], "\\.");
            assert_eq!(lines[6], hashed);
            assert_eq!(lines[7], "\\.");
            // After `\.`, SQL again: not a COPY header at a line's start.
            assert_eq!(lines[8], "SELECT 'COPY x (email) FROM stdin;';");
            assert_eq!(lines.len(), 9);
        }
    }

    #[test]
    fn unmatched_scripts_pass_byte_for_byte() {
        let r = rules();
        let script = b"COPY t (a, b) FROM stdin;\n\\.x\t\\.\n\\\\.\n\\.\nCOPY\nCOP\n\nend";
        for piece in [1, 5, 100] {
            assert_eq!(run(&r, script, piece).unwrap(), script);
        }
    }

    #[test]
    fn a_script_cut_inside_data_is_refused() {
        let r = rules();
        let err = run(&r, b"COPY t (email) FROM stdin;\nsecret@x", 4).unwrap_err();
        assert!(matches!(err, MaskError::Truncated), "{err}");
    }
}
