//! Postgres: the pool, migrations, and one repository module per entity.

pub mod alerts;
pub mod api_keys;
pub mod audit;
pub mod backups;
pub mod commands;
pub mod error_groups;
// Health Monitor: stats, export, retention (issue 12)
pub mod error_extra;
pub mod notification_channels;
pub mod orchestrator;
pub mod retention_policies;
pub mod schedules;
pub mod servers;
pub mod settings;
pub mod tasks;
pub mod tenants;
pub mod tracked_databases;
pub mod users;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::time::Duration;

use crate::Result;

pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await?)
}

/// Applies the embedded migrations (serialised by sqlx's advisory lock).
pub async fn migrate(pool: &PgPool) -> Result<()> {
    // Other migrations may be applied to a shared database by builds that
    // have them; they are not this build's to refuse.
    let mut m = sqlx::migrate!("../migrations/postgres");
    m.set_ignore_missing(true);
    m.run(pool).await?;
    Ok(())
}
