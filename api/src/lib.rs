//! Sluice's API tier, on axum: everything that is not the ingest hot path.
//!
//! [`router`] wires the routes; each group lives in [`routes`]. Callers are
//! authenticated by [`auth`], every failure is an [`error::ApiError`] in the
//! contract's envelope. Analytics read the ClickHouse rollups through short
//! caches (contract section 10); resources read and write Postgres.

pub mod auth;
pub mod error;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, put};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use sluice_storage::keys::KeyDirectory;
use sluice_storage::ratelimit::KeyLimiter;
use sluice_storage::streams::StreamLayout;

/// API settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// How long stats and trends answers are reused (contract: 1 minute).
    pub analytics_cache_ttl: Duration,
    /// Requests per minute per key on analytics routes; 0 = unlimited.
    pub analytics_rate_limit: u32,
    /// Requests per minute per key on the other routes; 0 = unlimited.
    pub general_rate_limit: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            analytics_cache_ttl: Duration::from_secs(60),
            analytics_rate_limit: 100,
            general_rate_limit: 500,
        }
    }
}

/// The one state every handler shares.
#[derive(Clone)]
pub struct ApiState {
    pub pg: sqlx::PgPool,
    pub ch: clickhouse::Client,
    pub redis: deadpool_redis::Pool,
    pub layout: StreamLayout,
    pub keys: KeyDirectory,
    pub metrics: Option<PrometheusHandle>,
    pub analytics_cache: moka::future::Cache<(uuid::Uuid, String), serde_json::Value>,
    pub analytics_limiter: Arc<KeyLimiter>,
    pub general_limiter: Arc<KeyLimiter>,
}

impl ApiState {
    pub fn new(
        cfg: &ApiConfig,
        pg: sqlx::PgPool,
        ch: clickhouse::Client,
        redis: deadpool_redis::Pool,
        layout: StreamLayout,
        keys: KeyDirectory,
        metrics: Option<PrometheusHandle>,
    ) -> Self {
        Self {
            pg,
            ch,
            redis,
            layout,
            keys,
            metrics,
            analytics_cache: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(cfg.analytics_cache_ttl)
                .build(),
            analytics_limiter: Arc::new(KeyLimiter::new(cfg.analytics_rate_limit)),
            general_limiter: Arc::new(KeyLimiter::new(cfg.general_rate_limit)),
        }
    }
}

/// Every API route.
pub fn router(state: ApiState) -> Router {
    use routes::{analytics, errors, health};
    Router::new()
        .route("/health", get(health::health))
        .route("/metrics", get(health::metrics))
        .route("/api/errors", get(errors::list))
        .route(
            "/api/errors/{id}",
            get(errors::get_one).delete(errors::delete),
        )
        .route("/api/errors/{id}/resolve", put(errors::resolve))
        .route("/api/stats", get(analytics::stats))
        .route("/api/analytics/trends", get(analytics::trends))
        .fallback(routes::not_found)
        .layer(axum::middleware::from_fn(routes::trace))
        .with_state(state)
}
