//! A dry run (conventions §7, "How dryRun works"): the script runs on a
//! database inside a transaction that is always rolled back.
//!
//! The catalogs of the non-system schemas (relations, columns with their
//! types, nullability and defaults, indexes, constraints) are read at the
//! start of the transaction and again after the script, inside it; the
//! difference is what the script touched (`"accounts table (altered:
//! column email added)"`, `"idx_x (new index)"`, `"old_t table
//! (dropped)"`). Statements that cannot run in a transaction are skipped
//! and listed; the script's own `BEGIN`/`COMMIT` are skipped silently.
//! The first statement that fails ends the run with PostgreSQL's message
//! (what the statements before it did is still reported). A
//! `lock_timeout` of [`LOCK_TIMEOUT`] keeps a dry run from queueing behind
//! production traffic indefinitely.
//!
//! What a rollback cannot undo is not undone: sequences the script advances
//! (`nextval`, inserts into `serial` columns) stay advanced.

use std::collections::BTreeMap;

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection, Executor};

use crate::executor::{pg_message, ExecError, CONNECT_TIMEOUT};
use crate::script::Script;
use crate::target::Target;

/// The `lock_timeout` a dry run's transaction runs under.
pub const LOCK_TIMEOUT: &str = "3s";

/// What a dry run found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DryRun {
    /// PostgreSQL's messages (`column "email" of relation "accounts"
    /// already exists (line 3)`); at most one, the run stops there.
    pub errors: Vec<String>,
    /// `line N: CREATE INDEX CONCURRENTLY … (cannot run in a transaction)`.
    pub skipped: Vec<String>,
    /// Objects the script changed, read from the catalogs.
    pub touched: Vec<String>,
}

/// A relation as the catalogs describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// `table`, `view`, `materialized view`, `foreign table`, `sequence`.
    pub kind: String,
    /// Column name → its type, nullability and default.
    pub columns: BTreeMap<String, Column>,
    /// Constraint name → its definition.
    pub constraints: BTreeMap<String, String>,
}

/// A column as the catalogs describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub data_type: String,
    pub not_null: bool,
    pub default: Option<String>,
}

/// The non-system schemas' catalog, as far as a migration is concerned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// Display name (`t`, or `schema.t` outside `public`) → relation.
    pub relations: BTreeMap<String, Relation>,
    /// Display name → its definition (`pg_get_indexdef`).
    pub indexes: BTreeMap<String, String>,
}

const USER_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema')
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'";

fn display(schema: &str, name: &str) -> String {
    if schema == "public" {
        name.to_string()
    } else {
        format!("{schema}.{name}")
    }
}

/// Reads the catalog on `conn` (inside its transaction, if any).
pub async fn snapshot(conn: &mut PgConnection) -> Result<Catalog, ExecError> {
    let mut catalog = Catalog::default();
    let rels: Vec<(String, String, String)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT n.nspname::text, c.relname::text, c.relkind::text
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND {USER_SCHEMAS}"
    )))
    .fetch_all(&mut *conn)
    .await?;
    for (schema, name, kind) in rels {
        let kind = match kind.as_str() {
            "r" | "p" => "table",
            "v" => "view",
            "m" => "materialized view",
            "f" => "foreign table",
            _ => "sequence",
        };
        catalog.relations.insert(
            display(&schema, &name),
            Relation {
                kind: kind.to_string(),
                columns: BTreeMap::new(),
                constraints: BTreeMap::new(),
            },
        );
    }
    let cols: Vec<(String, String, String, String, bool, Option<String>)> =
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT n.nspname::text, c.relname::text, a.attname::text,
                    format_type(a.atttypid, a.atttypmod), a.attnotnull,
                    pg_get_expr(d.adbin, d.adrelid)
               FROM pg_attribute a
               JOIN pg_class c ON c.oid = a.attrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
               LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE a.attnum > 0 AND NOT a.attisdropped
                AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {USER_SCHEMAS}"
        )))
        .fetch_all(&mut *conn)
        .await?;
    for (schema, table, name, data_type, not_null, default) in cols {
        if let Some(r) = catalog.relations.get_mut(&display(&schema, &table)) {
            r.columns.insert(
                name,
                Column {
                    data_type,
                    not_null,
                    default,
                },
            );
        }
    }
    let cons: Vec<(String, String, String, String)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT n.nspname::text, c.relname::text, co.conname::text, pg_get_constraintdef(co.oid)
           FROM pg_constraint co
           JOIN pg_class c ON c.oid = co.conrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE {USER_SCHEMAS}"
    )))
    .fetch_all(&mut *conn)
    .await?;
    for (schema, table, name, def) in cons {
        if let Some(r) = catalog.relations.get_mut(&display(&schema, &table)) {
            r.constraints.insert(name, def);
        }
    }
    let idx: Vec<(String, String, String)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT n.nspname::text, i.relname::text,
                pg_get_indexdef(i.oid) || CASE WHEN x.indisvalid THEN '' ELSE ' (invalid)' END
           FROM pg_index x
           JOIN pg_class i ON i.oid = x.indexrelid
           JOIN pg_namespace n ON n.oid = i.relnamespace
          WHERE {USER_SCHEMAS}"
    )))
    .fetch_all(&mut *conn)
    .await?;
    for (schema, name, def) in idx {
        catalog.indexes.insert(display(&schema, &name), def);
    }
    Ok(catalog)
}

/// What changed from `before` to `after`, one entry per object.
pub fn diff(before: &Catalog, after: &Catalog) -> Vec<String> {
    let mut out = Vec::new();
    for (name, rel) in &before.relations {
        if !after.relations.contains_key(name) {
            out.push(format!("{name} {} (dropped)", rel.kind));
        }
    }
    for (name, rel) in &after.relations {
        let Some(old) = before.relations.get(name) else {
            out.push(format!("{name} {} (new)", rel.kind));
            continue;
        };
        let mut changes = Vec::new();
        for col in old.columns.keys() {
            if !rel.columns.contains_key(col) {
                changes.push(format!("column {col} dropped"));
            }
        }
        for (col, c) in &rel.columns {
            let Some(o) = old.columns.get(col) else {
                changes.push(format!("column {col} added"));
                continue;
            };
            if o.data_type != c.data_type {
                changes.push(format!(
                    "column {col} type changed from {} to {}",
                    o.data_type, c.data_type
                ));
            }
            if o.not_null != c.not_null {
                let what = if c.not_null { "set" } else { "dropped" };
                changes.push(format!("column {col} NOT NULL {what}"));
            }
            if o.default != c.default {
                changes.push(format!("column {col} default changed"));
            }
        }
        for con in old.constraints.keys() {
            if !rel.constraints.contains_key(con) {
                changes.push(format!("constraint {con} dropped"));
            }
        }
        for (con, def) in &rel.constraints {
            match old.constraints.get(con) {
                None => changes.push(format!("constraint {con} added")),
                Some(d) if d != def => changes.push(format!("constraint {con} changed")),
                Some(_) => {}
            }
        }
        if !changes.is_empty() {
            out.push(format!(
                "{name} {} (altered: {})",
                rel.kind,
                changes.join(", ")
            ));
        }
    }
    for name in before.indexes.keys() {
        if !after.indexes.contains_key(name) {
            out.push(format!("{name} (dropped index)"));
        }
    }
    for (name, def) in &after.indexes {
        match before.indexes.get(name) {
            None => out.push(format!("{name} (new index)")),
            Some(d) if d != def => out.push(format!("{name} (changed index)")),
            Some(_) => {}
        }
    }
    out
}

/// `line N: <the statement's start> (cannot run in a transaction)`.
fn skipped_entry(line: usize, sql: &str) -> String {
    let first = sql.lines().next().unwrap_or("").trim();
    let mut short: String = first.chars().take(80).collect();
    if short.len() < first.len() || sql.trim().len() > first.len() {
        short.push_str(" …");
    }
    format!("line {line}: {short} (cannot run in a transaction)")
}

/// Dry-runs `script` on `target`; see the module doc. `Err` only when the
/// database cannot be reached or its catalogs read; a failing statement is
/// reported in [`DryRun::errors`].
pub async fn dry_run(script: &Script, target: &Target) -> Result<DryRun, ExecError> {
    let mut conn = target.connect(CONNECT_TIMEOUT).await?;
    let result = dry_run_on(&mut conn, script).await;
    // Whatever happened, nothing stays.
    let _ = conn.execute(sqlx::raw_sql("ROLLBACK")).await;
    let _ = conn.close().await;
    result
}

async fn dry_run_on(conn: &mut PgConnection, script: &Script) -> Result<DryRun, ExecError> {
    let mut out = DryRun::default();
    conn.execute(sqlx::raw_sql(AssertSqlSafe(format!(
        "BEGIN; SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"
    ))))
    .await?;
    let before = snapshot(conn).await?;
    for st in &script.statements {
        if st.is_transaction_control() {
            continue;
        }
        if !st.runs_in_transaction() {
            out.skipped.push(skipped_entry(st.line, &st.sql));
            continue;
        }
        if !out.errors.is_empty() {
            continue;
        }
        conn.execute(sqlx::raw_sql("SAVEPOINT sluice_dry_run"))
            .await?;
        match conn
            .execute(sqlx::raw_sql(AssertSqlSafe(st.sql.as_str())))
            .await
        {
            Ok(_) => {}
            Err(e) => {
                out.errors
                    .push(format!("{} (line {})", pg_message(&e), st.line));
                conn.execute(sqlx::raw_sql("ROLLBACK TO SAVEPOINT sluice_dry_run"))
                    .await?;
            }
        }
    }
    let after = snapshot(conn).await?;
    conn.execute(sqlx::raw_sql("ROLLBACK")).await?;
    out.touched = diff(&before, &after);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_entries_are_short() {
        assert_eq!(
            skipped_entry(4, "CREATE INDEX CONCURRENTLY idx_a ON a (b)"),
            "line 4: CREATE INDEX CONCURRENTLY idx_a ON a (b) (cannot run in a transaction)"
        );
        let e = skipped_entry(2, "CREATE INDEX CONCURRENTLY idx_a\n  ON a (b)");
        assert_eq!(
            e,
            "line 2: CREATE INDEX CONCURRENTLY idx_a … (cannot run in a transaction)"
        );
    }
}
