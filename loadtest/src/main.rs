//! `sluice-loadtest`: the load generator users run to size a Sluice
//! deployment — open-loop HTTP load with realistic payloads, latency
//! percentiles free of coordinated omission, visibility lag and a loss
//! check — plus a bare hyper reference server to compare against.
//!
//! - [`payload`]: realistic error events (templates, stacks, PII).
//! - [`scenario`]: what a slot sends; pre-built, pre-compressed bodies.
//! - [`schedule`]: when each slot is due (rate, ramp, max steps).
//! - [`driver`]: the open-loop workers.
//! - [`stats`]: histograms and counts; [`report`] and [`chart`]: output.
//! - [`lag`]: acceptance-to-visibility probes; [`check`]: fresh tenant and
//!   loss check against Postgres and ClickHouse.
//! - [`reference`]: the bare hyper server.
//! - [`run`]: the `run` subcommand from start to report.
//! - [`fanout`]: the `fanout` subcommand, live events to many `/ws` clients.

mod chart;
mod check;
mod driver;
mod fanout;
mod http;
mod lag;

mod progress;
mod reference;
mod report;

mod run;
mod scenario;
mod schedule;
mod stats;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::scenario::{BatchFormat, Compression, Scenario};

#[derive(Debug, Parser)]
#[command(
    name = "sluice-loadtest",
    version,
    about = "Load generator for sizing a Sluice deployment"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Drive load against a Sluice (or the reference server) and report.
    Run(Box<RunArgs>),
    /// Open many `/ws` clients of one tenant, post new errors, and count
    /// the `new_error` frames they receive beside the ingest rate.
    Fanout(Box<fanout::FanoutArgs>),
    /// Serve the bare hyper reference: 201 and a small JSON body for any request.
    Reference {
        #[arg(long, default_value = "127.0.0.1:18999")]
        addr: SocketAddr,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// A constant `--rate`.
    Rate,
    /// Linear from `--ramp-from` to `--ramp-to` over the duration.
    Ramp,
    /// From `--rate`, ×1.5 every `--step-secs` until the SLO breaks.
    Max,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Target base URL (http only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Where reads (dashboards, lag probes' polls) go, when the API tier is
    /// not at `--url` (tiers deployed apart).
    #[arg(long)]
    pub api_url: Option<String>,
    #[arg(long, value_enum, default_value_t = Scenario::Single)]
    pub scenario: Scenario,
    /// Events per batch (the `batch` scenario and the mix).
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Content-Encoding of batch bodies (compressed before the run).
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compression: Compression,
    #[arg(long, value_enum, default_value_t = BatchFormat::Json)]
    pub batch_format: BatchFormat,
    /// The `envelope` scenario's Sentry project id (the DSN's path).
    #[arg(long, default_value = "1")]
    pub sentry_project: String,
    #[arg(long, value_enum, default_value_t = Mode::Rate)]
    pub mode: Mode,
    /// Slots per second (`rate`), or the first step's rate (`max`). A slot is
    /// one request, except in `ops` where it is a start and its complete.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    #[arg(long)]
    pub ramp_from: Option<f64>,
    #[arg(long)]
    pub ramp_to: Option<f64>,
    /// `max`: seconds per step.
    #[arg(long, default_value_t = 5.0)]
    pub step_secs: f64,
    /// `max`: a step fails when its p99 exceeds this.
    #[arg(long, default_value_t = 10.0)]
    pub slo_p99_ms: f64,
    /// `max`: after the first failing step, halve the gap between the best
    /// passing and the lowest failing rate this many times.
    #[arg(long, default_value_t = 3)]
    pub refine_steps: u32,
    /// Seconds of load at the first rate before anything is measured
    /// (connections opened, caches and allocators warm); its accepted
    /// events still count in the loss check.
    #[arg(long, default_value_t = 2.0)]
    pub warmup_secs: f64,
    /// Run length (default 30); in `max` mode a cap on all steps together
    /// (default 300).
    #[arg(long)]
    pub duration_secs: Option<f64>,
    /// Most requests in flight at once (and keep-alive connections).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// A request with no complete answer by then is a time-out.
    #[arg(long, default_value_t = 30.0)]
    pub timeout_secs: f64,
    /// Distinct error kinds in the payloads.
    #[arg(long, default_value_t = 1000)]
    pub fingerprints: usize,
    /// Distinct single-event bodies built before the run.
    #[arg(long, default_value_t = 1000)]
    pub pool_size: usize,
    /// Seed of the payload generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// API key: `X-API-Key`, and `Authorization: Bearer` for Tracking.
    #[arg(long, conflicts_with = "database_url")]
    pub api_key: Option<String>,
    /// Sent as `X-Tenant-ID` on Tracking requests.
    #[arg(long, conflicts_with = "database_url")]
    pub tenant_id: Option<String>,
    /// Create a fresh tenant and API key in Sluice's Postgres for the run
    /// (also enables the loss check with `--clickhouse-url`).
    #[arg(long)]
    pub database_url: Option<String>,
    /// ClickHouse HTTP URL for the loss check.
    #[arg(long, requires = "database_url")]
    pub clickhouse_url: Option<String>,
    #[arg(long, default_value = "sluice")]
    pub clickhouse_database: String,
    #[arg(long)]
    pub clickhouse_user: Option<String>,
    #[arg(long)]
    pub clickhouse_password: Option<String>,
    /// Longest wait after the run for the stores to catch up.
    #[arg(long, default_value_t = 120.0)]
    pub drain_timeout_secs: f64,
    /// Once the stores hold every accepted event, keep counting until the
    /// counts stay the same this long (events stored without an answer,
    /// or stored twice, may still be arriving).
    #[arg(long, default_value_t = 0.0)]
    pub settle_secs: f64,
    /// Visibility-lag probes spread over the run (0: none).
    #[arg(long, default_value_t = 20)]
    pub lag_samples: usize,
    /// A probe not readable after this counts as timed out.
    #[arg(long, default_value_t = 60.0)]
    pub lag_timeout_secs: f64,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write an SVG chart (throughput and p99 per second) here.
    #[arg(long)]
    pub chart: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Run(args) => run::run(*args).await,
        Cmd::Fanout(args) => fanout::run(*args).await,
        Cmd::Reference { addr } => reference::serve(addr).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "sluice-loadtest",
            "run",
            "--scenario",
            "batch",
            "--compression",
            "gzip",
            "--mode",
            "max",
        ])
        .unwrap();
        let Cmd::Run(a) = cli.cmd else {
            panic!("not run")
        };
        assert_eq!(a.scenario, Scenario::Batch);
        assert_eq!(a.mode, Mode::Max);
        assert_eq!(a.connections, 64);
        assert!(Cli::try_parse_from([
            "sluice-loadtest",
            "run",
            "--api-key",
            "k",
            "--database-url",
            "postgres://x"
        ])
        .is_err());
    }
}
