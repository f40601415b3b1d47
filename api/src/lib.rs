//! Sluice's API tier, on axum: everything that is not the ingest hot path.
//!
//! [`router`] wires the routes; each group lives in [`routes`]. Callers are
//! authenticated by [`auth`], every failure is an [`error::ApiError`],
//! rendered in the envelope of the contract its route belongs to. Analytics read the ClickHouse rollups through short
//! caches (contract section 10); resources read and write Postgres. Every
//! Postgres and ClickHouse call goes through the store's circuit breaker
//! ([`ApiState::pg`], [`ApiState::ch`]): while a store is known to be down,
//! routes that need it answer 503 at once and the others keep serving.
//! [`live`] is `/ws`, live events of the caller's tenant fed by Redis
//! pub/sub.

pub mod audit;
pub mod auth;
pub mod error;
pub mod export;
pub mod live;
pub mod openapi;
pub mod routes;
pub mod throttle;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use sluice_auth::token::Tokens;
use sluice_storage::breaker::Guarded;
use sluice_storage::durability::Inspector;
use sluice_storage::keys::KeyDirectory;
use sluice_storage::ratelimit::KeyLimiter;
use sluice_storage::secrets::SecretBox;
use sluice_storage::streams::StreamLayout;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{family_layer, Family};

/// API settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// How long stats and trends answers are reused (contract: 1 minute).
    pub analytics_cache_ttl: Duration,
    /// Requests per minute per key on analytics routes; 0 = unlimited.
    pub analytics_rate_limit: u32,
    /// Requests per minute per key on the other routes; 0 = unlimited.
    pub general_rate_limit: u32,
    /// How long a user's "still active, with this role" answer is reused
    /// when checking a token (so revocation takes at most this long).
    pub member_check_ttl: Duration,
    /// Failed-login limits ([`throttle`]).
    pub login_limits: throttle::LoginLimits,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            analytics_cache_ttl: Duration::from_secs(60),
            analytics_rate_limit: 100,
            general_rate_limit: 500,
            member_check_ttl: Duration::from_secs(30),
            login_limits: throttle::LoginLimits::default(),
        }
    }
}

/// Per-caller limits of the Tracking contract's read endpoints.
pub struct TrackingLimits {
    pub dashboard: KeyLimiter,
    pub history: KeyLimiter,
    pub health: KeyLimiter,
    pub status: KeyLimiter,
}

impl TrackingLimits {
    /// The contract's limits (50, 25, 10, 10 a minute), or none.
    pub fn new(enabled: bool) -> Self {
        let l = |n: u32| KeyLimiter::new(if enabled { n } else { 0 });
        Self {
            dashboard: l(50),
            history: l(25),
            health: l(10),
            status: l(10),
        }
    }
}

/// What the API tier is built from. Postgres and ClickHouse are reached
/// only through their circuit breakers ([`sluice_storage::breaker`]), whose
/// probes the caller runs ([`Guarded::watch`]).
pub struct ApiDeps {
    pub pg: Guarded<sqlx::PgPool>,
    pub ch: Guarded<clickhouse::Client>,
    pub redis: deadpool_redis::Pool,
    /// Reports what Redis' settings promise (`/health`).
    pub durability: Inspector,
    pub layout: StreamLayout,
    pub keys: KeyDirectory,
    pub tokens: Arc<Tokens>,
    pub secrets: SecretBox,
    pub metrics: Option<PrometheusHandle>,
    pub tracking_rate_limits: bool,
    /// Fan-out of live events to `/ws` sockets (its [`live::Hub::run`]
    /// task is the caller's to spawn).
    pub live: live::Hub,
    /// Where backups are stored (downloads and deletes read it).
    pub backup_store: sluice_backup::BackupStore,
    /// Signs download URLs (the process's secret).
    pub signing_secret: String,
    /// Sluice's public base URL for links it hands out (download URLs);
    /// the request's `Host` when unset.
    pub public_url: Option<String>,
    /// The job queues' namespace (the deployment's Redis prefix).
    pub job_namespace: String,
    /// Peers whose `X-Forwarded-For` is believed (client addresses).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// The one state every handler shares.
#[derive(Clone)]
pub struct ApiState {
    pub pg: Guarded<sqlx::PgPool>,
    pub ch: Guarded<clickhouse::Client>,
    pub redis: deadpool_redis::Pool,
    pub durability: Inspector,
    pub layout: StreamLayout,
    pub keys: KeyDirectory,
    pub tokens: Arc<Tokens>,
    pub secrets: SecretBox,
    pub metrics: Option<PrometheusHandle>,
    pub analytics_cache: moka::future::Cache<(uuid::Uuid, String), serde_json::Value>,
    pub analytics_limiter: Arc<KeyLimiter>,
    pub general_limiter: Arc<KeyLimiter>,
    pub tracking_limits: Arc<TrackingLimits>,
    pub live: live::Hub,
    pub backup_store: sluice_backup::BackupStore,
    pub signing_secret: Arc<str>,
    pub public_url: Option<String>,
    pub job_namespace: String,
    /// Verified against when a username is unknown, to even out timing.
    pub dummy_hash: String,
    /// The HTTP client notification channels post with (none if it could
    /// not be built; channel tests then answer why).
    pub notify_http: Option<sluice_notify::HttpClient>,
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
    pub login_limits: throttle::LoginLimits,
    /// (user, tenant) → the role an active member holds now, or `None`.
    pub member_cache: moka::future::Cache<(uuid::Uuid, uuid::Uuid), Option<String>>,
    /// Registered databases' measured health, reused for 5 seconds
    /// (orchestrator conventions section 4).
    pub orch_health: moka::future::Cache<i64, serde_json::Value>,
}

impl ApiState {
    pub fn new(cfg: &ApiConfig, d: ApiDeps) -> Self {
        Self {
            pg: d.pg,
            ch: d.ch,
            redis: d.redis,
            durability: d.durability,
            layout: d.layout,
            keys: d.keys,
            tokens: d.tokens,
            secrets: d.secrets,
            metrics: d.metrics,
            analytics_cache: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(cfg.analytics_cache_ttl)
                .build(),
            analytics_limiter: Arc::new(KeyLimiter::new(cfg.analytics_rate_limit)),
            general_limiter: Arc::new(KeyLimiter::new(cfg.general_rate_limit)),
            tracking_limits: Arc::new(TrackingLimits::new(d.tracking_rate_limits)),
            live: d.live,
            backup_store: d.backup_store,
            signing_secret: Arc::from(d.signing_secret),
            public_url: d.public_url,
            job_namespace: d.job_namespace,
            dummy_hash: sluice_auth::password::hash("not-a-real-password").unwrap_or_default(),
            notify_http: sluice_notify::http_client()
                .inspect_err(|e| tracing::error!(error = %e, "notification HTTP client"))
                .ok(),
            trusted_proxies: Arc::from(d.trusted_proxies),
            login_limits: cfg.login_limits,
            member_cache: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cfg.member_check_ttl.max(Duration::from_millis(1)))
                .build(),
            orch_health: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(5))
                .build(),
        }
    }
}

/// Every API route, each group rendering errors in its contract's envelope.
pub fn router(state: ApiState) -> Router {
    use routes::monitoring;
    use routes::{
        analytics, audit_log, backups, commands, dead_letters, errors, health, identity,
        notifications, retention, schedules, servers, tracking, users,
    };
    let health_monitor = OpenApiRouter::new()
        .routes(routes!(health::health))
        .routes(routes!(health::metrics))
        .routes(routes!(errors::list))
        .routes(routes!(errors::get_one, errors::delete))
        .routes(routes!(errors::resolve))
        .routes(routes!(analytics::stats))
        .routes(routes!(analytics::trends))
        // Health Monitor: export and retention (issue 12)
        .routes(routes!(routes::error_export::export))
        .routes(routes!(
            routes::error_retention::get,
            routes::error_retention::put
        ))
        .routes(routes!(monitoring::performance))
        .routes(routes!(monitoring::services))
        .routes(routes!(monitoring::metrics))
        .routes(routes!(monitoring::uptime))
        .routes(routes!(dead_letters::list))
        .routes(routes!(dead_letters::drop))
        .routes(routes!(dead_letters::replay))
        // Settings (contract section 6).
        .routes(routes!(
            routes::settings::list_keys,
            routes::settings::create_key
        ))
        .routes(routes!(routes::settings::revoke_key))
        .routes(routes!(routes::settings::rotate_key))
        .routes(routes!(routes::settings::team))
        .routes(routes!(routes::settings::invite))
        .routes(routes!(routes::settings::accept))
        .routes(routes!(routes::settings::integrations))
        .routes(routes!(routes::settings::configure))
        .routes(routes!(routes::settings::test))
        .routes(routes!(
            routes::alerts::list_rules,
            routes::alerts::create_rule
        ))
        .routes(routes!(
            routes::alerts::update_rule,
            routes::alerts::delete_rule
        ))
        .routes(routes!(
            routes::alerts::list_incidents,
            routes::alerts::create_incident
        ))
        .routes(routes!(routes::alerts::update_incident));
    let tracking_routes = OpenApiRouter::new()
        .routes(routes!(tracking::dashboard))
        .routes(routes!(tracking::history))
        .routes(routes!(tracking::health))
        .routes(routes!(tracking::status))
        .routes(routes!(tracking::list_databases, tracking::attach))
        .routes(routes!(tracking::detach))
        .layer(family_layer(Family::Tracking));
    let backup = OpenApiRouter::new()
        .routes(routes!(identity::login))
        .routes(routes!(identity::register))
        .routes(routes!(identity::refresh))
        .routes(routes!(identity::me))
        .routes(routes!(servers::list, servers::create))
        .routes(routes!(servers::get_one, servers::update, servers::delete))
        .routes(routes!(servers::test_connection))
        .routes(routes!(servers::databases))
        .routes(routes!(backups::list, backups::create))
        .routes(routes!(backups::get_one, backups::delete))
        .routes(routes!(backups::download))
        .routes(routes!(backups::file))
        .routes(routes!(backups::restore))
        .routes(routes!(backups::verify))
        .routes(routes!(backups::task))
        .routes(routes!(schedules::list, schedules::create))
        .routes(routes!(
            schedules::get_one,
            schedules::update,
            schedules::delete
        ))
        .routes(routes!(retention::list, retention::create))
        .routes(routes!(
            retention::get_one,
            retention::update,
            retention::delete
        ))
        .routes(routes!(retention::dry_run))
        .routes(routes!(notifications::list, notifications::create))
        .routes(routes!(
            notifications::get_one,
            notifications::update,
            notifications::delete
        ))
        .routes(routes!(notifications::test))
        .routes(routes!(commands::list, commands::create))
        .routes(routes!(
            commands::get_one,
            commands::update,
            commands::delete
        ))
        .routes(routes!(commands::execute))
        .routes(routes!(commands::executions))
        .routes(routes!(audit_log::list))
        .routes(routes!(audit_log::export))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::get_one, users::update, users::delete))
        .routes(routes!(live::connect))
        .layer(family_layer(Family::Backup));
    use routes::orchestrator as orch;
    let orchestrator = OpenApiRouter::new()
        .routes(routes!(identity::orchestrator_login))
        .routes(routes!(orch::databases::list, orch::databases::register))
        .routes(routes!(orch::databases::get_one))
        .routes(routes!(orch::migrations::list, orch::migrations::create))
        .routes(routes!(orch::migrations::get_one))
        .routes(routes!(orch::migrations::validate))
        .routes(routes!(orch::approvals::submit))
        .routes(routes!(orch::approvals::approve))
        .routes(routes!(orch::approvals::reject))
        .routes(routes!(orch::executions::execute))
        .routes(routes!(orch::executions::get_one))
        .routes(routes!(orch::executions::rollback))
        .layer(family_layer(Family::Orchestrator));
    let (routes, document) = OpenApiRouter::with_openapi(openapi::base())
        .merge(health_monitor)
        .merge(tracking_routes)
        .merge(backup)
        .merge(orchestrator)
        .split_for_parts();
    routes
        .merge(openapi::docs(openapi::finish(document)))
        .fallback(routes::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::record,
        ))
        .layer(axum::middleware::from_fn(routes::trace))
        .with_state(state)
}
