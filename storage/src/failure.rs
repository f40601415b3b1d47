//! Whether a store failure is worth retrying.
//!
//! A *transient* failure says nothing about the data: the store is down,
//! slow, restarting, out of connections, or lost a serialization race, and
//! the same write succeeds later. A *permanent* failure is the store
//! refusing the data itself (PostgreSQL text holding NUL, jsonb holding
//! `\u0000`, an index row over the btree limit, a ClickHouse parse error):
//! the same write fails every time, so the workers isolate the events that
//! cause it and set them aside as dead letters instead of retrying.
//!
//! When in doubt a failure is transient: retrying a permanent failure only
//! delays, while dead-lettering a transient one would set good data aside.
//! Errors that point at Sluice or its deployment rather than at the data
//! (an unknown table, a syntax error, bad credentials) are transient too:
//! they are fixed by an operator, after which the same data stores.

use std::ops::Range;

use crate::StorageError;

/// Why the data was refused: a small fixed set, used as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Text a store cannot hold: NUL in PostgreSQL text, bad encoding
    /// (SQLSTATE 22021).
    InvalidText,
    /// JSON a store cannot hold: `\u0000` in jsonb, unparsable JSON
    /// (22P05, 22P02, 2203x).
    InvalidJson,
    /// A value over a store's size limit: an index row over the btree
    /// limit (54000), a string too long (22001).
    TooLarge,
    /// Another data exception (SQLSTATE class 22).
    BadValue,
    /// An integrity constraint the data breaks (class 23), e.g. the tenant
    /// no longer exists.
    Constraint,
    /// ClickHouse refused the data of an insert.
    ClickhouseRejected,
    /// The stream entry itself could not be decoded.
    Undecodable,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::InvalidText,
        Reason::InvalidJson,
        Reason::TooLarge,
        Reason::BadValue,
        Reason::Constraint,
        Reason::ClickhouseRejected,
        Reason::Undecodable,
    ];

    /// The metric label and the `reason` field of a dead letter.
    pub fn label(self) -> &'static str {
        match self {
            Reason::InvalidText => "invalid_text",
            Reason::InvalidJson => "invalid_json",
            Reason::TooLarge => "too_large",
            Reason::BadValue => "bad_value",
            Reason::Constraint => "constraint",
            Reason::ClickhouseRejected => "clickhouse_rejected",
            Reason::Undecodable => "undecodable",
        }
    }

    pub fn parse(label: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.label() == label)
    }
}

/// What a failure means for the data that was being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Retry later: the store, not the data, is the problem.
    Transient,
    /// The data is refused and always will be.
    Permanent(Reason),
}

impl Failure {
    pub fn is_permanent(self) -> bool {
        matches!(self, Failure::Permanent(_))
    }
}

/// Classifies a PostgreSQL SQLSTATE.
pub fn sqlstate(code: &str) -> Failure {
    match code {
        // character_not_in_repertoire: NUL in text, bad UTF-8
        "22021" => Failure::Permanent(Reason::InvalidText),
        // untranslatable_character: `\u0000` in jsonb
        "22P05" => Failure::Permanent(Reason::InvalidJson),
        // invalid_text_representation (a bad jsonb literal among others),
        // the SQL/JSON family 2203x
        "22P02" => Failure::Permanent(Reason::InvalidJson),
        c if c.starts_with("2203") => Failure::Permanent(Reason::InvalidJson),
        // string_data_right_truncation; program_limit_exceeded (index row
        // size), statement_too_complex, too_many_columns
        "22001" | "54000" | "54001" | "54011" | "54023" => Failure::Permanent(Reason::TooLarge),
        c if c.starts_with("22") => Failure::Permanent(Reason::BadValue),
        c if c.starts_with("23") => Failure::Permanent(Reason::Constraint),
        // Everything else: connection exceptions (08), serialization
        // failure and deadlock (40001, 40P01), insufficient resources (53),
        // operator intervention such as admin shutdown (57), system errors
        // (58), lock not available (55P03), and errors in Sluice's own
        // statements or schema (42), which a deployment fix cures.
        _ => Failure::Transient,
    }
}

/// The exception code in a ClickHouse error text (`Code: 27, e.displayText()
/// = DB::Exception: …` on 18.16, `Code: 27. DB::Exception: …` later).
pub fn clickhouse_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + "Code: ".len()..];
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..digits].parse().ok()
}

/// Classifies a ClickHouse exception code: those that reject the data of
/// an insert are permanent; the rest (network, memory, too many parts,
/// timeouts, unknown tables, authentication) transient.
pub fn clickhouse(code: u32) -> Failure {
    match code {
        // CANNOT_PARSE_TEXT, CANNOT_PARSE_ESCAPE_SEQUENCE, CANNOT_PARSE_QUOTED_STRING,
        // CANNOT_PARSE_INPUT_ASSERTION_FAILED, CANNOT_PARSE_DATE, CANNOT_PARSE_DATETIME,
        // CANNOT_PARSE_NUMBER, CANNOT_READ_ALL_DATA, TOO_LARGE_STRING_SIZE,
        // TYPE_MISMATCH, CANNOT_CONVERT_TYPE, ARGUMENT_OUT_OF_BOUND,
        // INCORRECT_DATA, CANNOT_PARSE_UUID, UNKNOWN_ELEMENT_IN_ENUM (a bad level),
        // CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN, TOO_LARGE_ARRAY_SIZE,
        // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE, CANNOT_PARSE_BOOL
        6 | 25 | 26 | 27 | 38 | 41 | 72 | 33 | 131 | 53 | 70 | 69 | 117 | 376 | 36 | 349 | 128
        | 321 | 467 => Failure::Permanent(Reason::ClickhouseRejected),
        _ => Failure::Transient,
    }
}

impl StorageError {
    /// Whether retrying can help, and if not why the data was refused.
    pub fn failure(&self) -> Failure {
        match self {
            StorageError::Postgres(e) => postgres(e),
            StorageError::ClickHouse(e) => match e {
                clickhouse::error::Error::BadResponse(text) => {
                    clickhouse_code(text).map_or(Failure::Transient, clickhouse)
                }
                _ => Failure::Transient,
            },
            StorageError::Wire { .. } => Failure::Permanent(Reason::Undecodable),
            StorageError::Migrate(_)
            | StorageError::Redis(_)
            | StorageError::RedisPool(_)
            | StorageError::RedisPoolSetup(_)
            | StorageError::Invalid(_) => Failure::Transient,
        }
    }

    pub fn is_permanent(&self) -> bool {
        self.failure().is_permanent()
    }

    /// The store's own words for a refusal, for a dead letter: the
    /// database's message and code, never a connection string, at most
    /// [`DETAIL_MAX`] bytes.
    pub fn detail(&self) -> String {
        let text = match self {
            StorageError::Postgres(sqlx::Error::Database(db)) => match db.code() {
                Some(code) => format!("postgres {code}: {}", db.message()),
                None => format!("postgres: {}", db.message()),
            },
            StorageError::Postgres(sqlx::Error::Encode(e)) => format!("postgres encode: {e}"),
            StorageError::Postgres(_) => "postgres unavailable".to_string(),
            StorageError::ClickHouse(clickhouse::error::Error::BadResponse(t)) => {
                format!("clickhouse: {t}")
            }
            StorageError::ClickHouse(_) => "clickhouse unavailable".to_string(),
            other => other.to_string(),
        };
        truncate(text, DETAIL_MAX)
    }
}

/// Longest error text a dead letter keeps.
pub const DETAIL_MAX: usize = 1000;

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// A search for the items of a batch a store refuses for good: the whole
/// range is tried first; a range that fails permanently is halved, until
/// the single items that fail alone are found, and everything else ends up
/// stored. A transient failure stops the search (the caller retries the
/// whole, with de-duplication). `k` bad items among `n` cost about
/// `2·k·log2(n)` tries beyond the first.
///
/// ```ignore
/// let mut search = Isolate::new(items.len());
/// while let Some(range) = search.next_range() {
///     let result = store(&items[range.clone()]).await;
///     search.record(range, result)?;
/// }
/// let refused = search.into_refused();
/// ```
#[derive(Debug)]
pub struct Isolate {
    todo: Vec<Range<usize>>,
    refused: Vec<(usize, StorageError)>,
}

impl Isolate {
    pub fn new(n: usize) -> Self {
        Isolate {
            todo: std::iter::once(0..n).filter(|r| !r.is_empty()).collect(),
            refused: Vec::new(),
        }
    }

    /// The next range to store, if any.
    pub fn next_range(&mut self) -> Option<Range<usize>> {
        self.todo.pop()
    }

    /// Records how storing `range` went; a transient failure is returned.
    pub fn record(
        &mut self,
        range: Range<usize>,
        result: Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.is_permanent() => {
                if range.len() <= 1 {
                    self.refused.push((range.start, e));
                } else {
                    let mid = range.start + range.len() / 2;
                    // the first half next, so items keep their order
                    self.todo.push(mid..range.end);
                    self.todo.push(range.start..mid);
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The items refused alone, in order, with their errors.
    pub fn into_refused(self) -> Vec<(usize, StorageError)> {
        self.refused
    }
}

fn postgres(e: &sqlx::Error) -> Failure {
    match e {
        sqlx::Error::Database(db) => db.code().map_or(Failure::Transient, |c| sqlstate(&c)),
        // A value that cannot be encoded is refused before it is sent.
        sqlx::Error::Encode(_) => Failure::Permanent(Reason::BadValue),
        // Pool time-outs, I/O, TLS, protocol, closed pools and the rest.
        _ => Failure::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_exceptions_are_permanent_with_their_reason() {
        assert_eq!(sqlstate("22021"), Failure::Permanent(Reason::InvalidText));
        assert_eq!(sqlstate("22P05"), Failure::Permanent(Reason::InvalidJson));
        assert_eq!(sqlstate("22P02"), Failure::Permanent(Reason::InvalidJson));
        assert_eq!(sqlstate("54000"), Failure::Permanent(Reason::TooLarge));
        assert_eq!(sqlstate("22001"), Failure::Permanent(Reason::TooLarge));
        assert_eq!(sqlstate("22003"), Failure::Permanent(Reason::BadValue));
        assert_eq!(sqlstate("23503"), Failure::Permanent(Reason::Constraint));
        assert_eq!(sqlstate("23502"), Failure::Permanent(Reason::Constraint));
    }

    #[test]
    fn outages_and_races_are_transient() {
        for code in [
            "08000", "08006", "08001", "40001", "40P01", "53300", "53100", "57P01", "57P02",
            "57P03", "57014", "58030", "55P03", "42P01", "42601", "XX000", "28P01",
        ] {
            assert_eq!(sqlstate(code), Failure::Transient, "{code}");
        }
        let pool = StorageError::Postgres(sqlx::Error::PoolTimedOut);
        assert!(!pool.is_permanent());
        let io = StorageError::Postgres(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        )));
        assert!(!io.is_permanent());
        assert_eq!(io.detail(), "postgres unavailable");
        let ch = StorageError::ClickHouse(clickhouse::error::Error::TimedOut);
        assert!(!ch.is_permanent());
    }

    #[test]
    fn clickhouse_codes_are_read_from_both_server_generations() {
        let old = "Code: 27, e.displayText() = DB::Exception: Cannot parse input: expected \\t before: x, e.what() = DB::Exception";
        let new =
            "Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED)";
        assert_eq!(clickhouse_code(old), Some(27));
        assert_eq!(clickhouse_code(new), Some(241));
        assert_eq!(clickhouse_code("502 Bad Gateway"), None);
        let refused = StorageError::ClickHouse(clickhouse::error::Error::BadResponse(old.into()));
        assert_eq!(
            refused.failure(),
            Failure::Permanent(Reason::ClickhouseRejected)
        );
        assert!(refused.detail().starts_with("clickhouse: Code: 27"));
        for text in [
            new,
            "Code: 252. Too many parts",
            "Code: 60. Table doesn't exist",
            "Code: 516. Authentication failed",
            "503 Service Unavailable",
        ] {
            let e = StorageError::ClickHouse(clickhouse::error::Error::BadResponse(text.into()));
            assert!(!e.is_permanent(), "{text}");
        }
    }

    fn nul_refused(items: &[&str], r: Range<usize>) -> Result<(), StorageError> {
        if items[r].iter().any(|s| s.contains('\0')) {
            Err(StorageError::Wire {
                id: "1-0".into(),
                reason: "nul".into(),
            })
        } else {
            Ok(())
        }
    }

    #[test]
    fn isolate_finds_exactly_the_refused_items_and_stores_the_rest() {
        let items = ["a", "b\0", "c", "d", "e", "f\0", "g", "h", "i"];
        let mut search = Isolate::new(items.len());
        let mut stored = Vec::new();
        let mut tries = 0;
        while let Some(r) = search.next_range() {
            tries += 1;
            let result = nul_refused(&items, r.clone());
            if result.is_ok() {
                stored.extend(r.clone());
            }
            search.record(r, result).unwrap();
        }
        let refused: Vec<usize> = search.into_refused().into_iter().map(|(i, _)| i).collect();
        assert_eq!(refused, [1, 5]);
        stored.sort_unstable();
        assert_eq!(stored, [0, 2, 3, 4, 6, 7, 8]);
        assert!(tries <= 1 + 2 * 2 * 4, "{tries} tries");

        // all good: one try; nothing: none
        let mut search = Isolate::new(4);
        let r = search.next_range().unwrap();
        assert_eq!(r, 0..4);
        search.record(r, Ok(())).unwrap();
        assert!(search.next_range().is_none());
        assert!(search.into_refused().is_empty());
        assert!(Isolate::new(0).next_range().is_none());
    }

    #[test]
    fn isolate_stops_at_a_transient_failure() {
        let mut search = Isolate::new(8);
        let r = search.next_range().unwrap();
        search
            .record(
                r,
                Err(StorageError::Wire {
                    id: "1-0".into(),
                    reason: "bad".into(),
                }),
            )
            .unwrap();
        let r = search.next_range().unwrap();
        assert_eq!(r, 0..4);
        let transient = search.record(r, Err(StorageError::Postgres(sqlx::Error::PoolTimedOut)));
        assert!(matches!(transient, Err(StorageError::Postgres(_))));
    }

    #[test]
    fn undecodable_entries_are_permanent_and_labels_round_trip() {
        let e = StorageError::Wire {
            id: "1-0".into(),
            reason: "empty envelope".into(),
        };
        assert_eq!(e.failure(), Failure::Permanent(Reason::Undecodable));
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.label()), Some(r));
        }
        let long = truncate("é".repeat(DETAIL_MAX), DETAIL_MAX);
        assert!(long.len() <= DETAIL_MAX + '…'.len_utf8());
    }
}
