//! Request bodies with a deadline, and the rest of a body read after its
//! handler has let go of it (a lingering close, as nginx does).
//!
//! [`Timed`] fails with an `io::ErrorKind::TimedOut` error when a body
//! arrives too slowly: it may take `timeout`, plus one second for every
//! `min_rate` bytes received, from the moment its handler starts reading
//! it. A large body at a reasonable rate always fits; a trickle does not.
//! The failure is noted on the request ([`TimedOut`]) so the listener can
//! answer 408 whatever the handler made of the error.
//!
//! When a handler drops an HTTP/1 body before its end (a 413 decided on
//! `Content-Length`, a refusal before the body is read), hyper would close
//! the connection with the rest unread, and a client that writes its whole
//! body before reading (Python's urllib, many SDK transports) gets a broken
//! pipe instead of the answer. So the rest is read and thrown away in the
//! background, at most `linger_bytes` and for at most `linger_time`; the
//! answer is sent meanwhile. A body declaring more than `linger_bytes` is
//! not drained: the connection closes after the answer, as before.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

use super::watchdog::Busy;

/// How slow a body may be, and how much of an abandoned one is drained.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Time any body may take; `None`: no deadline at all.
    pub timeout: Option<Duration>,
    /// Each this many bytes received add a second to the deadline; 0: none.
    pub min_rate: u64,
    pub linger_bytes: u64,
    pub linger_time: Duration,
}

impl BodyLimits {
    /// How long a body that has delivered `received` bytes may have taken.
    fn allowance(&self, received: u64) -> Option<Duration> {
        let base = self.timeout?;
        if self.min_rate == 0 {
            return Some(base);
        }
        let extra_ms = received.saturating_mul(1000) / self.min_rate;
        Some(base.saturating_add(Duration::from_millis(extra_ms)))
    }
}

/// Set on a request whose body timed out.
#[derive(Debug, Clone, Default)]
pub struct TimedOut(Arc<AtomicBool>);

impl TimedOut {
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The error a body gives when it is too slow.
fn too_slow() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "request body arrived too slowly")
}

/// An incoming body held to [`BodyLimits`], drained when dropped early.
pub struct Timed {
    inner: Option<Incoming>,
    limits: BodyLimits,
    started: Option<Instant>,
    received: u64,
    sleep: Option<Pin<Box<Sleep>>>,
    timed_out: TimedOut,
    /// Drain the rest when dropped (HTTP/1 without `Expect: 100-continue`).
    linger: bool,
    busy: Option<Busy>,
}

impl Timed {
    pub fn new(
        inner: Incoming,
        limits: BodyLimits,
        linger: bool,
        timed_out: TimedOut,
        busy: Busy,
    ) -> Self {
        Self {
            inner: Some(inner),
            limits,
            started: None,
            received: 0,
            sleep: None,
            timed_out,
            linger,
            busy: Some(busy),
        }
    }

    fn expire(&mut self) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if !self.timed_out.get() {
            self.timed_out.set();
            metrics::counter!("sluice_connection_timeouts_total", "phase" => "body").increment(1);
        }
        // the rest is not drained: the client is too slow for it
        self.inner = None;
        self.busy = None;
        Poll::Ready(Some(Err(too_slow())))
    }
}

impl Body for Timed {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.timed_out.get() {
            return this.expire();
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let started = *this.started.get_or_insert_with(Instant::now);
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.received += d.len() as u64;
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(io::Error::other(e)))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        let Some(allowed) = this.limits.allowance(this.received) else {
            return Poll::Pending;
        };
        let deadline = started + allowed;
        if Instant::now() >= deadline {
            return this.expire();
        }
        let sleep = match &mut this.sleep {
            Some(s) => {
                if s.deadline() != deadline {
                    s.as_mut().reset(deadline);
                }
                s
            }
            None => this
                .sleep
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        if sleep.as_mut().poll(cx).is_ready() {
            return this.expire();
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        if !self.linger || self.timed_out.get() || inner.is_end_stream() {
            return;
        }
        if inner.size_hint().lower() > self.limits.linger_bytes {
            metrics::counter!("sluice_body_lingering_total", "outcome" => "too_large").increment(1);
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let limits = self.limits;
        let busy = self.busy.take();
        rt.spawn(async move {
            let outcome = drain(inner, limits).await;
            metrics::counter!("sluice_body_lingering_total", "outcome" => outcome).increment(1);
            tracing::debug!(outcome, "unread request body drained");
            drop(busy);
        });
    }
}

/// Reads and discards the rest of `body` within the linger bounds; says
/// how it ended: `drained`, `closed` (by the client), `too_large` or
/// `too_slow`.
async fn drain(mut body: Incoming, limits: BodyLimits) -> &'static str {
    let read = async {
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            // an error here is the client closing first, its answer read
            let Ok(frame) = frame else {
                return "closed";
            };
            if let Some(d) = frame.data_ref() {
                n += d.len() as u64;
                if n > limits.linger_bytes {
                    return "too_large";
                }
            }
        }
        "drained"
    };
    tokio::time::timeout(limits.linger_time, read)
        .await
        .unwrap_or("too_slow")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowance_grows_with_what_arrived() {
        let l = BodyLimits {
            timeout: Some(Duration::from_secs(10)),
            min_rate: 1000,
            linger_bytes: 0,
            linger_time: Duration::ZERO,
        };
        assert_eq!(l.allowance(0), Some(Duration::from_secs(10)));
        assert_eq!(l.allowance(5_000), Some(Duration::from_secs(15)));
        let fixed = BodyLimits { min_rate: 0, ..l };
        assert_eq!(fixed.allowance(1 << 30), Some(Duration::from_secs(10)));
        let none = BodyLimits { timeout: None, ..l };
        assert_eq!(none.allowance(5), None);
    }
}
