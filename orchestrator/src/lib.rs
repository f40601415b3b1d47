//! Sluice's schema migration orchestrator, with no HTTP and no job queue in
//! it: the API and the job workers stay thin around it.
//!
//! A migration's path:
//! 1. [`script::parse`] reads a script with PostgreSQL's own grammar
//!    (libpg_query through the `pg_query` crate): its statements, each with
//!    its 1-based line, or the syntax error and its line;
//! 2. [`lint::lint`] runs the rules, one module each under [`lint`], into
//!    findings (rule, line, message, recommendation, [`risk::RiskLevel`]);
//!    [`objects`] names the tables and indexes a script touches;
//! 3. [`target`] reads the connection strings a database is registered with
//!    and [`health`] measures the master and replicas (connections,
//!    replication lag where a replica really streams);
//! 4. [`executor`] runs the phases in order — each in one transaction
//!    where the statements allow it — sampling query latency and
//!    replication lag on the target while it runs ([`probe`]), halts when a
//!    phase fails or a threshold is crossed, and applies the rollback script
//!    to the phases already applied, newest first; [`dryrun`] runs a script
//!    in a transaction that is always rolled back and reports what it
//!    touched, read from the catalogs.

pub mod dryrun;
pub mod executor;
pub mod health;
pub mod lint;
pub mod objects;
pub mod probe;
pub mod risk;
pub mod script;
pub mod target;
