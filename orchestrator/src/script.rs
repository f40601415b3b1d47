//! A migration script read with PostgreSQL's own grammar (libpg_query):
//! its statements, each with the 1-based line it starts on, or the syntax
//! error and the line it is on.

use pg_query::protobuf::node::Node as NodeEnum;

/// A script that parsed.
#[derive(Debug, Clone)]
pub struct Script {
    pub text: String,
    pub statements: Vec<Statement>,
}

/// One statement of a script.
#[derive(Debug, Clone)]
pub struct Statement {
    /// The statement's own text (no trailing semicolon).
    pub sql: String,
    /// The 1-based line of the script it starts on.
    pub line: usize,
    /// Its parse tree.
    pub node: NodeEnum,
}

/// Explicit transaction control in a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnControl {
    /// `BEGIN` / `START TRANSACTION`.
    Begin,
    /// `COMMIT` / `END`, `ROLLBACK` / `ABORT`, or a prepared transaction's end.
    End,
}

/// A script that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at line {line}")]
pub struct SyntaxError {
    /// PostgreSQL's message (`syntax error at or near "SELEC"`).
    pub message: String,
    /// The 1-based line of the script the error is on.
    pub line: usize,
}

/// Parses `text`.
pub fn parse(text: &str) -> Result<Script, SyntaxError> {
    let parsed = pg_query::parse(text).map_err(|e| syntax_error(text, e))?;
    let mut statements = Vec::with_capacity(parsed.protobuf.stmts.len());
    for raw in &parsed.protobuf.stmts {
        let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.clone()) else {
            continue;
        };
        let start = usize::try_from(raw.stmt_location)
            .unwrap_or(0)
            .min(text.len());
        let end = match usize::try_from(raw.stmt_len) {
            Ok(0) | Err(_) => text.len(),
            Ok(len) => (start + len).min(text.len()),
        };
        let slice = text.get(start..end).unwrap_or("");
        let lead = leading_noise(slice);
        let sql = slice[lead..].trim_end().trim_end_matches(';').trim_end();
        statements.push(Statement {
            sql: sql.to_string(),
            line: line_at(text, start + lead),
            node,
        });
    }
    Ok(Script {
        text: text.to_string(),
        statements,
    })
}

impl Statement {
    /// `BEGIN`, `COMMIT` and their kin.
    pub fn transaction_control(&self) -> Option<TxnControl> {
        use pg_query::protobuf::TransactionStmtKind as K;
        let NodeEnum::TransactionStmt(t) = &self.node else {
            return None;
        };
        match K::try_from(t.kind).ok()? {
            K::TransStmtBegin | K::TransStmtStart => Some(TxnControl::Begin),
            K::TransStmtCommit
            | K::TransStmtRollback
            | K::TransStmtPrepare
            | K::TransStmtCommitPrepared
            | K::TransStmtRollbackPrepared => Some(TxnControl::End),
            _ => None,
        }
    }

    /// Whether PostgreSQL lets this statement run inside a transaction
    /// block (`CREATE INDEX CONCURRENTLY`, `VACUUM`, `CREATE DATABASE` and
    /// their kin do not).
    pub fn runs_in_transaction(&self) -> bool {
        match &self.node {
            NodeEnum::IndexStmt(s) => !s.concurrent,
            NodeEnum::DropStmt(s) => !s.concurrent,
            NodeEnum::ReindexStmt(s) => !s.params.iter().any(
                |p| matches!(&p.node, Some(NodeEnum::DefElem(d)) if d.defname == "concurrently"),
            ),
            NodeEnum::VacuumStmt(_)
            | NodeEnum::CreatedbStmt(_)
            | NodeEnum::DropdbStmt(_)
            | NodeEnum::AlterSystemStmt(_)
            | NodeEnum::CreateTableSpaceStmt(_)
            | NodeEnum::DropTableSpaceStmt(_)
            | NodeEnum::CreateSubscriptionStmt(_)
            | NodeEnum::DropSubscriptionStmt(_) => false,
            NodeEnum::AlterSubscriptionStmt(_) => false,
            _ => true,
        }
    }

    /// Whether this is `BEGIN`/`COMMIT`/... (which Sluice's own transaction
    /// per phase replaces).
    pub fn is_transaction_control(&self) -> bool {
        matches!(self.node, NodeEnum::TransactionStmt(_))
    }
}

impl Script {
    /// Whether every statement may run inside one transaction.
    pub fn fits_one_transaction(&self) -> bool {
        self.statements.iter().all(Statement::runs_in_transaction)
    }
}

/// Bytes of whitespace and comments before a statement's first token.
fn leading_noise(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b[i..].starts_with(b"--") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            match s[i + 2..].find("*/") {
                Some(p) => i += 2 + p + 2,
                None => return b.len(),
            }
        } else {
            return i;
        }
    }
}

/// The 1-based line of byte offset `at` in `text`.
fn line_at(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    1 + text.as_bytes()[..at]
        .iter()
        .filter(|&&c| c == b'\n')
        .count()
}

/// Finds the line of a syntax error with the parser itself. PostgreSQL's
/// grammar reads tokens left to right and fails at the first token no valid
/// script can continue with, so a prefix of the script ending on a token
/// either parses (or fails only "at end of input": it could still be
/// completed) or fails for good, and once it fails for good every longer
/// prefix does too. A binary search over the token ends (from the scanner,
/// which splits string literals and comments correctly) finds the first
/// token that fails; that token's line is the error's line. For
/// `at end of input` it is the line the script's text ends on. A script the scanner
/// itself rejects (an unterminated string, comment or quoted identifier)
/// is located by the text PostgreSQL quotes, or failing that by the same
/// search over line ends.
fn syntax_error(text: &str, e: pg_query::Error) -> SyntaxError {
    let message = match e {
        pg_query::Error::Parse(m) => m,
        other => other.to_string(),
    };
    let line = locate(text, &message).unwrap_or(1);
    SyntaxError { message, line }
}

/// The text PostgreSQL quotes in `… at or near "X"`.
fn near_text(message: &str) -> Option<&str> {
    message
        .split_once("at or near \"")
        .and_then(|(_, rest)| rest.rsplit_once('"'))
        .map(|(tok, _)| tok)
        .filter(|t| !t.is_empty())
}

/// Whether `prefix` could still be the start of a valid script.
fn viable(prefix: &str) -> bool {
    match pg_query::parse(prefix) {
        Ok(_) => true,
        Err(pg_query::Error::Parse(m)) => m.ends_with("at end of input"),
        Err(_) => false,
    }
}

/// The first index in `0..n` for which `fails` holds, given that it holds
/// for every index after one where it does.
fn first_failing(n: usize, fails: impl Fn(usize) -> bool) -> Option<usize> {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if fails(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    (lo < n).then_some(lo)
}

/// Where PostgreSQL puts `at end of input`: just past the script's last
/// character, shown on the line of its last non-blank character (a
/// trailing comment included, as psql's `LINE n:` shows it).
fn end_of_input_line(text: &str) -> usize {
    line_at(text, text.trim_end().len().saturating_sub(1))
}

fn locate(text: &str, message: &str) -> Option<usize> {
    use pg_query::protobuf::Token;
    let Ok(scanned) = pg_query::scan(text) else {
        return locate_unscannable(text, message);
    };
    let tokens: Vec<(usize, usize)> = scanned
        .tokens
        .iter()
        .filter(|t| {
            !matches!(
                Token::try_from(t.token),
                Ok(Token::SqlComment | Token::CComment)
            )
        })
        .filter_map(|t| Some((usize::try_from(t.start).ok()?, usize::try_from(t.end).ok()?)))
        .filter(|&(start, end)| start <= end && end <= text.len())
        .collect();
    if message.ends_with("at end of input") {
        return Some(end_of_input_line(text));
    }
    let k = first_failing(tokens.len(), |k| {
        text.get(..tokens[k].1).is_some_and(|p| !viable(p))
    })?;
    // An error raised by a grammar action while reducing names its own
    // token, which may come before the lookahead that triggered it.
    let at = near_text(message)
        .and_then(|near| {
            tokens[..=k]
                .iter()
                .rev()
                .find(|&&(s, e)| text.get(s..e) == Some(near))
        })
        .map_or(tokens[k].0, |&(s, _)| s);
    Some(line_at(text, at))
}

/// For scripts the scanner rejects: an unterminated literal or comment runs
/// to the end of the script and PostgreSQL quotes it whole; anything else
/// is found by the first line-end prefix that fails for good (an
/// unterminated literal there only means the prefix ends inside one).
fn locate_unscannable(text: &str, message: &str) -> Option<usize> {
    if let Some(near) = near_text(message) {
        if text.ends_with(near) {
            return Some(line_at(text, text.len() - near.len()));
        }
    }
    let ends: Vec<usize> = text
        .match_indices('\n')
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    let k = first_failing(ends.len(), |k| {
        text.get(..ends[k])
            .is_some_and(|p| match pg_query::parse(p) {
                Ok(_) => false,
                Err(pg_query::Error::Parse(m)) => {
                    !(m.ends_with("at end of input") || m.starts_with("unterminated"))
                }
                Err(_) => true,
            })
    })?;
    Some(k + 1)
}

/// A scratch PostgreSQL database for tests (127.0.0.1:5432, trust auth).
#[cfg(test)]
pub(crate) mod scratch {
    use sqlx::Connection;

    const ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

    /// A scratch database, dropped when the guard goes (also on failure).
    pub struct ScratchDb(String);

    impl Drop for ScratchDb {
        fn drop(&mut self) {
            let name = self.0.clone();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let mut c = sqlx::PgConnection::connect(ADMIN).await.unwrap();
                    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .execute(&mut c)
                    .await
                    .unwrap();
                });
            })
            .join();
        }
    }

    /// Creates `orch_t_<uuid>` and connects to it.
    pub async fn database() -> (ScratchDb, sqlx::PgConnection) {
        let name = format!("orch_t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(ADMIN).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .unwrap();
        let guard = ScratchDb(name.clone());
        let conn =
            sqlx::PgConnection::connect(&format!("postgres://postgres@127.0.0.1:5432/{name}"))
                .await
                .unwrap();
        (guard, conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_carry_their_lines() {
        let s = parse("SET lock_timeout = '2s';\n\n-- add it\nALTER TABLE a ADD COLUMN b int;\nCREATE INDEX CONCURRENTLY i ON a (b);")
            .unwrap();
        let lines: Vec<usize> = s.statements.iter().map(|s| s.line).collect();
        assert_eq!(lines, vec![1, 4, 5]);
        assert_eq!(s.statements[1].sql, "ALTER TABLE a ADD COLUMN b int");
        assert!(!s.statements[2].runs_in_transaction());
        assert!(!s.fits_one_transaction());
    }

    #[test]
    fn syntax_errors_name_their_line() {
        let e = parse("SELECT 1;\nSELECT 2;\nSELEC 3;\nSELECT 4;").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("SELEC"), "{e}");
        let e = parse("CREATE TABLE t (\n  id int,\n  name text\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = parse("ALTER TABLE a\n  ADD COLUMN b int\n  NOT NUL;").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
    }

    #[test]
    fn syntax_error_lines_survive_literals_and_comments() {
        // A string spanning lines and a semicolon inside a comment come
        // before the error.
        let e =
            parse("SELECT 'a;\nb';\n/* x;\n y */\nALTER TABLE t ADD COLUMN c int;\nDROP TABLEE t;")
                .unwrap_err();
        assert_eq!(e.line, 6, "{e}");
        assert!(e.message.contains("TABLEE"), "{e}");
        // The same word appearing earlier does not mislead.
        let e = parse("SELECT 1 AS x;\nSELECT 2 x x;").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        // Errors the scanner reports.
        let e = parse("SELECT 1;\nSELECT 'a\nb';\nSELECT 'unterminated;\nSELECT 2;").unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        let e = parse("SELECT 1;\n\nSELECT \"\" FROM t;").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        // End of input is where the text ends, trailing comment included,
        // as PostgreSQL reports it.
        let e = parse("SELECT 1;\nSELECT (1\n-- trailing\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
    }

    /// The line PostgreSQL itself reports: it parses a whole simple-query
    /// string before running any of it, so a script with a syntax error
    /// runs nothing, and the error's position (in characters, 1-based)
    /// points at the offending token, or just past the end of the script
    /// for `at end of input` (taken here as the last non-blank
    /// character's line, as psql's `LINE n:` shows it).
    async fn postgres_line(conn: &mut sqlx::PgConnection, text: &str) -> usize {
        let err = sqlx::raw_sql(sqlx::AssertSqlSafe(text.to_string()))
            .execute(&mut *conn)
            .await
            .unwrap_err();
        let db = err.as_database_error().expect("a database error");
        let pg = db.downcast_ref::<sqlx::postgres::PgDatabaseError>();
        let Some(sqlx::postgres::PgErrorPosition::Original(pos)) = pg.position() else {
            panic!("no position in {pg:?}");
        };
        let at = text
            .char_indices()
            .nth(pos - 1)
            .map_or(text.len(), |(i, _)| i);
        let at = at.min(text.trim_end().len().saturating_sub(1));
        line_at(text, at)
    }

    #[tokio::test]
    async fn syntax_error_lines_match_postgres() {
        use sqlx::Connection;
        let (_db, mut conn) = scratch::database().await;
        for text in [
            "SELECT 1;\nSELECT 2;\nSELEC 3;\nSELECT 4;",
            "CREATE TABLE t (\n  id int,\n  name text\n",
            "ALTER TABLE a\n  ADD COLUMN b int\n  NOT NUL;",
            "SELECT 'a;\nb';\n/* x;\n y */\nALTER TABLE t ADD COLUMN c int;\nDROP TABLEE t;",
            "SELECT 1 AS x;\nSELECT 2 x x;",
            "SELECT 1;\nSELECT 'a\nb';\nSELECT 'unterminated;\nSELECT 2;",
            "SELECT 1;\n\nSELECT \"\" FROM t;",
            "SELECT 1;\nSELECT (1\n-- trailing\n",
            "CREATE TABLE t (\n  a int,\n  b int,,\n  c int\n);",
            "-- é ü multibyte before\nSELECT 'ü';\nCREATE INDEX ON;",
        ] {
            let ours = parse(text).unwrap_err();
            assert_eq!(
                ours.line,
                postgres_line(&mut conn, text).await,
                "{text:?}: {ours}"
            );
        }
        // Nothing ran: the first statements of a failing script were not executed.
        let e = parse("CREATE TABLE made (id int);\nSELEC 1;").unwrap_err();
        assert_eq!(e.line, 2);
        let _ = sqlx::raw_sql("CREATE TABLE made (id int);\nSELEC 1;")
            .execute(&mut conn)
            .await;
        let made: Option<String> = sqlx::query_scalar("SELECT to_regclass('made')::text")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(made, None);
        conn.close().await.unwrap();
    }

    #[test]
    fn transaction_control_is_recognised() {
        let s = parse("BEGIN; SELECT 1; COMMIT;").unwrap();
        assert_eq!(
            s.statements[0].transaction_control(),
            Some(TxnControl::Begin)
        );
        assert_eq!(s.statements[2].transaction_control(), Some(TxnControl::End));
        assert_eq!(s.statements[1].transaction_control(), None);
    }
}
