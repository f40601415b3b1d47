//! Per-connection deadlines between requests, for HTTP/1 and HTTP/2 alike:
//!
//! - **header timeout**: a new connection must deliver its first request's
//!   headers within it; later, a request's headers must arrive within it of
//!   that request's first byte (HTTP/1; between HTTP/2 requests bytes are
//!   the connection's own frames, and only the idle timeout applies);
//! - **idle timeout**: a connection with no request in flight and no byte
//!   of a new one is closed after it.
//!
//! hyper's own `header_read_timeout` does not fit: behind hyper-util's
//! auto builder it starts only once the protocol sniff has read bytes (a
//! connection that sends nothing is never timed out), and on a kept-alive
//! connection it starts when the previous answer is written, so it bounds
//! idle time and header time together and the two cannot differ.
//!
//! The socket is wrapped in [`Watched`], which notes the first byte read
//! while idle; requests and their bodies hold a [`Busy`] token while in
//! flight. [`expired`] sleeps until the deadline that applies and returns
//! which one passed; the connection is then dropped (no request is in
//! flight, so none is lost).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::per_client::Ticket;

/// The two deadlines; `None` turns one off.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Option<Duration>,
    pub idle: Option<Duration>,
}

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    Header,
    Idle,
}

impl Expired {
    pub fn as_str(self) -> &'static str {
        match self {
            Expired::Header => "header",
            Expired::Idle => "idle",
        }
    }
}

/// What a connection is doing, shared by its socket, its requests and
/// its watchdog. Times are milliseconds since `born`.
#[derive(Debug)]
pub struct Activity {
    born: Instant,
    busy: AtomicUsize,
    served: AtomicBool,
    /// HTTP/2: bytes between requests are frames of the connection
    /// (WINDOW_UPDATE, PING), not a request's start; only the idle
    /// timeout applies between requests.
    http2: AtomicBool,
    idle_since: AtomicU64,
    /// 1 + the time of the first byte read while idle; 0 when none.
    first_byte: AtomicU64,
    changed: Notify,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            born: Instant::now(),
            busy: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            first_byte: AtomicU64::new(0),
            changed: Notify::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A token held while a request (or its body) is in flight.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.served.store(true, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// Notes that the connection speaks HTTP/2.
    pub fn http2(&self) {
        self.http2.store(true, Ordering::Relaxed);
    }

    fn saw_bytes(&self) {
        if self.first_byte.load(Ordering::Relaxed) != 0
            || self.busy.load(Ordering::Relaxed) != 0
            || self.http2.load(Ordering::Relaxed)
        {
            return;
        }
        let now = self.now_ms() + 1;
        if self
            .first_byte
            .compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.changed.notify_one();
        }
    }

    /// The deadline that applies now (ms since `born`), if any.
    fn deadline(&self, t: &Timeouts) -> Option<(u64, Expired)> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if self.busy.load(Ordering::SeqCst) > 0 {
            return None;
        }
        if !self.served.load(Ordering::SeqCst) {
            return t.header.map(|h| (ms(h), Expired::Header));
        }
        match self.first_byte.load(Ordering::SeqCst) {
            0 => t.idle.map(|i| {
                let since = self.idle_since.load(Ordering::SeqCst);
                (since.saturating_add(ms(i)), Expired::Idle)
            }),
            first => t
                .header
                .map(|h| ((first - 1).saturating_add(ms(h)), Expired::Header)),
        }
    }
}

/// A request in flight; the connection is idle again once every token
/// is dropped.
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since.store(a.now_ms(), Ordering::SeqCst);
        a.first_byte.store(0, Ordering::SeqCst);
        if a.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            a.changed.notify_one();
        }
    }
}

/// A response body that keeps its connection busy until it is sent
/// (or dropped): a long answer is never cut by the idle timeout.
pub struct Sending<B> {
    inner: B,
    _busy: Busy,
}

impl<B> Sending<B> {
    pub fn new(inner: B, busy: Busy) -> Self {
        Self { inner, _busy: busy }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Sending<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Resolves when the connection has been idle, or reading headers, for
/// longer than allowed; never while a request is in flight.
pub async fn expired(a: &Activity, t: Timeouts) -> Expired {
    loop {
        match a.deadline(&t) {
            None => a.changed.notified().await,
            Some((at, which)) => {
                if a.now_ms() >= at {
                    return which;
                }
                let when = a.born + Duration::from_millis(at);
                tokio::select! {
                    _ = tokio::time::sleep_until(when) => {}
                    _ = a.changed.notified() => {}
                }
            }
        }
    }
}

/// A socket that tells its [`Activity`] when bytes arrive, and holds the
/// connection's place among its client's ([`Ticket`]) until it is dropped,
/// also after an upgrade (WebSocket).
#[derive(Debug)]
pub struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
    _ticket: Option<Ticket>,
}

impl<T> Watched<T> {
    pub fn new(inner: T, activity: Arc<Activity>, ticket: Option<Ticket>) -> Self {
        Self {
            inner,
            activity,
            _ticket: ticket,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.saw_bytes();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts(header_ms: u64, idle_ms: u64) -> Timeouts {
        Timeouts {
            header: Some(Duration::from_millis(header_ms)),
            idle: Some(Duration::from_millis(idle_ms)),
        }
    }

    fn about(elapsed: Duration, ms: u64) -> bool {
        let e = elapsed.as_millis() as u64;
        e >= ms && e < ms + 400
    }

    #[tokio::test]
    async fn a_new_connection_gets_the_header_timeout_from_its_start() {
        let a = Activity::new();
        let start = Instant::now();
        assert_eq!(expired(&a, timeouts(100, 500)).await, Expired::Header);
        assert!(about(start.elapsed(), 100), "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn idle_then_header_after_the_first_byte() {
        let a = Activity::new();
        drop(a.busy());
        let t = timeouts(100, 500);
        let start = Instant::now();
        // idle: the idle timeout applies
        assert_eq!(expired(&a, t).await, Expired::Idle);
        assert!(about(start.elapsed(), 500), "{:?}", start.elapsed());

        // a byte 200 ms into idleness: its headers are due 100 ms later
        drop(a.busy());
        let start = Instant::now();
        let w = {
            let a = a.clone();
            tokio::spawn(async move { expired(&a, t).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        a.saw_bytes();
        assert_eq!(w.await.unwrap(), Expired::Header);
        assert!(about(start.elapsed(), 300), "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn never_while_busy() {
        let a = Activity::new();
        let busy = a.busy();
        let t = timeouts(50, 100);
        let w = {
            let a = a.clone();
            tokio::spawn(async move { expired(&a, t).await })
        };
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!w.is_finished());
        let start = Instant::now();
        drop(busy);
        assert_eq!(w.await.unwrap(), Expired::Idle);
        assert!(about(start.elapsed(), 100), "{:?}", start.elapsed());
    }
}
