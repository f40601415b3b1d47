//! When each request is due: an open-loop schedule fixed in advance, so a
//! slow server delays sends but never thins out the schedule (no
//! coordinated omission). Slot `n` is the `n`-th request of a window.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// `rate` slots a second for `secs` seconds.
    Rate { rate: f64, secs: f64 },
    /// From `from` to `to` slots a second, linearly over `secs` seconds.
    Ramp { from: f64, to: f64, secs: f64 },
}

impl Schedule {
    pub fn secs(&self) -> f64 {
        match *self {
            Schedule::Rate { secs, .. } | Schedule::Ramp { secs, .. } => secs,
        }
    }

    /// Seconds from the window's start at which slot `n` is due.
    fn offset_secs(&self, n: u64) -> Option<f64> {
        let n = n as f64;
        let t = match *self {
            Schedule::Rate { rate, .. } => {
                if rate <= 0.0 {
                    return None;
                }
                n / rate
            }
            Schedule::Ramp { from, to, secs } => {
                // slots due by t: N(t) = from·t + k·t², k = (to − from) / (2·secs)
                let from = from.max(0.0);
                let k = (to.max(0.0) - from) / (2.0 * secs);
                if k.abs() < 1e-12 {
                    if from <= 0.0 {
                        return None;
                    }
                    n / from
                } else {
                    let disc = from * from + 4.0 * k * n;
                    if disc < 0.0 {
                        return None;
                    }
                    (disc.sqrt() - from) / (2.0 * k)
                }
            }
        };
        (t.is_finite() && t >= 0.0 && t < self.secs()).then_some(t)
    }

    /// When slot `n` is due, or `None` past the window's end.
    pub fn offset(&self, n: u64) -> Option<Duration> {
        self.offset_secs(n).map(Duration::from_secs_f64)
    }

    /// How many slots the window holds.
    pub fn slots(&self) -> u64 {
        let estimate = match *self {
            Schedule::Rate { rate, secs } => rate.max(0.0) * secs,
            Schedule::Ramp { from, to, secs } => (from.max(0.0) + to.max(0.0)) / 2.0 * secs,
        };
        let mut n = estimate.ceil().max(0.0) as u64;
        // settle floating-point edges against `offset` itself
        while n > 0 && self.offset_secs(n - 1).is_none() {
            n -= 1;
        }
        while self.offset_secs(n).is_some() {
            n += 1;
        }
        n
    }

    /// The target rate at `t` seconds into the window.
    #[cfg(test)]
    pub fn rate_at(&self, t: f64) -> f64 {
        match *self {
            Schedule::Rate { rate, .. } => rate,
            Schedule::Ramp { from, to, secs } => from + (to - from) * (t / secs).clamp(0.0, 1.0),
        }
    }
}

/// The rates `--mode max` tries, each chosen from how the last one went:
/// `start`, then ×`factor` while steps pass; when the very first step
/// fails, ÷`factor` until one passes (down to 1/s); then `refine` steps
/// halving the gap between the best passing and the lowest failing rate.
#[derive(Debug, Clone)]
pub struct MaxPlan {
    factor: f64,
    refine_left: u32,
    next: Option<f64>,
    best: Option<f64>,
    failed: Option<f64>,
}

impl MaxPlan {
    pub fn new(start: f64, factor: f64, refine: u32) -> Self {
        Self {
            factor,
            refine_left: refine,
            next: Some(start),
            best: None,
            failed: None,
        }
    }

    /// The rate of the next step, if any.
    pub fn next_rate(&self) -> Option<f64> {
        self.next
    }

    /// The highest rate that passed.
    pub fn best(&self) -> Option<f64> {
        self.best
    }

    /// Records whether the step at `rate` met the SLO.
    pub fn record(&mut self, rate: f64, met: bool) {
        if met {
            self.best = Some(self.best.map_or(rate, |b| b.max(rate)));
        } else {
            self.failed = Some(self.failed.map_or(rate, |f| f.min(rate)));
        }
        self.next = match (self.best, self.failed) {
            // still climbing
            (Some(b), None) => Some(b * self.factor),
            // nothing has passed yet: descend
            (None, Some(f)) => Some(f / self.factor).filter(|r| *r >= 1.0),
            (Some(b), Some(f)) if self.refine_left > 0 => {
                self.refine_left -= 1;
                Some((b + f) / 2.0)
            }
            _ => None,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_evenly_spaced() {
        let s = Schedule::Rate {
            rate: 2000.0,
            secs: 5.0,
        };
        assert_eq!(s.offset(0), Some(Duration::ZERO));
        let near = |n: u64, secs: f64| (s.offset(n).unwrap().as_secs_f64() - secs).abs() < 1e-9;
        assert!(near(1, 0.0005));
        assert!(near(2000, 1.0));
        assert_eq!(s.slots(), 10_000);
        assert!(s.offset(9_999).is_some());
        assert!(s.offset(10_000).is_none());
        assert_eq!(
            Schedule::Rate {
                rate: 0.0,
                secs: 5.0
            }
            .slots(),
            0
        );
    }

    #[test]
    fn ramp_follows_the_integral_of_the_rate() {
        let s = Schedule::Ramp {
            from: 100.0,
            to: 1000.0,
            secs: 10.0,
        };
        // average rate 550/s over 10 s
        assert!((s.slots() as i64 - 5500).abs() <= 1, "{}", s.slots());
        // by t = 5 s: 100·5 + 45·25 = 1625 slots
        let t = s.offset(1625).unwrap().as_secs_f64();
        assert!((t - 5.0).abs() < 1e-6, "{t}");
        // the local spacing matches the instantaneous rate
        let a = s.offset(1000).unwrap().as_secs_f64();
        let b = s.offset(1001).unwrap().as_secs_f64();
        let rate = 1.0 / (b - a);
        assert!(
            (rate - s.rate_at(a)).abs() < 1.0,
            "{rate} vs {}",
            s.rate_at(a)
        );
        // offsets only grow
        let mut last = 0.0;
        for n in 0..s.slots() {
            let t = s.offset(n).unwrap().as_secs_f64();
            assert!(t >= last);
            last = t;
        }
    }

    #[test]
    fn ramp_down_and_from_zero() {
        let down = Schedule::Ramp {
            from: 1000.0,
            to: 0.0,
            secs: 4.0,
        };
        assert!((down.slots() as i64 - 2000).abs() <= 1, "{}", down.slots());
        let up = Schedule::Ramp {
            from: 0.0,
            to: 400.0,
            secs: 2.0,
        };
        assert!((up.slots() as i64 - 400).abs() <= 1, "{}", up.slots());
        // first second holds a quarter of the slots
        let first_second = (0..up.slots())
            .filter(|&n| up.offset(n).unwrap() < Duration::from_secs(1))
            .count();
        assert!((first_second as i64 - 100).abs() <= 1, "{first_second}");
    }

    #[test]
    fn max_plan_climbs_then_bisects() {
        let mut p = MaxPlan::new(1000.0, 1.5, 2);
        let mut tried = Vec::new();
        // passes up to 2,000/s
        while let Some(r) = p.next_rate() {
            tried.push(r);
            p.record(r, r <= 2000.0);
        }
        assert_eq!(tried, vec![1000.0, 1500.0, 2250.0, 1875.0, 2062.5]);
        assert_eq!(p.best(), Some(1875.0));
    }

    #[test]
    fn max_plan_descends_when_the_start_is_too_high() {
        let mut p = MaxPlan::new(1000.0, 2.0, 1);
        let mut tried = Vec::new();
        while let Some(r) = p.next_rate() {
            tried.push(r);
            p.record(r, r <= 300.0);
        }
        assert_eq!(tried, vec![1000.0, 500.0, 250.0, 375.0]);
        assert_eq!(p.best(), Some(250.0));
        // nothing ever passes: it stops below 1/s
        let mut p = MaxPlan::new(4.0, 2.0, 3);
        let mut n = 0;
        while let Some(r) = p.next_rate() {
            p.record(r, false);
            n += 1;
        }
        assert_eq!((n, p.best()), (3, None));
    }
}
