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
    /// List, replay or drop dead letters: events the stores refused.
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetters,
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

#[derive(Subcommand)]
enum DeadLetters {
    /// Newest first: id, tenant, store, reason, time, origin, error.
    List {
        /// Only this tenant's (slug or id).
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only those older than this stream entry id (paging).
        #[arg(long)]
        before: Option<String>,
        /// One JSON object a line, event included.
        #[arg(long)]
        json: bool,
    },
    /// Append dead letters' events to their streams again (they come back
    /// here if still refused).
    Replay {
        /// Dead-letter ids, as `list` prints them.
        ids: Vec<String>,
        /// Every dead letter (of `--tenant` when given).
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Delete dead letters for good.
    Drop {
        ids: Vec<String>,
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        #[arg(long)]
        tenant: Option<String>,
    },
}

async fn dead_letters_cmd(cfg: &Config, action: DeadLetters) -> anyhow::Result<()> {
    use sluice_storage::dead_letters::{self as dl, DeadId, ListFilter};
    let redis = sluice_storage::redis_pool(&cfg.redis_url, 2)?;
    let mut conn = redis.get().await.context("connecting to Redis")?;
    let layout =
        sluice_storage::streams::StreamLayout::new(cfg.redis_prefix.clone(), cfg.stream_shards);
    let tenant_of = |t: Option<String>| async move {
        let Some(t) = t else {
            return anyhow::Ok(None);
        };
        let pool = sluice_storage::pg::connect(&cfg.database_url, 2).await?;
        let found = tenants::find(&pool, &t)
            .await?
            .with_context(|| format!("no tenant {t:?}"))?;
        Ok(Some(found.id))
    };
    // ids given, or every one (of a tenant) for --all
    let targets = |ids: Vec<String>, all: bool, tenant: Option<uuid::Uuid>| {
        let layout = layout.clone();
        let redis = redis.clone();
        async move {
            if all {
                let mut conn = redis.get().await?;
                return anyhow::Ok(dl::ids(&mut conn, &layout, tenant).await?);
            }
            if ids.is_empty() {
                anyhow::bail!("give dead-letter ids, or --all");
            }
            ids.iter()
                .map(|id| DeadId::parse(id).with_context(|| format!("not a dead-letter id: {id}")))
                .collect()
        }
    };
    match action {
        DeadLetters::List {
            tenant,
            limit,
            before,
            json,
        } => {
            let tenant_id = tenant_of(tenant).await?;
            let letters = dl::list(
                &mut conn,
                &layout,
                &ListFilter {
                    tenant_id,
                    before,
                    limit,
                },
            )
            .await?;
            for d in &letters {
                if json {
                    println!("{}", serde_json::to_string(d)?);
                } else {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}/{}/{}\t{}",
                        d.id,
                        d.tenant_id
                            .map(|t| t.to_string())
                            .unwrap_or_else(|| "-".into()),
                        d.store,
                        d.reason,
                        d.dead_at.as_deref().unwrap_or("-"),
                        d.stream,
                        d.entry_id,
                        d.index.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
                        d.error.replace(['\n', '\t'], " "),
                    );
                }
            }
            let (held, trimmed) = dl::totals(&mut conn, &layout).await?;
            eprintln!(
                "{} shown; {held} dead letters held in all, {trimmed} trimmed by the bound so far",
                letters.len()
            );
        }
        DeadLetters::Replay { ids, all, tenant } => {
            let tenant_id = tenant_of(tenant).await?;
            let mut n = 0;
            for id in targets(ids, all, tenant_id).await? {
                match dl::replay(&mut conn, &layout, &id, tenant_id).await? {
                    Some(entry) => {
                        n += 1;
                        println!("{}\treplayed as {entry}", id.to_id());
                    }
                    None => eprintln!("{}\tno such dead letter", id.to_id()),
                }
            }
            eprintln!("{n} replayed");
        }
        DeadLetters::Drop { ids, all, tenant } => {
            let tenant_id = tenant_of(tenant).await?;
            let mut n = 0;
            for id in targets(ids, all, tenant_id).await? {
                if dl::drop(&mut conn, &layout, &id, tenant_id).await? {
                    n += 1;
                } else {
                    eprintln!("{}\tno such dead letter", id.to_id());
                }
            }
            eprintln!("{n} dropped");
        }
    }
    Ok(())
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
        Command::DeadLetters { action } => return dead_letters_cmd(&cfg, action).await,
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
