//! What one schedule slot sends: a single error, a batch, a Sentry
//! envelope, a tracked operation (start then complete), a dashboard read,
//! or a weighted mix.
//! Bodies come from pools built before the run (and batches are compressed
//! then), so sending costs a reference-count increment.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::ValueEnum;
use hyper::Method;
use serde::Deserialize;

use crate::http::{Auth, Endpoints, HeaderSets, Http};
use crate::stats::{Outcome, Recorder, Sample};
use sluice_loadtest::payload::{self, Generator};
use sluice_loadtest::rng::{self, Rng};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Single,
    Batch,
    Ops,
    Dashboard,
    /// 60 % single, 25 % batch, 10 % ops pairs, 5 % dashboard.
    Mix,
    /// Error events only: 80 % single, 20 % batch (every write the loss
    /// check counts).
    Errors,
    /// One error event a request as the Sentry SDKs send it:
    /// `POST /api/{project}/envelope/` with `X-Sentry-Auth`.
    Envelope,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BatchFormat {
    /// A JSON array.
    Json,
    /// One event a line.
    Ndjson,
}

/// The request(s) of one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Single,
    Batch,
    Envelope,
    Ops,
    /// 0: stats, 1: trends, 2: tracking dashboard.
    Dashboard(u8),
}

const MIX_SEED: u64 = 0x5eed_f1ce_5eed_f1ce;

impl Scenario {
    pub fn action(self, slot: u64) -> Action {
        match self {
            Scenario::Single => Action::Single,
            Scenario::Batch => Action::Batch,
            Scenario::Envelope => Action::Envelope,
            Scenario::Ops => Action::Ops,
            Scenario::Dashboard => Action::Dashboard((slot % 3) as u8),
            Scenario::Mix => {
                let h = rng::mix(slot ^ MIX_SEED);
                match h % 100 {
                    0..=59 => Action::Single,
                    60..=84 => Action::Batch,
                    85..=94 => Action::Ops,
                    _ => Action::Dashboard(((h >> 32) % 3) as u8),
                }
            }
            Scenario::Errors => match rng::mix(slot ^ MIX_SEED) % 100 {
                0..=79 => Action::Single,
                _ => Action::Batch,
            },
        }
    }

    fn uses(self, a: Action) -> bool {
        match self {
            Scenario::Mix => true,
            Scenario::Errors => matches!(a, Action::Single | Action::Batch),
            Scenario::Single => a == Action::Single,
            Scenario::Batch => a == Action::Batch,
            Scenario::Envelope => a == Action::Envelope,
            Scenario::Ops => a == Action::Ops,
            Scenario::Dashboard => matches!(a, Action::Dashboard(_)),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Single => "single",
            Scenario::Batch => "batch",
            Scenario::Ops => "ops",
            Scenario::Dashboard => "dashboard",
            Scenario::Mix => "mix",
            Scenario::Errors => "errors",
            Scenario::Envelope => "envelope",
        }
    }
}

/// How the pools are built.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub scenario: Scenario,
    pub fingerprints: usize,
    pub pool_size: usize,
    pub batch_size: usize,
    pub compression: Compression,
    pub batch_format: BatchFormat,
    pub seed: u64,
}

/// Pre-built bodies and headers, and how to perform a slot.
pub struct Workload {
    scenario: Scenario,
    endpoints: Endpoints,
    headers: HeaderSets,
    singles: Vec<Bytes>,
    batches: Vec<Bytes>,
    envelopes: Vec<Bytes>,
    batch_size: usize,
    starts: Vec<Bytes>,
    /// Raw sizes, for the report.
    pub single_bytes: usize,
    pub batch_bytes: usize,
    pub batch_wire_bytes: usize,
}

/// How many batch bodies to pre-build: about 20,000 events in all.
fn batch_pool_len(batch_size: usize) -> usize {
    (20_000 / batch_size.max(1)).clamp(8, 100)
}

pub fn compress(data: &[u8], c: Compression) -> Result<Vec<u8>> {
    Ok(match c {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(
                Vec::with_capacity(data.len() / 4),
                flate2::Compression::default(),
            );
            e.write_all(data)?;
            e.finish()?
        }
        Compression::Zstd => zstd::bulk::compress(data, 3)?,
    })
}

/// One batch body: a JSON array or NDJSON of `n` events.
pub fn batch_body(g: &Generator, n: usize, format: BatchFormat, rng: &mut Rng) -> Result<Vec<u8>> {
    let events: Vec<serde_json::Value> = (0..n).map(|_| g.event(rng)).collect();
    Ok(match format {
        BatchFormat::Json => serde_json::to_vec(&events)?,
        BatchFormat::Ndjson => {
            let mut out = Vec::new();
            for e in &events {
                serde_json::to_writer(&mut out, e)?;
                out.push(b'\n');
            }
            out
        }
    })
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: Option<T>,
}

#[derive(Deserialize)]
struct BatchData {
    accepted: Option<u64>,
}

#[derive(Deserialize)]
struct StartData {
    operation_id: Option<String>,
    id: Option<String>,
}

impl Workload {
    pub fn build(cfg: &WorkloadConfig, endpoints: Endpoints, auth: &Auth) -> Result<Self> {
        let g = Generator::new(cfg.fingerprints, cfg.seed);
        let mut rng = Rng::new(cfg.seed ^ 0xb0d1e5);
        let uses = |a| cfg.scenario.uses(a);
        let mut singles = Vec::new();
        let mut single_bytes = 0;
        if uses(Action::Single) {
            for _ in 0..cfg.pool_size.max(1) {
                let b = serde_json::to_vec(&g.event(&mut rng))?;
                single_bytes += b.len();
                singles.push(Bytes::from(b));
            }
            single_bytes /= singles.len().max(1);
        }
        // Envelopes count as single events in the report's sizes.
        let mut envelopes = Vec::new();
        if uses(Action::Envelope) {
            for _ in 0..cfg.pool_size.max(1) {
                let b = payload::sentry_envelope(&g.sentry_event(&mut rng))?;
                single_bytes += b.len();
                envelopes.push(Bytes::from(b));
            }
            single_bytes /= envelopes.len().max(1);
        }
        let mut batches = Vec::new();
        let (mut batch_bytes, mut batch_wire_bytes) = (0, 0);
        if uses(Action::Batch) {
            let n = batch_pool_len(cfg.batch_size);
            for _ in 0..n {
                let raw = batch_body(&g, cfg.batch_size, cfg.batch_format, &mut rng)?;
                let wire = compress(&raw, cfg.compression).context("compressing a batch")?;
                batch_bytes += raw.len();
                batch_wire_bytes += wire.len();
                batches.push(Bytes::from(wire));
            }
            batch_bytes /= n;
            batch_wire_bytes /= n;
        }
        let mut starts = Vec::new();
        if uses(Action::Ops) {
            for _ in 0..64 {
                starts.push(Bytes::from(serde_json::to_vec(&payload::operation_start(
                    &mut rng,
                ))?));
            }
        }
        let batch_type = match cfg.batch_format {
            BatchFormat::Json => "application/json",
            BatchFormat::Ndjson => "application/x-ndjson",
        };
        let encoding = match cfg.compression {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
        };
        Ok(Self {
            scenario: cfg.scenario,
            endpoints,
            headers: HeaderSets::new(auth, batch_type, encoding)?,
            singles,
            batches,
            envelopes,
            batch_size: cfg.batch_size,
            starts,
            single_bytes,
            batch_bytes,
            batch_wire_bytes,
        })
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    pub fn headers(&self) -> &HeaderSets {
        &self.headers
    }

    /// Performs slot `slot`; latency counts from `origin` (its due time).
    pub async fn perform(
        &self,
        http: &Http,
        slot: u64,
        origin: Instant,
        run_start: Instant,
        rec: &mut Recorder,
    ) {
        let pick = |pool: &[Bytes]| {
            pool.get((slot % pool.len().max(1) as u64) as usize)
                .cloned()
                .unwrap_or_default()
        };
        match self.scenario.action(slot) {
            a @ (Action::Single | Action::Envelope) => {
                let (uri, headers, pool) = if a == Action::Single {
                    (
                        &self.endpoints.errors,
                        &self.headers.json_key,
                        &self.singles,
                    )
                } else {
                    (
                        &self.endpoints.envelope,
                        &self.headers.sentry,
                        &self.envelopes,
                    )
                };
                rec.sent();
                let a = http.send(Method::POST, uri, headers, pick(pool)).await;
                let ok = u32::from(a.outcome.is_success());
                rec.record(sample(
                    origin,
                    run_start,
                    a.outcome,
                    ok,
                    ok,
                    unanswered(a.outcome),
                ));
            }
            Action::Batch => {
                rec.sent();
                let a = http
                    .send(
                        Method::POST,
                        &self.endpoints.batch,
                        &self.headers.batch,
                        pick(&self.batches),
                    )
                    .await;
                let n = self.batch_size as u32;
                let accepted = if a.outcome.is_success() {
                    serde_json::from_slice::<Envelope<BatchData>>(&a.body)
                        .ok()
                        .and_then(|e| e.data)
                        .and_then(|d| d.accepted)
                        // a server without per-item answers (the reference)
                        .map_or(n, |v| v as u32)
                } else {
                    0
                };
                let ambiguous = if unanswered(a.outcome) == 1 { n } else { 0 };
                rec.record(sample(
                    origin, run_start, a.outcome, accepted, accepted, ambiguous,
                ));
            }
            Action::Ops => {
                rec.sent();
                let a = http
                    .send(
                        Method::POST,
                        &self.endpoints.start,
                        &self.headers.json_bearer,
                        pick(&self.starts),
                    )
                    .await;
                rec.record(sample(origin, run_start, a.outcome, 0, 0, 0));
                if !a.outcome.is_success() {
                    return;
                }
                let id = serde_json::from_slice::<Envelope<StartData>>(&a.body)
                    .ok()
                    .and_then(|e| e.data)
                    .and_then(|d| d.operation_id.or(d.id))
                    .unwrap_or_else(|| "00000000000000000000000000000000".to_string());
                let mut r = Rng::new(slot);
                let body = serde_json::to_vec(&payload::operation_complete(&id, &mut r))
                    .unwrap_or_default();
                let second = Instant::now();
                rec.sent();
                let a = http
                    .send(
                        Method::POST,
                        &self.endpoints.complete,
                        &self.headers.json_bearer,
                        Bytes::from(body),
                    )
                    .await;
                let done = u32::from(a.outcome.is_success());
                rec.record(sample(second, run_start, a.outcome, done, 0, 0));
            }
            Action::Dashboard(which) => {
                let (uri, headers) = match which {
                    0 => (&self.endpoints.stats, &self.headers.key_only),
                    1 => (&self.endpoints.trends, &self.headers.key_only),
                    _ => (&self.endpoints.dashboard, &self.headers.bearer_only),
                };
                rec.sent();
                let a = http.send(Method::GET, uri, headers, Bytes::new()).await;
                rec.record(sample(origin, run_start, a.outcome, 0, 0, 0));
            }
        }
    }
}

fn unanswered(o: Outcome) -> u32 {
    u32::from(matches!(o, Outcome::ConnError | Outcome::Timeout))
}

fn sample(
    origin: Instant,
    run_start: Instant,
    outcome: Outcome,
    events: u32,
    accepted_errors: u32,
    ambiguous_errors: u32,
) -> Sample {
    let now = Instant::now();
    Sample {
        done: now.saturating_duration_since(run_start),
        latency_us: now.saturating_duration_since(origin).as_micros() as u64,
        outcome,
        events,
        accepted_errors,
        ambiguous_errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_has_the_promised_weights() {
        let mut counts = [0u32; 4];
        for slot in 0..100_000 {
            let i = match Scenario::Mix.action(slot) {
                Action::Single => 0,
                Action::Batch => 1,
                Action::Ops => 2,
                Action::Dashboard(_) => 3,
                Action::Envelope => unreachable!("not in the mix"),
            };
            counts[i] += 1;
        }
        let pct: Vec<f64> = counts.iter().map(|&c| f64::from(c) / 1000.0).collect();
        for (got, want) in pct.iter().zip([60.0, 25.0, 10.0, 5.0]) {
            assert!((got - want).abs() < 1.0, "{pct:?}");
        }
    }

    #[test]
    fn batches_decode_after_compression() {
        let g = Generator::new(50, 1);
        let mut rng = Rng::new(1);
        let raw = batch_body(&g, 20, BatchFormat::Json, &mut rng).unwrap();
        let v: Vec<serde_json::Value> = serde_json::from_slice(&raw).unwrap();
        assert_eq!(v.len(), 20);

        let gz = compress(&raw, Compression::Gzip).unwrap();
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out).unwrap();
        assert_eq!(out, raw);
        let zs = compress(&raw, Compression::Zstd).unwrap();
        assert_eq!(zstd::bulk::decompress(&zs, raw.len()).unwrap(), raw);
        assert!(gz.len() < raw.len() && zs.len() < raw.len());

        let nd = batch_body(&g, 5, BatchFormat::Ndjson, &mut rng).unwrap();
        let lines: Vec<&[u8]> = nd
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 5);
        for l in lines {
            serde_json::from_slice::<serde_json::Value>(l).unwrap();
        }
    }

    #[test]
    fn errors_sends_singles_and_batches_only() {
        let singles = (0..10_000)
            .filter(|&s| Scenario::Errors.action(s) == Action::Single)
            .count();
        assert!((7_700..8_300).contains(&singles), "{singles}");
        assert!((0..10_000)
            .all(|s| matches!(Scenario::Errors.action(s), Action::Single | Action::Batch)));
    }

    #[test]
    fn envelope_builds_sentry_bodies_only() {
        let cfg = WorkloadConfig {
            scenario: Scenario::Envelope,
            fingerprints: 20,
            pool_size: 16,
            batch_size: 100,
            compression: Compression::Gzip,
            batch_format: BatchFormat::Json,
            seed: 7,
        };
        let auth = Auth {
            api_key: Some("k".into()),
            tenant: None,
        };
        let endpoints = Endpoints::new("http://127.0.0.1:1", None)
            .unwrap()
            .sentry_project("9")
            .unwrap();
        let w = Workload::build(&cfg, endpoints, &auth).unwrap();
        assert_eq!(w.envelopes.len(), 16);
        assert!(w.singles.is_empty() && w.batches.is_empty() && w.starts.is_empty());
        assert!(w.single_bytes > 500, "{}", w.single_bytes);
        assert_eq!(w.endpoints().envelope.path(), "/api/9/envelope/");
        assert!((0..100).all(|s| Scenario::Envelope.action(s) == Action::Envelope));
        for body in &w.envelopes {
            let first = body.split(|&b| b == b'\n').next().unwrap();
            let h: serde_json::Value = serde_json::from_slice(first).unwrap();
            assert_eq!(h["event_id"].as_str().unwrap().len(), 32);
        }
    }

    #[test]
    fn dashboard_rotates() {
        let v: Vec<Action> = (0..4).map(|s| Scenario::Dashboard.action(s)).collect();
        assert_eq!(
            v,
            vec![
                Action::Dashboard(0),
                Action::Dashboard(1),
                Action::Dashboard(2),
                Action::Dashboard(0)
            ]
        );
    }
}
