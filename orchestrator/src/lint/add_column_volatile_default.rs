//! `add-column-volatile-default`: `ADD COLUMN … DEFAULT` with a volatile
//! expression (`random()`, `clock_timestamp()`, `gen_random_uuid()`,
//! `uuid_generate_v4()`, `timeofday()`, `txid_current()`, `nextval()`, or a
//! `serial` type, which defaults to `nextval()`) rewrites the whole table
//! under an ACCESS EXCLUSIVE lock, since every existing row needs its own
//! value. A constant or stable default (`now()`, `CURRENT_TIMESTAMP`) is
//! stored once in the catalog and needs no rewrite. High, warning.
//!
//! Quiet on a table created earlier in the same script: it has no rows.

use pg_query::protobuf::node::Node as NodeEnum;
use pg_query::NodeRef;

use super::{added_column, alter_table, column_default, rel_name};
use super::{Context, Finding, Rule, Severity};
use crate::risk::RiskLevel;
use crate::script::Statement;

pub const ID: &str = "add-column-volatile-default";

/// Volatile functions commonly used as column defaults. `txid_current` is
/// in fact STABLE in `pg_proc` (so PostgreSQL stores it once, without a
/// rewrite, giving every existing row the migration's transaction id); it
/// is flagged because the task's list names it.
const VOLATILE: &[&str] = &[
    "random",
    "random_normal",
    "clock_timestamp",
    "timeofday",
    "gen_random_uuid",
    "uuidv4",
    "uuidv7",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "txid_current",
    "nextval",
];

/// Names in [`VOLATILE`] that `pg_proc` marks stable (checked by a test).
#[cfg(test)]
const LISTED_STABLE: &[&str] = &["txid_current"];

/// Types whose implicit default is `nextval()`.
const SERIAL: &[&str] = &[
    "serial",
    "serial4",
    "serial8",
    "bigserial",
    "smallserial",
    "serial2",
];

pub struct AddColumnVolatileDefault;

/// The first volatile function called in `expr`.
fn volatile_call(expr: &pg_query::protobuf::Node) -> Option<String> {
    let node = expr.node.as_ref()?;
    node.nodes().into_iter().find_map(|(n, ..)| match n {
        NodeRef::FuncCall(f) => {
            let name = f.funcname.last().and_then(|p| match &p.node {
                Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
                _ => None,
            })?;
            VOLATILE.contains(&name).then(|| format!("{name}()"))
        }
        _ => None,
    })
}

/// The volatile default of a column definition, named (`"random()"`,
/// `"nextval() (from its bigserial type)"`), if it has one.
pub(crate) fn volatile_default(col: &pg_query::protobuf::ColumnDef) -> Option<String> {
    let serial = col
        .type_name
        .as_ref()
        .and_then(|t| t.names.last())
        .and_then(|n| match &n.node {
            Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
            _ => None,
        })
        .filter(|t| SERIAL.contains(t))
        .map(|t| format!("nextval() (from its {t} type)"));
    serial.or_else(|| column_default(col).and_then(volatile_call))
}

impl Rule for AddColumnVolatileDefault {
    fn id(&self) -> &'static str {
        ID
    }

    fn check(&self, stmt: &Statement, ctx: &Context) -> Vec<Finding> {
        let Some((rel, cmds)) = alter_table(stmt) else {
            return vec![];
        };
        if ctx.created_here(rel) {
            return vec![];
        }
        let table = rel_name(rel);
        cmds.into_iter()
            .filter_map(|(kind, cmd)| added_column(kind, cmd))
            .filter_map(|col| {
                let call = volatile_default(col)?;
                Some(Finding::new(
                    ID,
                    stmt,
                    RiskLevel::High,
                    Severity::Warning,
                    format!(
                        "ADD COLUMN {} to {table} with the volatile default {call} rewrites every row of {table} under an ACCESS EXCLUSIVE lock",
                        col.colname
                    ),
                    format!(
                        "Add {} without a default (or with a constant one), SET DEFAULT {call} in a separate statement for new rows, then backfill existing rows in batches",
                        col.colname
                    ),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_well_formed, findings};
    use super::*;

    #[test]
    fn fires_on_volatile_defaults() {
        for (sql, call) in [
            (
                "ALTER TABLE a ADD COLUMN token uuid DEFAULT gen_random_uuid()",
                "gen_random_uuid()",
            ),
            (
                "ALTER TABLE a ADD COLUMN r float8 NOT NULL DEFAULT random() * 10",
                "random()",
            ),
            (
                "ALTER TABLE a ADD COLUMN t text DEFAULT clock_timestamp()::text",
                "clock_timestamp()",
            ),
            (
                "ALTER TABLE a ADD COLUMN u uuid DEFAULT public.uuid_generate_v4()",
                "uuid_generate_v4()",
            ),
            (
                "ALTER TABLE a ADD COLUMN n bigint DEFAULT nextval('a_seq')",
                "nextval()",
            ),
            ("ALTER TABLE a ADD COLUMN n bigserial", "nextval()"),
            (
                "ALTER TABLE a ADD COLUMN x bigint DEFAULT coalesce(txid_current(), 0)",
                "txid_current()",
            ),
        ] {
            let f = findings(&format!("SET lock_timeout = '1s';\n\n{sql};"), ID);
            assert_eq!(f.len(), 1, "{sql}: {f:#?}");
            assert_eq!(f[0].line, 3);
            assert!(f[0].message.contains(call), "{}", f[0].message);
            assert!(f[0].message.contains(" a "), "{}", f[0].message);
            assert_eq!(
                (f[0].level, f[0].severity),
                (RiskLevel::High, Severity::Warning)
            );
            assert_well_formed(&f[0]);
        }
    }

    #[test]
    fn quiet_on_constant_and_stable_defaults() {
        for sql in [
            "ALTER TABLE a ADD COLUMN created timestamptz DEFAULT now()",
            "ALTER TABLE a ADD COLUMN created timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP",
            "ALTER TABLE a ADD COLUMN n int NOT NULL DEFAULT 0",
            "ALTER TABLE a ADD COLUMN token uuid",
            "ALTER TABLE a ALTER COLUMN token SET DEFAULT gen_random_uuid()",
            "CREATE TABLE b (id int); ALTER TABLE b ADD COLUMN token uuid DEFAULT gen_random_uuid()",
        ] {
            assert_eq!(findings(sql, ID), vec![], "{sql}");
        }
    }

    /// The list agrees with PostgreSQL's catalog: each function it names
    /// that this server has (uuid-ossp's only once the extension is there)
    /// is volatile, and the stable ones the rule lets through are stable.
    #[tokio::test]
    async fn the_volatile_list_matches_pg_proc() {
        let (_db, mut conn) = crate::script::scratch::database().await;
        let _ = sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS \"uuid-ossp\"")
            .execute(&mut conn)
            .await;
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT DISTINCT proname::text, provolatile::text FROM pg_proc WHERE proname = ANY($1)",
        )
        .bind(
            VOLATILE
                .iter()
                .chain(&["now", "statement_timestamp", "transaction_timestamp"])
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for (name, volatility) in &rows {
            let expected =
                if VOLATILE.contains(&name.as_str()) && !LISTED_STABLE.contains(&name.as_str()) {
                    "v"
                } else {
                    "s"
                };
            assert_eq!(volatility, expected, "{name}");
        }
        for core in [
            "random",
            "clock_timestamp",
            "gen_random_uuid",
            "timeofday",
            "txid_current",
            "nextval",
            "now",
        ] {
            assert!(rows.iter().any(|(n, _)| n == core), "{core} not in pg_proc");
        }
    }
}
