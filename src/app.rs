//! Assembling Sluice: stores, migrations, start-up identity, then the
//! tiers a mode runs, on one listener.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sluice_auth::token::Tokens;
use sluice_storage::breaker::{Breaker, Guarded, Store};
use sluice_storage::ch::{self, ChConfig};
use sluice_storage::durability::{Inspector, Survival};
use sluice_storage::keys::KeyDirectory;
use sluice_storage::pg::{self, api_keys, tenants, users};
use sluice_storage::secrets::SecretBox;
use sluice_storage::streams::StreamLayout;
use sqlx::migrate::MigrateDatabase;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::server::{self, Dispatch};

/// Which tiers run in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    pub ingest: bool,
    pub api: bool,
    pub worker: bool,
}

impl Mode {
    pub const ALL: Mode = Mode {
        ingest: true,
        api: true,
        worker: true,
    };
    pub const INGEST: Mode = Mode {
        ingest: true,
        api: false,
        worker: false,
    };
    pub const API: Mode = Mode {
        ingest: false,
        api: true,
        worker: false,
    };
    pub const WORKER: Mode = Mode {
        ingest: false,
        api: false,
        worker: true,
    };
}

/// A started Sluice.
pub struct Running {
    /// Where it listens (none for a worker-only process).
    pub addr: Option<SocketAddr>,
    /// The tenant created at start-up.
    pub default_tenant: tenants::Tenant,
    pub pg: sqlx::PgPool,
    pub ch: clickhouse::Client,
    pub redis: deadpool_redis::Pool,
    pub layout: StreamLayout,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Running {
    /// Asks every tier to stop and waits for them (workers finish their batch).
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }

    /// Runs until SIGINT or SIGTERM, then stops.
    pub async fn run_until_signal(self) {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.stop().await;
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The process-wide Prometheus recorder (installed once).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .clone()
}

pub fn ch_config(cfg: &Config) -> ChConfig {
    ChConfig {
        url: cfg.clickhouse_url.clone(),
        database: cfg.clickhouse_database.clone(),
        user: cfg.clickhouse_user.clone(),
        password: cfg.clickhouse_password.clone(),
    }
}

/// Creates the Postgres database when missing and applies every migration
/// to Postgres and ClickHouse.
pub async fn migrate(cfg: &Config) -> anyhow::Result<sqlx::PgPool> {
    if !sqlx::Postgres::database_exists(&cfg.database_url)
        .await
        .context("checking the Postgres database")?
    {
        // Two processes may race here; the loser finds it exists.
        if let Err(e) = sqlx::Postgres::create_database(&cfg.database_url).await {
            if !sqlx::Postgres::database_exists(&cfg.database_url).await? {
                return Err(e).context("creating the Postgres database");
            }
        }
    }
    let pool = pg::connect(&cfg.database_url, cfg.pg_pool_size)
        .await
        .context("connecting to Postgres")?;
    pg::migrate(&pool).await.context("migrating Postgres")?;
    sluice_jobs::queue::setup(&pool)
        .await
        .context("setting up the job queue")?;
    ch::schema::migrate(&ch_config(cfg))
        .await
        .context("migrating ClickHouse")?;
    Ok(pool)
}

/// The backup store `SLUICE_BACKUP_STORE` names: a directory (by default
/// `backups` under the data directory) or `s3://bucket/prefix` with the
/// `SLUICE_S3_*` settings.
pub fn backup_store(cfg: &Config) -> anyhow::Result<sluice_backup::BackupStore> {
    let location = match cfg.backup_store.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(s) => s.to_string(),
        None => format!("{}/backups", cfg.data_dir.trim_end_matches('/')),
    };
    let s3 = sluice_backup::S3Options::from_env().context("S3 settings (SLUICE_S3_*)")?;
    sluice_backup::BackupStore::from_url(&location, &s3)
        .with_context(|| format!("backup store {location}"))
}

/// The backup master keys: the current one and any earlier ones.
pub fn keyring(cfg: &Config, secret: &str) -> anyhow::Result<sluice_backup::Keyring> {
    let master = cfg.backup_master_key.as_deref().unwrap_or(secret);
    let mut ring =
        sluice_backup::Keyring::new(&cfg.backup_key_id, master).context("SLUICE_BACKUP_KEY_ID")?;
    for entry in cfg
        .backup_previous_keys
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let (id, key) = entry
            .split_once('=')
            .context("SLUICE_BACKUP_PREVIOUS_KEYS: expected id=secret pairs separated by commas")?;
        ring = ring
            .with_previous(id.trim(), key)
            .context("SLUICE_BACKUP_PREVIOUS_KEYS")?;
    }
    Ok(ring)
}

fn job_settings(cfg: &Config) -> sluice_jobs::JobSettings {
    let timeout = std::time::Duration::from_secs(cfg.job_timeout_secs.max(1));
    sluice_jobs::JobSettings {
        backup_concurrency: cfg.backup_concurrency.max(1),
        restore_concurrency: cfg.restore_concurrency.max(1),
        backup_timeout: timeout,
        restore_timeout: timeout,
        command_concurrency: cfg.command_concurrency.max(1),
        command_timeout: std::time::Duration::from_secs(cfg.command_timeout_secs.max(1)),
        command_output_limit: cfg.command_output_bytes.max(1),
        retries: cfg.job_retries,
        heartbeat: std::time::Duration::from_secs(cfg.job_heartbeat_secs.max(1)),
        health: sluice_jobs::health::HealthSettings {
            every: std::time::Duration::from_secs(cfg.health_check_secs.max(1)),
            tick: std::time::Duration::from_secs(cfg.health_check_secs.clamp(1, 5)),
            ..Default::default()
        },
        schedules: sluice_jobs::schedules::ScheduleSettings {
            tick: std::time::Duration::from_millis(cfg.schedule_tick_ms.max(50)),
            sweep_every: std::time::Duration::from_secs(cfg.retention_sweep_secs.max(1)),
            ..Default::default()
        },
        alerts: sluice_jobs::alerts::AlertSettings {
            every: std::time::Duration::from_millis(cfg.alert_eval_ms.max(50)),
            ..Default::default()
        },
        ..sluice_jobs::JobSettings::default()
    }
}

/// Creates (or resets the password of) `SLUICE_ADMIN_USER`, an admin of
/// the default tenant.
async fn bootstrap_admin(
    cfg: &Config,
    pg: &sqlx::PgPool,
    tenant: uuid::Uuid,
) -> anyhow::Result<()> {
    let (user, password) = match (cfg.admin_user.as_deref(), cfg.admin_password.as_deref()) {
        (None, None) => return Ok(()),
        (Some(u), Some(p)) if !u.trim().is_empty() && !p.is_empty() => (u.trim(), p.to_string()),
        _ => anyhow::bail!("SLUICE_ADMIN_USER and SLUICE_ADMIN_PASSWORD must be set together"),
    };
    let hash = tokio::task::spawn_blocking(move || sluice_auth::password::hash(&password))
        .await?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let u = users::upsert_password(pg, user, &hash).await?;
    users::set_membership(pg, tenant, u.id, "admin").await?;
    tracing::info!(user = %u.username, "admin user ready");
    Ok(())
}

/// Runs the workers on their own one-thread runtime, on an OS thread of
/// their own; the receiver resolves when they have stopped.
fn spawn_worker_runtime(
    cfg: Config,
    wcfg: sluice_workers::WorkerConfig,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<()>> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("sluice-worker".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("sluice-worker")
                .enable_all()
                .build();
            match rt {
                Ok(rt) => rt.block_on(async move {
                    let stores = async {
                        anyhow::Ok(sluice_workers::Stores {
                            redis: sluice_storage::redis_pool(&cfg.redis_url, 16)?,
                            pg: pg::connect(&cfg.database_url, cfg.pg_pool_size.min(10)).await?,
                            ch: ch::client(&ch_config(&cfg)),
                        })
                    };
                    match stores.await {
                        Ok(stores) => {
                            if let Err(e) = sluice_workers::run(wcfg, stores, shutdown).await {
                                tracing::error!(error = %e, "workers stopped with an error");
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "workers could not reach their stores")
                        }
                    }
                }),
                Err(e) => tracing::error!(error = %e, "worker runtime could not start"),
            }
            let _ = done_tx.send(());
        })?;
    Ok(done_rx)
}

/// Says at start-up what Redis' settings let an accepted event survive,
/// loudly when Redis keeps no append-only file.
async fn warn_about_durability(inspector: &Inspector) {
    let d = inspector.report().await;
    let words = |s: Survival| s.words();
    if d.aof() {
        tracing::info!(
            level = ?d.level,
            redis_restart = %words(d.survives_redis_restart),
            os_crash = %words(d.survives_os_crash),
            machine_loss = %words(d.survives_machine_loss),
            "redis durability"
        );
    } else {
        tracing::warn!(
            level = ?d.level,
            redis_restart = %words(d.survives_redis_restart),
            os_crash = %words(d.survives_os_crash),
            "REDIS RUNS WITHOUT AOF: events answered 2xx but not yet stored by the workers are LOST if Redis restarts or crashes; run Redis with appendonly yes (scripts/run.sh does)"
        );
    }
    for w in &d.warnings {
        tracing::warn!("redis durability: {w}");
    }
}

/// Starts the tiers of `mode`.
pub async fn start(cfg: &Config, mode: Mode) -> anyhow::Result<Running> {
    let pg = migrate(cfg).await?;
    let ch = ch::client(&ch_config(cfg));
    let redis = sluice_storage::redis_pool(&cfg.redis_url, 64).context("redis pool")?;
    let layout = StreamLayout::new(cfg.redis_prefix.clone(), cfg.stream_shards);
    {
        let mut conn = redis.get().await.context("connecting to Redis")?;
        layout
            .ensure_groups(&mut conn)
            .await
            .context("creating stream groups")?;
    }
    let durability = Inspector {
        pool: redis.clone(),
        min_replicas: cfg.redis_min_replicas,
    };
    if mode.ingest || mode.api {
        warn_about_durability(&durability).await;
    }

    let secret = sluice_auth::signing_secret(cfg.secret_key.as_deref(), cfg.dev)
        .context("refusing to start")?;
    if cfg.dev && cfg.secret_key.is_none() {
        tracing::warn!(
            "dev mode: using the built-in dev secret; set SLUICE_SECRET_KEY for any real use"
        );
    }
    let tokens = Arc::new(Tokens::new(
        &secret,
        chrono::Duration::seconds(cfg.access_token_secs.max(1)),
        chrono::Duration::seconds(cfg.refresh_token_secs.max(1)),
    ));
    let secrets = SecretBox::new(&secret);
    let store = backup_store(cfg)?;

    let default_tenant = tenants::ensure(&pg, &cfg.default_tenant, &cfg.default_tenant).await?;
    bootstrap_admin(cfg, &pg, default_tenant.id).await?;
    if let Some(key) = cfg.bootstrap_api_key.as_deref().filter(|k| !k.is_empty()) {
        let perms = vec!["owner".to_string()];
        api_keys::insert(
            &pg,
            &api_keys::NewKey {
                tenant_id: default_tenant.id,
                name: "bootstrap",
                permissions: &perms,
                rate_limit_per_min: None,
                expires_at: None,
            },
            key,
        )
        .await?;
    }

    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    // Sluice's own health: every process samples; API processes probe.
    let monitor = sluice_storage::monitor::Monitor::new(sluice_storage::monitor::MonitorConfig {
        deployment: cfg.redis_prefix.clone(),
        ingest: mode.ingest,
        api: mode.api,
        worker: mode.worker,
        sample_every: std::time::Duration::from_secs(cfg.monitor_sample_secs.clamp(1, 10)),
        probe_every: std::time::Duration::from_secs(cfg.monitor_probe_secs.clamp(1, 30)),
        data_dir: std::path::PathBuf::from(&cfg.data_dir),
    });
    tasks.spawn(
        monitor
            .clone()
            .run_sampler(ch.clone(), redis.clone(), shutdown_rx.clone()),
    );
    if mode.api {
        tasks.spawn(monitor.clone().run_prober(
            sluice_storage::monitor::probe::Stores {
                pg: pg.clone(),
                ch: ch.clone(),
                redis: redis.clone(),
            },
            sluice_storage::live::Publisher::new(redis.clone(), cfg.redis_prefix.clone()),
            shutdown_rx.clone(),
        ));
    }
    let keys = KeyDirectory::default();
    if mode.ingest || mode.api {
        keys.refresh(&pg).await.context("loading API keys")?;
        tasks.spawn(
            keys.clone()
                .run_refresh(pg.clone(), cfg.key_refresh(), shutdown_rx.clone()),
        );
    }

    let ingest = mode.ingest.then(|| {
        let sink = sluice_ingest::sink::StreamSink::start(
            redis.clone(),
            layout.clone(),
            sluice_ingest::sink::SinkConfig {
                max_backlog: cfg.max_backlog,
                replicas: cfg.replica_wait(),
                ..Default::default()
            },
        );
        let scrub = sluice_ingest::scrub::ScrubConfig::new(cfg.pii_scrub, &cfg.pii_extra_keys);
        let tracking = sluice_ingest::tracking::Tracking::new(
            sluice_ingest::tracking::TrackingConfig {
                rate_limit_per_min: if cfg.tracking_rate_limits { 100 } else { 0 },
                operation_timeout_secs: cfg.operation_timeout_secs,
                replicas: cfg.replica_wait(),
            },
            keys.clone(),
            tokens.clone(),
            redis.clone(),
            layout.clone(),
        );
        Arc::new(sluice_ingest::Ingest::new(
            sluice_ingest::IngestConfig {
                rate_limit_per_min: cfg.ingest_rate_limit,
                max_inflight_body_bytes: cfg.ingest_inflight_mb.max(1) << 20,
                decode_slots: cfg.ingest_concurrency.max(1),
                scrub,
                trusted_proxies: cfg.trusted_proxies.clone(),
                ..Default::default()
            },
            keys.clone(),
            sink,
            tracking,
        ))
    });
    let api = mode.api.then(|| {
        let api_cfg = sluice_api::ApiConfig {
            analytics_cache_ttl: std::time::Duration::from_secs(cfg.analytics_cache_secs),
            analytics_rate_limit: cfg.analytics_rate_limit,
            general_rate_limit: cfg.api_rate_limit,
            member_check_ttl: std::time::Duration::from_millis(cfg.member_check_ms),
            login_limits: sluice_api::throttle::LoginLimits {
                per_username: cfg.login_failures_per_user,
                per_address: cfg.login_failures_per_ip,
                window: std::time::Duration::from_secs(cfg.login_window_secs),
            },
        };
        // Postgres and ClickHouse behind circuit breakers, each probed
        // while open until it answers again.
        let pg = Guarded::new(pg.clone(), Breaker::new(Store::Postgres, cfg.breaker()));
        let ch = Guarded::new(ch.clone(), Breaker::new(Store::ClickHouse, cfg.breaker()));
        tasks.spawn(pg.clone().watch(shutdown_rx.clone()));
        tasks.spawn(ch.clone().watch(shutdown_rx.clone()));
        // one Redis subscription per API process feeds every `/ws` socket
        let live = sluice_api::live::Hub::new(cfg.live());
        tasks.spawn(live.clone().run(
            cfg.redis_url.clone(),
            cfg.redis_prefix.clone(),
            shutdown_rx.clone(),
        ));
        sluice_api::router(sluice_api::ApiState::new(
            &api_cfg,
            sluice_api::ApiDeps {
                pg,
                ch,
                redis: redis.clone(),
                durability: durability.clone(),
                layout: layout.clone(),
                keys: keys.clone(),
                tokens: tokens.clone(),
                secrets: secrets.clone(),
                metrics: metrics_handle(),
                tracking_rate_limits: cfg.tracking_rate_limits,
                live,
                backup_store: store.clone(),
                signing_secret: secret.to_string(),
                public_url: cfg.public_url.clone(),
                job_namespace: cfg.redis_prefix.clone(),
                trusted_proxies: cfg.trusted_proxies.clone(),
            },
        ))
        .layer(axum::Extension(monitor.clone()))
    });

    if mode.worker {
        let mut wcfg = sluice_workers::WorkerConfig::new(layout.clone());
        wcfg.batch_size = cfg.worker_batch.max(1);
        wcfg.consumers = cfg.worker_consumers.max(1);
        if let Some(name) = cfg.worker_name.as_deref().map(str::trim) {
            anyhow::ensure!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_graphic()),
                "SLUICE_WORKER_NAME must be printable ASCII without spaces"
            );
            wcfg.consumer = name.to_string();
        }
        wcfg.linger = std::time::Duration::from_millis(cfg.worker_linger_ms);
        wcfg.read_count = cfg.worker_read_count.max(1);
        wcfg.reclaim_idle = std::time::Duration::from_millis(cfg.worker_reclaim_idle_ms);
        wcfg.crash_after_clickhouse = cfg.worker_crash_after_clickhouse;
        wcfg.dead_letter_max = cfg.dead_letter_max.max(1);
        wcfg.monitor_keep_days = cfg.monitor_keep_days.max(1);
        wcfg.operation_timeout = std::time::Duration::from_secs(cfg.operation_timeout_secs.max(1));
        wcfg.secrets = Some(secrets.clone());
        // Database jobs (backups, restores…) on this runtime: they mostly
        // wait on tools and sockets.
        let jobs = sluice_jobs::JobContext {
            pg: pg.clone(),
            store: store.clone(),
            keyring: keyring(cfg, &secret)?,
            secrets: secrets.clone(),
            live: sluice_storage::live::Publisher::new(redis.clone(), cfg.redis_prefix.clone()),
            namespace: cfg.redis_prefix.clone(),
            notifier: sluice_notify::http_client()
                .inspect_err(|e| tracing::error!(error = %e, "notification HTTP client"))
                .ok()
                .map(|http| {
                    sluice_notify::Notifier::new(
                        pg.clone(),
                        secrets.clone(),
                        sluice_storage::live::Publisher::new(
                            redis.clone(),
                            cfg.redis_prefix.clone(),
                        ),
                        http,
                    )
                }),
            masking_secret: secret.to_string(),
            settings: job_settings(cfg),
            ch: Some(ch.clone()),
        };
        let job_worker = wcfg.consumer.clone();
        let mut jobs_rx = shutdown_rx.clone();
        tasks.spawn(async move {
            let stop = async move {
                let _ = jobs_rx.wait_for(|stop| *stop).await;
            };
            if let Err(e) = sluice_jobs::runner::run(jobs, &job_worker, stop).await {
                tracing::error!(error = %e, "job workers stopped with an error");
            }
        });
        let rx = shutdown_rx.clone();
        if mode.ingest || mode.api {
            // Beside the HTTP tiers, workers get a runtime (and pools) of
            // their own: a batch being decoded never delays a request.
            let done = spawn_worker_runtime(cfg.clone(), wcfg, rx)?;
            tasks.spawn(async move {
                let _ = done.await;
            });
        } else {
            let stores = sluice_workers::Stores {
                redis: redis.clone(),
                pg: pg.clone(),
                ch: ch.clone(),
            };
            tasks.spawn(async move {
                if let Err(e) = sluice_workers::run(wcfg, stores, rx).await {
                    tracing::error!(error = %e, "workers stopped with an error");
                }
            });
        }
    }

    let mut addr = None;
    if ingest.is_some() || api.is_some() {
        let listener = tokio::net::TcpListener::bind(cfg.addr)
            .await
            .with_context(|| format!("binding {}", cfg.addr))?;
        addr = Some(listener.local_addr()?);
        let dispatch = Arc::new(Dispatch {
            ingest,
            api,
            durability,
            monitor: monitor.clone(),
        });
        tasks.spawn(server::serve(
            listener,
            dispatch,
            cfg.conn_limits(),
            shutdown_rx.clone(),
        ));
    }

    Ok(Running {
        addr,
        default_tenant,
        pg,
        ch,
        redis,
        layout,
        shutdown,
        tasks,
    })
}
