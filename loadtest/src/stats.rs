//! What the run measured: latency histograms (HdrHistogram, microseconds),
//! status counts, events, and the same per second for the chart. Workers
//! buffer samples and hand them over in bulk, so the hot path takes a lock
//! once every few hundred requests.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use hdrhistogram::Histogram;

/// Highest latency the histograms hold (one hour, in microseconds).
const MAX_US: u64 = 3_600_000_000;
const FLUSH_EVERY: usize = 256;

/// How one HTTP request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Status(u16),
    ConnError,
    Timeout,
}

impl Outcome {
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Status(s) if (200..300).contains(&s))
    }
}

/// One finished request.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it finished, from the start of the run.
    pub done: Duration,
    /// From its scheduled time to its last response byte.
    pub latency_us: u64,
    pub outcome: Outcome,
    /// Events it delivered: 1 for a single error or a completed operation,
    /// the accepted count for a batch.
    pub events: u32,
    /// Error events the server accepted (the loss check's count).
    pub accepted_errors: u32,
    /// Error events sent with no answer: they may or may not be stored.
    pub ambiguous_errors: u32,
}

fn histogram(sigfig: u8) -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, MAX_US, sigfig)?)
}

/// Totals over a window.
#[derive(Debug, Clone)]
pub struct Stats {
    pub latency: Histogram<u64>,
    pub by_code: BTreeMap<u16, u64>,
    pub conn_errors: u64,
    pub timeouts: u64,
    pub requests: u64,
    pub events: u64,
    pub accepted_errors: u64,
    pub ambiguous_errors: u64,
    /// Schedule slots performed (an `ops` slot is two requests).
    pub slots: u64,
    /// Slots sent more than the late threshold after they were due.
    pub late: u64,
    /// Slots never sent: still waiting for a free connection when the
    /// window (and its grace period) ended.
    pub unsent: u64,
    /// Wall time of the window: from its start until its last answer.
    pub window_secs: f64,
}

impl Stats {
    pub fn new() -> Result<Self> {
        Ok(Self {
            latency: histogram(3)?,
            by_code: BTreeMap::new(),
            conn_errors: 0,
            timeouts: 0,
            requests: 0,
            events: 0,
            accepted_errors: 0,
            ambiguous_errors: 0,
            slots: 0,
            late: 0,
            unsent: 0,
            window_secs: 0.0,
        })
    }

    pub fn record(&mut self, s: &Sample) {
        self.requests += 1;
        self.events += u64::from(s.events);
        self.accepted_errors += u64::from(s.accepted_errors);
        self.ambiguous_errors += u64::from(s.ambiguous_errors);
        match s.outcome {
            Outcome::Status(code) => {
                *self.by_code.entry(code).or_default() += 1;
                self.latency.saturating_record(s.latency_us.max(1));
            }
            Outcome::ConnError => self.conn_errors += 1,
            Outcome::Timeout => self.timeouts += 1,
        }
    }

    pub fn merge(&mut self, o: &Stats) -> Result<()> {
        self.latency.add(&o.latency)?;
        for (code, n) in &o.by_code {
            *self.by_code.entry(*code).or_default() += n;
        }
        self.conn_errors += o.conn_errors;
        self.timeouts += o.timeouts;
        self.requests += o.requests;
        self.events += o.events;
        self.accepted_errors += o.accepted_errors;
        self.ambiguous_errors += o.ambiguous_errors;
        self.slots += o.slots;
        self.late += o.late;
        self.unsent += o.unsent;
        self.window_secs += o.window_secs;
        Ok(())
    }

    pub fn count_in(&self, range: std::ops::Range<u16>) -> u64 {
        self.by_code.range(range).map(|(_, n)| n).sum()
    }

    /// Requests that did not get a 2xx, connection errors included.
    pub fn failures(&self) -> u64 {
        self.requests - self.count_in(200..300)
    }

    /// Latency at quantile `q` (0..=1) in milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.latency.max() as f64 / 1000.0
    }
}

/// One second of the run, for the chart.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub requests: u64,
    pub events: u64,
    pub failures: u64,
    pub latency: Histogram<u64>,
}

/// Per-second buckets, indexed by seconds from the run's start.
#[derive(Debug, Default)]
pub struct Timeline {
    pub seconds: Vec<Bucket>,
}

impl Timeline {
    fn record(&mut self, s: &Sample) -> Result<()> {
        let i = s.done.as_secs() as usize;
        while self.seconds.len() <= i {
            self.seconds.push(Bucket {
                requests: 0,
                events: 0,
                failures: 0,
                latency: histogram(2)?,
            });
        }
        if let Some(b) = self.seconds.get_mut(i) {
            b.requests += 1;
            b.events += u64::from(s.events);
            if !s.outcome.is_success() {
                b.failures += 1;
            }
            if let Outcome::Status(_) = s.outcome {
                b.latency.saturating_record(s.latency_us.max(1));
            }
        }
        Ok(())
    }
}

/// Live counters for the progress bar (cheap atomics).
#[derive(Debug, Default)]
pub struct Live {
    pub sent: AtomicU64,
    pub failures: AtomicU64,
    /// The current target rate (f64 bits), for `--mode max`.
    pub target: AtomicU64,
}

impl Live {
    pub fn set_target(&self, rate: f64) {
        self.target.store(rate.to_bits(), Ordering::Relaxed);
    }
    pub fn target(&self) -> f64 {
        f64::from_bits(self.target.load(Ordering::Relaxed))
    }
}

struct Shared {
    window: Stats,
    timeline: Timeline,
}

/// Where every worker's samples end up.
pub struct Collector {
    shared: Mutex<Shared>,
    pub live: Live,
}

impl Collector {
    pub fn new() -> Result<Arc<Self>> {
        Ok(Arc::new(Self {
            shared: Mutex::new(Shared {
                window: Stats::new()?,
                timeline: Timeline::default(),
            }),
            live: Live::default(),
        }))
    }

    fn absorb(&self, samples: &[Sample]) {
        let mut g = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        for s in samples {
            g.window.record(s);
            // the only failure is a histogram that cannot be allocated;
            // the chart then lacks that second, the totals are unaffected
            let _ = g.timeline.record(s);
        }
    }

    /// Takes the current window's totals and starts a new window.
    pub fn take_window(&self) -> Result<Stats> {
        let mut g = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        Ok(std::mem::replace(&mut g.window, Stats::new()?))
    }

    /// Takes the per-second buckets.
    pub fn take_timeline(&self) -> Timeline {
        let mut g = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut g.timeline)
    }

    pub fn recorder(self: &Arc<Self>) -> Recorder {
        Recorder {
            buf: Vec::with_capacity(FLUSH_EVERY),
            collector: self.clone(),
        }
    }
}

/// A worker's buffer of samples.
pub struct Recorder {
    buf: Vec<Sample>,
    collector: Arc<Collector>,
}

impl Recorder {
    pub fn sent(&self) {
        self.collector.live.sent.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record(&mut self, s: Sample) {
        if !s.outcome.is_success() {
            self.collector.live.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.buf.push(s);
        if self.buf.len() >= FLUSH_EVERY {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        if !self.buf.is_empty() {
            self.collector.absorb(&self.buf);
            self.buf.clear();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(us: u64, outcome: Outcome) -> Sample {
        Sample {
            done: Duration::from_millis(us / 1000),
            latency_us: us,
            outcome,
            events: 1,
            accepted_errors: u32::from(outcome.is_success()),
            ambiguous_errors: 0,
        }
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut s = Stats::new().unwrap();
        // 1..=10_000 µs, one each
        for us in 1..=10_000 {
            s.record(&sample(us, Outcome::Status(201)));
        }
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.002 + 0.001;
        assert!(close(s.latency_ms(0.5), 5.0), "{}", s.latency_ms(0.5));
        assert!(close(s.latency_ms(0.9), 9.0), "{}", s.latency_ms(0.9));
        assert!(close(s.latency_ms(0.99), 9.9), "{}", s.latency_ms(0.99));
        assert!(close(s.latency_ms(0.999), 9.99), "{}", s.latency_ms(0.999));
        assert!(close(s.max_ms(), 10.0), "{}", s.max_ms());
        assert_eq!(s.requests, 10_000);
        assert_eq!(s.failures(), 0);
    }

    #[test]
    fn counts_and_merge() {
        let mut a = Stats::new().unwrap();
        a.record(&sample(100, Outcome::Status(201)));
        a.record(&sample(100, Outcome::Status(429)));
        a.record(&sample(100, Outcome::ConnError));
        let mut b = Stats::new().unwrap();
        b.record(&sample(5_000_000, Outcome::Status(503)));
        b.record(&sample(100, Outcome::Timeout));
        a.merge(&b).unwrap();
        assert_eq!(a.requests, 5);
        assert_eq!(a.failures(), 4);
        assert_eq!(a.count_in(500..600), 1);
        assert_eq!(a.count_in(400..500), 1);
        assert_eq!(a.conn_errors, 1);
        assert_eq!(a.timeouts, 1);
        assert_eq!(a.accepted_errors, 1);
        assert!((a.max_ms() - 5000.0).abs() < 5.0);
    }

    #[test]
    fn collector_buckets_by_second() {
        let c = Collector::new().unwrap();
        {
            let mut r = c.recorder();
            for i in 0..1000u64 {
                r.record(Sample {
                    done: Duration::from_millis(i * 3),
                    ..sample(200, Outcome::Status(200))
                });
            }
        }
        let t = c.take_timeline();
        assert_eq!(t.seconds.len(), 3);
        assert_eq!(t.seconds.iter().map(|b| b.requests).sum::<u64>(), 1000);
        assert_eq!(c.take_window().unwrap().requests, 1000);
        assert_eq!(c.take_window().unwrap().requests, 0);
    }
}
