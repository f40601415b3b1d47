//! `missing-lock-timeout`: a statement that locks an existing table — any
//! `ALTER TABLE` (including `ALTER TABLE … RENAME`), `DROP TABLE`, or
//! `CREATE INDEX` / `DROP INDEX` without `CONCURRENTLY` — with no earlier
//! `SET lock_timeout` or `SET LOCAL lock_timeout` in the script. Waiting
//! for its lock behind a long query, it queues every later query on the
//! table behind itself. Medium, warning; one finding per statement.
//!
//! A timeout of `0` disables it and so does not count, nor does one undone
//! by `RESET lock_timeout`, `RESET ALL` or `SET lock_timeout TO DEFAULT`.
//! Quiet on tables created earlier in the same script (and on dropping an
//! index the script built on one): nobody else holds locks on them —
//! unless the `ALTER TABLE` adds a foreign key to an existing table, which
//! it locks too.

use pg_query::protobuf::node::Node as NodeEnum;
use pg_query::protobuf::{AlterTableType, ConstrType, ObjectType, RangeVar};

use super::{added_column, alter_table, column_constraints, name_parts, rel_name};
use super::{Context, Finding, Rule, Severity};
use crate::risk::RiskLevel;
use crate::script::Statement;

pub const ID: &str = "missing-lock-timeout";

pub struct MissingLockTimeout;

/// The statement ("ALTER TABLE users") and what it locks ("users"), when
/// it locks a table the script did not create.
fn locking(stmt: &Statement, ctx: &Context) -> Option<(String, String)> {
    let existing = |rel: &RangeVar| !ctx.created_here(rel);
    match &stmt.node {
        NodeEnum::AlterTableStmt(_) => {
            let (rel, cmds) = alter_table(stmt)?;
            if existing(rel) {
                return Some((format!("ALTER TABLE {}", rel_name(rel)), rel_name(rel)));
            }
            // A new table's foreign key still locks the existing table it
            // references (SHARE ROW EXCLUSIVE).
            let referenced: Vec<String> = cmds
                .iter()
                .flat_map(|&(kind, cmd)| {
                    let added = added_column(kind, cmd)
                        .into_iter()
                        .flat_map(column_constraints)
                        .collect::<Vec<_>>();
                    let constraint = match cmd.def.as_deref().and_then(|d| d.node.as_ref()) {
                        Some(NodeEnum::Constraint(k))
                            if kind == AlterTableType::AtAddConstraint =>
                        {
                            Some(&**k)
                        }
                        _ => None,
                    };
                    added.into_iter().chain(constraint)
                })
                .filter(|k| k.contype == ConstrType::ConstrForeign as i32)
                .filter_map(|k| k.pktable.as_ref())
                .filter(|p| existing(p))
                .map(rel_name)
                .collect();
            (!referenced.is_empty()).then(|| {
                let on = referenced.join(", ");
                (
                    format!("ALTER TABLE {} adding a FOREIGN KEY to {on}", rel_name(rel)),
                    on,
                )
            })
        }
        NodeEnum::RenameStmt(s) => {
            let rel = s.relation.as_ref()?;
            let on_table = s.rename_type == ObjectType::ObjectTable as i32
                || s.rename_type == ObjectType::ObjectTabconstraint as i32
                || (s.rename_type == ObjectType::ObjectColumn as i32
                    && s.relation_type == ObjectType::ObjectTable as i32);
            (on_table && existing(rel)).then(|| {
                (
                    format!("ALTER TABLE {} RENAME", rel_name(rel)),
                    rel_name(rel),
                )
            })
        }
        NodeEnum::IndexStmt(s) if !s.concurrent => {
            let rel = s.relation.as_ref()?;
            let index = if s.idxname.is_empty() {
                String::new()
            } else {
                format!("{} ", s.idxname)
            };
            existing(rel).then(|| {
                (
                    format!("CREATE INDEX {index}on {}", rel_name(rel)),
                    rel_name(rel),
                )
            })
        }
        NodeEnum::DropStmt(s) if s.remove_type == ObjectType::ObjectTable as i32 => {
            let tables: Vec<String> = s
                .objects
                .iter()
                .map(name_parts)
                .filter(|n| {
                    let rel = RangeVar {
                        schemaname: if n.len() > 1 {
                            n[n.len() - 2].clone()
                        } else {
                            String::new()
                        },
                        relname: n.last().cloned().unwrap_or_default(),
                        ..Default::default()
                    };
                    existing(&rel)
                })
                .map(|n| n.join("."))
                .collect();
            (!tables.is_empty()).then(|| {
                (
                    format!("DROP TABLE {}", tables.join(", ")),
                    tables.join(", "),
                )
            })
        }
        NodeEnum::DropStmt(s)
            if !s.concurrent && s.remove_type == ObjectType::ObjectIndex as i32 =>
        {
            let indexes: Vec<String> = s
                .objects
                .iter()
                .map(name_parts)
                .filter(|n| !ctx.new_index(n))
                .map(|n| n.join("."))
                .collect();
            (!indexes.is_empty()).then(|| {
                (
                    format!("DROP INDEX {}", indexes.join(", ")),
                    "its table".to_string(),
                )
            })
        }
        _ => None,
    }
}

impl Rule for MissingLockTimeout {
    fn id(&self) -> &'static str {
        ID
    }

    fn check(&self, stmt: &Statement, ctx: &Context) -> Vec<Finding> {
        if ctx.lock_timeout_set {
            return vec![];
        }
        let Some((what, on)) = locking(stmt, ctx) else {
            return vec![];
        };
        vec![Finding::new(
            ID,
            stmt,
            RiskLevel::Medium,
            Severity::Warning,
            format!(
                "{what} locks {on} with no lock_timeout set: waiting for its lock behind a long-running query, it blocks every later query on {on}"
            ),
            "Put SET lock_timeout = '2s' (or SET LOCAL lock_timeout inside the transaction) before it, and retry the migration if it times out",
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_well_formed, findings};
    use super::*;

    #[test]
    fn fires_once_per_locking_statement_without_a_timeout() {
        let f = findings(
            "-- no timeout\nALTER TABLE users ADD COLUMN a int, ADD COLUMN b int;\n\
             CREATE INDEX i ON users (a);\n\
             DROP INDEX old_i;\n\
             DROP TABLE archive.users_old;\n\
             ALTER TABLE users RENAME COLUMN a TO c;\n\
             CREATE INDEX CONCURRENTLY j ON users (b);\n\
             SELECT 1;",
            ID,
        );
        assert_eq!(
            f.iter().map(|f| f.line).collect::<Vec<_>>(),
            vec![2, 3, 4, 5, 6],
            "{f:#?}"
        );
        assert!(f[0].message.contains("ALTER TABLE users"));
        assert!(
            f[1].message.contains("CREATE INDEX i on users"),
            "{}",
            f[1].message
        );
        assert!(f[2].message.contains("old_i"));
        assert!(f[3].message.contains("archive.users_old"));
        for f in &f {
            assert_well_formed(f);
            assert_eq!(
                (f.level, f.severity),
                (RiskLevel::Medium, Severity::Warning)
            );
        }
    }

    #[test]
    fn only_statements_before_the_timeout_fire() {
        let f = findings(
            "ALTER TABLE users ADD COLUMN a int;\nSET LOCAL lock_timeout = '1s';\nALTER TABLE users ADD COLUMN b int;",
            ID,
        );
        assert_eq!(f.iter().map(|f| f.line).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn a_new_tables_foreign_key_locks_the_existing_table() {
        let f = findings(
            "CREATE TABLE fresh (id int);\nALTER TABLE fresh ADD CONSTRAINT fk FOREIGN KEY (id) REFERENCES users (id);\n\
             ALTER TABLE fresh ADD COLUMN shop int REFERENCES shops (id);\n\
             CREATE TABLE other (id int);\nALTER TABLE fresh ADD COLUMN o int REFERENCES other (id);",
            ID,
        );
        assert_eq!(
            f.iter().map(|f| f.line).collect::<Vec<_>>(),
            vec![2, 3],
            "{f:#?}"
        );
        assert!(f[0].message.contains("locks users"), "{}", f[0].message);
        assert!(f[1].message.contains("locks shops"), "{}", f[1].message);
    }

    #[test]
    fn quiet_with_a_timeout_first_and_on_new_tables() {
        for sql in [
            "SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN a int;\nCREATE INDEX i ON users (a);\nDROP TABLE t;",
            "SET LOCAL lock_timeout TO '500ms';\nALTER TABLE users DROP COLUMN a;",
            "CREATE TABLE fresh (id int);\nALTER TABLE fresh ADD COLUMN a int;\nCREATE INDEX fi ON fresh (a);\nDROP INDEX fi;\nDROP TABLE fresh;",
            "CREATE INDEX CONCURRENTLY i ON users (a);\nDROP INDEX CONCURRENTLY j;",
        ] {
            assert_eq!(findings(sql, ID), vec![], "{sql}");
        }
    }
}
