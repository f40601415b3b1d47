//! `alter-column-type`: `ALTER TABLE … ALTER COLUMN … [SET DATA] TYPE`
//! takes an ACCESS EXCLUSIVE lock and, for most type changes, rewrites the
//! table and rebuilds its indexes while holding it. High, warning.
//!
//! Quiet on a table created earlier in the same script: it has no rows to
//! rewrite and nobody else uses it.

use pg_query::protobuf::AlterTableType;

use super::{alter_table, rel_name, Context, Finding, Rule, Severity};
use crate::risk::RiskLevel;
use crate::script::Statement;

pub const ID: &str = "alter-column-type";

pub struct AlterColumnType;

impl Rule for AlterColumnType {
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
            .filter(|(kind, _)| *kind == AlterTableType::AtAlterColumnType)
            .map(|(_, cmd)| {
                Finding::new(
                    ID,
                    stmt,
                    RiskLevel::High,
                    Severity::Warning,
                    format!(
                        "ALTER COLUMN {} TYPE on {table} locks {table} against reads and writes and may rewrite it and rebuild its indexes",
                        cmd.name
                    ),
                    format!(
                        "Add a new column of the new type, backfill it in batches, switch the application over, then drop {} in a later migration",
                        cmd.name
                    ),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_well_formed, findings};
    use super::*;

    #[test]
    fn fires_on_type_changes() {
        let f = findings(
            "SET lock_timeout = '2s';\nALTER TABLE events\n  ALTER COLUMN id TYPE bigint,\n  ALTER COLUMN kind SET DATA TYPE text USING kind::text;",
            ID,
        );
        assert_eq!(f.len(), 2, "{f:#?}");
        assert!(f.iter().all(|f| f.line == 2));
        assert!(f[0].message.contains("id") && f[0].message.contains("events"));
        assert!(f[1].message.contains("kind"));
        for f in &f {
            assert_well_formed(f);
            assert_eq!((f.level, f.severity), (RiskLevel::High, Severity::Warning));
        }
    }

    #[test]
    fn quiet_on_adding_a_column_and_on_new_tables() {
        for sql in [
            "ALTER TABLE events ADD COLUMN id_new bigint",
            "ALTER TABLE events ALTER COLUMN kind SET DEFAULT 'x'",
            "CREATE TABLE fresh (id int);\nALTER TABLE fresh ALTER COLUMN id TYPE bigint;",
        ] {
            assert_eq!(findings(sql, ID), vec![], "{sql}");
        }
    }
}
