//! MySQL and MariaDB through `mariadb-dump` and `mariadb`.
//!
//! Dumps are `mariadb-dump --single-transaction` (a consistent snapshot of
//! InnoDB tables without locking them), binary columns as hex literals
//! (`--hex-blob`) so the SQL text stays valid whatever the bytes, in
//! utf8mb4. The password goes in `MYSQL_PWD`. The dump is SQL text, so a
//! masked restore filters it on its way into `mariadb` (see
//! [`crate::mask::mysql`]).
//!
//! MariaDB has no `RENAME DATABASE`. A restore replays into a scratch
//! database; `swap_in` then moves the target's tables into a holding
//! database and the scratch database's tables into the target with one
//! `RENAME TABLE` statement, which MariaDB applies atomically (all or
//! none), and drops the holding database afterwards. Views, triggers,
//! stored routines and events cannot move between databases that way, so a
//! restore that would need them fails before the swap and leaves the target
//! as it was (said plainly in the error).

use futures::future::BoxFuture;
use futures::FutureExt;

use super::{parse_database_lines, Connection, DatabaseInfo, Engine, EngineKind, MaskedRestore};
use crate::error::{BackupError, Result};
use crate::mask::Dialect;
use crate::transport::{run_capture, ToolCommand, Transport};

#[derive(Debug, Clone, Copy, Default)]
pub struct MySql;

fn base(program: &str, conn: &Connection) -> ToolCommand {
    let mut cmd = ToolCommand::new(program)
        .arg("--host")
        .arg(&conn.host)
        .arg("--port")
        .arg(conn.port.to_string())
        .arg("--user")
        .arg(&conn.user)
        .arg("--default-character-set=utf8mb4");
    if program == "mariadb" {
        // (mariadb-dump has no such option)
        cmd = cmd.arg("--connect-timeout=10");
    }
    if conn.host != "localhost" {
        cmd = cmd.arg("--protocol=TCP");
    }
    if let Some(pw) = &conn.password {
        cmd = cmd.env("MYSQL_PWD", pw.clone());
    }
    cmd
}

fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

async fn admin(transport: &dyn Transport, conn: &Connection, sql: &str) -> Result<String> {
    let cmd = base("mariadb", conn)
        .arg("--batch")
        .arg("--skip-column-names")
        .arg("--execute")
        .arg(sql);
    run_capture(transport, &cmd).await
}

/// Tables of `db` (base tables and sequences), and whether it holds any
/// view, trigger, routine or event (which cannot be moved by `RENAME TABLE`).
async fn contents(
    transport: &dyn Transport,
    conn: &Connection,
    db: &str,
) -> Result<(Vec<String>, bool)> {
    let l = literal(db);
    let sql = format!(
        "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = {l}; \
         SELECT CONCAT('#', (SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {l}) \
           + (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {l}) \
           + (SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {l}))"
    );
    let out = admin(transport, conn, &sql).await?;
    let mut tables = Vec::new();
    let mut other = false;
    for line in out.lines() {
        if let Some(n) = line.strip_prefix('#') {
            other |= n.trim() != "0";
        } else if let Some((name, kind)) = line.split_once('\t') {
            if kind == "VIEW" {
                other = true;
            } else {
                tables.push(name.to_owned());
            }
        }
    }
    Ok((tables, other))
}

impl Engine for MySql {
    fn kind(&self) -> EngineKind {
        EngineKind::MySql
    }

    fn dump_command(&self, conn: &Connection, database: &str) -> ToolCommand {
        base("mariadb-dump", conn)
            .arg("--single-transaction")
            .arg("--quick")
            .arg("--hex-blob")
            .arg("--skip-lock-tables")
            .arg("--no-tablespaces")
            .arg(database)
            .with_stdout()
    }

    fn restore_command(&self, conn: &Connection, database: &str) -> ToolCommand {
        base("mariadb", conn)
            .arg("--batch")
            .arg("--database")
            .arg(database)
            .with_stdin()
    }

    fn masked_restore(&self, conn: &Connection, database: &str) -> MaskedRestore {
        MaskedRestore {
            script: None,
            replay: self.restore_command(conn, database),
            dialect: Dialect::MariaDbDump,
        }
    }

    fn server_version<'a>(
        &'a self,
        transport: &'a dyn Transport,
        conn: &'a Connection,
    ) -> BoxFuture<'a, Result<String>> {
        async move {
            let v = admin(transport, conn, "SELECT VERSION()").await?;
            let v = v.trim();
            Ok(if v.to_ascii_lowercase().contains("mariadb") {
                format!("MariaDB {v}")
            } else {
                format!("MySQL {v}")
            })
        }
        .boxed()
    }

    fn list_databases<'a>(
        &'a self,
        transport: &'a dyn Transport,
        conn: &'a Connection,
    ) -> BoxFuture<'a, Result<Vec<DatabaseInfo>>> {
        async move {
            let sql = "SELECT s.SCHEMA_NAME, COALESCE(SUM(t.DATA_LENGTH + t.INDEX_LENGTH), 0) \
                 FROM information_schema.SCHEMATA s \
                 LEFT JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = s.SCHEMA_NAME \
                 WHERE s.SCHEMA_NAME NOT IN ('information_schema', 'performance_schema', 'mysql', 'sys') \
                 GROUP BY s.SCHEMA_NAME ORDER BY s.SCHEMA_NAME";
            Ok(parse_database_lines(&admin(transport, conn, sql).await?))
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
                "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}",
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
            let sql = format!("CREATE DATABASE {} CHARACTER SET utf8mb4", ident(database));
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
            let sql = format!("DROP DATABASE IF EXISTS {}", ident(database));
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
            let (new_tables, new_other) = contents(transport, conn, scratch).await?;
            let exists = self.database_exists(transport, conn, target).await?;
            let (old_tables, old_other) = if exists {
                contents(transport, conn, target).await?
            } else {
                (Vec::new(), false)
            };
            if new_other || old_other {
                return Err(BackupError::Unsupported(
                    "restoring a MariaDB/MySQL database with views, triggers, stored routines or events; the target was left unchanged".into(),
                ));
            }
            let holding = crate::restore::side_name("sluice_old");
            let mut renames = Vec::new();
            if !old_tables.is_empty() {
                self.create_database(transport, conn, &holding).await?;
                for t in &old_tables {
                    renames.push(format!(
                        "{}.{} TO {}.{}",
                        ident(target),
                        ident(t),
                        ident(&holding),
                        ident(t)
                    ));
                }
            }
            for t in &new_tables {
                renames.push(format!(
                    "{}.{} TO {}.{}",
                    ident(scratch),
                    ident(t),
                    ident(target),
                    ident(t)
                ));
            }
            if !exists {
                self.create_database(transport, conn, target).await?;
            }
            if !renames.is_empty() {
                let sql = format!("RENAME TABLE {}", renames.join(", "));
                if let Err(e) = admin(transport, conn, &sql).await {
                    if !exists {
                        let _ = self.drop_database(transport, conn, target).await;
                    }
                    let _ = self.drop_database(transport, conn, &holding).await;
                    return Err(e);
                }
            }
            for db in [holding.as_str(), scratch] {
                if let Err(e) = self.drop_database(transport, conn, db).await {
                    tracing::warn!(database = %db, error = %e, "restore swapped in, but a leftover database could not be dropped");
                }
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
            let (tables, _) = contents(transport, conn, database).await?;
            if tables.is_empty() {
                return Ok(Vec::new());
            }
            let db = ident(database);
            let sql = tables
                .iter()
                .map(|t| format!("SELECT {}, COUNT(*) FROM {db}.{}", literal(t), ident(t)))
                .collect::<Vec<_>>()
                .join(" UNION ALL ");
            Ok(super::parse_count_lines(
                &admin(transport, conn, &sql).await?,
            ))
        }
        .boxed()
    }
}
