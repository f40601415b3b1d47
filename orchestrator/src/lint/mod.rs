//! The migration lint: rules that read a parsed [`Script`] statement by
//! statement and report what would lock, rewrite or break a live table,
//! each as a [`Finding`] with the statement's line, a message naming the
//! object, a concrete recommendation, a [`RiskLevel`] and a [`Severity`].
//!
//! Each rule is one module implementing [`Rule`], registered once in
//! [`registry`]; the rule ids and levels are the conventions' table
//! (migration-orchestrator-conventions section 7). A [`Context`] carries
//! what earlier statements of the script established: whether a
//! `SET [LOCAL] lock_timeout` came first, whether an explicit
//! `BEGIN … COMMIT` is open, and which tables the script itself created
//! (statements on those lock nothing anyone else uses).

mod add_column_not_null_no_default;
mod add_column_volatile_default;
mod alter_column_type;
mod concurrently_in_transaction;
mod constraint_not_valid;
mod drop_column;
mod drop_table;
mod index_not_concurrent;
mod missing_lock_timeout;
mod rename;

pub(crate) use add_column_volatile_default::volatile_default;

use std::collections::HashSet;

use pg_query::protobuf::node::Node as NodeEnum;
use pg_query::protobuf::{AlterTableCmd, AlterTableType, ObjectType, RangeVar, VariableSetKind};

use crate::risk::RiskLevel;
use crate::script::{Script, Statement, TxnControl};

/// Whether a finding makes the script invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Reported; the script stays valid.
    Warning,
    /// The script is invalid as written.
    Error,
}

/// One rule's verdict on one statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The rule id, e.g. `"index-not-concurrent"`.
    pub rule: &'static str,
    /// The 1-based line of the statement at fault.
    pub line: usize,
    /// Names the statement's line and the object
    /// (`"line 3: CREATE INDEX idx_a_b on a without CONCURRENTLY …"`).
    pub message: String,
    /// What to write instead; never empty.
    pub recommendation: String,
    pub level: RiskLevel,
    pub severity: Severity,
}

impl Finding {
    /// A finding on `stmt`, its message prefixed with the statement's line.
    fn new(
        rule: &'static str,
        stmt: &Statement,
        level: RiskLevel,
        severity: Severity,
        what: impl std::fmt::Display,
        recommendation: impl Into<String>,
    ) -> Self {
        Finding {
            rule,
            line: stmt.line,
            message: format!("line {}: {what}", stmt.line),
            recommendation: recommendation.into(),
            level,
            severity,
        }
    }
}

/// One lint rule.
pub trait Rule: Sync {
    /// The rule id, as in the conventions' table.
    fn id(&self) -> &'static str;
    /// Findings on `stmt`, given what the statements before it established.
    fn check(&self, stmt: &Statement, ctx: &Context) -> Vec<Finding>;
}

/// Every rule, in the conventions' order.
pub fn registry() -> &'static [&'static dyn Rule] {
    &[
        &index_not_concurrent::IndexNotConcurrent,
        &add_column_not_null_no_default::AddColumnNotNullNoDefault,
        &add_column_volatile_default::AddColumnVolatileDefault,
        &constraint_not_valid::ConstraintNotValid,
        &drop_column::DropColumn,
        &drop_table::DropTable,
        &alter_column_type::AlterColumnType,
        &rename::Rename,
        &missing_lock_timeout::MissingLockTimeout,
        &concurrently_in_transaction::ConcurrentlyInTransaction,
    ]
}

/// Every rule id (the same list as [`registry`], checked by a test).
pub const RULES: &[&str] = &[
    index_not_concurrent::ID,
    add_column_not_null_no_default::ID,
    add_column_volatile_default::ID,
    constraint_not_valid::ID,
    drop_column::ID,
    drop_table::ID,
    alter_column_type::ID,
    rename::ID,
    missing_lock_timeout::ID,
    concurrently_in_transaction::ID,
];

/// Runs every rule over the script; findings in statement order (and, for
/// one statement, in the rules' order).
pub fn lint(script: &Script) -> Vec<Finding> {
    let mut ctx = Context::default();
    let mut findings = Vec::new();
    for stmt in &script.statements {
        for rule in registry() {
            findings.extend(rule.check(stmt, &ctx));
        }
        ctx.advance(stmt);
    }
    tracing::debug!(
        statements = script.statements.len(),
        findings = findings.len(),
        "lint"
    );
    findings
}

/// The highest level among `findings`, `Low` when there are none.
pub fn derived_level(findings: &[Finding]) -> RiskLevel {
    findings
        .iter()
        .map(|f| f.level)
        .max()
        .unwrap_or(RiskLevel::Low)
}

/// What the statements before the one being checked established.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// A `SET lock_timeout` or `SET LOCAL lock_timeout` to a non-zero value
    /// came earlier (and no `RESET`/`SET … DEFAULT`/`= 0` undid it).
    pub lock_timeout_set: bool,
    /// Inside an explicit `BEGIN`/`START TRANSACTION` not yet ended.
    pub in_transaction: bool,
    /// Tables created earlier in the script, as (schema as written, name).
    created_tables: Vec<(String, String)>,
    /// Indexes created earlier in the script on tables it created.
    new_indexes: HashSet<String>,
}

impl Context {
    /// Whether `rel` is a table an earlier statement of the script created
    /// (or renamed a created table to). An unqualified name matches a
    /// qualified one with the same table name.
    pub fn created_here(&self, rel: &RangeVar) -> bool {
        self.created_tables.iter().any(|(schema, name)| {
            *name == rel.relname
                && (schema.is_empty() || rel.schemaname.is_empty() || *schema == rel.schemaname)
        })
    }

    /// Whether the index named by `name` (a `DROP INDEX` name list) was
    /// created earlier in the script on a table the script created.
    pub fn new_index(&self, name: &[String]) -> bool {
        name.last().is_some_and(|n| self.new_indexes.contains(n))
    }

    /// Records what `stmt` establishes for the statements after it.
    fn advance(&mut self, stmt: &Statement) {
        match stmt.transaction_control() {
            Some(TxnControl::Begin) => self.in_transaction = true,
            Some(TxnControl::End) => self.in_transaction = false,
            None => {}
        }
        match &stmt.node {
            NodeEnum::VariableSetStmt(s) if s.name.eq_ignore_ascii_case("lock_timeout") => {
                self.lock_timeout_set = match VariableSetKind::try_from(s.kind) {
                    Ok(VariableSetKind::VarSetValue) => !sets_zero(&s.args),
                    _ => false,
                };
            }
            NodeEnum::VariableSetStmt(s) if s.kind == VariableSetKind::VarResetAll as i32 => {
                self.lock_timeout_set = false;
            }
            NodeEnum::CreateStmt(s) => {
                if let Some(rel) = &s.relation {
                    self.created_tables
                        .push((rel.schemaname.clone(), rel.relname.clone()));
                }
            }
            NodeEnum::CreateTableAsStmt(s) => {
                if let Some(rel) = s.into.as_ref().and_then(|i| i.rel.as_ref()) {
                    self.created_tables
                        .push((rel.schemaname.clone(), rel.relname.clone()));
                }
            }
            NodeEnum::IndexStmt(s) => {
                if let Some(rel) = &s.relation {
                    if self.created_here(rel) && !s.idxname.is_empty() {
                        self.new_indexes.insert(s.idxname.clone());
                    }
                }
            }
            NodeEnum::RenameStmt(s) if s.rename_type == ObjectType::ObjectTable as i32 => {
                if let Some(rel) = &s.relation {
                    if self.created_here(rel) {
                        self.created_tables
                            .push((rel.schemaname.clone(), s.newname.clone()));
                    }
                }
            }
            _ => {}
        }
    }
}

/// Whether a `SET lock_timeout` value is zero (which disables the timeout).
fn sets_zero(args: &[pg_query::protobuf::Node]) -> bool {
    use pg_query::protobuf::a_const::Val;
    args.iter().any(|a| match &a.node {
        Some(NodeEnum::AConst(c)) => match &c.val {
            Some(Val::Ival(i)) => i.ival == 0,
            Some(Val::Sval(s)) => {
                let v = s.sval.trim();
                v.trim_end_matches(|c: char| c.is_ascii_alphabetic()).trim() == "0"
            }
            Some(Val::Fval(f)) => f.fval.parse::<f64>().is_ok_and(|v| v == 0.0),
            _ => false,
        },
        _ => false,
    })
}

/// A relation's name as the script wrote it, schema-qualified when it was.
pub(crate) fn rel_name(rel: &RangeVar) -> String {
    if rel.schemaname.is_empty() {
        rel.relname.clone()
    } else {
        format!("{}.{}", rel.schemaname, rel.relname)
    }
}

/// The parts of a dotted name as `DROP` lists it (`["public", "t"]`).
pub(crate) fn name_parts(node: &pg_query::protobuf::Node) -> Vec<String> {
    match &node.node {
        Some(NodeEnum::List(l)) => l
            .items
            .iter()
            .filter_map(|i| match &i.node {
                Some(NodeEnum::String(s)) => Some(s.sval.clone()),
                _ => None,
            })
            .collect(),
        Some(NodeEnum::String(s)) => vec![s.sval.clone()],
        _ => Vec::new(),
    }
}

/// The subcommands of an `ALTER TABLE`, each with its kind.
pub(crate) type Subcommands<'a> = Vec<(AlterTableType, &'a AlterTableCmd)>;

/// The table of an `ALTER TABLE` statement (not `ALTER INDEX`/`VIEW`/…)
/// and its subcommands.
pub(crate) fn alter_table(stmt: &Statement) -> Option<(&RangeVar, Subcommands<'_>)> {
    let NodeEnum::AlterTableStmt(s) = &stmt.node else {
        return None;
    };
    if s.objtype != ObjectType::ObjectTable as i32 {
        return None;
    }
    let rel = s.relation.as_ref()?;
    let cmds = s
        .cmds
        .iter()
        .filter_map(|c| match &c.node {
            Some(NodeEnum::AlterTableCmd(cmd)) => {
                Some((AlterTableType::try_from(cmd.subtype).ok()?, &**cmd))
            }
            _ => None,
        })
        .collect();
    Some((rel, cmds))
}

/// The column definition of an `ADD COLUMN` subcommand.
pub(crate) fn added_column(
    kind: AlterTableType,
    cmd: &AlterTableCmd,
) -> Option<&pg_query::protobuf::ColumnDef> {
    if kind != AlterTableType::AtAddColumn {
        return None;
    }
    match cmd.def.as_deref().and_then(|d| d.node.as_ref()) {
        Some(NodeEnum::ColumnDef(c)) => Some(c),
        _ => None,
    }
}

/// The constraints written inline on a column definition.
pub(crate) fn column_constraints(
    col: &pg_query::protobuf::ColumnDef,
) -> impl Iterator<Item = &pg_query::protobuf::Constraint> {
    col.constraints.iter().filter_map(|c| match &c.node {
        Some(NodeEnum::Constraint(k)) => Some(&**k),
        _ => None,
    })
}

/// The default expression of a column definition, if it has one.
pub(crate) fn column_default(
    col: &pg_query::protobuf::ColumnDef,
) -> Option<&pg_query::protobuf::Node> {
    use pg_query::protobuf::ConstrType;
    col.raw_default.as_deref().or_else(|| {
        column_constraints(col)
            .find(|k| k.contype == ConstrType::ConstrDefault as i32)
            .and_then(|k| k.raw_expr.as_deref())
    })
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// Lints `sql` and keeps the findings of `rule`.
    pub fn findings(sql: &str, rule: &str) -> Vec<Finding> {
        let script = crate::script::parse(sql).unwrap();
        lint(&script)
            .into_iter()
            .filter(|f| f.rule == rule)
            .collect()
    }

    /// Asserts the common shape of every finding.
    pub fn assert_well_formed(f: &Finding) {
        assert!(
            f.message.starts_with(&format!("line {}: ", f.line)),
            "{f:?}"
        );
        assert!(!f.recommendation.trim().is_empty(), "{f:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::parse;

    #[test]
    fn registry_and_rule_ids_agree() {
        let ids: Vec<&str> = registry().iter().map(|r| r.id()).collect();
        assert_eq!(ids, RULES);
        let unique: HashSet<&str> = RULES.iter().copied().collect();
        assert_eq!(unique.len(), 10);
    }

    /// The conventions' safe script: no findings, derived level Low.
    #[test]
    fn the_safe_script_is_clean() {
        let script = parse(
            "SET lock_timeout = '2s';\n\
             ALTER TABLE accounts ADD COLUMN nickname text;\n\
             CREATE INDEX CONCURRENTLY idx_accounts_nickname ON accounts (nickname);\n\
             ALTER TABLE accounts ADD CONSTRAINT accounts_owner_fk FOREIGN KEY (owner_id) REFERENCES users (id) NOT VALID;\n\
             ALTER TABLE accounts VALIDATE CONSTRAINT accounts_owner_fk;\n\
             ALTER TABLE accounts ADD CONSTRAINT nickname_len CHECK (length(nickname) < 64) NOT VALID;\n\
             ALTER TABLE accounts VALIDATE CONSTRAINT nickname_len;\n",
        )
        .unwrap();
        let findings = lint(&script);
        assert_eq!(findings, vec![]);
        assert_eq!(derived_level(&findings), RiskLevel::Low);
    }

    #[test]
    fn a_script_breaking_every_rule_yields_every_rule() {
        let script = parse(
            "CREATE INDEX idx_a_b ON a (b);\n\
             ALTER TABLE a ADD COLUMN c int NOT NULL;\n\
             ALTER TABLE a ADD COLUMN d uuid DEFAULT gen_random_uuid();\n\
             ALTER TABLE a ADD CONSTRAINT a_e_fk FOREIGN KEY (e) REFERENCES e (id);\n\
             ALTER TABLE a DROP COLUMN f;\n\
             DROP TABLE old_stuff;\n\
             ALTER TABLE a ALTER COLUMN g TYPE bigint;\n\
             ALTER TABLE a RENAME COLUMN h TO i;\n\
             BEGIN;\n\
             CREATE INDEX CONCURRENTLY idx_a_j ON a (j);\n\
             COMMIT;\n",
        )
        .unwrap();
        let findings = lint(&script);
        let fired: HashSet<&str> = findings.iter().map(|f| f.rule).collect();
        for id in RULES {
            assert!(fired.contains(id), "{id} missing from {findings:#?}");
        }
        assert_eq!(derived_level(&findings), RiskLevel::Critical);
        for f in &findings {
            test_support::assert_well_formed(f);
        }
        // Statement order.
        assert!(findings.windows(2).all(|w| w[0].line <= w[1].line));
        let error = findings
            .iter()
            .find(|f| f.rule == "concurrently-in-transaction")
            .unwrap();
        assert_eq!((error.line, error.severity), (10, Severity::Error));
        assert!(findings
            .iter()
            .filter(|f| f.rule != "concurrently-in-transaction")
            .all(|f| f.severity == Severity::Warning));
    }

    #[test]
    fn derived_level_is_the_highest() {
        assert_eq!(derived_level(&[]), RiskLevel::Low);
        let script = parse("SET lock_timeout = '1s';\nCREATE INDEX i ON a (b);").unwrap();
        assert_eq!(derived_level(&lint(&script)), RiskLevel::Medium);
        let script = parse(
            "SET lock_timeout = '1s';\nCREATE INDEX i ON a (b);\nALTER TABLE a DROP COLUMN c;",
        )
        .unwrap();
        assert_eq!(derived_level(&lint(&script)), RiskLevel::High);
    }

    #[test]
    fn statements_on_tables_created_in_the_script_lock_nothing() {
        let script = parse(
            "CREATE TABLE fresh (id int);\n\
             CREATE TABLE owners (id int PRIMARY KEY);\n\
             ALTER TABLE fresh ADD COLUMN owner int REFERENCES owners (id);\n\
             ALTER TABLE public.fresh ADD CONSTRAINT c CHECK (id > 0);\n\
             CREATE INDEX fresh_owner ON fresh (owner);\n\
             DROP INDEX fresh_owner;\n",
        )
        .unwrap();
        assert_eq!(lint(&script), vec![]);
    }

    #[test]
    fn lock_timeout_zero_or_reset_does_not_count() {
        for set in [
            "SET lock_timeout = 0",
            "SET lock_timeout = '0'",
            "SET lock_timeout TO DEFAULT",
            "SET lock_timeout = '2s'; RESET lock_timeout",
            "SET lock_timeout = '2s'; RESET ALL",
        ] {
            let script = parse(&format!("{set};\nALTER TABLE a ADD COLUMN b int;")).unwrap();
            let rules: Vec<&str> = lint(&script).iter().map(|f| f.rule).collect();
            assert_eq!(rules, vec!["missing-lock-timeout"], "{set}");
        }
    }
}
