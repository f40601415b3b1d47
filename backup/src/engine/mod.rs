//! Database engines: how to dump one database as a stream, how to replay a
//! dump into another, and the few admin steps a safe restore needs (does a
//! database exist, create, drop, swap a scratch database in). Every step is
//! a tool run through a [`Transport`], so the same engine works wherever
//! the transport reaches.

mod mysql;
mod postgres;

use std::fmt;

use futures::future::BoxFuture;

pub use mysql::MySql;
pub use postgres::Postgres;

use crate::error::{BackupError, Result};
use crate::mask::Dialect;
use crate::transport::{ToolCommand, Transport};

/// How a masked restore runs: the dump, turned into SQL text by `script`
/// when it is not SQL already, passes through the masking filter for
/// `dialect` (in this process) and into `replay`, all streaming.
#[derive(Debug, Clone)]
pub struct MaskedRestore {
    /// Reads the dump on stdin and writes it as SQL on stdout
    /// (PostgreSQL: `pg_restore --file=-`); `None` when the dump is SQL.
    pub script: Option<ToolCommand>,
    /// Replays SQL read on stdin into the database, stopping at the first
    /// error.
    pub replay: ToolCommand,
    /// The SQL text the filter reads.
    pub dialect: Dialect,
}

/// Where a database server listens and who to log in as.
#[derive(Clone)]
pub struct Connection {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Given to tools through their environment only.
    pub password: Option<String>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .finish()
    }
}

/// Which engine a server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Postgres,
    /// MySQL or MariaDB, through the `mariadb-dump` and `mariadb` tools.
    MySql,
}

impl EngineKind {
    pub fn engine(self) -> &'static dyn Engine {
        match self {
            EngineKind::Postgres => &Postgres,
            EngineKind::MySql => &MySql,
        }
    }
}

/// One database on a server, as [`Engine::list_databases`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseInfo {
    pub name: String,
    /// Its size on disk in bytes (PostgreSQL: `pg_database_size`;
    /// MySQL/MariaDB: data and index length of its tables).
    pub size_bytes: u64,
}

/// Parses `name<TAB>size` lines (the admin tools' unaligned output).
fn parse_database_lines(out: &str) -> Vec<DatabaseInfo> {
    out.lines()
        .filter_map(|l| {
            let (name, size) = l.rsplit_once('\t')?;
            Some(DatabaseInfo {
                name: name.to_owned(),
                size_bytes: size.trim().parse().unwrap_or(0),
            })
        })
        .filter(|d| !d.name.is_empty())
        .collect()
}

/// One database engine's tools and admin statements.
pub trait Engine: Send + Sync + fmt::Debug {
    fn kind(&self) -> EngineKind;

    /// A command writing `database`'s dump to its stdout.
    fn dump_command(&self, conn: &Connection, database: &str) -> ToolCommand;

    /// A command replaying a dump read from its stdin into `database`,
    /// stopping at the first error.
    fn restore_command(&self, conn: &Connection, database: &str) -> ToolCommand;

    /// The commands of a masked restore into `database`.
    fn masked_restore(&self, conn: &Connection, database: &str) -> MaskedRestore;

    fn database_exists<'a>(
        &'a self,
        transport: &'a dyn Transport,
        conn: &'a Connection,
        database: &'a str,
    ) -> BoxFuture<'a, Result<bool>>;

    fn create_database<'a>(
        &'a self,
        transport: &'a dyn Transport,
        conn: &'a Connection,
        database: &'a str,
    ) -> BoxFuture<'a, Result<()>>;

    /// Drops `database` if it exists.
    fn drop_database<'a>(
        &'a self,
        transport: &'a dyn Transport,
        conn: &'a Connection,
        database: &'a str,
    ) -> BoxFuture<'a, Result<()>>;

    /// Logs in and asks the server its version: a real round trip, the
    /// check behind a server's "test connection".
    fn server_version<'a>(
        &'a self,
        transport: &'a dyn Transport,
        conn: &'a Connection,
    ) -> BoxFuture<'a, Result<String>>;

    /// The server's user databases (templates and system schemas left
    /// out) with their sizes, by name.
    fn list_databases<'a>(
        &'a self,
        transport: &'a dyn Transport,
        conn: &'a Connection,
    ) -> BoxFuture<'a, Result<Vec<DatabaseInfo>>>;

    /// Makes `scratch`'s content the content of `target` (created when
    /// missing) in one atomic step, then drops what `target` held before.
    /// When it fails, `target` is as it was.
    fn swap_in<'a>(
        &'a self,
        transport: &'a dyn Transport,
        conn: &'a Connection,
        scratch: &'a str,
        target: &'a str,
    ) -> BoxFuture<'a, Result<()>>;

    /// Every base table of `database` (`schema.table` for PostgreSQL,
    /// `table` for MySQL/MariaDB) with its exact row count, by name: what
    /// a verification compares a restored copy against.
    fn table_counts<'a>(
        &'a self,
        transport: &'a dyn Transport,
        conn: &'a Connection,
        database: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, u64)>>>;
}

/// Parses `name<TAB>count` lines, sorted by name.
fn parse_count_lines(out: &str) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = out
        .lines()
        .filter_map(|l| {
            let (name, n) = l.rsplit_once('\t')?;
            Some((name.to_owned(), n.trim().parse().ok()?))
        })
        .collect();
    v.sort();
    v
}

/// Database names this crate accepts: 1 to 63 ASCII letters, digits, `_`
/// and `-` (what both engines take without surprises, and safe to quote).
pub fn validate_database_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(BackupError::Invalid(format!(
            "database name {name:?}: use 1 to 63 ASCII letters, digits, '_' or '-'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_lines() {
        let d = parse_database_lines("app\t8192\nodd|name\t0\n\nbroken\n");
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "app");
        assert_eq!(d[0].size_bytes, 8192);
        assert_eq!(d[1].name, "odd|name");
    }

    #[test]
    fn database_names() {
        assert!(validate_database_name("orders_2024-prod").is_ok());
        for bad in ["", "a b", "x\"y", "dbname=x", "é", &"a".repeat(64)] {
            assert!(validate_database_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_stay_out_of_arguments_and_debug() {
        let conn = Connection {
            host: "127.0.0.1".into(),
            port: 5432,
            user: "u".into(),
            password: Some("s3cret-pw".into()),
        };
        for kind in [EngineKind::Postgres, EngineKind::MySql] {
            let e = kind.engine();
            let masked = e.masked_restore(&conn, "db");
            for cmd in [
                e.dump_command(&conn, "db"),
                e.restore_command(&conn, "db"),
                masked.replay,
            ] {
                assert!(cmd.args.iter().all(|a| !a.contains("s3cret")), "{cmd:?}");
                assert!(cmd.env.iter().any(|(_, v)| v == "s3cret-pw"));
                assert!(!format!("{cmd:?}").contains("s3cret"));
            }
        }
        assert!(!format!("{conn:?}").contains("s3cret"));
    }
}
