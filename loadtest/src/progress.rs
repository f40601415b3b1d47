//! The live progress line (indicatif): elapsed time, requests sent, the
//! current send rate and failures. Hidden with `--json` or when stdout is
//! not a terminal.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;

use crate::stats::Collector;

pub struct Progress {
    bar: Option<(ProgressBar, JoinHandle<()>)>,
}

impl Progress {
    pub fn start(collector: Arc<Collector>, show: bool) -> Self {
        if !show {
            return Self { bar: None };
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}") {
            bar.set_style(style);
        }
        let b = bar.clone();
        let task = tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let live = &collector.live;
                let sent = live.sent.load(Ordering::Relaxed);
                let failures = live.failures.load(Ordering::Relaxed);
                let now = Instant::now();
                let dt = now.duration_since(last.0).as_secs_f64().max(1e-3);
                let rate = sent.saturating_sub(last.1) as f64 / dt;
                last = (now, sent);
                let target = live.target();
                let target = if target > 0.0 {
                    format!("  target {target:.0}/s")
                } else {
                    String::new()
                };
                b.set_message(format!(
                    "sent {sent}  rate {rate:.0}/s  errors {failures}{target}"
                ));
                b.tick();
            }
        });
        Self {
            bar: Some((bar, task)),
        }
    }

    pub fn finish(self) {
        if let Some((bar, task)) = self.bar {
            task.abort();
            bar.finish_and_clear();
        }
    }
}
