//! `add-column-not-null-no-default`: `ALTER TABLE … ADD COLUMN … NOT NULL`
//! without a `DEFAULT` (or with `DEFAULT NULL`) fails on any table that has
//! rows, and succeeds only on an empty one. High, warning.
//!
//! Identity and generated columns fill themselves and are not flagged.
//! Quiet on a table created earlier in the same script: it has no rows.

use pg_query::protobuf::node::Node as NodeEnum;
use pg_query::protobuf::ConstrType;

use super::{added_column, alter_table, column_constraints, column_default, rel_name};
use super::{Context, Finding, Rule, Severity};
use crate::risk::RiskLevel;
use crate::script::Statement;

pub const ID: &str = "add-column-not-null-no-default";

pub struct AddColumnNotNullNoDefault;

impl Rule for AddColumnNotNullNoDefault {
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
            .filter(|col| {
                let not_null = col.is_not_null
                    || column_constraints(col).any(|k| k.contype == ConstrType::ConstrNotnull as i32);
                let fills_itself = !col.identity.is_empty()
                    || !col.generated.is_empty()
                    || column_constraints(col).any(|k| {
                        k.contype == ConstrType::ConstrIdentity as i32
                            || k.contype == ConstrType::ConstrGenerated as i32
                    });
                let has_default = column_default(col).is_some_and(|d| {
                    !matches!(&d.node, Some(NodeEnum::AConst(c)) if c.isnull)
                });
                not_null && !has_default && !fills_itself
            })
            .map(|col| {
                Finding::new(
                    ID,
                    stmt,
                    RiskLevel::High,
                    Severity::Warning,
                    format!(
                        "ADD COLUMN {} to {table} is NOT NULL without a DEFAULT: it fails as soon as {table} has a row",
                        col.colname
                    ),
                    format!(
                        "Give {0} a constant DEFAULT (ADD COLUMN {0} … NOT NULL DEFAULT <value>), or add it nullable, backfill it in batches, add CHECK ({0} IS NOT NULL) NOT VALID, VALIDATE it, then SET NOT NULL",
                        col.colname
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
    fn fires_on_not_null_without_default() {
        let f = findings(
            "SET lock_timeout = '2s';\nALTER TABLE accounts\n  ADD COLUMN tier int NOT NULL,\n  ADD COLUMN note text NOT NULL DEFAULT NULL;",
            ID,
        );
        assert_eq!(f.len(), 2, "{f:#?}");
        assert_eq!(f[0].line, 2);
        assert!(f[0].message.contains("tier") && f[0].message.contains("accounts"));
        assert!(f[1].message.contains("note"));
        for f in &f {
            assert_well_formed(f);
            assert_eq!((f.level, f.severity), (RiskLevel::High, Severity::Warning));
        }
    }

    #[test]
    fn quiet_on_safe_rewrites() {
        for sql in [
            "ALTER TABLE accounts ADD COLUMN tier int NOT NULL DEFAULT 0",
            "ALTER TABLE accounts ADD COLUMN tier int DEFAULT 0 NOT NULL",
            "ALTER TABLE accounts ADD COLUMN tier int",
            "ALTER TABLE accounts ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY NOT NULL",
            "CREATE TABLE fresh (id int); ALTER TABLE fresh ADD COLUMN tier int NOT NULL",
        ] {
            assert_eq!(findings(sql, ID), vec![], "{sql}");
        }
    }
}
