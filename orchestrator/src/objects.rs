//! The objects a parsed [`Script`] touches, read statically from its parse
//! trees: [`affected_objects`] names every table and index for people
//! (`"accounts table"`, `"idx_accounts_name (new index)"`),
//! [`touched_tables`] lists the existing tables it locks or alters, quoted
//! for SQL, and [`estimate_duration_secs`] guesses how long it runs.

use pg_query::protobuf::node::Node as NodeEnum;
use pg_query::protobuf::{
    AlterTableType, ConstrType, Constraint, ObjectType, RangeVar, ReindexObjectType,
};

use crate::lint::{added_column, alter_table, column_constraints, name_parts};
use crate::script::{Script, Statement};

/// A (schema as written, possibly empty; name) pair.
type Name = (String, String);

fn of_rel(rel: &RangeVar) -> Name {
    (rel.schemaname.clone(), rel.relname.clone())
}

/// A dotted name list (`DROP` objects) as a [`Name`].
fn of_parts(parts: &[String]) -> Name {
    match parts {
        [.., schema, name] => (schema.clone(), name.clone()),
        [name] => (String::new(), name.clone()),
        [] => (String::new(), String::new()),
    }
}

fn display((schema, name): &Name) -> String {
    if schema.is_empty() {
        name.clone()
    } else {
        format!("{schema}.{name}")
    }
}

/// The same relation: names equal, and schemas equal unless one of them
/// was left unqualified.
fn same(a: &Name, b: &Name) -> bool {
    a.1 == b.1 && (a.0.is_empty() || b.0.is_empty() || a.0 == b.0)
}

/// An identifier quoted for SQL: `"users"`, `"odd""name"`.
fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quoted((schema, name): &Name) -> String {
    if schema.is_empty() {
        quote_ident(name)
    } else {
        format!("{}.{}", quote_ident(schema), quote_ident(name))
    }
}

/// What a statement does to the objects it names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    /// An existing table read, written or altered (`locks`: it takes a
    /// lock that matters: ALTER, CREATE INDEX, DROP, a referenced table).
    Table {
        name: Name,
        locks: bool,
    },
    TableCreated(Name),
    TableDropped(Name),
    TableRenamed {
        from: Name,
        to: String,
    },
    Index(Name),
    IndexCreated(Name),
    IndexDropped(Name),
    IndexRenamed {
        from: Name,
        to: String,
    },
}

/// Tables a constraint references.
fn referenced(k: &Constraint) -> Option<Name> {
    (k.contype == ConstrType::ConstrForeign as i32)
        .then(|| k.pktable.as_ref().map(of_rel))
        .flatten()
}

fn rels(nodes: &[pg_query::protobuf::Node]) -> impl Iterator<Item = &RangeVar> {
    nodes.iter().filter_map(|n| match &n.node {
        Some(NodeEnum::RangeVar(r)) => Some(r),
        _ => None,
    })
}

/// The events of one statement, in the order its text names the objects.
fn events(stmt: &Statement) -> Vec<Event> {
    let mut out = Vec::new();
    let touch = |rel: &RangeVar, locks: bool| Event::Table {
        name: of_rel(rel),
        locks,
    };
    match &stmt.node {
        NodeEnum::CreateStmt(s) => {
            if let Some(rel) = &s.relation {
                out.push(Event::TableCreated(of_rel(rel)));
            }
            let inline = s.table_elts.iter().flat_map(|e| match &e.node {
                Some(NodeEnum::ColumnDef(c)) => column_constraints(c).collect::<Vec<_>>(),
                Some(NodeEnum::Constraint(k)) => vec![&**k],
                _ => vec![],
            });
            let table_level = s.constraints.iter().filter_map(|c| match &c.node {
                Some(NodeEnum::Constraint(k)) => Some(&**k),
                _ => None,
            });
            for k in inline.chain(table_level) {
                if let Some(name) = referenced(k) {
                    out.push(Event::Table { name, locks: true });
                }
            }
            for parent in rels(&s.inh_relations) {
                out.push(touch(parent, true));
            }
        }
        NodeEnum::CreateTableAsStmt(s) if s.objtype == ObjectType::ObjectTable as i32 => {
            if let Some(rel) = s.into.as_ref().and_then(|i| i.rel.as_ref()) {
                out.push(Event::TableCreated(of_rel(rel)));
            }
        }
        NodeEnum::AlterTableStmt(s) if s.objtype == ObjectType::ObjectIndex as i32 => {
            if let Some(rel) = &s.relation {
                out.push(Event::Index(of_rel(rel)));
            }
        }
        NodeEnum::AlterTableStmt(_) => {
            let Some((rel, cmds)) = alter_table(stmt) else {
                return out;
            };
            out.push(touch(rel, true));
            for (kind, cmd) in cmds {
                if let Some(col) = added_column(kind, cmd) {
                    out.extend(
                        column_constraints(col)
                            .filter_map(referenced)
                            .map(|name| Event::Table { name, locks: true }),
                    );
                }
                let Some(NodeEnum::Constraint(k)) =
                    cmd.def.as_deref().and_then(|d| d.node.as_ref())
                else {
                    continue;
                };
                if kind != AlterTableType::AtAddConstraint {
                    continue;
                }
                if let Some(name) = referenced(k) {
                    out.push(Event::Table { name, locks: true });
                }
                let builds_index = k.contype == ConstrType::ConstrPrimary as i32
                    || k.contype == ConstrType::ConstrUnique as i32
                    || k.contype == ConstrType::ConstrExclusion as i32;
                if builds_index && !k.conname.is_empty() {
                    let name = if k.indexname.is_empty() {
                        (rel.schemaname.clone(), k.conname.clone())
                    } else {
                        (rel.schemaname.clone(), k.indexname.clone())
                    };
                    out.push(if k.indexname.is_empty() {
                        Event::IndexCreated(name)
                    } else {
                        Event::Index(name)
                    });
                }
            }
        }
        NodeEnum::RenameStmt(s) => {
            let Some(rel) = &s.relation else {
                return out;
            };
            if s.rename_type == ObjectType::ObjectTable as i32 {
                out.push(Event::TableRenamed {
                    from: of_rel(rel),
                    to: s.newname.clone(),
                });
            } else if s.rename_type == ObjectType::ObjectIndex as i32 {
                out.push(Event::IndexRenamed {
                    from: of_rel(rel),
                    to: s.newname.clone(),
                });
            } else if s.relation_type == ObjectType::ObjectTable as i32
                || s.rename_type == ObjectType::ObjectTabconstraint as i32
            {
                out.push(touch(rel, true));
            }
        }
        NodeEnum::IndexStmt(s) => {
            if let Some(rel) = &s.relation {
                out.push(touch(rel, true));
                if s.idxname.is_empty() {
                    out.push(Event::IndexCreated((
                        rel.schemaname.clone(),
                        format!("unnamed index on {}", rel.relname),
                    )));
                } else {
                    out.push(Event::IndexCreated((
                        rel.schemaname.clone(),
                        s.idxname.clone(),
                    )));
                }
            }
        }
        NodeEnum::DropStmt(s) if s.remove_type == ObjectType::ObjectTable as i32 => {
            out.extend(
                s.objects
                    .iter()
                    .map(|o| Event::TableDropped(of_parts(&name_parts(o)))),
            );
        }
        NodeEnum::DropStmt(s) if s.remove_type == ObjectType::ObjectIndex as i32 => {
            out.extend(
                s.objects
                    .iter()
                    .map(|o| Event::IndexDropped(of_parts(&name_parts(o)))),
            );
        }
        NodeEnum::ReindexStmt(s) => {
            let index = s.kind == ReindexObjectType::ReindexObjectIndex as i32;
            let table = s.kind == ReindexObjectType::ReindexObjectTable as i32;
            if let Some(rel) = &s.relation {
                if index {
                    out.push(Event::Index(of_rel(rel)));
                } else if table {
                    out.push(touch(rel, true));
                }
            }
        }
        NodeEnum::InsertStmt(s) => out.extend(s.relation.as_ref().map(|r| touch(r, false))),
        NodeEnum::UpdateStmt(s) => out.extend(s.relation.as_ref().map(|r| touch(r, false))),
        NodeEnum::DeleteStmt(s) => out.extend(s.relation.as_ref().map(|r| touch(r, false))),
        NodeEnum::CopyStmt(s) => out.extend(s.relation.as_ref().map(|r| touch(r, false))),
        NodeEnum::TruncateStmt(s) => out.extend(rels(&s.relations).map(|r| touch(r, false))),
        NodeEnum::LockStmt(s) => out.extend(rels(&s.relations).map(|r| touch(r, false))),
        NodeEnum::CreateTrigStmt(s) => out.extend(s.relation.as_ref().map(|r| touch(r, false))),
        NodeEnum::VacuumStmt(s) => out.extend(s.rels.iter().filter_map(|n| match &n.node {
            Some(NodeEnum::VacuumRelation(v)) => v.relation.as_ref().map(|r| touch(r, false)),
            _ => None,
        })),
        _ => {}
    }
    out
}

/// The kind of object an entry describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Table,
    Index,
}

/// One object of [`affected_objects`]: the name it had when first seen,
/// the later names it was renamed to, and what happened to it.
struct Entry {
    kind: Kind,
    name: Name,
    aliases: Vec<Name>,
    new: bool,
    dropped: bool,
    renamed_to: Option<String>,
}

impl Entry {
    fn is(&self, kind: Kind, name: &Name) -> bool {
        self.kind == kind && (same(&self.name, name) || self.aliases.iter().any(|a| same(a, name)))
    }

    fn label(&self) -> String {
        let name = display(&self.name);
        let mut notes = Vec::new();
        match self.kind {
            Kind::Table => {
                if self.new {
                    notes.push("new".to_string());
                }
                if let Some(to) = &self.renamed_to {
                    notes.push(format!("renamed to {to}"));
                }
                if self.dropped {
                    notes.push("dropped".to_string());
                }
                if notes.is_empty() {
                    format!("{name} table")
                } else {
                    format!("{name} table ({})", notes.join(", "))
                }
            }
            Kind::Index => {
                let what = match (self.new, self.dropped) {
                    (true, true) => "new index, dropped",
                    (true, false) => "new index",
                    (false, true) => "dropped index",
                    (false, false) => "index",
                };
                match &self.renamed_to {
                    Some(to) => format!("{name} ({what}, renamed to {to})"),
                    None if !self.new && !self.dropped => format!("{name} index"),
                    None => format!("{name} ({what})"),
                }
            }
        }
    }
}

/// Every table and index the script touches, by its own name, one entry
/// each, in first-seen order: `"accounts table"`,
/// `"idx_accounts_name (new index)"`, `"idx_old (dropped index)"`,
/// `"orders table (dropped)"`, `"users table (new)"`,
/// `"users table (renamed to members)"`. An object renamed in the script
/// keeps its one entry under its first name.
pub fn affected_objects(script: &Script) -> Vec<String> {
    let mut entries: Vec<Entry> = Vec::new();
    for stmt in &script.statements {
        for event in events(stmt) {
            let (kind, name) = match &event {
                Event::Table { name, .. }
                | Event::TableCreated(name)
                | Event::TableDropped(name)
                | Event::TableRenamed { from: name, .. } => (Kind::Table, name),
                Event::Index(name)
                | Event::IndexCreated(name)
                | Event::IndexDropped(name)
                | Event::IndexRenamed { from: name, .. } => (Kind::Index, name),
            };
            if name.1.is_empty() {
                continue;
            }
            // A table created again after being dropped is a new object.
            let live = |e: &Entry| {
                e.is(kind, name)
                    && !(e.dropped
                        && matches!(event, Event::TableCreated(_) | Event::IndexCreated(_)))
            };
            let at = match entries.iter().rposition(live) {
                Some(i) => i,
                None => {
                    entries.push(Entry {
                        kind,
                        name: name.clone(),
                        aliases: Vec::new(),
                        new: false,
                        dropped: false,
                        renamed_to: None,
                    });
                    entries.len() - 1
                }
            };
            let entry = &mut entries[at];
            match event {
                Event::TableCreated(_) | Event::IndexCreated(_) => entry.new = true,
                Event::TableDropped(_) | Event::IndexDropped(_) => entry.dropped = true,
                Event::TableRenamed { from, to } | Event::IndexRenamed { from, to } => {
                    entry.aliases.push((from.0, to.clone()));
                    entry.renamed_to = Some(to);
                }
                Event::Table { .. } | Event::Index(_) => {}
            }
        }
    }
    let mut labels: Vec<String> = Vec::with_capacity(entries.len());
    for label in entries.iter().map(Entry::label) {
        if !labels.contains(&label) {
            labels.push(label);
        }
    }
    labels
}

/// The existing tables the script locks or alters — `ALTER TABLE` targets
/// (renames included), `CREATE INDEX` tables, `DROP TABLE` targets,
/// tables a foreign key references, tables `REINDEX TABLE` rebuilds — as
/// SQL (`"users"`, `"billing"."invoices"`, schema-qualified when the script
/// qualifies them), ready for `SELECT 1 FROM <t> LIMIT 1`. Tables the
/// script itself creates (or a name a rename gives) before the statement
/// are left out; de-duplicated, in first-seen order.
pub fn touched_tables(script: &Script) -> Vec<String> {
    let mut fresh: Vec<Name> = Vec::new();
    let mut out: Vec<Name> = Vec::new();
    let add = |name: Name, fresh: &[Name], out: &mut Vec<Name>| {
        if !name.1.is_empty() && !fresh.iter().any(|f| same(f, &name)) && !out.contains(&name) {
            out.push(name);
        }
    };
    for stmt in &script.statements {
        for event in events(stmt) {
            match event {
                Event::Table { name, locks: true } | Event::TableDropped(name) => {
                    add(name, &fresh, &mut out)
                }
                Event::TableRenamed { from, to } => {
                    let schema = from.0.clone();
                    add(from, &fresh, &mut out);
                    fresh.push((schema, to));
                }
                Event::TableCreated(name) => fresh.push(name),
                _ => {}
            }
        }
    }
    out.iter().map(quoted).collect()
}

/// Seconds a statement is guessed to take (see [`estimate_duration_secs`]).
fn statement_secs(stmt: &Statement) -> u64 {
    match &stmt.node {
        NodeEnum::TransactionStmt(_)
        | NodeEnum::VariableSetStmt(_)
        | NodeEnum::VariableShowStmt(_)
        | NodeEnum::SelectStmt(_) => 0,
        NodeEnum::IndexStmt(s) if s.concurrent => 60,
        NodeEnum::IndexStmt(_) | NodeEnum::ReindexStmt(_) => 30,
        NodeEnum::InsertStmt(_)
        | NodeEnum::UpdateStmt(_)
        | NodeEnum::DeleteStmt(_)
        | NodeEnum::CopyStmt(_)
        | NodeEnum::CreateTableAsStmt(_) => 10,
        NodeEnum::AlterTableStmt(_) => match alter_table(stmt) {
            None => 2,
            Some((_, cmds)) => cmds
                .iter()
                .map(|&(kind, cmd)| match kind {
                    AlterTableType::AtAlterColumnType => 60,
                    AlterTableType::AtValidateConstraint => 30,
                    AlterTableType::AtSetNotNull => 10,
                    AlterTableType::AtAddColumn => match added_column(kind, cmd) {
                        Some(col) if crate::lint::volatile_default(col).is_some() => 60,
                        _ => 2,
                    },
                    AlterTableType::AtAddConstraint => {
                        match cmd.def.as_deref().and_then(|d| d.node.as_ref()) {
                            Some(NodeEnum::Constraint(k))
                                if k.skip_validation
                                    || !(k.contype == ConstrType::ConstrForeign as i32
                                        || k.contype == ConstrType::ConstrCheck as i32
                                        || k.contype == ConstrType::ConstrPrimary as i32
                                        || k.contype == ConstrType::ConstrUnique as i32
                                        || k.contype == ConstrType::ConstrExclusion as i32) =>
                            {
                                2
                            }
                            _ => 30,
                        }
                    }
                    _ => 2,
                })
                .sum::<u64>()
                .max(2),
        },
        _ => 2,
    }
}

/// A static guess at the script's running time, in seconds, at least 1:
/// nothing for `BEGIN`/`COMMIT`, `SET` and `SELECT`; 2 s for a DDL statement
/// (or an `ALTER TABLE` subcommand) that only changes the catalog; 10 s
/// for a data statement (`INSERT`, `UPDATE`, `DELETE`, `COPY`,
/// `CREATE TABLE AS`) and for `SET NOT NULL` (a scan); 30 s for an index
/// build (`CREATE INDEX`, `REINDEX`, an added primary key or unique
/// constraint) and for a validation (`VALIDATE CONSTRAINT`, or a foreign
/// key / check added without `NOT VALID`); 60 s for
/// `CREATE INDEX CONCURRENTLY` (two table scans), a column type change and
/// a column added with a volatile default (both rewrite the table).
pub fn estimate_duration_secs(script: &Script) -> u64 {
    script
        .statements
        .iter()
        .map(statement_secs)
        .sum::<u64>()
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::parse;

    fn objects(sql: &str) -> Vec<String> {
        affected_objects(&parse(sql).unwrap())
    }

    fn touched(sql: &str) -> Vec<String> {
        touched_tables(&parse(sql).unwrap())
    }

    #[test]
    fn names_tables_and_indexes_created_and_dropped() {
        let got = objects(
            "SET lock_timeout = '2s';\n\
             ALTER TABLE accounts ADD COLUMN name text;\n\
             CREATE INDEX CONCURRENTLY idx_accounts_name ON accounts (name);\n\
             DROP INDEX CONCURRENTLY idx_old;\n\
             CREATE TABLE users (id int PRIMARY KEY, shop int REFERENCES shops (id));\n\
             ALTER TABLE users ADD COLUMN email text;\n\
             DROP TABLE orders;\n\
             ALTER TABLE accounts ADD CONSTRAINT accounts_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;\n\
             UPDATE billing.invoices SET paid = true;\n\
             ALTER TABLE accounts RENAME TO clients;\n\
             ALTER TABLE clients ADD COLUMN note text;\n\
             ALTER INDEX idx_accounts_name RENAME TO idx_clients_name;\n\
             ALTER TABLE accounts_archive ADD CONSTRAINT archive_pk PRIMARY KEY (id);",
        );
        assert_eq!(
            got,
            vec![
                "accounts table (renamed to clients)",
                "idx_accounts_name (new index, renamed to idx_clients_name)",
                "idx_old (dropped index)",
                "users table (new)",
                "shops table",
                "orders table (dropped)",
                "billing.invoices table",
                "accounts_archive table",
                "archive_pk (new index)",
            ]
        );
    }

    #[test]
    fn one_entry_per_object_in_first_seen_order() {
        assert_eq!(
            objects("ALTER TABLE a ADD COLUMN b int;\nCREATE INDEX i ON a (b);\nALTER TABLE a DROP COLUMN c;\nCREATE INDEX ON a (c);"),
            vec!["a table", "i (new index)", "unnamed index on a (new index)"]
        );
        assert_eq!(
            objects("ALTER TABLE a ADD COLUMN b int;\nDROP TABLE a;"),
            vec!["a table (dropped)"]
        );
        assert_eq!(objects("SELECT 1;"), Vec::<String>::new());
    }

    #[test]
    fn touched_tables_are_existing_quoted_and_exclude_created_ones() {
        let got = touched(
            "CREATE TABLE fresh (id int, owner int REFERENCES users (id));\n\
             ALTER TABLE fresh ADD COLUMN b int;\n\
             CREATE INDEX fi ON fresh (b);\n\
             ALTER TABLE billing.invoices ADD COLUMN c int;\n\
             CREATE INDEX CONCURRENTLY ii ON billing.invoices (c);\n\
             ALTER TABLE \"Odd\"\"Name\" ADD CONSTRAINT f FOREIGN KEY (x) REFERENCES public.shops (id) NOT VALID;\n\
             DROP TABLE old_stuff, fresh;\n\
             ALTER TABLE legacy RENAME TO modern;\n\
             ALTER TABLE modern ADD COLUMN d int;\n\
             INSERT INTO logs VALUES (1);",
        );
        assert_eq!(
            got,
            vec![
                "\"users\"",
                "\"billing\".\"invoices\"",
                "\"Odd\"\"Name\"",
                "\"public\".\"shops\"",
                "\"old_stuff\"",
                "\"legacy\"",
            ]
        );
    }

    #[test]
    fn a_table_dropped_then_recreated_was_touched() {
        assert_eq!(
            touched("DROP TABLE t;\nCREATE TABLE t (id int);\nALTER TABLE t ADD COLUMN b int;"),
            vec!["\"t\""]
        );
    }

    #[test]
    fn duration_follows_the_heuristic() {
        let est = |sql: &str| estimate_duration_secs(&parse(sql).unwrap());
        assert_eq!(est("SELECT 1"), 1);
        assert_eq!(est("BEGIN; SET lock_timeout = '1s'; COMMIT;"), 1);
        assert_eq!(est("ALTER TABLE a ADD COLUMN b int"), 2);
        assert_eq!(est("CREATE INDEX i ON a (b)"), 30);
        assert_eq!(est("CREATE INDEX CONCURRENTLY i ON a (b)"), 60);
        assert_eq!(est("ALTER TABLE a ALTER COLUMN b TYPE bigint"), 60);
        assert_eq!(
            est("ALTER TABLE a ADD COLUMN b uuid DEFAULT gen_random_uuid()"),
            60
        );
        assert_eq!(
            est("ALTER TABLE a ADD CONSTRAINT f FOREIGN KEY (b) REFERENCES c (id) NOT VALID;\nALTER TABLE a VALIDATE CONSTRAINT f;"),
            32
        );
        assert_eq!(
            est("SET lock_timeout = '2s';\nALTER TABLE a ADD COLUMN b int;\nCREATE INDEX CONCURRENTLY i ON a (b);"),
            62
        );
    }
}
