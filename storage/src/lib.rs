//! Sluice's data layer, shared by every tier.
//!
//! - [`breaker`]: circuit breakers that answer at once for a store known
//!   to be down, and probe it until it answers again.
//! - [`durability`]: what Redis' persistence settings let an accepted event
//!   survive, and waiting for replicas after a write.
//! - [`model`]: domain types (levels, error events, error groups).
//! - [`wire`]: the format of an event inside a Redis stream entry.
//! - [`streams`]: stream keys, sharding by tenant and consumer-group set-up.
//! - [`ops`]: in-flight tracked operations in Redis (start, finish, time-outs).
//! - [`keys`]: API key generation, hashing and the in-memory key directory
//!   that authenticates requests without a database round trip.
//! - [`live`]: live events for `/ws`: the per-tenant pub/sub publisher
//!   and the pattern subscription the API tier fans out from.
//! - [`limits`]: what the stores can hold (JSON depth, indexed text
//!   lengths, NUL), checked by every writer.
//! - [`ratelimit`]: per-API-key request quotas (governor).
//! - [`ddl`]: the event trigger and queue Sluice installs in a tracked
//!   PostgreSQL database, and draining that queue.
//! - [`secrets`]: encryption of stored secrets such as connection URLs.
//! - [`tracked`]: attaching, draining and detaching tracked databases.
//! - [`failure`]: whether a store failure is transient or the data is
//!   refused for good, and isolating refused items in a batch.
//! - [`dead_letters`]: the streams of refused events; listing, replaying,
//!   dropping them.
//! - [`monitor`]: Sluice's own health: request figures aggregated in
//!   memory, host samples, service probes and their history.
//! - [`pg`]: Postgres connection, migrations and repositories.
//! - [`ch`]: ClickHouse connection, the versioned schema runner and queries.
//!
//! Errors here carry no HTTP status: each tier maps [`StorageError`] at its edge.

pub mod breaker;
pub mod ch;
pub mod ddl;
pub mod dead_letters;
pub mod durability;
pub mod failure;
pub mod keys;
pub mod limits;
pub mod live;
pub mod model;
pub mod monitor;
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

/// How long a Redis command may take before it fails. Longer than any
/// blocking read the workers make (the client's default, 500 ms, is not).
pub const REDIS_RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Build a Redis pool from a URL (`redis://127.0.0.1:6379`).
pub fn redis_pool(url: &str, max_size: usize) -> Result<deadpool_redis::Pool> {
    let conn = deadpool_redis::redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(REDIS_RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(REDIS_RESPONSE_TIMEOUT));
    let manager = deadpool_redis::Manager::new_with_config(url, conn)?;
    deadpool_redis::Pool::builder(manager)
        .max_size(max_size)
        .runtime(deadpool_redis::Runtime::Tokio1)
        .build()
        .map_err(|e| StorageError::Invalid(format!("redis pool: {e}")))
}
