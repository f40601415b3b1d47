//! What one evaluation cycle of the alert engine costs with many rules over
//! many stored events (issue 12's benchmark; results in BENCHMARKS.md).
//!
//! Seeds a scratch ClickHouse database (Sluice's schema, then
//! `--events` error occurrences spread over the last 24 hours across
//! `--tenants` scratch tenants, five levels, four sources, two
//! environments) and, in Postgres, the scratch tenants with `--rules` alert
//! rules of mixed filters and windows (nine in ten `error_count`, one in ten
//! `new_error`) under a namespace of their own. Then it times, interleaved,
//! `--cycles` rounds of:
//!
//! - `mixed`: [`Engine::tick`] over all the rules;
//! - `counting`: the same without the `new_error` rules;
//! - `one rule`: a tick of a namespace holding a single 1-day rule with no
//!   filter (one tenant's events);
//! - `query`: the engine's ClickHouse query alone
//!   ([`alert_counts::count_windows`] for every seeded tenant and the seven
//!   windows the rules use), without reading the rules or matching;
//! - `scan`: a bare `SELECT count()` over the rows the engine's query reads
//!   (every seeded tenant, the longest window), the floor of its ClickHouse
//!   part;
//! - `round trip`: `SELECT 1` on ClickHouse.
//!
//! The first `mixed` and `counting` ticks open the incidents of the rules
//! that hold and are reported apart; later ticks find them open (the steady
//! state). The scratch database and tenants are dropped at the end, also
//! when a step fails.
//!
//! ```sh
//! cargo run --release -p sluice-jobs --example alert_cycle -- \
//!   --database-url postgres://postgres@127.0.0.1:5432/sluice_alertbench
//! ```

use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Parser;
use sluice_jobs::alerts::{AlertSettings, Engine, ERROR_COUNT, NEW_ERROR};
use sluice_storage::ch::{self, alert_counts, ChConfig};
use sluice_storage::live::Publisher;
use sluice_storage::pg::{self, alerts, tenants};
use sluice_storage::secrets::SecretBox;
use uuid::Uuid;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    #[arg(long, env = "CLICKHOUSE_URL", default_value = "http://127.0.0.1:8123")]
    clickhouse_url: String,
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    #[arg(long, default_value_t = 1000)]
    rules: usize,
    #[arg(long, default_value_t = 10)]
    tenants: usize,
    #[arg(long, default_value_t = 7)]
    cycles: usize,
}

const WINDOWS: [&str; 7] = ["1m", "5m", "15m", "30m", "1h", "6h", "1d"];
const LEVELS: [&str; 5] = ["debug", "info", "warning", "error", "critical"];
const SOURCES: [&str; 4] = ["api", "web", "worker", "billing"];
const ENVIRONMENTS: [&str; 2] = ["production", "staging"];
/// Thresholds from "always holds" to "never does".
const THRESHOLDS: [f64; 5] = [0.0, 1_000.0, 50_000.0, 500_000.0, 1e12];

/// What a run created, to drop whatever happens.
struct Scratch {
    ch_database: String,
    tenants: Vec<Uuid>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let tag = format!("alertbench_{}", std::process::id());
    let pgpool = pg::connect(&args.database_url, 8).await?;
    pg::migrate(&pgpool).await?;
    let chcfg = ChConfig {
        url: args.clickhouse_url.clone(),
        database: tag.clone(),
        user: None,
        password: None,
    };
    let mut scratch = Scratch {
        ch_database: tag.clone(),
        tenants: Vec::new(),
    };
    let outcome = run(&args, &tag, &pgpool, &chcfg, &mut scratch).await;
    // Clean up in every case.
    let server = clickhouse::Client::default()
        .with_url(args.clickhouse_url.clone())
        .with_validation(false);
    if let Err(e) = server
        .query(&format!(
            "DROP DATABASE IF EXISTS `{}`",
            scratch.ch_database
        ))
        .execute()
        .await
    {
        eprintln!(
            "could not drop ClickHouse database {}: {e}",
            scratch.ch_database
        );
    }
    for t in &scratch.tenants {
        if let Err(e) = tenants::delete(&pgpool, *t).await {
            eprintln!("could not delete scratch tenant {t}: {e}");
        }
    }
    outcome
}

async fn run(
    args: &Args,
    tag: &str,
    pgpool: &sqlx::PgPool,
    chcfg: &ChConfig,
    scratch: &mut Scratch,
) -> Result<(), BoxError> {
    ch::schema::migrate(chcfg).await?;
    let chc = ch::client(chcfg);
    for i in 0..args.tenants.max(1) {
        let slug = format!("{}-{i}", tag.replace('_', "-"));
        let t = tenants::ensure(pgpool, &slug, &slug).await?;
        scratch.tenants.push(t.id);
    }
    let tids = scratch.tenants.clone();

    let now_ms = u64::try_from(Utc::now().timestamp_millis())?;
    let started = Instant::now();
    seed_events(&chc, &tids, args.events, now_ms).await?;
    let seeded: u64 = chc
        .query("SELECT count() FROM error_events")
        .fetch_one()
        .await?;
    eprintln!(
        "seeded {seeded} events over {} tenants in {:.1} s",
        tids.len(),
        started.elapsed().as_secs_f64()
    );

    let mixed_ns = format!("{tag}_mixed");
    let counting_ns = format!("{tag}_counting");
    let one_ns = format!("{tag}_one");
    let (n_count, n_new) = seed_rules(pgpool, &tids, args.rules, &mixed_ns, &counting_ns).await?;
    alerts::create_rule(
        pgpool,
        tids[0],
        &one_ns,
        &alerts::RuleFields {
            name: "one".into(),
            condition: ERROR_COUNT.into(),
            threshold: Some(1e12),
            time_window: Some("1d".into()),
            window_secs: Some(86_400),
            enabled: true,
            severity: "high".into(),
            ..Default::default()
        },
    )
    .await?;
    eprintln!("{n_count} error_count and {n_new} new_error rules");

    let redis = sluice_storage::redis_pool(&args.redis_url, 4)?;
    let engine = |ns: &str| Engine {
        pg: pgpool.clone(),
        ch: chc.clone(),
        notifier: None,
        live: Publisher::new(redis.clone(), tag.to_string()),
        secrets: SecretBox::new("alert-cycle-bench"),
        namespace: ns.to_string(),
        settings: AlertSettings {
            every: Duration::from_secs(30),
            // no group is ever pending: claim up to now
            new_error_lag: Duration::ZERO,
        },
    };
    let (mixed, counting, one) = (engine(&mixed_ns), engine(&counting_ns), engine(&one_ns));
    let in_list: Vec<String> = tids.iter().map(|t| format!("toUUID('{t}')")).collect();

    let windows: Vec<u64> = WINDOWS
        .iter()
        .filter_map(|w| sluice_jobs::alerts::parse_window(w))
        .map(|s| s as u64)
        .collect();
    let (mut t_mixed, mut t_counting, mut t_one, mut t_scan, mut t_rtt, mut t_query) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut first_mixed, mut first_counting) = (None, None);
    for round in 0..args.cycles.max(2) {
        let t = Instant::now();
        let _: u8 = chc.query("SELECT 1").fetch_one().await?;
        t_rtt.push(t.elapsed());

        let since_ms = u64::try_from(Utc::now().timestamp_millis())?.saturating_sub(86_400_000);
        let t = Instant::now();
        let _: u64 = chc
            .query(&format!(
                "SELECT count() FROM error_events WHERE tenant_id IN ({}) \
                 AND timestamp >= toDateTime({}) AND ts_ms > {since_ms}",
                in_list.join(", "),
                since_ms / 1000
            ))
            .fetch_one()
            .await?;
        t_scan.push(t.elapsed());

        let t = Instant::now();
        let now_ms = u64::try_from(Utc::now().timestamp_millis())?;
        alert_counts::count_windows(&chc, &tids, &windows, now_ms).await?;
        t_query.push(t.elapsed());

        let t = Instant::now();
        one.tick().await?;
        t_one.push(t.elapsed());

        let t = Instant::now();
        let fired = counting.tick().await?;
        let d = t.elapsed();
        if round == 0 {
            first_counting = Some((d, fired));
        } else {
            t_counting.push(d);
        }

        let t = Instant::now();
        let fired = mixed.tick().await?;
        let d = t.elapsed();
        if round == 0 {
            first_mixed = Some((d, fired));
        } else {
            t_mixed.push(d);
        }
    }

    let rules = (n_count + n_new) as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (m_mixed, m_counting, m_one, m_scan, m_rtt, m_query) = (
        median(&mut t_mixed),
        median(&mut t_counting),
        median(&mut t_one),
        median(&mut t_scan),
        median(&mut t_rtt),
        median(&mut t_query),
    );
    let report = serde_json::json!({
        "events": seeded,
        "tenants": tids.len(),
        "rules": {"error_count": n_count, "new_error": n_new},
        "steady_cycles": t_mixed.len(),
        "mixed_ms": ms(m_mixed),
        "mixed_us_per_rule": ms(m_mixed) * 1e3 / rules,
        "counting_ms": ms(m_counting),
        "counting_us_per_rule": ms(m_counting) * 1e3 / n_count.max(1) as f64,
        "new_error_part_us_per_rule": (ms(m_mixed) - ms(m_counting)) * 1e3 / n_new.max(1) as f64,
        "first_mixed": first_mixed.map(|(d, n)| serde_json::json!({"ms": ms(d), "fired": n})),
        "first_counting": first_counting.map(|(d, n)| serde_json::json!({"ms": ms(d), "fired": n})),
        "one_rule_ms": ms(m_one),
        "scan_ms": ms(m_scan),
        "engine_query_ms": ms(m_query),
        "engine_query_over_scan": ms(m_query) / ms(m_scan),
        "round_trip_ms": ms(m_rtt),
        "mixed_over_one_rule": ms(m_mixed) / ms(m_one),
        "counting_over_scan": ms(m_counting) / ms(m_scan),
        "mixed_over_scan": ms(m_mixed) / ms(m_scan),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// `n` occurrences evenly over the 24 hours before `now_ms`, round-robin
/// over the tenants, levels, sources and environments mixed independently.
async fn seed_events(
    chc: &clickhouse::Client,
    tenants: &[Uuid],
    n: u64,
    now_ms: u64,
) -> Result<(), BoxError> {
    let list = |xs: &[String]| xs.join(", ");
    let tids: Vec<String> = tenants.iter().map(|t| format!("'{t}'")).collect();
    let quote = |xs: &[&str]| xs.iter().map(|x| format!("'{x}'")).collect::<Vec<_>>();
    let sql = format!(
        "INSERT INTO error_events (tenant_id, group_id, event_id, timestamp, ts_ms, level, fingerprint, \
         message, stack_trace, context, source, environment, url, user_agent, ip_address)
         SELECT toUUID(arrayElement([{tids}], number % {nt} + 1)),
                toUUID(concat('00000000-0000-0000-0000-', substring(toString(1000000000000 + number % 1000), 2, 12))),
                concat('seed/', toString(number)),
                toDateTime(intDiv({now_ms} - intDiv(number * 86400000, {n}), 1000)),
                {now_ms} - intDiv(number * 86400000, {n}),
                arrayElement([{levels}], intHash32(number) % 5 + 1),
                toString(number % 1000), 'seeded error', '', '',
                arrayElement([{sources}], intDiv(number, 7) % 4 + 1),
                arrayElement([{envs}], intDiv(number, 3) % 2 + 1),
                '', '', ''
         FROM system.numbers LIMIT {n}",
        tids = list(&tids),
        nt = tenants.len(),
        levels = list(&quote(&LEVELS)),
        sources = list(&quote(&SOURCES)),
        envs = list(&quote(&ENVIRONMENTS)),
    );
    chc.query(&sql).execute().await?;
    Ok(())
}

/// `n` rules spread over the tenants, each in the mixed namespace and the
/// `error_count` ones also in the counting namespace. Answers how many of
/// each condition the mixed namespace holds.
async fn seed_rules(
    pool: &sqlx::PgPool,
    tenants: &[Uuid],
    n: usize,
    mixed_ns: &str,
    counting_ns: &str,
) -> Result<(usize, usize), BoxError> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |m: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) as usize) % m
    };
    let (mut n_count, mut n_new) = (0, 0);
    for i in 0..n {
        let tenant = tenants[i % tenants.len()];
        let new_error = i % 10 == 9;
        let mut pick = |xs: &[&str]| (next(2) == 0).then(|| xs[next(xs.len())].to_string());
        let (level, source, environment) = (pick(&LEVELS), pick(&SOURCES), pick(&ENVIRONMENTS));
        let mut f = alerts::RuleFields {
            name: format!("bench rule {i}"),
            enabled: true,
            severity: "medium".into(),
            level,
            source,
            environment,
            ..Default::default()
        };
        if new_error {
            f.condition = NEW_ERROR.into();
            n_new += 1;
        } else {
            let w = WINDOWS[next(WINDOWS.len())];
            f.condition = ERROR_COUNT.into();
            f.threshold = Some(THRESHOLDS[next(THRESHOLDS.len())]);
            f.time_window = Some(w.into());
            f.window_secs = sluice_jobs::alerts::parse_window(w);
            alerts::create_rule(pool, tenant, counting_ns, &f).await?;
            n_count += 1;
        }
        alerts::create_rule(pool, tenant, mixed_ns, &f).await?;
    }
    Ok((n_count, n_new))
}
