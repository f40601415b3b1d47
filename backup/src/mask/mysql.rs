//! Masking `mariadb-dump` output: extended `INSERT INTO … VALUES (…),(…);`.
//!
//! Lines outside data pass through; the filter reads each `CREATE TABLE`
//! as it goes by (one column definition a line, as `SHOW CREATE TABLE`
//! writes them) to learn the table's column order and each column's type,
//! and refuses a rule its type cannot take (`hash` on a number or on a
//! `VARCHAR` shorter than the digest, `randomize` on a date, an integer or
//! an enum, `null` on a `NOT NULL` column) before any row is sent. (The
//! dump runs without strict mode, where MariaDB would otherwise truncate or
//! zero such values with a mere warning.)
//!
//! An `INSERT INTO` statement (which `mariadb-dump` may spread over lines,
//! one tuple a line) is parsed as a stream: quoted strings with backslash
//! escapes and doubled quotes, numbers, `NULL`, hex literals (`0x…`,
//! `X'…'`), bit literals (`b'…'`) and introducers (`_binary '…'`). Values
//! of unmatched columns stream through unchanged; a matched value is held
//! (capped at [`MAX_HELD`]), decoded, masked and written back as a quoted
//! string, `NULL`, or a hex literal when the result is not UTF-8.

use std::collections::HashMap;

use super::{Filter, MaskError, Masker, Strategy, MAX_HELD};

const INSERT: &[u8] = b"INSERT INTO ";
/// The start of an ordinary line kept to recognise `CREATE TABLE` and its
/// column definitions (names and types come first on their line).
const LINE_PREFIX: usize = 4096;

enum State {
    /// At a line's start, holding it (up to [`LINE_PREFIX`]).
    LineStart,
    /// The rest of a long ordinary line: pass it through.
    Line,
    /// An `INSERT INTO` header, held until `VALUES`.
    Header,
    /// Between an INSERT's tuples.
    Tuples,
    /// Inside a tuple.
    Value,
    /// After an INSERT's `;`, up to the end of its line.
    Tail,
}

/// A `CREATE TABLE` being read.
struct Creating {
    table: String,
    columns: Vec<(String, Option<Strategy>)>,
}

/// The MariaDB/MySQL dump filter (see the module docs).
pub struct InsertFilter<'r> {
    masker: Masker<'r>,
    state: State,
    line: Vec<u8>,
    in_backticks: bool,
    creating: Option<Creating>,
    /// Each table's columns in order, with their strategies.
    tables: HashMap<String, Vec<(String, Option<Strategy>)>>,
    /// The strategy of each value position of the current INSERT.
    columns: Vec<Option<Strategy>>,
    field: usize,
    quote: bool,
    escape: bool,
    depth: usize,
    held: Vec<u8>,
}

impl<'r> InsertFilter<'r> {
    pub fn new(masker: Masker<'r>) -> Self {
        Self {
            masker,
            state: State::LineStart,
            line: Vec::new(),
            in_backticks: false,
            creating: None,
            tables: HashMap::new(),
            columns: Vec::new(),
            field: 0,
            quote: false,
            escape: false,
            depth: 0,
            held: Vec::new(),
        }
    }

    /// Reads an ordinary line's start for `CREATE TABLE` and its columns.
    fn analyze_line(&mut self) -> Result<(), MaskError> {
        let line = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
        let create = line
            .strip_prefix(b"CREATE TABLE ")
            .or_else(|| line.strip_prefix(b"/*!50001 CREATE TABLE "));
        if let Some(rest) = create {
            if let Some((table, _)) = backticked(rest) {
                self.creating = Some(Creating {
                    table,
                    columns: Vec::new(),
                });
            }
            return Ok(());
        }
        let Some(creating) = &mut self.creating else {
            return Ok(());
        };
        if let Some(rest) = line.strip_prefix(b"  `") {
            let Some((column, def)) = backticked(&line[2..]) else {
                return Err(MaskError::Malformed(format!(
                    "column definition in CREATE TABLE {}: {}",
                    creating.table,
                    String::from_utf8_lossy(&rest[..rest.len().min(80)])
                )));
            };
            let strategy = self.masker.strategy_for(&column);
            if let Some(strategy) = strategy {
                check_type(&creating.table, &column, strategy, def)?;
            }
            creating.columns.push((column, strategy));
        } else if line.starts_with(b")") {
            if let Some(done) = self.creating.take() {
                self.tables.insert(done.table, done.columns);
            }
        }
        Ok(())
    }

    fn end_header(&mut self, out: &mut Vec<u8>) -> Result<(), MaskError> {
        let (table, list) = parse_insert_header(&self.line)?;
        self.columns = match list {
            Some(names) => names.iter().map(|n| self.masker.strategy_for(n)).collect(),
            None => match self.tables.get(&table) {
                Some(cols) => cols.iter().map(|(_, s)| *s).collect(),
                None => {
                    return Err(MaskError::Malformed(format!(
                        "INSERT INTO `{table}` without its CREATE TABLE before it"
                    )))
                }
            },
        };
        out.append(&mut self.line);
        self.state = State::Tuples;
        Ok(())
    }

    fn consume(&mut self, masked: bool, b: u8, out: &mut Vec<u8>) -> Result<(), MaskError> {
        if masked {
            if self.held.len() >= MAX_HELD {
                return Err(MaskError::TooLong {
                    what: "masked value",
                    limit: MAX_HELD,
                });
            }
            self.held.push(b);
        } else {
            out.push(b);
        }
        Ok(())
    }

    fn end_value(&mut self, delim: u8, out: &mut Vec<u8>) -> Result<(), MaskError> {
        if let Some(strategy) = self.columns.get(self.field).copied().flatten() {
            let value = decode_value(&self.held)?;
            let masked = self.masker.apply(strategy, value.as_deref());
            encode_value(masked.as_deref(), out);
            self.held.clear();
        }
        out.push(delim);
        if delim == b',' {
            self.field += 1;
        } else {
            self.state = State::Tuples;
        }
        Ok(())
    }
}

impl Filter for InsertFilter<'_> {
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), MaskError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::LineStart => {
                    let b = input[i];
                    i += 1;
                    self.line.push(b);
                    if self.line == INSERT {
                        self.state = State::Header;
                        self.in_backticks = false;
                    } else if b == b'\n' || self.line.len() >= LINE_PREFIX {
                        self.analyze_line()?;
                        out.append(&mut self.line);
                        if b != b'\n' {
                            self.state = State::Line;
                        }
                    }
                }
                State::Line | State::Tail => match input[i..].iter().position(|&b| b == b'\n') {
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
                    let b = input[i];
                    i += 1;
                    if self.line.len() >= MAX_HELD {
                        return Err(MaskError::TooLong {
                            what: "INSERT header",
                            limit: MAX_HELD,
                        });
                    }
                    self.line.push(b);
                    if b == b'`' {
                        self.in_backticks = !self.in_backticks;
                    } else if !self.in_backticks && self.line.ends_with(b" VALUES") {
                        self.end_header(out)?;
                    }
                }
                State::Tuples => {
                    let b = input[i];
                    i += 1;
                    match b {
                        b'(' => {
                            self.state = State::Value;
                            self.field = 0;
                            self.quote = false;
                            self.escape = false;
                            self.depth = 0;
                        }
                        b';' => self.state = State::Tail,
                        b',' | b' ' | b'\n' | b'\r' | b'\t' => {}
                        other => {
                            return Err(MaskError::Malformed(format!(
                                "unexpected {:?} between an INSERT's tuples",
                                char::from(other)
                            )))
                        }
                    }
                    out.push(b);
                }
                State::Value => {
                    let b = input[i];
                    i += 1;
                    let masked = self.columns.get(self.field).copied().flatten().is_some();
                    if self.quote {
                        if self.escape {
                            self.escape = false;
                        } else if b == b'\\' {
                            self.escape = true;
                        } else if b == b'\'' {
                            self.quote = false;
                        }
                        self.consume(masked, b, out)?;
                        continue;
                    }
                    match b {
                        b'\'' => {
                            self.quote = true;
                            self.consume(masked, b, out)?;
                        }
                        b'(' => {
                            self.depth += 1;
                            self.consume(masked, b, out)?;
                        }
                        b')' if self.depth > 0 => {
                            self.depth -= 1;
                            self.consume(masked, b, out)?;
                        }
                        b',' if self.depth == 0 => self.end_value(b, out)?,
                        b')' => self.end_value(b, out)?,
                        _ => self.consume(masked, b, out)?,
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), MaskError> {
        match self.state {
            State::LineStart | State::Line | State::Tail | State::Header => {
                if matches!(self.state, State::LineStart) {
                    self.analyze_line()?;
                }
                out.append(&mut self.line);
                Ok(())
            }
            State::Tuples | State::Value => {
                self.held.clear();
                Err(MaskError::Truncated)
            }
        }
    }
}

/// A backticked identifier at the start of `s` (``a``b`` is a`b) and what
/// follows it, its leading space removed.
fn backticked(s: &[u8]) -> Option<(String, &[u8])> {
    let mut rest = s.strip_prefix(b"`")?;
    let mut name = Vec::new();
    loop {
        match rest {
            [b'`', b'`', tail @ ..] => {
                name.push(b'`');
                rest = tail;
            }
            [b'`', tail @ ..] => {
                let tail = tail.strip_prefix(b" ").unwrap_or(tail);
                return Some((String::from_utf8(name).ok()?, tail));
            }
            [b, tail @ ..] => {
                name.push(*b);
                rest = tail;
            }
            [] => return None,
        }
    }
}

/// Parses ``INSERT INTO `t` VALUES`` or ``INSERT INTO `t` (`a`,`b`) VALUES``
/// into the table name and the column list, if any.
pub fn parse_insert_header(header: &[u8]) -> Result<(String, Option<Vec<String>>), MaskError> {
    let malformed = || {
        MaskError::Malformed(format!(
            "INSERT header: {}",
            String::from_utf8_lossy(&header[..header.len().min(200)])
        ))
    };
    let rest = header.strip_prefix(INSERT).ok_or_else(malformed)?;
    let (table, mut rest) = backticked(rest).ok_or_else(malformed)?;
    let mut list = None;
    if let Some(mut cols) = rest.strip_prefix(b"(") {
        let mut names = Vec::new();
        loop {
            let (name, tail) = backticked(cols).ok_or_else(malformed)?;
            names.push(name);
            let tail = trim_start(tail);
            if let Some(t) = tail.strip_prefix(b",") {
                cols = trim_start(t);
            } else if let Some(t) = tail.strip_prefix(b")") {
                rest = trim_start(t);
                break;
            } else {
                return Err(malformed());
            }
        }
        list = Some(names);
    }
    if trim_start(rest) != b"VALUES" {
        return Err(malformed());
    }
    Ok((table, list))
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &s[n..]
}

const STRING_TYPES: &[&str] = &[
    "char",
    "varchar",
    "binary",
    "varbinary",
    "tinytext",
    "text",
    "mediumtext",
    "longtext",
    "tinyblob",
    "blob",
    "mediumblob",
    "longblob",
    "json",
];
const SIZED_TYPES: &[&str] = &["char", "varchar", "binary", "varbinary"];
const DECIMAL_TYPES: &[&str] = &["decimal", "numeric", "float", "double", "real"];

/// Refuses a rule the column's declared type (`def`, what follows its name
/// in `SHOW CREATE TABLE`) cannot take.
fn check_type(table: &str, column: &str, strategy: Strategy, def: &[u8]) -> Result<(), MaskError> {
    let def = String::from_utf8_lossy(def);
    let base: String = def
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect::<String>()
        .to_ascii_lowercase();
    let size: Option<usize> = def[base.len()..]
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.trim().parse().ok());
    let column_type: String = def.split(' ').next().unwrap_or_default().to_owned();
    let is_string = STRING_TYPES.contains(&base.as_str());
    let refuse = |reason: &'static str| {
        Err(MaskError::ColumnType {
            table: table.to_owned(),
            column: column.to_owned(),
            column_type: column_type.clone(),
            strategy,
            reason,
        })
    };
    match strategy {
        Strategy::Hash => {
            let fits = is_string
                && (!SIZED_TYPES.contains(&base.as_str())
                    || size.is_some_and(|n| n >= super::strategy::HASH_HEX_LEN));
            if !fits {
                return refuse("a 32-digit hex digest does not fit");
            }
        }
        Strategy::Randomize => {
            if !is_string && !DECIMAL_TYPES.contains(&base.as_str()) {
                return refuse(
                    "randomize keeps the shape of text and decimal numbers only; a random value of the same shape may not fit this type",
                );
            }
        }
        Strategy::Null => {
            if def.contains(" NOT NULL") || def.starts_with("NOT NULL") {
                return refuse("the column is NOT NULL");
            }
        }
    }
    Ok(())
}

/// Decodes one value as `mariadb-dump` writes it; `None` for NULL.
pub fn decode_value(token: &[u8]) -> Result<Option<Vec<u8>>, MaskError> {
    let t = token.trim_ascii();
    if t.eq_ignore_ascii_case(b"NULL") {
        return Ok(None);
    }
    // An introducer: _binary '…', _utf8mb4'…'.
    let t = match t.strip_prefix(b"_") {
        Some(rest) => {
            let n = rest
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                .count();
            rest[n..].trim_ascii_start()
        }
        None => t,
    };
    let bad = || {
        MaskError::Malformed(format!(
            "value {}",
            String::from_utf8_lossy(&token[..token.len().min(80)])
        ))
    };
    match t {
        [b'\'', inner @ .., b'\''] => Ok(Some(unquote(inner))),
        [b'0', b'x' | b'X', digits @ ..] => hex::decode(digits).map(Some).map_err(|_| bad()),
        [b'x' | b'X', b'\'', digits @ .., b'\''] => {
            hex::decode(digits).map(Some).map_err(|_| bad())
        }
        [b'b' | b'B', b'\'', bits @ .., b'\''] => {
            if !bits.iter().all(|b| *b == b'0' || *b == b'1') {
                return Err(bad());
            }
            let mut out = vec![0u8; bits.len().div_ceil(8)];
            for (k, bit) in bits.iter().rev().enumerate() {
                if *bit == b'1' {
                    let len = out.len();
                    out[len - 1 - k / 8] |= 1 << (k % 8);
                }
            }
            Ok(Some(out))
        }
        [] | [b'\'', ..] => Err(bad()),
        // A number (or another bare literal): its text.
        other => Ok(Some(other.to_vec())),
    }
}

/// A quoted string's content, escapes resolved.
fn unquote(inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let b = inner[i];
        i += 1;
        match b {
            b'\\' if i < inner.len() => {
                let c = inner[i];
                i += 1;
                match c {
                    b'0' => out.push(0),
                    b'b' => out.push(0x08),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'Z' => out.push(0x1a),
                    // MySQL keeps the backslash of \% and \_.
                    b'%' | b'_' => out.extend_from_slice(&[b'\\', c]),
                    other => out.push(other),
                }
            }
            b'\'' if inner.get(i) == Some(&b'\'') => {
                out.push(b'\'');
                i += 1;
            }
            other => out.push(other),
        }
    }
    out
}

/// Writes a value as an SQL literal: `NULL`, a quoted string, or a hex
/// literal when it is not UTF-8.
pub fn encode_value(value: Option<&[u8]>, out: &mut Vec<u8>) {
    let Some(value) = value else {
        out.extend_from_slice(b"NULL");
        return;
    };
    if std::str::from_utf8(value).is_err() {
        out.extend_from_slice(b"0x");
        out.extend_from_slice(hex::encode_upper(value).as_bytes());
        return;
    }
    out.push(b'\'');
    for &b in value {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\'' => out.extend_from_slice(b"\\'"),
            0 => out.extend_from_slice(b"\\0"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0x1a => out.extend_from_slice(b"\\Z"),
            other => out.push(other),
        }
    }
    out.push(b'\'');
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

    fn run(rules: &MaskingRules, input: &[u8], piece: usize) -> Result<Vec<u8>, MaskError> {
        let mut f = InsertFilter::new(Masker::new(rules).unwrap());
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            f.feed(chunk, &mut out)?;
        }
        f.finish(&mut out)?;
        Ok(out)
    }

    const CREATE: &str = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `Email` varchar(64) NOT NULL,\n  `email_verified` varchar(20) DEFAULT NULL,\n  `phone` varchar(20) DEFAULT NULL,\n  `ssn` varchar(20) DEFAULT NULL,\n  `bin` varbinary(10) DEFAULT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB;\n";

    #[test]
    fn values_decode() {
        assert_eq!(decode_value(b"NULL").unwrap(), None);
        assert_eq!(
            decode_value(b"'a\\'b''c\\\\d\\n\\t\\0\\Z\\%'")
                .unwrap()
                .unwrap(),
            b"a'b'c\\d\n\t\0\x1a\\%"
        );
        assert_eq!(decode_value(b"0x00FF").unwrap().unwrap(), b"\x00\xff");
        assert_eq!(decode_value(b"X'41'").unwrap().unwrap(), b"A");
        assert_eq!(decode_value(b"_binary '\\0x'").unwrap().unwrap(), b"\0x");
        assert_eq!(decode_value(b"_utf8mb4'x'").unwrap().unwrap(), b"x");
        assert_eq!(decode_value(b"b'100000001'").unwrap().unwrap(), b"\x01\x01");
        assert_eq!(decode_value(b"-12.5e3").unwrap().unwrap(), b"-12.5e3");
        assert!(decode_value(b"'open").is_err());
        assert!(decode_value(b"0xZZ").is_err());
        let mut out = Vec::new();
        encode_value(Some(b"a'b\\c\n\0"), &mut out);
        assert_eq!(out, b"'a\\'b\\\\c\\n\\0'");
        out.clear();
        encode_value(Some(b"\xff"), &mut out);
        assert_eq!(out, b"0xFF");
    }

    #[test]
    fn headers() {
        assert_eq!(
            parse_insert_header(b"INSERT INTO `a``b` VALUES").unwrap(),
            ("a`b".into(), None)
        );
        assert_eq!(
            parse_insert_header(b"INSERT INTO `t` (`x`, `y`) VALUES").unwrap(),
            ("t".into(), Some(vec!["x".into(), "y".into()]))
        );
        assert!(parse_insert_header(b"INSERT INTO t VALUES").is_err());
    }

    #[test]
    fn masks_only_matched_columns_in_any_piece_size() {
        let r = rules();
        let m = Masker::new(&r).unwrap();
        let dump = format!(
            "{CREATE}LOCK TABLES `t` WRITE;\n\
             INSERT INTO `t` VALUES\n\
             (1,'a\\'b,(c)@x.org','a\\'b,(c)@x.org','+1 (555)','1-2',0x00FF),\n\
             (2,'\\\\\t\\n é','yes',NULL,NULL,NULL);\n\
             INSERT INTO `u` VALUES (1,'x');\n\
             UNLOCK TABLES;\n"
        )
        .replace("INSERT INTO `u`", "CREATE TABLE `u` (\n  `email` text,\n  `other` text\n) ENGINE=InnoDB;\nINSERT INTO `u`");
        let h1 = String::from_utf8(m.hash(b"a'b,(c)@x.org")).unwrap();
        let h2 = String::from_utf8(m.hash("\\\t\n é".as_bytes())).unwrap();
        let hx = String::from_utf8(m.hash(b"1")).unwrap();
        for piece in [1, 2, 3, 7, 64, 1 << 16] {
            let out = String::from_utf8(run(&r, dump.as_bytes(), piece).unwrap()).unwrap();
            assert!(out.starts_with(CREATE), "{out}");
            let row1 = out.lines().find(|l| l.starts_with("(1,")).unwrap();
            let prefix = format!("(1,'{h1}','a\\'b,(c)@x.org','+");
            assert!(row1.starts_with(&prefix), "{row1}");
            assert!(row1.ends_with("',NULL,0x00FF),"), "{row1}");
            let phone = &row1[prefix.len() - 1..row1.len() - "',NULL,0x00FF),".len()];
            assert_eq!(phone.len(), 8, "{phone}");
            assert_ne!(phone, "+1 (555)");
            assert_eq!(&phone[2..4], " (");
            let row2 = out.lines().find(|l| l.starts_with("(2,")).unwrap();
            let prefix = format!("(2,'{h2}','yes','");
            assert!(row2.starts_with(&prefix), "{row2}");
            assert!(row2.ends_with("',NULL,NULL);"), "{row2}");
            assert!(
                out.contains(&format!("INSERT INTO `u` VALUES ('{hx}','x');\n")),
                "{out}"
            );
            assert!(out.ends_with("UNLOCK TABLES;\n"));
        }
    }

    #[test]
    fn unmatched_dumps_pass_byte_for_byte() {
        let r = rules();
        let dump = "CREATE TABLE `v` (\n  `a` text\n);\nINSERT INTO `v` VALUES ('x;\\'),(y)',0x01),(NULL,-1.5);\n-- INSERT INTO\n";
        for piece in [1, 4, 1000] {
            assert_eq!(run(&r, dump.as_bytes(), piece).unwrap(), dump.as_bytes());
        }
    }

    #[test]
    fn rules_the_column_type_cannot_take_are_refused() {
        let r = MaskingRules::parse(b"k".to_vec(), [("email", "hash")]).unwrap();
        let dump = "CREATE TABLE `t` (\n  `email` int(11) DEFAULT NULL\n);\n";
        let err = run(&r, dump.as_bytes(), 5).unwrap_err();
        assert!(matches!(err, MaskError::ColumnType { .. }), "{err}");
        assert!(err.to_string().contains("t.email"), "{err}");
        let dump = "CREATE TABLE `t` (\n  `email` varchar(16) DEFAULT NULL\n);\n";
        assert!(run(&r, dump.as_bytes(), 5).is_err());
        let r = MaskingRules::parse(b"k".to_vec(), [("ssn", "null")]).unwrap();
        let dump = "CREATE TABLE `t` (\n  `ssn` text NOT NULL\n);\n";
        assert!(run(&r, dump.as_bytes(), 5).is_err());
        let r = MaskingRules::parse(b"k".to_vec(), [("born", "randomize")]).unwrap();
        let dump = "CREATE TABLE `t` (\n  `born` date DEFAULT NULL\n);\n";
        assert!(run(&r, dump.as_bytes(), 5).is_err());
    }

    #[test]
    fn an_insert_for_an_unknown_table_or_cut_short_is_refused() {
        let r = rules();
        assert!(run(&r, b"INSERT INTO `x` VALUES (1);\n", 3).is_err());
        let dump = format!("{CREATE}INSERT INTO `t` VALUES (1,'sec");
        assert!(matches!(
            run(&r, dump.as_bytes(), 3),
            Err(MaskError::Truncated)
        ));
    }
}
