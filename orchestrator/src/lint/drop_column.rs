//! `drop-column`: `ALTER TABLE … DROP COLUMN` destroys the column's data
//! for good and breaks every query and application version that still
//! reads it. High, warning (on any table, including one the script created:
//! a drop is irreversible whatever the table).

use pg_query::protobuf::AlterTableType;

use super::{alter_table, rel_name, Context, Finding, Rule, Severity};
use crate::risk::RiskLevel;
use crate::script::Statement;

pub const ID: &str = "drop-column";

pub struct DropColumn;

impl Rule for DropColumn {
    fn id(&self) -> &'static str {
        ID
    }

    fn check(&self, stmt: &Statement, _ctx: &Context) -> Vec<Finding> {
        let Some((rel, cmds)) = alter_table(stmt) else {
            return vec![];
        };
        let table = rel_name(rel);
        cmds.into_iter()
            .filter(|(kind, _)| *kind == AlterTableType::AtDropColumn)
            .map(|(_, cmd)| {
                Finding::new(
                    ID,
                    stmt,
                    RiskLevel::High,
                    Severity::Warning,
                    format!(
                        "DROP COLUMN {} from {table} deletes its data irreversibly and breaks code that still reads {}",
                        cmd.name, cmd.name
                    ),
                    format!(
                        "Stop reading and writing {}.{} in the application first and deploy that; back up the column (or the table) before dropping it, in a later migration",
                        table, cmd.name
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
    fn fires_per_dropped_column() {
        let f = findings(
            "SET lock_timeout = '2s';\nALTER TABLE users DROP COLUMN legacy,\n  DROP COLUMN IF EXISTS older;",
            ID,
        );
        assert_eq!(f.len(), 2, "{f:#?}");
        assert!(f.iter().all(|f| f.line == 2));
        assert!(f[0].message.contains("legacy") && f[0].message.contains("users"));
        assert!(f[1].message.contains("older"));
        for f in &f {
            assert_well_formed(f);
            assert_eq!((f.level, f.severity), (RiskLevel::High, Severity::Warning));
        }
    }

    #[test]
    fn quiet_on_other_alterations() {
        for sql in [
            "ALTER TABLE users ADD COLUMN legacy text",
            "ALTER TABLE users DROP CONSTRAINT users_legacy_check",
            "ALTER TABLE users ALTER COLUMN legacy DROP DEFAULT",
        ] {
            assert_eq!(findings(sql, ID), vec![], "{sql}");
        }
    }
}
