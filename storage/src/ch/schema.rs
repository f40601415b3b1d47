//! A small versioned runner for `migrations/clickhouse/*.sql`: files are
//! applied in order, each recorded in `schema_migrations`. Statements use
//! `IF NOT EXISTS`, so two processes starting at once do no harm.

use super::{server_client, ChConfig};
use crate::Result;

/// The ordered schema files, embedded in the binary.
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "error_events",
        include_str!("../../../migrations/clickhouse/0001_error_events.sql"),
    ),
    (
        2,
        "operations",
        include_str!("../../../migrations/clickhouse/0002_operations.sql"),
    ),
    (
        3,
        "monitoring",
        include_str!("../../../migrations/clickhouse/0003_monitoring.sql"),
    ),
];

/// Splits a file into statements, dropping comments and blank pieces.
pub fn statements(sql: &str) -> Vec<String> {
    let code: Vec<&str> = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect();
    code.join("\n")
        .split(';')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Creates the database and applies every migration not yet recorded.
pub async fn migrate(cfg: &ChConfig) -> Result<Vec<u32>> {
    let server = server_client(cfg);
    server
        .query(&format!("CREATE DATABASE IF NOT EXISTS `{}`", cfg.database))
        .execute()
        .await?;
    let db = super::client(cfg);
    db.query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, applied_at DateTime DEFAULT now())
         ENGINE = MergeTree ORDER BY version",
    )
    .execute()
    .await?;
    let done: Vec<u32> = db
        .query("SELECT DISTINCT version FROM schema_migrations")
        .fetch_all::<u32>()
        .await?;
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        for stmt in statements(sql) {
            db.query(&stmt).execute().await?;
        }
        db.query("INSERT INTO schema_migrations (version, name) VALUES (?, ?)")
            .bind(*version)
            .bind(*name)
            .execute()
            .await?;
        tracing::info!(version, name, "applied clickhouse migration");
        applied.push(*version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements() {
        let s = statements("-- c; d\nCREATE TABLE a (x UInt8) ENGINE = Log;\n\n-- d\nSELECT 1;\n");
        assert_eq!(s.len(), 2);
        assert!(s[0].starts_with("CREATE TABLE a"));
    }
}
