//! Masking: sensitive columns rewritten while a restore's SQL streams from
//! the dump into the database, so unmasked values never reach the target.
//!
//! [`MaskingRules`] map column names to a [`Strategy`]. A rule matches every
//! column, in every table, whose whole name equals the rule's name
//! case-insensitively (`email` matches `email` and `"Email"`, not
//! `email_verified`); columns no rule names pass byte for byte, and so does
//! everything outside table data (schema, indexes, sequences).
//!
//! - `hash`: HMAC-SHA256 of the value's bytes under the rules' key, the
//!   first 32 lowercase hex digits. Equal inputs give equal outputs in every
//!   table of one restore (and of every restore given the same key),
//!   distinct inputs distinct outputs (up to 128-bit collisions); NULL stays
//!   NULL.
//! - `randomize`: a value of the same shape (digits stay digits, letters
//!   stay letters of the same case, anything else is kept, same length in
//!   characters), drawn again until it differs from the original. A value
//!   with no letter or digit (or empty), and NULL, become 8 random
//!   alphanumeric characters.
//! - `null`: NULL.
//!
//! The value a strategy produces must suit the column's type: `hash` on an
//! integer column, or `null` on a `NOT NULL` one, makes the restore fail
//! with a clear error (PostgreSQL refuses the row; for MySQL/MariaDB the
//! filter checks the column's declared type as it reads `CREATE TABLE`),
//! and the target is left as it was, as for any failed restore.
//!
//! One filter per dump dialect, each a streaming state machine over bytes
//! with bounded memory: only statement headers and the values of masked
//! columns are held, each capped at [`MAX_HELD`] (a clear error beyond):
//! - [`postgres`]: the SQL script `pg_restore --file=-` writes, whose
//!   `COPY … FROM stdin;` blocks carry rows in COPY text format.
//! - [`mysql`]: `mariadb-dump` output, `CREATE TABLE` then extended
//!   `INSERT INTO … VALUES (…),(…);` statements.

pub mod mysql;
pub mod postgres;
mod strategy;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub use strategy::Masker;

/// The most bytes a filter holds at once for one statement header or one
/// masked value.
pub const MAX_HELD: usize = 64 << 20;

/// What a rule does to a matched column's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// A keyed digest (32 lowercase hex digits); NULL stays NULL.
    Hash,
    /// A random value of the same shape that differs from the original.
    Randomize,
    /// NULL.
    Null,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Hash => "hash",
            Strategy::Randomize => "randomize",
            Strategy::Null => "null",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Strategy {
    type Err = MaskError;

    fn from_str(s: &str) -> Result<Self, MaskError> {
        match s {
            "hash" => Ok(Strategy::Hash),
            "randomize" => Ok(Strategy::Randomize),
            "null" => Ok(Strategy::Null),
            other => Err(MaskError::UnknownStrategy(other.to_owned())),
        }
    }
}

/// Why masking refused the rules or the dump.
#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    /// A rule names a strategy other than `hash`, `randomize` or `null`.
    #[error("unknown masking strategy {0:?} (expected hash, randomize or null)")]
    UnknownStrategy(String),
    /// A rule with an empty column name.
    #[error("a masking rule needs a column name")]
    EmptyColumn,
    /// Two rules name the same column (case-insensitively) with different
    /// strategies.
    #[error("masking rules for column {0:?} disagree")]
    ConflictingRules(String),
    /// `hash` needs a key.
    #[error("masking needs a non-empty key")]
    EmptyKey,
    /// A statement header or a masked value larger than [`MAX_HELD`].
    #[error("masking: {what} longer than {limit} bytes")]
    TooLong { what: &'static str, limit: usize },
    /// The dump ended inside a masked table's data (the tool that wrote it
    /// failed, or the dump is cut short).
    #[error("masking: the dump ended inside table data")]
    Truncated,
    /// The dump is not what the filter expects (it cannot mask it safely).
    #[error("masking: cannot parse the dump: {0}")]
    Malformed(String),
    /// A rule's output cannot go in the column's type.
    #[error("masking: strategy {strategy} cannot apply to column {table}.{column} of type {column_type}: {reason}")]
    ColumnType {
        table: String,
        column: String,
        column_type: String,
        strategy: Strategy,
        reason: &'static str,
    },
}

/// Column name → strategy, and the key `hash` uses.
#[derive(Clone)]
pub struct MaskingRules {
    /// Keyed by lowercase column name.
    rules: HashMap<String, Strategy>,
    key: Vec<u8>,
}

impl fmt::Debug for MaskingRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaskingRules")
            .field("rules", &self.rules)
            .field("key", &"…")
            .finish()
    }
}

impl MaskingRules {
    /// No rules yet; `key` keys `hash` (the caller derives it, e.g. per
    /// tenant from its master secret).
    pub fn new(key: impl Into<Vec<u8>>) -> Result<Self, MaskError> {
        let key = key.into();
        if key.is_empty() {
            return Err(MaskError::EmptyKey);
        }
        Ok(Self {
            rules: HashMap::new(),
            key,
        })
    }

    /// Parses `(column, strategy name)` pairs, as an API request carries
    /// them; an unknown strategy is refused (answer 422).
    pub fn parse<'s>(
        key: impl Into<Vec<u8>>,
        rules: impl IntoIterator<Item = (&'s str, &'s str)>,
    ) -> Result<Self, MaskError> {
        let mut out = Self::new(key)?;
        for (column, strategy) in rules {
            out = out.with_rule(column, strategy.parse()?)?;
        }
        Ok(out)
    }

    /// Adds one rule.
    pub fn with_rule(mut self, column: &str, strategy: Strategy) -> Result<Self, MaskError> {
        if column.is_empty() {
            return Err(MaskError::EmptyColumn);
        }
        match self.rules.insert(fold(column), strategy) {
            Some(previous) if previous != strategy => {
                Err(MaskError::ConflictingRules(column.to_owned()))
            }
            _ => Ok(self),
        }
    }

    /// The strategy for a column named `column` (its real name, quotes
    /// removed), if a rule matches it.
    pub fn strategy_for(&self, column: &str) -> Option<Strategy> {
        self.rules.get(&fold(column)).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }
}

fn fold(name: &str) -> String {
    name.to_lowercase()
}

/// Which dump text a filter reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// A PostgreSQL SQL script (`pg_restore --file=-`, `pg_dump --format=plain`).
    PostgresScript,
    /// `mariadb-dump` / `mysqldump` output.
    MariaDbDump,
}

/// A streaming rewriter: bytes in, masked bytes out, in pieces of any size.
pub trait Filter: Send {
    /// Rewrites `input`, appending what can be written already to `out`
    /// (it may hold back the end of a header or a masked value).
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), MaskError>;
    /// The dump ended: appends what was held back, or refuses a dump cut
    /// inside a masked value.
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), MaskError>;
}

/// A filter for `dialect` applying `rules`.
pub fn filter(dialect: Dialect, rules: &MaskingRules) -> Result<Box<dyn Filter + '_>, MaskError> {
    let masker = Masker::new(rules)?;
    Ok(match dialect {
        Dialect::PostgresScript => Box::new(postgres::CopyFilter::new(masker)),
        Dialect::MariaDbDump => Box::new(mysql::InsertFilter::new(masker)),
    })
}

/// Reads `input` to its end through `filter` into `output`, 64 KiB at a
/// time, and shuts `output` down. Errors keep their cause: a masking error
/// as [`crate::BackupError::Mask`], an i/o error as `Io`.
pub(crate) async fn pump(
    filter: &mut dyn Filter,
    input: &mut (dyn AsyncRead + Send + Unpin),
    output: &mut (dyn AsyncWrite + Send + Unpin),
) -> crate::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(128 * 1024);
    loop {
        let n = input.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        filter.feed(&buf[..n], &mut out)?;
        output.write_all(&out).await?;
        out.clear();
        if out.capacity() > 1 << 20 {
            out.shrink_to(128 * 1024);
        }
    }
    filter.finish(&mut out)?;
    output.write_all(&out).await?;
    output.shutdown().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_match_whole_names_case_insensitively() {
        let rules = MaskingRules::parse(
            b"k".to_vec(),
            [("email", "hash"), ("Phone", "randomize"), ("ssn", "null")],
        )
        .unwrap();
        assert_eq!(rules.strategy_for("email"), Some(Strategy::Hash));
        assert_eq!(rules.strategy_for("Email"), Some(Strategy::Hash));
        assert_eq!(rules.strategy_for("EMAIL"), Some(Strategy::Hash));
        assert_eq!(rules.strategy_for("email_verified"), None);
        assert_eq!(rules.strategy_for("phone"), Some(Strategy::Randomize));
        assert_eq!(rules.strategy_for("SSN"), Some(Strategy::Null));
        assert!(!format!("{rules:?}").contains("107"));
    }

    #[test]
    fn unknown_strategies_are_refused() {
        let err = MaskingRules::parse(b"k".to_vec(), [("email", "shuffle")]).unwrap_err();
        assert!(matches!(err, MaskError::UnknownStrategy(ref s) if s == "shuffle"));
        assert!(MaskingRules::parse(b"k".to_vec(), [("email", "Hash")]).is_err());
        assert!(matches!(
            MaskingRules::parse(b"k".to_vec(), [("", "hash")]),
            Err(MaskError::EmptyColumn)
        ));
        assert!(matches!(
            MaskingRules::parse(b"k".to_vec(), [("email", "hash"), ("EMAIL", "null")]),
            Err(MaskError::ConflictingRules(_))
        ));
        assert!(matches!(
            MaskingRules::new(Vec::new()),
            Err(MaskError::EmptyKey)
        ));
    }
}
