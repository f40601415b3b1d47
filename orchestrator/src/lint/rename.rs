//! `rename`: `ALTER TABLE … RENAME TO` or `ALTER TABLE … RENAME [COLUMN]`
//! breaks every query and running application version that uses the old
//! name the moment it commits. High, warning (on any table: code may
//! already be written against a name).

use pg_query::protobuf::node::Node as NodeEnum;
use pg_query::protobuf::ObjectType;

use super::{rel_name, Context, Finding, Rule, Severity};
use crate::risk::RiskLevel;
use crate::script::Statement;

pub const ID: &str = "rename";

pub struct Rename;

impl Rule for Rename {
    fn id(&self) -> &'static str {
        ID
    }

    fn check(&self, stmt: &Statement, _ctx: &Context) -> Vec<Finding> {
        let NodeEnum::RenameStmt(s) = &stmt.node else {
            return vec![];
        };
        let Some(rel) = &s.relation else {
            return vec![];
        };
        let table = rel_name(rel);
        let (what, rec) = if s.rename_type == ObjectType::ObjectTable as i32 {
            (
                format!(
                    "RENAME of table {table} to {} breaks every query that still uses {table}",
                    s.newname
                ),
                format!(
                    "Create the new name alongside the old one (e.g. a view {} over {table}, or the reverse), move the application over, then remove the old name in a later migration",
                    s.newname
                ),
            )
        } else if s.rename_type == ObjectType::ObjectColumn as i32
            && s.relation_type == ObjectType::ObjectTable as i32
        {
            (
                format!(
                    "RENAME COLUMN {} of {table} to {} breaks every query that still uses {}",
                    s.subname, s.newname, s.subname
                ),
                format!(
                    "Add {} as a new column, write both and backfill, move reads over, then drop {} in a later migration",
                    s.newname, s.subname
                ),
            )
        } else {
            return vec![];
        };
        vec![Finding::new(
            ID,
            stmt,
            RiskLevel::High,
            Severity::Warning,
            what,
            rec,
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_well_formed, findings};
    use super::*;

    #[test]
    fn fires_on_table_and_column_renames() {
        let f = findings(
            "SET lock_timeout = '2s';\nALTER TABLE users RENAME TO members;\nALTER TABLE members\n  RENAME COLUMN mail TO email;\nALTER TABLE members RENAME nick TO handle;",
            ID,
        );
        assert_eq!(f.iter().map(|f| f.line).collect::<Vec<_>>(), vec![2, 3, 5]);
        assert!(f[0].message.contains("users") && f[0].message.contains("members"));
        assert!(f[1].message.contains("mail") && f[1].message.contains("email"));
        assert!(f[2].message.contains("nick"));
        for f in &f {
            assert_well_formed(f);
            assert_eq!((f.level, f.severity), (RiskLevel::High, Severity::Warning));
        }
    }

    #[test]
    fn quiet_on_other_renames_and_on_adding_columns() {
        for sql in [
            "ALTER INDEX idx_a RENAME TO idx_b",
            "ALTER TABLE users RENAME CONSTRAINT c1 TO c2",
            "ALTER TABLE users ADD COLUMN email text",
        ] {
            assert_eq!(findings(sql, ID), vec![], "{sql}");
        }
    }
}
