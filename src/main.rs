//! `sluice`: run every tier in one process (`all`, the default), one tier
//! (`ingest`, `api`, `worker`), or apply migrations (`migrate`).

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice::app::{self, Mode};
use sluice::config::Config;
use sluice_storage::pg::{api_keys, tenants};

/// mimalloc: glibc's malloc and free were 13-15 % of ingest CPU under load.
/// Run with `MIMALLOC_ARENA_EAGER_COMMIT=0` (the scripts, Dockerfile and
/// compose file set it): the same CPU, a third less peak memory
/// (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Error and database-operation ingestion, jobs and analytics"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Every tier in one process, on one port (the default).
    All,
    /// The ingest tier only.
    Ingest,
    /// The API tier only.
    Api,
    /// The stream workers only.
    Worker,
    /// Apply Postgres and ClickHouse migrations, then exit.
    Migrate,
    /// Track (or stop tracking) the DDL of a PostgreSQL database.
    TrackDb {
        #[command(subcommand)]
        action: TrackDb,
    },
    /// Create an API key for a tenant and print it (shown only this once).
    CreateKey {
        /// Tenant slug (created when missing).
        #[arg(long, default_value = "default")]
        tenant: String,
        #[arg(long, default_value = "cli")]
        name: String,
        /// Permissions, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "read,write")]
        permissions: Vec<String>,
    },
}

#[derive(Subcommand)]
enum TrackDb {
    /// Install the DDL trigger in a database and register it.
    Attach {
        #[arg(long, default_value = "default")]
        tenant: String,
        /// A name for the database within the tenant.
        #[arg(long)]
        name: String,
        /// postgres://user:password@host:port/database (stored encrypted).
        #[arg(long)]
        url: String,
    },
    /// Drain what is queued, remove the trigger and queue, and unregister.
    Detach {
        #[arg(long, default_value = "default")]
        tenant: String,
        #[arg(long)]
        name: String,
    },
    /// List a tenant's tracked databases.
    List {
        #[arg(long, default_value = "default")]
        tenant: String,
    },
}

async fn track_db(cfg: &Config, action: TrackDb) -> anyhow::Result<()> {
    use sluice_storage::pg::tracked_databases;
    use sluice_storage::secrets::SecretBox;
    use sluice_storage::tracked;
    let secret = sluice_auth::signing_secret(cfg.secret_key.as_deref(), cfg.dev)?;
    let secrets = SecretBox::new(&secret);
    let pool = app::migrate(cfg).await?;
    let ch = sluice_storage::ch::client(&app::ch_config(cfg));
    match action {
        TrackDb::Attach { tenant, name, url } => {
            let t = tenants::ensure(&pool, &tenant, &tenant).await?;
            let db = tracked::attach(&pool, &secrets, t.id, &name, &url).await?;
            println!("attached {} ({}) to tenant {}", db.name, db.id, t.slug);
        }
        TrackDb::Detach { tenant, name } => {
            let t = tenants::ensure(&pool, &tenant, &tenant).await?;
            let db = tracked_databases::list(&pool, Some(t.id))
                .await?
                .into_iter()
                .find(|d| d.name == name)
                .with_context(|| {
                    format!("no tracked database named {name:?} in tenant {tenant}")
                })?;
            tracked::detach(&pool, &ch, &secrets, t.id, db.id).await?;
            println!("detached {name}");
        }
        TrackDb::List { tenant } => {
            let t = tenants::ensure(&pool, &tenant, &tenant).await?;
            for db in tracked_databases::list(&pool, Some(t.id)).await? {
                println!("{}\t{}\t{}", db.id, db.name, db.created_at);
            }
        }
    }
    Ok(())
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format.eq_ignore_ascii_case("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(&cli.config.log_format);
    let cfg = cli.config;
    let mode = match cli.command.unwrap_or(Command::All) {
        Command::All => Mode::ALL,
        Command::Ingest => Mode::INGEST,
        Command::Api => Mode::API,
        Command::Worker => Mode::WORKER,
        Command::Migrate => {
            app::migrate(&cfg).await?;
            println!("migrations applied");
            return Ok(());
        }
        Command::TrackDb { action } => return track_db(&cfg, action).await,
        Command::CreateKey {
            tenant,
            name,
            permissions,
        } => {
            let pool = app::migrate(&cfg).await?;
            let t = tenants::ensure(&pool, &tenant, &tenant).await?;
            let (_, key) = api_keys::create(
                &pool,
                &api_keys::NewKey {
                    tenant_id: t.id,
                    name: &name,
                    permissions: &permissions,
                    rate_limit_per_min: None,
                    expires_at: None,
                },
            )
            .await?;
            println!("{key}");
            return Ok(());
        }
    };
    let running = app::start(&cfg, mode)
        .await
        .with_context(|| format!("starting sluice ({mode:?})"))?;
    if let Some(addr) = running.addr {
        tracing::info!(%addr, ?mode, "sluice listening");
    } else {
        tracing::info!(?mode, "sluice running");
    }
    running.run_until_signal().await;
    Ok(())
}
