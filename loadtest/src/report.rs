//! The final report: one serialisable object (`--json`, stable snake_case
//! keys) and its rendering as a table.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::check::{LossCheck, Tenant};
use crate::driver::LATE_AFTER;
use crate::lag::LagReport;
use crate::stats::{Stats, Timeline};

#[derive(Debug, Clone, Serialize)]
pub struct StatusCounts {
    #[serde(rename = "2xx")]
    pub s2xx: u64,
    #[serde(rename = "3xx")]
    pub s3xx: u64,
    #[serde(rename = "4xx")]
    pub s4xx: u64,
    #[serde(rename = "5xx")]
    pub s5xx: u64,
    #[serde(rename = "429")]
    pub s429: u64,
    #[serde(rename = "503")]
    pub s503: u64,
    pub connection_errors: u64,
    pub timeouts: u64,
    /// Every status code seen, e.g. `{"201": 9990, "400": 10}`.
    pub by_code: BTreeMap<String, u64>,
}

impl StatusCounts {
    pub fn of(s: &Stats) -> Self {
        Self {
            s2xx: s.count_in(200..300),
            s3xx: s.count_in(300..400),
            s4xx: s.count_in(400..500),
            s5xx: s.count_in(500..600),
            s429: s.count_in(429..430),
            s503: s.count_in(503..504),
            connection_errors: s.conn_errors,
            timeouts: s.timeouts,
            by_code: s.by_code.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    pub fn of(s: &Stats) -> Self {
        Self {
            p50: s.latency_ms(0.5),
            p90: s.latency_ms(0.9),
            p99: s.latency_ms(0.99),
            p999: s.latency_ms(0.999),
            max: s.max_ms(),
            mean: s.latency.mean() / 1000.0,
        }
    }
}

/// One step of `--mode max`.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub target_rate: f64,
    pub achieved_rate: f64,
    pub requests: u64,
    pub p99_ms: f64,
    pub non_2xx_pct: f64,
    pub met_slo: bool,
    /// Why the step missed the SLO, when it did.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MaxSearch {
    pub slo_p99_ms: f64,
    pub step_secs: f64,
    /// The highest target rate whose step met the SLO.
    pub best_rate: Option<f64>,
    pub steps: Vec<Step>,
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct SecondPoint {
    pub second: u64,
    pub requests: u64,
    pub events: u64,
    pub failures: u64,
    pub p99_ms: Option<f64>,
}

impl SecondPoint {
    pub fn series(t: &Timeline) -> Vec<SecondPoint> {
        t.seconds
            .iter()
            .enumerate()
            .map(|(i, b)| SecondPoint {
                second: i as u64,
                requests: b.requests,
                events: b.events,
                failures: b.failures,
                p99_ms: (!b.latency.is_empty())
                    .then(|| b.latency.value_at_quantile(0.99) as f64 / 1000.0),
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Payloads {
    pub fingerprints: usize,
    pub single_bytes: usize,
    pub batch_size: usize,
    pub batch_bytes: usize,
    pub batch_wire_bytes: usize,
    pub compression: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub url: String,
    pub scenario: String,
    pub mode: String,
    /// The mode's rates in words, e.g. "2000/s" or "100/s → 1000/s".
    pub target: String,
    pub connections: usize,
    pub duration_secs: f64,
    pub requests: u64,
    pub requests_per_sec: f64,
    /// Schedule slots performed (an ops slot is a start and a complete).
    pub slots: u64,
    pub events: u64,
    pub events_per_sec: f64,
    /// Error events the server accepted, warm-up and lag probes included:
    /// what the stores must hold for this run's tenant.
    pub accepted_errors: u64,
    /// Error events sent without an answer (they may or may not be stored).
    pub unanswered_errors: u64,
    pub status_counts: StatusCounts,
    pub latency_ms: Latency,
    pub late_sends: u64,
    pub late_threshold_ms: f64,
    pub unsent: u64,
    pub payloads: Payloads,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_search: Option<MaxSearch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<LagReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_check: Option<LossCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<Tenant>,
    pub per_second: Vec<SecondPoint>,
}

pub fn late_threshold_ms() -> f64 {
    LATE_AFTER.as_secs_f64() * 1000.0
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), ms)
}

impl Report {
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut row = |k: &str, v: String| rows.push((k.to_string(), v));
        row("target", self.url.clone());
        row("scenario", self.scenario.clone());
        row("mode", format!("{} {}", self.mode, self.target));
        row("connections", self.connections.to_string());
        let p = &self.payloads;
        let mut sizes = Vec::new();
        if p.single_bytes > 0 {
            sizes.push(format!("single {} B", p.single_bytes));
        }
        if p.batch_bytes > 0 {
            sizes.push(format!(
                "batch of {}: {} B, {} B on the wire ({})",
                p.batch_size, p.batch_bytes, p.batch_wire_bytes, p.compression
            ));
        }
        if !sizes.is_empty() {
            row(
                "payloads",
                format!("{} error kinds; {}", p.fingerprints, sizes.join("; ")),
            );
        }
        row("duration", format!("{:.2} s", self.duration_secs));
        row(
            "requests",
            format!("{} ({:.1}/s)", self.requests, self.requests_per_sec),
        );
        row(
            "events",
            format!("{} ({:.1}/s)", self.events, self.events_per_sec),
        );
        let s = &self.status_counts;
        row(
            "status",
            format!(
                "2xx {}  4xx {}  5xx {}  429 {}  503 {}  conn errors {}  timeouts {}",
                s.s2xx, s.s4xx, s.s5xx, s.s429, s.s503, s.connection_errors, s.timeouts
            ),
        );
        let fourxx: Vec<String> = s
            .by_code
            .iter()
            .filter(|(k, _)| k.starts_with('4'))
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        if !fourxx.is_empty() {
            row("4xx by code", fourxx.join(", "));
        }
        let l = &self.latency_ms;
        row(
            "latency ms",
            format!(
                "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
                ms(l.p50),
                ms(l.p90),
                ms(l.p99),
                ms(l.p999),
                ms(l.max)
            ),
        );
        row(
            "late sends",
            format!(
                "{} (> {} ms after due), unsent {}",
                self.late_sends, self.late_threshold_ms, self.unsent
            ),
        );
        if let Some(m) = &self.max_search {
            row(
                "max rate",
                match m.best_rate {
                    Some(r) => format!(
                        "{r:.0}/s met p99 <= {} ms, < 1% non-2xx, >= 90% achieved",
                        m.slo_p99_ms
                    ),
                    None => "no step met the SLO".to_string(),
                },
            );
            for (i, st) in m.steps.iter().enumerate() {
                row(
                    &format!("  step {}", i + 1),
                    format!(
                        "target {:.0}/s achieved {:.0}/s p99 {} ms non-2xx {:.2}% {}",
                        st.target_rate,
                        st.achieved_rate,
                        ms(st.p99_ms),
                        st.non_2xx_pct,
                        if st.met_slo {
                            "ok".to_string()
                        } else {
                            format!("FAIL ({})", st.reason.as_deref().unwrap_or("?"))
                        }
                    ),
                );
            }
        }
        if let Some(g) = &self.lag {
            row(
                "visibility lag",
                format!(
                    "p50 {} ms  p99 {} ms  max {} ms  ({} of {} probes visible, {} timed out{})",
                    opt_ms(g.p50_ms),
                    opt_ms(g.p99_ms),
                    opt_ms(g.max_ms),
                    g.visible,
                    g.samples,
                    g.timed_out,
                    if g.rate_limited_polls > 0 {
                        format!(", {} polls rate-limited", g.rate_limited_polls)
                    } else {
                        String::new()
                    }
                ),
            );
        }
        if let Some(c) = &self.loss_check {
            row(
                "loss check",
                format!(
                    "accepted {}  clickhouse {} ({} distinct)  postgres {}  lost {}  duplicated {}  unanswered {} ({} of them stored)",
                    c.accepted,
                    c.stored_clickhouse,
                    c.distinct_clickhouse,
                    c.stored_postgres,
                    c.lost,
                    c.duplicated,
                    c.unanswered,
                    c.stored_unanswered
                ),
            );
            row(
                "drain",
                match c.sustained_events_per_sec {
                    Some(rate) => format!(
                        "{:.2} s; sustained end-to-end {rate:.1} events/s",
                        c.drain_secs
                    ),
                    None => format!("timed out after {:.2} s", c.drain_secs),
                },
            );
        }
        if let Some(t) = &self.tenant {
            row("tenant", format!("{} ({})", t.slug, t.id));
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::from("Sluice load test\n");
        for (k, v) in rows {
            let _ = writeln!(out, "  {k:<width$}  {v}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Outcome, Sample};
    use std::time::Duration;

    #[test]
    fn json_keys_are_stable() {
        let mut s = Stats::new().unwrap();
        for (i, code) in [201u16, 201, 429, 400].into_iter().enumerate() {
            s.record(&Sample {
                done: Duration::from_millis(i as u64),
                latency_us: 1000,
                outcome: Outcome::Status(code),
                events: 1,
                accepted_errors: 1,
                ambiguous_errors: 0,
            });
        }
        let r = Report {
            url: "http://x".into(),
            scenario: "single".into(),
            mode: "rate".into(),
            target: "10/s".into(),
            connections: 4,
            duration_secs: 1.0,
            requests: s.requests,
            requests_per_sec: 4.0,
            slots: 4,
            events: 4,
            events_per_sec: 4.0,
            accepted_errors: 4,
            unanswered_errors: 0,
            status_counts: StatusCounts::of(&s),
            latency_ms: Latency::of(&s),
            late_sends: 0,
            late_threshold_ms: late_threshold_ms(),
            unsent: 0,
            payloads: Payloads {
                fingerprints: 1,
                single_bytes: 1,
                batch_size: 1,
                batch_bytes: 0,
                batch_wire_bytes: 0,
                compression: "none".into(),
            },
            max_search: None,
            lag: None,
            loss_check: None,
            tenant: None,
            per_second: vec![],
        };
        let v = serde_json::to_value(&r).unwrap();
        for k in [
            "requests",
            "duration_secs",
            "requests_per_sec",
            "events_per_sec",
            "status_counts",
            "latency_ms",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert_eq!(v["status_counts"]["2xx"], 2);
        assert_eq!(v["status_counts"]["429"], 1);
        assert_eq!(v["status_counts"]["4xx"], 2);
        assert_eq!(v["status_counts"]["by_code"]["400"], 1);
        for k in ["p50", "p90", "p99", "p999", "max"] {
            assert!(v["latency_ms"][k].as_f64().unwrap() > 0.9);
        }
        assert!(v.get("loss_check").is_none());
        let t = r.table();
        assert!(t.contains("4xx by code") && t.contains("429: 1"));
    }
}
