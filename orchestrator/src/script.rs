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
        let start = usize::try_from(raw.stmt_location).unwrap_or(0).min(text.len());
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
            NodeEnum::ReindexStmt(s) => !s.params.iter().any(|p| {
                matches!(&p.node, Some(NodeEnum::DefElem(d)) if d.defname == "concurrently")
            }),
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
    1 + text.as_bytes()[..at].iter().filter(|&&c| c == b'\n').count()
}

/// Finds the line of a syntax error: the scanner splits the script (it does
/// not need it to be valid), the first piece that fails to parse is the
/// one at fault, and within it the token PostgreSQL names (`at or near
/// "X"`), or its last line for `at end of input`.
fn syntax_error(text: &str, e: pg_query::Error) -> SyntaxError {
    let message = match e {
        pg_query::Error::Parse(m) => m,
        other => other.to_string(),
    };
    let line = locate(text, &message).unwrap_or(1);
    SyntaxError { message, line }
}

fn locate(text: &str, message: &str) -> Option<usize> {
    let pieces = pg_query::split_with_scanner(text).ok()?;
    let base = text.as_ptr() as usize;
    for piece in pieces {
        if pg_query::parse(piece).is_ok() {
            continue;
        }
        let start = (piece.as_ptr() as usize).checked_sub(base)?;
        let lead = leading_noise(piece);
        if message.ends_with("at end of input") {
            return Some(line_at(text, start + piece.trim_end().len()));
        }
        let near = message
            .split_once("at or near \"")
            .and_then(|(_, rest)| rest.rsplit_once('"'))
            .map(|(tok, _)| tok);
        let offset = near
            .filter(|t| !t.is_empty())
            .and_then(|t| piece[lead..].find(t).map(|p| lead + p))
            .unwrap_or(lead);
        return Some(line_at(text, start + offset));
    }
    None
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
    fn transaction_control_is_recognised() {
        let s = parse("BEGIN; SELECT 1; COMMIT;").unwrap();
        assert_eq!(s.statements[0].transaction_control(), Some(TxnControl::Begin));
        assert_eq!(s.statements[2].transaction_control(), Some(TxnControl::End));
        assert_eq!(s.statements[1].transaction_control(), None);
    }
}
