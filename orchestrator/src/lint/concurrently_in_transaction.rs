//! `concurrently-in-transaction`: a `… CONCURRENTLY` statement (`CREATE
//! INDEX`, `DROP INDEX`, `REINDEX`, `ALTER TABLE … DETACH PARTITION`)
//! between an explicit `BEGIN` / `START TRANSACTION` and its `COMMIT` /
//! `END` / `ROLLBACK`. PostgreSQL refuses it ("cannot run inside a
//! transaction block"), so the script cannot run as written. High, error.

use pg_query::protobuf::node::Node as NodeEnum;
use pg_query::protobuf::AlterTableType;

use super::{alter_table, rel_name, Context, Finding, Rule, Severity};
use crate::risk::RiskLevel;
use crate::script::Statement;

pub const ID: &str = "concurrently-in-transaction";

pub struct ConcurrentlyInTransaction;

/// The statement's concurrent operation, named.
fn concurrent_op(stmt: &Statement) -> Option<String> {
    match &stmt.node {
        NodeEnum::IndexStmt(s) if s.concurrent => Some(format!(
            "CREATE INDEX CONCURRENTLY {}",
            if s.idxname.is_empty() {
                format!(
                    "on {}",
                    s.relation.as_ref().map(rel_name).unwrap_or_default()
                )
            } else {
                s.idxname.clone()
            }
        )),
        NodeEnum::DropStmt(s) if s.concurrent => Some(format!(
            "DROP INDEX CONCURRENTLY {}",
            s.objects
                .iter()
                .map(|o| super::name_parts(o).join("."))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        NodeEnum::ReindexStmt(_) if !stmt.runs_in_transaction() => {
            Some("REINDEX CONCURRENTLY".to_string())
        }
        NodeEnum::AlterTableStmt(_) => {
            let (rel, cmds) = alter_table(stmt)?;
            cmds.iter()
                .any(|(kind, cmd)| {
                    *kind == AlterTableType::AtDetachPartition
                        && matches!(
                            cmd.def.as_deref().and_then(|d| d.node.as_ref()),
                            Some(NodeEnum::PartitionCmd(p)) if p.concurrent
                        )
                })
                .then(|| {
                    format!(
                        "ALTER TABLE {} DETACH PARTITION … CONCURRENTLY",
                        rel_name(rel)
                    )
                })
        }
        _ => None,
    }
}

impl Rule for ConcurrentlyInTransaction {
    fn id(&self) -> &'static str {
        ID
    }

    fn check(&self, stmt: &Statement, ctx: &Context) -> Vec<Finding> {
        if !ctx.in_transaction {
            return vec![];
        }
        let Some(op) = concurrent_op(stmt) else {
            return vec![];
        };
        vec![Finding::new(
            ID,
            stmt,
            RiskLevel::High,
            Severity::Error,
            format!("{op} is inside an explicit transaction block, where PostgreSQL refuses to run it"),
            "Move it out of the BEGIN … COMMIT block: run it as its own statement, in a phase of its own",
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_well_formed, findings};
    use super::*;

    #[test]
    fn fires_inside_begin_commit() {
        let f = findings(
            "SET lock_timeout = '2s';\nBEGIN;\nCREATE INDEX CONCURRENTLY idx_a_b ON a (b);\nDROP INDEX CONCURRENTLY idx_old;\nCOMMIT;\n\
             START TRANSACTION;\nREINDEX (CONCURRENTLY) INDEX idx_c;\nEND;",
            ID,
        );
        assert_eq!(
            f.iter().map(|f| f.line).collect::<Vec<_>>(),
            vec![3, 4, 7],
            "{f:#?}"
        );
        assert!(f[0].message.contains("idx_a_b"));
        assert!(f[1].message.contains("idx_old"));
        for f in &f {
            assert_well_formed(f);
            assert_eq!((f.level, f.severity), (RiskLevel::High, Severity::Error));
        }
    }

    #[test]
    fn quiet_outside_a_transaction_block() {
        for sql in [
            "CREATE INDEX CONCURRENTLY idx_a_b ON a (b);",
            "BEGIN;\nALTER TABLE a ADD COLUMN b int;\nCOMMIT;\nCREATE INDEX CONCURRENTLY idx_a_b ON a (b);",
            "BEGIN;\nSELECT 1;\nROLLBACK;\nDROP INDEX CONCURRENTLY idx_old;",
            "BEGIN;\nCREATE INDEX idx_a_b ON a (b);\nCOMMIT;",
        ] {
            assert_eq!(findings(sql, ID), vec![], "{sql}");
        }
    }
}
