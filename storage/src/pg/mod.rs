//! Postgres: the pool, migrations, and one repository module per entity.

pub mod alerts;
pub mod api_keys;
pub mod audit;
pub mod backups;
pub mod commands;
pub mod error_groups;
pub mod notification_channels;
pub mod orchestrator;
pub mod retention_policies;
pub mod schedules;
pub mod servers;
pub mod tasks;
pub mod tenants;
pub mod tracked_databases;
pub mod users;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::time::Duration;

use crate::Result;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await?)
}

/// Applies the embedded migrations (serialised by sqlx's advisory lock).
pub async fn migrate(pool: &PgPool) -> Result<()> {
    MIGRATOR.run(pool).await?;
    Ok(())
}
