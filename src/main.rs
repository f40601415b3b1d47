//! `sluice`: run every tier in one process (`all`, the default), one tier
//! (`ingest`, `api`, `worker`), or apply migrations (`migrate`).

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice::app::{self, Mode};
use sluice::config::Config;
use sluice_storage::pg::{api_keys, tenants};

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
