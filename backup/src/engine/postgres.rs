//! PostgreSQL through `pg_dump`, `pg_restore` and `psql`.
//!
//! Dumps are pg_dump's custom format (`--format=custom`), written to stdout
//! and streamed like any other dump. `--compress=0` leaves the archive's
//! data blocks uncompressed, because Sluice compresses (and encrypts) the
//! whole stream afterwards. Ownership and privileges are left out
//! (`--no-owner --no-privileges`), so a dump restores on a server that
//! lacks the source's roles. Written to a pipe, the archive has no data
//! offsets in its table of contents and its data blocks come in the
//! order the restore needs them, which is what lets `pg_restore` read it
//! from a pipe in one sequential pass.
//!
//! A restore replays into a scratch database, then `swap_in` renames the
//! target away and the scratch database to the target's name in one
//! transaction (`ALTER DATABASE … RENAME`), and drops the old one.
//! - Without masking, the archive streams into `pg_restore --dbname=<scratch>
//!   --single-transaction --exit-on-error --no-owner --no-privileges` on
//!   its stdin.
//! - With masking, it streams into `pg_restore --file=-`, which turns the
//!   archive into an SQL script on its stdout (table data as
//!   `COPY … FROM stdin;` blocks, one row a line), through the masking
//!   filter ([`crate::mask::postgres`]) in this process, and into
//!   `psql --single-transaction -v ON_ERROR_STOP=1` on the scratch
//!   database. All three run at once over pipes: nothing is held whole.

use futures::future::BoxFuture;
use futures::FutureExt;

use super::{
    parse_count_lines, parse_database_lines, Connection, DatabaseInfo, Engine, EngineKind,
    MaskedRestore,
};
use crate::error::Result;
use crate::mask::Dialect;
use crate::transport::{run_capture, ToolCommand, Transport};

/// The database admin statements connect to.
const MAINTENANCE_DB: &str = "postgres";

#[derive(Debug, Clone, Copy, Default)]
pub struct Postgres;

fn base(program: &str, conn: &Connection) -> ToolCommand {
    let mut cmd = ToolCommand::new(program)
        .arg("--host")
        .arg(&conn.host)
        .arg("--port")
        .arg(conn.port.to_string())
        .arg("--username")
        .arg(&conn.user)
        .arg("--no-password")
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGAPPNAME", "sluice-backup");
    if let Some(pw) = &conn.password {
        cmd = cmd.env("PGPASSWORD", pw.clone());
    }
    cmd
}

fn psql(conn: &Connection, database: &str) -> ToolCommand {
    base("psql", conn)
        .arg("--no-psqlrc")
        .arg("--quiet")
        .arg("--set")
        .arg("ON_ERROR_STOP=1")
        .arg("--dbname")
        .arg(database)
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

async fn admin(transport: &dyn Transport, conn: &Connection, sql: &str) -> Result<String> {
    let cmd = psql(conn, MAINTENANCE_DB)
        .arg("--no-align")
        .arg("--tuples-only")
        .arg("--command")
        .arg(sql);
    run_capture(transport, &cmd).await
}

impl Engine for Postgres {
    fn kind(&self) -> EngineKind {
        EngineKind::Postgres
    }

    fn dump_command(&self, conn: &Connection, database: &str) -> ToolCommand {
        base("pg_dump", conn)
            .arg("--format=custom")
            .arg("--compress=0")
            .arg("--no-owner")
            .arg("--no-privileges")
            .arg("--encoding=UTF8")
            .arg("--dbname")
            .arg(database)
            .with_stdout()
    }

    fn restore_command(&self, conn: &Connection, database: &str) -> ToolCommand {
        base("pg_restore", conn)
            .arg("--dbname")
            .arg(database)
            .arg("--single-transaction")
            .arg("--exit-on-error")
            .arg("--no-owner")
            .arg("--no-privileges")
            .with_stdin()
    }

    fn masked_restore(&self, conn: &Connection, database: &str) -> MaskedRestore {
        MaskedRestore {
            // No connection: pg_restore only converts the archive to SQL.
            script: Some(
                ToolCommand::new("pg_restore")
                    .arg("--file=-")
                    .arg("--no-owner")
                    .arg("--no-privileges")
                    .with_stdin()
                    .with_stdout(),
            ),
            replay: psql(conn, database)
                .arg("--single-transaction")
                .arg("--file=-")
                .with_stdin(),
            dialect: Dialect::PostgresScript,
        }
    }

    fn server_version<'a>(
        &'a self,
        transport: &'a dyn Transport,
        conn: &'a Connection,
    ) -> BoxFuture<'a, Result<String>> {
        async move {
            let v = admin(transport, conn, "SHOW server_version").await?;
            Ok(format!("PostgreSQL {}", v.trim()))
        }
        .boxed()
    }

    fn list_databases<'a>(
        &'a self,
        transport: &'a dyn Transport,
        conn: &'a Connection,
    ) -> BoxFuture<'a, Result<Vec<DatabaseInfo>>> {
        async move {
            let cmd = psql(conn, MAINTENANCE_DB)
                .arg("--no-align")
                .arg("--tuples-only")
                .arg("--field-separator=\t")
                .arg("--command")
                .arg(
                    "SELECT datname, CASE WHEN has_database_privilege(oid, 'CONNECT') \
                     THEN pg_database_size(oid) ELSE 0 END FROM pg_database \
                     WHERE NOT datistemplate ORDER BY datname",
                );
            Ok(parse_database_lines(&run_capture(transport, &cmd).await?))
        }
        .boxed()
    }

    fn database_exists<'a>(
        &'a self,
        transport: &'a dyn Transport,
        conn: &'a Connection,
        database: &'a str,
    ) -> BoxFuture<'a, Result<bool>> {
        async move {
            let sql = format!(
                "SELECT 1 FROM pg_database WHERE datname = {}",
                literal(database)
            );
            Ok(admin(transport, conn, &sql).await?.trim() == "1")
        }
        .boxed()
    }

    fn create_database<'a>(
        &'a self,
        transport: &'a dyn Transport,
        conn: &'a Connection,
        database: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        async move {
            let sql = format!("CREATE DATABASE {} TEMPLATE template0", ident(database));
            admin(transport, conn, &sql).await.map(drop)
        }
        .boxed()
    }

    fn drop_database<'a>(
        &'a self,
        transport: &'a dyn Transport,
        conn: &'a Connection,
        database: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        async move {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(database));
            admin(transport, conn, &sql).await.map(drop)
        }
        .boxed()
    }

    fn swap_in<'a>(
        &'a self,
        transport: &'a dyn Transport,
        conn: &'a Connection,
        scratch: &'a str,
        target: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        async move {
            if !self.database_exists(transport, conn, target).await? {
                let sql = format!(
                    "ALTER DATABASE {} RENAME TO {}",
                    ident(scratch),
                    ident(target)
                );
                return admin(transport, conn, &sql).await.map(drop);
            }
            let old = crate::restore::side_name("sluice_old");
            // One transaction: both renames happen or neither. Renaming the
            // target fails while sessions are connected to it; the target is
            // then unchanged and the error says so.
            let sql = format!(
                "BEGIN; ALTER DATABASE {t} RENAME TO {o}; ALTER DATABASE {s} RENAME TO {t}; COMMIT;",
                t = ident(target),
                o = ident(&old),
                s = ident(scratch)
            );
            admin(transport, conn, &sql).await?;
            if let Err(e) = self.drop_database(transport, conn, &old).await {
                tracing::warn!(database = %old, error = %e, "restore swapped in, but the previous database could not be dropped");
            }
            Ok(())
        }
        .boxed()
    }

    fn table_counts<'a>(
        &'a self,
        transport: &'a dyn Transport,
        conn: &'a Connection,
        database: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, u64)>>> {
        async move {
            // One statement, one snapshot: each table counted exactly
            // through query_to_xml.
            let cmd = psql(conn, database)
                .arg("--no-align")
                .arg("--tuples-only")
                .arg("--field-separator=\t")
                .arg("--command")
                .arg(
                    "SELECT n.nspname || '.' || c.relname, \
                     (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', \
                     n.nspname, c.relname), false, true, '')))[1]::text \
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
                     AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                     AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
                );
            Ok(parse_count_lines(&run_capture(transport, &cmd).await?))
        }
        .boxed()
    }
}
