//! Configuration, from the environment (and flags), per DESIGN.md.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use crate::server::request_body::BodyLimits;
use crate::server::watchdog::Timeouts;
use crate::server::ConnLimits;

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "SLUICE_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/sluice"
    )]
    pub database_url: String,
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    #[arg(long, env = "CLICKHOUSE_URL", default_value = "http://127.0.0.1:8123")]
    pub clickhouse_url: String,
    #[arg(long, env = "CLICKHOUSE_DATABASE", default_value = "sluice")]
    pub clickhouse_database: String,
    #[arg(long, env = "CLICKHOUSE_USER")]
    pub clickhouse_user: Option<String>,
    #[arg(long, env = "CLICKHOUSE_PASSWORD", hide_env_values = true)]
    pub clickhouse_password: Option<String>,
    /// Postgres connections per process.
    #[arg(long, env = "SLUICE_PG_POOL_SIZE", default_value_t = 20)]
    pub pg_pool_size: u32,
    /// Prefix of every Redis key Sluice writes.
    #[arg(long, env = "SLUICE_REDIS_PREFIX", default_value = "sluice")]
    pub redis_prefix: String,
    /// Error streams (shards) in Redis.
    #[arg(long, env = "SLUICE_STREAM_SHARDS", default_value_t = 4)]
    pub stream_shards: u16,
    /// Dev mode: allows the built-in dev secret when SLUICE_SECRET_KEY is unset.
    #[arg(long, env = "SLUICE_DEV", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub dev: bool,
    /// An admin user of the default tenant, created (or its password reset) at start-up.
    #[arg(long, env = "SLUICE_ADMIN_USER")]
    pub admin_user: Option<String>,
    #[arg(long, env = "SLUICE_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Access token lifetime in seconds.
    #[arg(long, env = "SLUICE_ACCESS_TOKEN_SECS", default_value_t = 900)]
    pub access_token_secs: i64,
    /// Refresh token lifetime in seconds.
    #[arg(long, env = "SLUICE_REFRESH_TOKEN_SECS", default_value_t = 7 * 24 * 3600)]
    pub refresh_token_secs: i64,
    /// Tracked operations still running after this many seconds are timed out.
    #[arg(long, env = "SLUICE_OPERATION_TIMEOUT_SECS", default_value_t = 6 * 3600)]
    pub operation_timeout_secs: u64,
    /// The Tracking contract's per-endpoint rate limits (100/50/25/10 a minute).
    #[arg(long, env = "SLUICE_TRACKING_RATE_LIMITS", default_value_t = true, action = clap::ArgAction::Set)]
    pub tracking_rate_limits: bool,
    /// Signs tokens and encrypts stored secrets; required outside dev mode.
    #[arg(long, env = "SLUICE_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// An owner API key for the default tenant, created at start-up.
    #[arg(long, env = "SLUICE_BOOTSTRAP_API_KEY", hide_env_values = true)]
    pub bootstrap_api_key: Option<String>,
    /// Slug of the tenant created at start-up.
    #[arg(long, env = "SLUICE_DEFAULT_TENANT", default_value = "default")]
    pub default_tenant: String,
    /// Ingest requests per minute per API key (0 = unlimited).
    #[arg(long, env = "SLUICE_INGEST_RATE_LIMIT", default_value_t = 1000)]
    pub ingest_rate_limit: u32,
    /// API requests per minute per key on analytics routes (0 = unlimited).
    #[arg(long, env = "SLUICE_ANALYTICS_RATE_LIMIT", default_value_t = 100)]
    pub analytics_rate_limit: u32,
    /// API requests per minute per key on other routes (0 = unlimited).
    #[arg(long, env = "SLUICE_API_RATE_LIMIT", default_value_t = 500)]
    pub api_rate_limit: u32,
    /// How long (ms) a user's "still active, with this role" check is
    /// reused: a deactivated or deleted user's tokens stop within this.
    #[arg(long, env = "SLUICE_MEMBER_CHECK_MS", default_value_t = 30_000)]
    pub member_check_ms: u64,
    /// Failed logins per username in the window before refusing (0 = no limit).
    #[arg(long, env = "SLUICE_LOGIN_FAILURES_PER_USER", default_value_t = 5)]
    pub login_failures_per_user: u32,
    /// Failed logins per client address in the window before refusing (0 = no limit).
    #[arg(long, env = "SLUICE_LOGIN_FAILURES_PER_IP", default_value_t = 20)]
    pub login_failures_per_ip: u32,
    /// The failed-login window, in seconds.
    #[arg(long, env = "SLUICE_LOGIN_WINDOW_SECS", default_value_t = 900)]
    pub login_window_secs: u64,
    /// Scrub PII from events before storing them.
    #[arg(long, env = "SLUICE_PII_SCRUB", default_value_t = true, action = clap::ArgAction::Set)]
    pub pii_scrub: bool,
    /// Extra context keys to redact, comma-separated.
    #[arg(long, env = "SLUICE_PII_EXTRA_KEYS", value_delimiter = ',')]
    pub pii_extra_keys: Vec<String>,
    /// Proxies whose X-Forwarded-For is believed (CIDRs, comma-separated).
    #[arg(long, env = "SLUICE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Request bytes (as received and as decompressed) all ingest requests
    /// together may hold, in MiB; past it ingest answers 503.
    #[arg(long, env = "SLUICE_INGEST_INFLIGHT_MB", default_value_t = 64)]
    pub ingest_inflight_mb: usize,
    /// Ingest requests between their body and their answer at once; more
    /// wait up to 2 s for a turn, then are answered 503.
    #[arg(long, env = "SLUICE_INGEST_CONCURRENCY", default_value_t = 64)]
    pub ingest_concurrency: usize,
    /// Open connections a listener serves at once; more wait in the
    /// kernel's accept queue.
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Connections one client address (an IPv6 /64) may hold open; more are
    /// refused at once. Addresses in SLUICE_TRUSTED_PROXIES are exempt;
    /// 0 = no limit.
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 512)]
    pub max_connections_per_client: usize,
    /// `/ws`: live events queued per socket; a client that lets more pile
    /// up is dropped as too slow.
    #[arg(long, env = "SLUICE_WS_BUFFER", default_value_t = 256)]
    pub ws_buffer: usize,
    /// `/ws`: seconds between the server's pings.
    #[arg(long, env = "SLUICE_WS_PING_SECS", default_value_t = 20)]
    pub ws_ping_secs: u64,
    /// `/ws`: seconds a client has to answer a ping before it is closed.
    #[arg(long, env = "SLUICE_WS_PONG_TIMEOUT_SECS", default_value_t = 10)]
    pub ws_pong_timeout_secs: u64,
    /// `/ws`: seconds writing one frame may take before the client counts as slow.
    #[arg(long, env = "SLUICE_WS_SEND_TIMEOUT_SECS", default_value_t = 10)]
    pub ws_send_timeout_secs: u64,
    /// `/ws`: sockets one tenant may hold on one API process.
    #[arg(long, env = "SLUICE_WS_MAX_PER_TENANT", default_value_t = 100)]
    pub ws_max_per_tenant: usize,
    /// `/ws`: sockets one API process holds at most.
    #[arg(long, env = "SLUICE_WS_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub ws_max_connections: usize,
    /// Seconds a new connection has to send its first request's headers,
    /// and a later request its headers from their first byte; 0 = no limit.
    #[arg(long, env = "SLUICE_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Seconds a kept-alive connection with no request in flight stays
    /// open; 0 = no limit.
    #[arg(long, env = "SLUICE_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub idle_timeout_secs: u64,
    /// Seconds a request body may take, plus one per
    /// SLUICE_BODY_MIN_RATE bytes received; slower ones get 408. 0 = no limit.
    #[arg(long, env = "SLUICE_BODY_TIMEOUT_SECS", default_value_t = 10)]
    pub body_timeout_secs: u64,
    /// Bytes per second a body must keep up after SLUICE_BODY_TIMEOUT_SECS
    /// (0: the timeout alone bounds every body).
    #[arg(long, env = "SLUICE_BODY_MIN_RATE", default_value_t = 1024)]
    pub body_min_rate: u64,
    /// An unread request body left after an early answer (a 413) is read
    /// and discarded up to this many MiB, so the client gets the answer.
    #[arg(long, env = "SLUICE_LINGER_MB", default_value_t = 64)]
    pub linger_mb: u64,
    /// ... and for at most this many seconds.
    #[arg(long, env = "SLUICE_LINGER_SECS", default_value_t = 10)]
    pub linger_secs: u64,
    /// Unprocessed events in the streams above which ingest answers 503.
    #[arg(long, env = "SLUICE_MAX_BACKLOG", default_value_t = 5_000_000)]
    pub max_backlog: u64,
    /// Redis replicas that must acknowledge each write (`WAIT`) before
    /// ingest answers 2xx; 0 answers once the primary has it.
    #[arg(long, env = "SLUICE_REDIS_MIN_REPLICAS", default_value_t = 0)]
    pub redis_min_replicas: u32,
    /// How long ingest waits for those replicas (ms) before answering 503.
    #[arg(long, env = "SLUICE_REDIS_REPLICA_TIMEOUT_MS", default_value_t = 1000)]
    pub redis_replica_timeout_ms: u64,
    /// Connection-level failures in a row that open a store's circuit
    /// breaker in the API tier (requests needing it then get 503 at once).
    #[arg(long, env = "SLUICE_BREAKER_FAILURES", default_value_t = 3)]
    pub breaker_failures: u32,
    /// How often a store whose circuit is open is probed (ms).
    #[arg(long, env = "SLUICE_BREAKER_PROBE_MS", default_value_t = 1000)]
    pub breaker_probe_ms: u64,
    /// Seconds stats and trends answers are cached.
    #[arg(long, env = "SLUICE_ANALYTICS_CACHE_SECS", default_value_t = 60)]
    pub analytics_cache_secs: u64,
    /// How often the API key directory reloads (milliseconds).
    #[arg(long, env = "SLUICE_KEY_REFRESH_MS", default_value_t = 2000)]
    pub key_refresh_ms: u64,
    /// Consumers of the error streams in a worker process.
    #[arg(long, env = "SLUICE_WORKER_CONSUMERS", default_value_t = 1)]
    pub worker_consumers: usize,

    /// This worker's name in the consumer groups, stable across restarts
    /// (e.g. a pod name): a restarted worker then takes back at once what
    /// it had read but not stored, instead of waiting for the reclaim.
    /// Unique per live process; unset, a random name per start.
    #[arg(long, env = "SLUICE_WORKER_NAME")]
    pub worker_name: Option<String>,
    /// Events a worker stores per batch at most.
    #[arg(long, env = "SLUICE_WORKER_BATCH", default_value_t = 50_000)]
    pub worker_batch: usize,
    /// How long a worker batch waits for more events after its first (ms):
    /// few large ClickHouse inserts instead of many small ones.
    #[arg(long, env = "SLUICE_WORKER_LINGER_MS", default_value_t = 500)]
    pub worker_linger_ms: u64,
    /// Entries a worker asks of each stream per read.
    #[arg(long, env = "SLUICE_WORKER_READ_COUNT", default_value_t = 16)]
    pub worker_read_count: usize,
    /// Pending entries idle this long are reclaimed from dead consumers (ms).
    #[arg(long, env = "SLUICE_WORKER_RECLAIM_IDLE_MS", default_value_t = 30_000)]
    pub worker_reclaim_idle_ms: u64,
    /// Entries each dead-letter stream keeps (about; older ones are
    /// trimmed and counted).
    #[arg(long, env = "SLUICE_DEAD_LETTER_MAX", default_value_t = 100_000)]
    pub dead_letter_max: usize,
    /// Test hook: abort right after the first ClickHouse insert.
    #[arg(
        long,
        env = "SLUICE_WORKER_CRASH_AFTER_CLICKHOUSE",
        default_value_t = false,
        hide = true
    )]
    pub worker_crash_after_clickhouse: bool,
    /// Log format: text or json.
    #[arg(long, env = "SLUICE_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Sluice's own files (the default backup store among them).
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = ".sluice")]
    pub data_dir: String,
    /// Where backups are stored: a directory (or `file:///dir`); default
    /// `backups` under the data directory.
    #[arg(long, env = "SLUICE_BACKUP_STORE")]
    pub backup_store: Option<String>,
    /// Id of the master key that encrypts new backups (kept in each
    /// backup's header, so rotated keys still decrypt old backups).
    #[arg(long, env = "SLUICE_BACKUP_KEY_ID", default_value = "k1")]
    pub backup_key_id: String,
    /// The master key's secret; `SLUICE_SECRET_KEY` when unset.
    #[arg(long, env = "SLUICE_BACKUP_MASTER_KEY", hide_env_values = true)]
    pub backup_master_key: Option<String>,
    /// Earlier master keys, `id=secret` separated by commas, for restoring
    /// backups taken before a rotation.
    #[arg(long, env = "SLUICE_BACKUP_PREVIOUS_KEYS", hide_env_values = true)]
    pub backup_previous_keys: Option<String>,
    /// Sluice's public base URL, for links it hands out (download URLs);
    /// the request's Host when unset.
    #[arg(long, env = "SLUICE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Backup jobs a worker process runs at once.
    #[arg(long, env = "SLUICE_BACKUP_CONCURRENCY", default_value_t = 2)]
    pub backup_concurrency: usize,
    /// Restore and verification jobs a worker process runs at once.
    #[arg(long, env = "SLUICE_RESTORE_CONCURRENCY", default_value_t = 2)]
    pub restore_concurrency: usize,
    /// The longest one attempt of a backup, restore or verification may run.
    #[arg(long, env = "SLUICE_JOB_TIMEOUT_SECS", default_value_t = 6 * 3600)]
    pub job_timeout_secs: u64,
    /// Further attempts of a job after a transient failure.
    #[arg(long, env = "SLUICE_JOB_RETRIES", default_value_t = 3)]
    pub job_retries: u32,
    /// Seconds between a job worker's heartbeats; after three missed, its
    /// jobs are taken up by another worker.
    #[arg(long, env = "SLUICE_JOB_HEARTBEAT_SECS", default_value_t = 10)]
    pub job_heartbeat_secs: u64,
    /// Saved-command jobs a worker process runs at once.
    #[arg(long, env = "SLUICE_COMMAND_CONCURRENCY", default_value_t = 4)]
    pub command_concurrency: usize,
    /// The longest a saved command may run; then it is stopped and fails.
    #[arg(long, env = "SLUICE_COMMAND_TIMEOUT_SECS", default_value_t = 600)]
    pub command_timeout_secs: u64,
    /// The most of a command's stdout, and of its stderr, kept (bytes).
    #[arg(long, env = "SLUICE_COMMAND_OUTPUT_BYTES", default_value_t = 1 << 20)]
    pub command_output_bytes: usize,
    /// How often each server's database is checked in the background.
    #[arg(long, env = "SLUICE_HEALTH_CHECK_SECS", default_value_t = 60)]
    pub health_check_secs: u64,
    /// Milliseconds between the scheduler's looks for due schedules.
    #[arg(long, env = "SLUICE_SCHEDULE_TICK_MS", default_value_t = 5000)]
    pub schedule_tick_ms: u64,
    /// Milliseconds between the alert engine's evaluations of every
    /// enabled alert rule.
    #[arg(long, env = "SLUICE_ALERT_EVAL_MS", default_value_t = 30000)]
    pub alert_eval_ms: u64,
    /// Seconds between retention sweeps of each scheduled database (one
    /// also follows each scheduled backup).
    #[arg(long, env = "SLUICE_RETENTION_SWEEP_SECS", default_value_t = 3600)]
    pub retention_sweep_secs: u64,
    /// Seconds between samples of the host and of Sluice's request figures
    /// (monitoring; every process samples).
    #[arg(long, env = "SLUICE_MONITOR_SAMPLE_SECS", default_value_t = 5)]
    pub monitor_sample_secs: u64,
    /// Seconds between probes of Sluice's own services (API processes).
    #[arg(long, env = "SLUICE_MONITOR_PROBE_SECS", default_value_t = 10)]
    pub monitor_probe_secs: u64,
    /// Days of monitoring history (host samples and service probes in
    /// ClickHouse) kept; the workers' hourly sweep drops older days.
    #[arg(long, env = "SLUICE_MONITOR_KEEP_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub monitor_keep_days: u32,
}

impl Config {
    pub fn key_refresh(&self) -> Duration {
        Duration::from_millis(self.key_refresh_ms.max(100))
    }

    /// The limits of `/ws`.
    pub fn live(&self) -> sluice_api::live::LiveConfig {
        sluice_api::live::LiveConfig {
            buffer: self.ws_buffer.max(1),
            ping_interval: Duration::from_secs(self.ws_ping_secs.max(1)),
            pong_timeout: Duration::from_secs(self.ws_pong_timeout_secs.max(1)),
            send_timeout: Duration::from_secs(self.ws_send_timeout_secs.max(1)),
            max_per_tenant: self.ws_max_per_tenant.max(1),
            max_total: self.ws_max_connections.max(1),
        }
    }

    /// The listener's connection limits and timeouts.
    pub fn conn_limits(&self) -> ConnLimits {
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        ConnLimits {
            max_connections: self.max_connections,
            per_client: self.max_connections_per_client,
            trusted_proxies: self.trusted_proxies.clone(),
            timeouts: Timeouts {
                header: secs(self.header_timeout_secs),
                idle: secs(self.idle_timeout_secs),
            },
            body: BodyLimits {
                timeout: secs(self.body_timeout_secs),
                min_rate: self.body_min_rate,
                linger_bytes: self.linger_mb.saturating_mul(1 << 20),
                linger_time: Duration::from_secs(self.linger_secs),
            },
        }
    }

    /// The wait for replicas after ingest's writes. The timeout stays
    /// under the sink's 5 s Redis timeout.
    pub fn replica_wait(&self) -> sluice_storage::durability::ReplicaWait {
        sluice_storage::durability::ReplicaWait {
            replicas: self.redis_min_replicas,
            timeout: Duration::from_millis(self.redis_replica_timeout_ms.clamp(1, 4000)),
        }
    }

    pub fn breaker(&self) -> sluice_storage::breaker::BreakerConfig {
        sluice_storage::breaker::BreakerConfig {
            failure_threshold: self.breaker_failures.max(1),
            probe_interval: Duration::from_millis(self.breaker_probe_ms.max(50)),
            probe_timeout: Duration::from_secs(2),
        }
    }

    /// Defaults for everything, as if no variable were set.
    pub fn from_env() -> Self {
        use clap::{FromArgMatches, Parser};
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        let matches = <Wrapper as clap::CommandFactory>::command().get_matches_from(["sluice"]);
        Wrapper::from_arg_matches(&matches)
            .map(|w| w.config)
            .unwrap_or_else(|e| e.exit())
    }
}
