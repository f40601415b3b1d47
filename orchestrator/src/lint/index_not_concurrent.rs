//! `index-not-concurrent`: `CREATE INDEX` or `DROP INDEX` without
//! `CONCURRENTLY` holds a SHARE (create) or ACCESS EXCLUSIVE (drop) lock
//! on the table for the whole build or drop, blocking writes (and, for a
//! drop, reads). Medium, warning.
//!
//! Quiet on an index of a table created earlier in the same script (and on
//! dropping an index the script built on such a table): nobody else uses
//! that table yet.

use pg_query::protobuf::node::Node as NodeEnum;
use pg_query::protobuf::ObjectType;

use super::{name_parts, rel_name, Context, Finding, Rule, Severity};
use crate::risk::RiskLevel;
use crate::script::Statement;

pub const ID: &str = "index-not-concurrent";

pub struct IndexNotConcurrent;

impl Rule for IndexNotConcurrent {
    fn id(&self) -> &'static str {
        ID
    }

    fn check(&self, stmt: &Statement, ctx: &Context) -> Vec<Finding> {
        let finding = |what: String, rec: &str| {
            Finding::new(ID, stmt, RiskLevel::Medium, Severity::Warning, what, rec)
        };
        match &stmt.node {
            NodeEnum::IndexStmt(s) if !s.concurrent => {
                let Some(rel) = &s.relation else {
                    return vec![];
                };
                if ctx.created_here(rel) {
                    return vec![];
                }
                let table = rel_name(rel);
                let index = if s.idxname.is_empty() {
                    String::new()
                } else {
                    format!("{} ", s.idxname)
                };
                vec![finding(
                    format!(
                        "CREATE {}INDEX {index}on {table} without CONCURRENTLY blocks writes to {table} while it builds",
                        if s.unique { "UNIQUE " } else { "" }
                    ),
                    "Use CREATE INDEX CONCURRENTLY, as its own statement outside a transaction block",
                )]
            }
            NodeEnum::DropStmt(s)
                if !s.concurrent && s.remove_type == ObjectType::ObjectIndex as i32 =>
            {
                s.objects
                    .iter()
                    .map(name_parts)
                    .filter(|name| !ctx.new_index(name))
                    .map(|name| {
                        let index = name.join(".");
                        finding(
                            format!(
                                "DROP INDEX {index} without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on its table, blocking reads and writes until it finishes"
                            ),
                            "Use DROP INDEX CONCURRENTLY, as its own statement outside a transaction block",
                        )
                    })
                    .collect()
            }
            _ => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_well_formed, findings};
    use super::*;

    #[test]
    fn fires_on_create_and_drop_index_without_concurrently() {
        let f = findings(
            "SET lock_timeout = '2s';\n\nCREATE INDEX idx_a_b ON a (b);\nDROP INDEX public.idx_old;",
            ID,
        );
        assert_eq!(f.len(), 2, "{f:#?}");
        assert_eq!(f[0].line, 3);
        assert_eq!(
            f[0].message,
            "line 3: CREATE INDEX idx_a_b on a without CONCURRENTLY blocks writes to a while it builds"
        );
        assert_eq!(f[1].line, 4);
        assert!(f[1].message.contains("public.idx_old"), "{}", f[1].message);
        for f in &f {
            assert_well_formed(f);
            assert_eq!(
                (f.level, f.severity),
                (RiskLevel::Medium, Severity::Warning)
            );
        }
    }

    #[test]
    fn quiet_on_concurrently_and_on_new_tables() {
        assert_eq!(
            findings(
                "CREATE INDEX CONCURRENTLY idx_a_b ON a (b);\nDROP INDEX CONCURRENTLY idx_old;",
                ID
            ),
            vec![]
        );
        assert_eq!(
            findings(
                "CREATE TABLE t (id int);\nCREATE UNIQUE INDEX t_id ON t (id);\nDROP INDEX t_id;",
                ID
            ),
            vec![]
        );
    }
}
