//! `constraint-not-valid`: `ALTER TABLE … ADD CONSTRAINT … FOREIGN KEY` or
//! `CHECK` without `NOT VALID` scans the whole table (and, for a foreign
//! key, checks every row against the referenced table) while holding its
//! lock; so does a column added with an inline `REFERENCES`. Medium,
//! warning.
//!
//! The safe form adds the constraint `NOT VALID` (instant, enforced for new
//! rows) and checks the old rows with `VALIDATE CONSTRAINT`, which takes
//! only a SHARE UPDATE EXCLUSIVE lock. Quiet on a table created earlier in
//! the same script: it has no rows to check.

use pg_query::protobuf::node::Node as NodeEnum;
use pg_query::protobuf::{AlterTableType, ConstrType, Constraint};

use super::{added_column, alter_table, column_constraints, rel_name};
use super::{Context, Finding, Rule, Severity};
use crate::risk::RiskLevel;
use crate::script::Statement;

pub const ID: &str = "constraint-not-valid";

pub struct ConstraintNotValid;

fn is_fk(k: &Constraint) -> bool {
    k.contype == ConstrType::ConstrForeign as i32
}

fn is_check(k: &Constraint) -> bool {
    k.contype == ConstrType::ConstrCheck as i32
}

impl Rule for ConstraintNotValid {
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
        let mut out = Vec::new();
        for (kind, cmd) in cmds {
            if kind == AlterTableType::AtAddConstraint {
                let Some(NodeEnum::Constraint(k)) =
                    cmd.def.as_deref().and_then(|d| d.node.as_ref())
                else {
                    continue;
                };
                if k.skip_validation || !(is_fk(k) || is_check(k)) {
                    continue;
                }
                let what = if is_fk(k) { "FOREIGN KEY" } else { "CHECK" };
                let name = if k.conname.is_empty() {
                    String::new()
                } else {
                    format!("{} ", k.conname)
                };
                let target = k
                    .pktable
                    .as_ref()
                    .filter(|_| is_fk(k))
                    .map(|p| format!(" and {}", rel_name(p)))
                    .unwrap_or_default();
                out.push(Finding::new(
                    ID,
                    stmt,
                    RiskLevel::Medium,
                    Severity::Warning,
                    format!(
                        "ADD CONSTRAINT {name}{what} on {table} without NOT VALID checks every existing row while it locks {table}{target}"
                    ),
                    format!(
                        "Add it with NOT VALID (ALTER TABLE {table} ADD CONSTRAINT {name}… NOT VALID), then run ALTER TABLE {table} VALIDATE CONSTRAINT {} in a separate statement",
                        if k.conname.is_empty() { "<name>" } else { k.conname.as_str() }
                    ),
                ));
            } else if let Some(col) = added_column(kind, cmd) {
                for k in column_constraints(col).filter(|k| is_fk(k) && !k.skip_validation) {
                    let target = k.pktable.as_ref().map(rel_name).unwrap_or_default();
                    out.push(Finding::new(
                        ID,
                        stmt,
                        RiskLevel::Medium,
                        Severity::Warning,
                        format!(
                            "ADD COLUMN {} to {table} with an inline REFERENCES {target} adds a validated FOREIGN KEY, locking {table} and {target}",
                            col.colname
                        ),
                        format!(
                            "Add {} without REFERENCES, then ALTER TABLE {table} ADD CONSTRAINT … FOREIGN KEY ({}) REFERENCES {target} NOT VALID, then VALIDATE CONSTRAINT in a separate statement",
                            col.colname, col.colname
                        ),
                    ));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_well_formed, findings};
    use super::*;

    #[test]
    fn fires_on_validated_fk_check_and_inline_references() {
        let f = findings(
            "SET lock_timeout = '2s';\n\
             ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);\n\
             ALTER TABLE orders ADD CONSTRAINT qty_positive CHECK (qty > 0);\n\
             ALTER TABLE orders ADD COLUMN shop_id int REFERENCES shops (id);",
            ID,
        );
        assert_eq!(f.len(), 3, "{f:#?}");
        assert_eq!(f.iter().map(|f| f.line).collect::<Vec<_>>(), vec![2, 3, 4]);
        assert!(f[0].message.contains("orders_user_fk") && f[0].message.contains("users"));
        assert!(f[1].message.contains("CHECK") && f[1].message.contains("orders"));
        assert!(f[2].message.contains("shop_id") && f[2].message.contains("shops"));
        for f in &f {
            assert_well_formed(f);
            assert_eq!(
                (f.level, f.severity),
                (RiskLevel::Medium, Severity::Warning)
            );
        }
    }

    #[test]
    fn quiet_on_not_valid_then_validate_and_other_constraints() {
        for sql in [
            "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;\n\
             ALTER TABLE orders VALIDATE CONSTRAINT orders_user_fk;",
            "ALTER TABLE orders ADD CONSTRAINT qty_positive CHECK (qty > 0) NOT VALID;\n\
             ALTER TABLE orders VALIDATE CONSTRAINT qty_positive;",
            "ALTER TABLE orders ADD CONSTRAINT orders_code_key UNIQUE (code)",
            "ALTER TABLE orders ADD COLUMN note text",
            "CREATE TABLE fresh (id int);\nALTER TABLE fresh ADD CONSTRAINT f FOREIGN KEY (id) REFERENCES users (id);",
        ] {
            assert_eq!(findings(sql, ID), vec![], "{sql}");
        }
    }
}
