//! Sluice's data layer, shared by every tier.
//!
//! - [`model`]: domain types (levels, error events, error groups).
//! - [`wire`]: the format of an event inside a Redis stream entry.
//! - [`streams`]: stream keys, sharding by tenant and consumer-group set-up.
//! - [`ops`]: in-flight tracked operations in Redis (start, finish, time-outs).
//! - [`keys`]: API key generation, hashing and the in-memory key directory
//!   that authenticates requests without a database round trip.
//! - [`ratelimit`]: per-API-key request quotas (governor).
//! - [`ddl`]: the event trigger and queue Sluice installs in a tracked
//!   PostgreSQL database, and draining that queue.
//! - [`secrets`]: encryption of stored secrets such as connection URLs.
//! - [`tracked`]: attaching, draining and detaching tracked databases.
//! - [`pg`]: Postgres connection, migrations and repositories.
//! - [`ch`]: ClickHouse connection, the versioned schema runner and queries.
//!
//! Errors here carry no HTTP status: each tier maps [`StorageError`] at its edge.

pub mod ch;
pub mod ddl;
pub mod keys;
pub mod model;
pub mod ops;
pub mod pg;
pub mod ratelimit;
pub mod secrets;
pub mod streams;
pub mod tracked;
pub mod wire;

/// Everything that can go wrong talking to a store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("postgres migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("redis: {0}")]
    Redis(#[from] deadpool_redis::redis::RedisError),
    #[error("redis pool: {0}")]
    RedisPool(#[from] deadpool_redis::PoolError),
    #[error("redis pool set-up: {0}")]
    RedisPoolSetup(#[from] deadpool_redis::CreatePoolError),
    #[error("stream entry {id}: {reason}")]
    Wire { id: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Build a Redis pool from a URL (`redis://127.0.0.1:6379`).
pub fn redis_pool(url: &str, max_size: usize) -> Result<deadpool_redis::Pool> {
    let mut cfg = deadpool_redis::Config::from_url(url);
    cfg.pool = Some(deadpool_redis::PoolConfig::new(max_size));
    Ok(cfg.create_pool(Some(deadpool_redis::Runtime::Tokio1))?)
}
