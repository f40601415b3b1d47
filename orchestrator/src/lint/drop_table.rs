//! `drop-table`: `DROP TABLE` destroys the table and its data for good.
//! Critical, warning; one finding per table dropped (on any table,
//! including one the script created: a drop is irreversible whatever the
//! table).

use pg_query::protobuf::node::Node as NodeEnum;
use pg_query::protobuf::ObjectType;

use super::{name_parts, Context, Finding, Rule, Severity};
use crate::risk::RiskLevel;
use crate::script::Statement;

pub const ID: &str = "drop-table";

pub struct DropTable;

impl Rule for DropTable {
    fn id(&self) -> &'static str {
        ID
    }

    fn check(&self, stmt: &Statement, _ctx: &Context) -> Vec<Finding> {
        let NodeEnum::DropStmt(s) = &stmt.node else {
            return vec![];
        };
        if s.remove_type != ObjectType::ObjectTable as i32 {
            return vec![];
        }
        s.objects
            .iter()
            .map(|o| name_parts(o).join("."))
            .map(|table| {
                Finding::new(
                    ID,
                    stmt,
                    RiskLevel::Critical,
                    Severity::Warning,
                    format!("DROP TABLE {table} deletes {table} and all its rows irreversibly"),
                    format!(
                        "Make sure nothing reads or writes {table} any more, back it up (or rename it and drop it in a later migration once nothing broke)"
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
    fn fires_per_dropped_table() {
        let f = findings(
            "SET lock_timeout = '2s';\n\nDROP TABLE IF EXISTS orders, archive.old_orders CASCADE;",
            ID,
        );
        assert_eq!(f.len(), 2, "{f:#?}");
        assert!(f.iter().all(|f| f.line == 3));
        assert!(f[0].message.contains("orders"));
        assert!(f[1].message.contains("archive.old_orders"));
        for f in &f {
            assert_well_formed(f);
            assert_eq!(
                (f.level, f.severity),
                (RiskLevel::Critical, Severity::Warning)
            );
        }
    }

    #[test]
    fn quiet_on_other_drops() {
        for sql in [
            "DROP INDEX CONCURRENTLY idx_orders",
            "DROP VIEW orders_view",
            "ALTER TABLE orders DROP COLUMN note",
            "TRUNCATE orders",
        ] {
            assert_eq!(findings(sql, ID), vec![], "{sql}");
        }
    }
}
