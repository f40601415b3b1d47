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

use axum::routing::{delete, get, post, put};
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
        // Health Monitor: export and retention (issue 12)
        .route("/api/errors/export", get(routes::error_export::export))
        .route(
            "/api/settings/retention",
            get(routes::error_retention::get).put(routes::error_retention::put),
        )
        .route("/api/analytics/performance", get(monitoring::performance))
        .route("/api/monitoring/services", get(monitoring::services))
        .route("/api/monitoring/metrics", get(monitoring::metrics))
        .route("/api/monitoring/uptime", get(monitoring::uptime))
        .route("/api/admin/dead-letters", get(dead_letters::list))
        .route("/api/admin/dead-letters/{id}", delete(dead_letters::drop))
        .route(
            "/api/admin/dead-letters/{id}/replay",
            post(dead_letters::replay),
        )
        // Settings (contract section 6).
        .route(
            "/api/settings/api-keys",
            get(routes::settings::list_keys).post(routes::settings::create_key),
        )
        .route(
            "/api/settings/api-keys/{id}",
            delete(routes::settings::revoke_key),
        )
        .route(
            "/api/settings/api-keys/{id}/rotate",
            post(routes::settings::rotate_key),
        )
        .route("/api/settings/team", get(routes::settings::team))
        .route("/api/settings/team/invite", post(routes::settings::invite))
        .route("/api/settings/team/accept", post(routes::settings::accept))
        .route(
            "/api/settings/integrations",
            get(routes::settings::integrations),
        )
        .route(
            "/api/settings/integrations/{name}",
            put(routes::settings::configure),
        )
        .route(
            "/api/settings/integrations/{name}/test",
            post(routes::settings::test),
        )
        .route(
            "/api/alerts/rules",
            get(routes::alerts::list_rules).post(routes::alerts::create_rule),
        )
        .route(
            "/api/alerts/rules/{id}",
            put(routes::alerts::update_rule).delete(routes::alerts::delete_rule),
        )
        .route(
            "/api/alerts/incidents",
            get(routes::alerts::list_incidents).post(routes::alerts::create_incident),
        )
        .route(
            "/api/alerts/incidents/{id}",
            put(routes::alerts::update_incident),
        );
    let tracking_routes = OpenApiRouter::new()
        .route("/api/v1/tracking/dashboard", get(tracking::dashboard))
        .route("/api/v1/tracking/history", get(tracking::history))
        .route("/api/v1/tracking/health", get(tracking::health))
        .route("/api/v1/tracking/status", get(tracking::status))
        .route(
            "/api/v1/tracking/databases",
            get(tracking::list_databases).post(tracking::attach),
        )
        .route("/api/v1/tracking/databases/{id}", delete(tracking::detach))
        .layer(family_layer(Family::Tracking));
    let backup = OpenApiRouter::new()
        .route("/api/v1/auth/login", post(identity::login))
        .route("/api/v1/auth/register", post(identity::register))
        .route("/api/v1/auth/refresh", post(identity::refresh))
        .route("/api/v1/auth/me", get(identity::me))
        .route("/api/v1/servers", get(servers::list).post(servers::create))
        .route(
            "/api/v1/servers/{id}",
            get(servers::get_one)
                .put(servers::update)
                .delete(servers::delete),
        )
        .route(
            "/api/v1/servers/{id}/test-connection",
            post(servers::test_connection),
        )
        .route("/api/v1/servers/{id}/databases", get(servers::databases))
        .route("/api/v1/backups", get(backups::list).post(backups::create))
        .route(
            "/api/v1/backups/{id}",
            get(backups::get_one).delete(backups::delete),
        )
        .route("/api/v1/backups/{id}/download", post(backups::download))
        .route("/api/v1/backups/{id}/file", get(backups::file))
        .route("/api/v1/backups/{id}/restore", post(backups::restore))
        .route("/api/v1/backups/{id}/verify", post(backups::verify))
        .route("/api/v1/tasks/{task_id}", get(backups::task))
        .route(
            "/api/v1/schedules",
            get(schedules::list).post(schedules::create),
        )
        .route(
            "/api/v1/schedules/{id}",
            get(schedules::get_one)
                .put(schedules::update)
                .delete(schedules::delete),
        )
        .route(
            "/api/v1/retention-policies",
            get(retention::list).post(retention::create),
        )
        .route(
            "/api/v1/retention-policies/{id}",
            get(retention::get_one)
                .put(retention::update)
                .delete(retention::delete),
        )
        .route(
            "/api/v1/retention-policies/{id}/dry-run",
            get(retention::dry_run),
        )
        .route(
            "/api/v1/notifications/channels",
            get(notifications::list).post(notifications::create),
        )
        .route(
            "/api/v1/notifications/channels/{id}",
            get(notifications::get_one)
                .put(notifications::update)
                .delete(notifications::delete),
        )
        .route("/api/v1/notifications/test", post(notifications::test))
        .route(
            "/api/v1/commands",
            get(commands::list).post(commands::create),
        )
        .route(
            "/api/v1/commands/{id}",
            get(commands::get_one)
                .put(commands::update)
                .delete(commands::delete),
        )
        .route("/api/v1/commands/{id}/execute", post(commands::execute))
        .route(
            "/api/v1/commands/{id}/executions",
            get(commands::executions),
        )
        .route("/api/v1/audit/logs", get(audit_log::list))
        .route("/api/v1/audit/export", get(audit_log::export))
        .route("/api/v1/users", get(users::list).post(users::create))
        .route(
            "/api/v1/users/{id}",
            get(users::get_one).put(users::update).delete(users::delete),
        )
        .route("/ws", get(live::connect))
        .layer(family_layer(Family::Backup));
    use routes::orchestrator as orch;
    let orchestrator = OpenApiRouter::new()
        .route(
            "/api/v1/authentication/login",
            post(identity::orchestrator_login),
        )
        .route(
            "/api/v1/databases",
            get(orch::databases::list).post(orch::databases::register),
        )
        .route("/api/v1/databases/{id}", get(orch::databases::get_one))
        .route(
            "/api/v1/migrations",
            get(orch::migrations::list).post(orch::migrations::create),
        )
        .route("/api/v1/migrations/{id}", get(orch::migrations::get_one))
        .route(
            "/api/v1/migrations/{id}/validate",
            post(orch::migrations::validate),
        )
        .route(
            "/api/v1/migrations/{id}/submit-approval",
            post(orch::approvals::submit),
        )
        .route(
            "/api/v1/migrations/{id}/approve",
            post(orch::approvals::approve),
        )
        .route(
            "/api/v1/migrations/{id}/reject",
            post(orch::approvals::reject),
        )
        .route(
            "/api/v1/migrations/{id}/execute",
            post(orch::executions::execute),
        )
        .route(
            "/api/v1/migrations/{id}/executions/{execution_id}",
            get(orch::executions::get_one),
        )
        .route(
            "/api/v1/migrations/{id}/executions/{execution_id}/rollback",
            post(orch::executions::rollback),
        )
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
