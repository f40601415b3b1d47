//! The `run` subcommand from start to report: credentials (given, or a
//! fresh tenant), payload pools, the lag probes beside the load, the
//! windows of the chosen mode, the loss check, and the output.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sluice_storage::ch::ChConfig;
use sluice_storage::pg;
use tokio::sync::watch;

use crate::chart;
use crate::check::{self, Stores};
use crate::driver::{run_window, Ctx};
use crate::http::{Auth, Endpoints, Http};
use crate::lag::{self, LagConfig};
use crate::progress::Progress;
use crate::report::{
    late_threshold_ms, Latency, MaxSearch, Payloads, Report, SecondPoint, StatusCounts, Step,
};
use crate::scenario::{Workload, WorkloadConfig};
use crate::schedule::{MaxPlan, Schedule};
use crate::stats::{Collector, Stats};
use crate::{Mode, RunArgs};

const MAX_FACTOR: f64 = 1.5;
/// The pause after a failed step of `--mode max`.
const COOL_DOWN: Duration = Duration::from_secs(3);
const DEFAULT_SECS: f64 = 30.0;
const DEFAULT_MAX_CAP_SECS: f64 = 300.0;

fn validate(a: &RunArgs) -> Result<()> {
    let positive = |name: &str, v: f64| {
        if v.is_finite() && v > 0.0 {
            Ok(())
        } else {
            bail!("{name} must be a positive number, not {v}")
        }
    };
    positive("--rate", a.rate)?;
    if !(a.warmup_secs.is_finite() && a.warmup_secs >= 0.0) {
        bail!("--warmup-secs must be 0 or more, not {}", a.warmup_secs);
    }
    positive("--step-secs", a.step_secs)?;
    positive("--slo-p99-ms", a.slo_p99_ms)?;
    positive("--timeout-secs", a.timeout_secs)?;
    positive("--drain-timeout-secs", a.drain_timeout_secs)?;
    positive("--lag-timeout-secs", a.lag_timeout_secs)?;
    if !(a.settle_secs.is_finite() && a.settle_secs >= 0.0) {
        bail!("--settle-secs must be 0 or more, not {}", a.settle_secs);
    }
    if let Some(d) = a.duration_secs {
        positive("--duration-secs", d)?;
    }
    if a.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if a.mode == Mode::Ramp {
        match (a.ramp_from, a.ramp_to) {
            (Some(f), Some(t)) if f >= 0.0 && t >= 0.0 && f + t > 0.0 => {}
            _ => bail!("--mode ramp needs --ramp-from and --ramp-to (slots/s, not both 0)"),
        }
    }
    Ok(())
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Rate => "rate",
        Mode::Ramp => "ramp",
        Mode::Max => "max",
    }
}

pub async fn run(args: RunArgs) -> Result<()> {
    validate(&args)?;
    let endpoints =
        Endpoints::new(&args.url, args.api_url.as_deref())?.sentry_project(&args.sentry_project)?;
    let secs = args.duration_secs.unwrap_or(DEFAULT_SECS);

    let (auth, tenant, pool) = match &args.database_url {
        Some(url) => {
            let pool = pg::connect(url, 2)
                .await
                .context("connecting to --database-url")?;
            let t = check::provision(&pool).await?;
            eprintln!(
                "created tenant {} ({}) with a read,write API key; waiting {} s for Sluice to load it",
                t.slug,
                t.id,
                check::KEY_PROPAGATION.as_secs()
            );
            let auth = Auth {
                api_key: Some(t.api_key.clone()),
                tenant: Some(t.id.to_string()),
            };
            (auth, Some(t), Some(pool))
        }
        None => (
            Auth {
                api_key: args.api_key.clone(),
                tenant: args.tenant_id.clone(),
            },
            None,
            None,
        ),
    };
    if auth.api_key.is_none() {
        eprintln!("note: no --api-key or --database-url: requests carry no credentials");
    }
    let provisioned = Instant::now();

    let cfg = WorkloadConfig {
        scenario: args.scenario,
        fingerprints: args.fingerprints,
        pool_size: args.pool_size,
        batch_size: args.batch_size,
        compression: args.compression,
        batch_format: args.batch_format,
        seed: args.seed,
    };
    let work = tokio::task::spawn_blocking(move || Workload::build(&cfg, endpoints, &auth))
        .await
        .context("building payloads")??;
    if tenant.is_some() {
        tokio::time::sleep_until((provisioned + check::KEY_PROPAGATION).into()).await;
    }

    let timeout = Duration::from_secs_f64(args.timeout_secs);
    let http = Http::new(args.connections, timeout);
    let collector = Collector::new()?;
    let payloads = Payloads {
        fingerprints: args.fingerprints,
        single_bytes: work.single_bytes,
        batch_size: args.batch_size,
        batch_bytes: work.batch_bytes,
        batch_wire_bytes: work.batch_wire_bytes,
        compression: format!("{:?}", args.compression).to_lowercase(),
    };
    let lag_endpoints = work.endpoints().clone();
    let lag_headers = work.headers().clone();
    let work = Arc::new(work);
    let warmup = warm_up(&args, &http, &work).await?;
    let ctx = Arc::new(Ctx {
        http: http.clone(),
        work,
        collector: collector.clone(),
        connections: args.connections,
        run_start: Instant::now(),
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let lag_task = (args.lag_samples > 0).then(|| {
        let planned = match args.mode {
            Mode::Max => args.step_secs * 2.0,
            _ => secs,
        };
        let every = (planned / args.lag_samples as f64).max(0.2);
        tokio::spawn(lag::probe(
            http.clone(),
            lag_endpoints,
            lag_headers,
            LagConfig {
                samples: args.lag_samples,
                every: Duration::from_secs_f64(every),
                timeout: Duration::from_secs_f64(args.lag_timeout_secs),
                run_id: uuid::Uuid::new_v4().simple().to_string(),
            },
            stop_rx,
        ))
    });

    let show = !args.json && std::io::stdout().is_terminal();
    let progress = Progress::start(collector.clone(), show);
    let outcome = match args.mode {
        Mode::Rate => {
            collector.live.set_target(args.rate);
            run_window(
                &ctx,
                Schedule::Rate {
                    rate: args.rate,
                    secs,
                },
            )
            .await
            .map(|s| (s, None))
        }
        Mode::Ramp => run_window(
            &ctx,
            Schedule::Ramp {
                from: args.ramp_from.unwrap_or(0.0),
                to: args.ramp_to.unwrap_or(0.0),
                secs,
            },
        )
        .await
        .map(|s| (s, None)),
        Mode::Max => search_max(&ctx, &args).await.map(|(s, m)| (s, Some(m))),
    };
    let run_end = Instant::now();
    progress.finish();
    let _ = stop_tx.send(true);
    let (stats, max_search) = outcome?;
    // a rate or ramp run lasts its whole schedule even when the last
    // answer comes a moment before the window closes
    let planned = if args.mode == Mode::Max { 0.0 } else { secs };
    let run_secs = run_end
        .duration_since(ctx.run_start)
        .as_secs_f64()
        .max(planned);

    let lag = match lag_task {
        Some(t) => Some(t.await.context("lag probes")?),
        None => None,
    };

    let accepted_errors =
        stats.accepted_errors + warmup.accepted_errors + lag.as_ref().map_or(0, |l| l.accepted);
    let unanswered_errors = stats.ambiguous_errors + warmup.ambiguous_errors;
    let loss_check = match (&tenant, pool, &args.clickhouse_url) {
        (Some(t), Some(pg), Some(ch_url)) => {
            let stores = Stores {
                pg,
                ch: Stores::clickhouse(&ChConfig {
                    url: ch_url.clone(),
                    database: args.clickhouse_database.clone(),
                    user: args.clickhouse_user.clone(),
                    password: args.clickhouse_password.clone(),
                }),
            };
            if !args.json {
                eprintln!(
                    "run done; waiting for the stores to hold {accepted_errors} accepted events"
                );
            }
            Some(
                check::drain(
                    &stores,
                    t.id,
                    accepted_errors,
                    unanswered_errors,
                    run_secs,
                    run_end,
                    check::DrainPlan {
                        timeout: Duration::from_secs_f64(args.drain_timeout_secs),
                        settle: Duration::from_secs_f64(args.settle_secs),
                    },
                )
                .await?,
            )
        }
        (Some(_), _, None) => {
            eprintln!("note: no --clickhouse-url: loss check skipped");
            None
        }
        _ => None,
    };

    let target = match args.mode {
        Mode::Rate => format!("{}/s", args.rate),
        Mode::Ramp => format!(
            "{}/s -> {}/s",
            args.ramp_from.unwrap_or(0.0),
            args.ramp_to.unwrap_or(0.0)
        ),
        Mode::Max => format!(
            "from {}/s x{MAX_FACTOR} every {} s until p99 > {} ms",
            args.rate, args.step_secs, args.slo_p99_ms
        ),
    };
    let per_sec = |n: u64| n as f64 / run_secs.max(1e-9);
    let report = Report {
        url: args.url.clone(),
        scenario: args.scenario.name().to_string(),
        mode: mode_name(args.mode).to_string(),
        target,
        connections: args.connections,
        duration_secs: run_secs,
        requests: stats.requests,
        requests_per_sec: per_sec(stats.requests),
        slots: stats.slots,
        events: stats.events,
        events_per_sec: per_sec(stats.events),
        accepted_errors,
        unanswered_errors,
        status_counts: StatusCounts::of(&stats),
        latency_ms: Latency::of(&stats),
        late_sends: stats.late,
        late_threshold_ms: late_threshold_ms(),
        unsent: stats.unsent,
        payloads,
        max_search,
        lag,
        loss_check,
        tenant,
        per_second: SecondPoint::series(&collector.take_timeline()),
    };

    if let Some(path) = &args.chart {
        let title = format!(
            "sluice-loadtest: {} / {} {} against {}",
            report.scenario, report.mode, report.target, report.url
        );
        std::fs::write(
            path,
            chart::svg(&title, &report.per_second, report.duration_secs),
        )
        .with_context(|| format!("writing {}", path.display()))?;
        if !args.json {
            eprintln!("chart written to {}", path.display());
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// Load at the first rate for `--warmup-secs`, measured apart and left out
/// of the report (but its accepted events still count in the loss check).
async fn warm_up(args: &RunArgs, http: &Http, work: &Arc<Workload>) -> Result<Stats> {
    if args.warmup_secs <= 0.0 {
        return Stats::new();
    }
    let ctx = Arc::new(Ctx {
        http: http.clone(),
        work: work.clone(),
        collector: Collector::new()?,
        connections: args.connections,
        run_start: Instant::now(),
    });
    let rate = match args.mode {
        Mode::Ramp => args.ramp_from.unwrap_or(args.rate).max(1.0),
        _ => args.rate,
    };
    run_window(
        &ctx,
        Schedule::Rate {
            rate,
            secs: args.warmup_secs,
        },
    )
    .await
}

/// `--mode max`: the steps [`MaxPlan`] chooses (×1.5 until one misses
/// the SLO, ÷1.5 when the first one does, then `--refine-steps`
/// bisections), each judged against the SLO.
async fn search_max(ctx: &Arc<Ctx>, args: &RunArgs) -> Result<(Stats, MaxSearch)> {
    let cap = args.duration_secs.unwrap_or(DEFAULT_MAX_CAP_SECS);
    let started = Instant::now();
    let mut total = Stats::new()?;
    let mut search = MaxSearch {
        slo_p99_ms: args.slo_p99_ms,
        step_secs: args.step_secs,
        best_rate: None,
        steps: Vec::new(),
    };
    let out_of_time = |search: &MaxSearch| {
        !search.steps.is_empty() && started.elapsed().as_secs_f64() + args.step_secs > cap
    };
    let mut plan = MaxPlan::new(args.rate, MAX_FACTOR, args.refine_steps);
    while let Some(rate) = plan.next_rate() {
        if out_of_time(&search) {
            break;
        }
        let met = max_step(ctx, args, rate, &mut total, &mut search).await?;
        plan.record(rate, met);
    }
    search.best_rate = plan.best();
    Ok((total, search))
}

/// Runs one step of `--mode max` at `rate`; whether it met the SLO.
async fn max_step(
    ctx: &Arc<Ctx>,
    args: &RunArgs,
    rate: f64,
    total: &mut Stats,
    search: &mut MaxSearch,
) -> Result<bool> {
    ctx.collector.live.set_target(rate);
    let s = run_window(
        ctx,
        Schedule::Rate {
            rate,
            secs: args.step_secs,
        },
    )
    .await?;
    let step = judge(&s, rate, args.step_secs, args.slo_p99_ms);
    total.merge(&s)?;
    let met = step.met_slo;
    search.steps.push(step);
    if !met {
        // let the target drain what the overload queued, so the next step
        // starts from rest rather than from the backlog of this one
        tokio::time::sleep(COOL_DOWN).await;
    }
    Ok(met)
}

/// Whether a step of `--mode max` met the SLO, and why not.
fn judge(s: &Stats, rate: f64, secs: f64, slo_p99_ms: f64) -> Step {
    // over the window's wall time: sending late, in the grace period,
    // is not keeping up
    let achieved = s.slots as f64 / s.window_secs.max(secs);
    let p99 = s.latency_ms(0.99);
    let non_2xx_pct = if s.requests == 0 {
        100.0
    } else {
        s.failures() as f64 * 100.0 / s.requests as f64
    };
    let mut reasons = Vec::new();
    if s.requests == 0 {
        reasons.push("nothing was sent".to_string());
    }
    if p99 > slo_p99_ms {
        reasons.push(format!("p99 {p99:.2} ms > {slo_p99_ms} ms"));
    }
    if non_2xx_pct > 1.0 {
        reasons.push(format!("{non_2xx_pct:.2}% non-2xx"));
    }
    if achieved < 0.9 * rate {
        reasons.push(format!("achieved {achieved:.0}/s < 90% of {rate:.0}/s"));
    }
    Step {
        target_rate: rate,
        achieved_rate: achieved,
        requests: s.requests,
        p99_ms: p99,
        non_2xx_pct,
        met_slo: reasons.is_empty(),
        reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Outcome, Sample};

    fn stats(n: u64, latency_us: u64, failures: u64) -> Stats {
        let mut s = Stats::new().unwrap();
        for i in 0..n {
            s.record(&Sample {
                done: Duration::ZERO,
                latency_us,
                outcome: Outcome::Status(if i < failures { 503 } else { 201 }),
                events: 1,
                accepted_errors: 1,
                ambiguous_errors: 0,
            });
        }
        s.slots = n;
        s.window_secs = 5.0;
        s
    }

    #[test]
    fn judge_applies_each_rule() {
        assert!(judge(&stats(1000, 2000, 0), 200.0, 5.0, 10.0).met_slo);
        let slow = judge(&stats(1000, 20_000, 0), 200.0, 5.0, 10.0);
        assert!(!slow.met_slo && slow.reason.unwrap().contains("p99"));
        let failing = judge(&stats(1000, 2000, 20), 200.0, 5.0, 10.0);
        assert!(!failing.met_slo && failing.reason.unwrap().contains("non-2xx"));
        let short = judge(&stats(800, 2000, 0), 200.0, 5.0, 10.0);
        assert!(!short.met_slo && short.reason.unwrap().contains("achieved"));
        let mut overran = stats(1000, 2000, 0);
        overran.window_secs = 6.0;
        assert!(!judge(&overran, 200.0, 5.0, 10.0).met_slo);
    }
}
