//! One listener, raw hyper: ingest paths go to the ingest handler, the rest
//! to the axum router (in `all` mode); or one of the two alone.
//!
//! Every connection is held to the limits in [`ConnLimits`]: a cap per
//! client address ([`per_client`]), header and idle timeouts
//! ([`watchdog`]), and a deadline on request bodies with a lingering drain
//! of abandoned ones ([`request_body`]). Slow or idle clients are cut off
//! instead of holding the listener's slots.

pub mod per_client;
pub mod request_body;
pub mod watchdog;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use sluice_ingest::Ingest;
use sluice_storage::durability::Inspector;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use self::per_client::PerClient;
use self::request_body::{BodyLimits, Timed, TimedOut};
use self::watchdog::{Activity, Sending, Timeouts, Watched};

/// What a listener serves.
pub struct Dispatch {
    pub ingest: Option<Arc<Ingest>>,
    pub api: Option<axum::Router>,
    /// What Redis promises, for `/health` when no API tier answers it.
    pub durability: Inspector,
    /// Counts every answered request and open connection (monitoring).
    pub monitor: sluice_storage::monitor::Monitor,
}

/// How many connections a listener serves, and how long it waits for them.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Connections one client address may hold (0 = no limit); more are
    /// refused at once.
    pub per_client: usize,
    /// Addresses exempt from `per_client` (reverse proxies).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub timeouts: Timeouts,
    pub body: BodyLimits,
}

impl Dispatch {
    /// Serves one request; its body is held to `limits`, and a body that
    /// timed out is answered 408 in the envelope of its route.
    async fn handle_within(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        activity: &Arc<Activity>,
        limits: &BodyLimits,
    ) -> Response<Body> {
        let started = std::time::Instant::now();
        let tier = if self.ingest.is_some()
            && (sluice_ingest::is_ingest_request(&req) || self.api.is_none())
        {
            sluice_storage::monitor::Tier::Ingest
        } else {
            sluice_storage::monitor::Tier::Api
        };
        let busy = activity.busy();
        if req.version() == http::Version::HTTP_2 {
            activity.http2();
        }
        let http1 = req.version() <= http::Version::HTTP_11;
        let linger = http1
            && !req
                .headers()
                .get(http::header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let timed_out = TimedOut::default();
        let uri = req.uri().clone();
        let req = req.map(|b| Timed::new(b, *limits, linger, timed_out.clone(), activity.busy()));
        let mut res = self.handle(req, peer).await;
        if timed_out.get() && res.status() != http::StatusCode::REQUEST_TIMEOUT {
            res = self.body_timeout(uri.path());
        }
        if timed_out.get() && http1 {
            // the rest of the body is not read: the connection cannot
            // carry another request
            res.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        self.monitor
            .record(tier, res.status().as_u16(), started.elapsed());
        res.map(|b| Body::new(Sending::new(b, busy)))
    }

    /// The 408 for a body that arrived too slowly, in its route's envelope.
    fn body_timeout(&self, path: &str) -> Response<Body> {
        if self.ingest.is_some() && (sluice_ingest::is_ingest_path(path) || self.api.is_none()) {
            let rej = sluice_ingest::response::Rejection::new(
                http::StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                sluice_ingest::body::BODY_TIMEOUT_MESSAGE,
            );
            let reply = if path.starts_with("/api/v1/tracking/") {
                rej.into_tracking_reply()
            } else {
                rej.into_reply()
            };
            return reply.map(Body::new);
        }
        sluice_api::error::body_timeout(path)
    }

    async fn handle(&self, req: Request<Timed>, peer: SocketAddr) -> Response<Body> {
        if let Some(ingest) = &self.ingest {
            if sluice_ingest::is_ingest_request(&req) || self.api.is_none() {
                if self.api.is_none() && req.uri().path() == "/health" {
                    return health(&self.durability).await;
                }
                return ingest.handle(req, peer).await.map(Body::new);
            }
        }
        match &self.api {
            Some(router) => {
                let mut req = req;
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                match router.clone().oneshot(req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                }
            }
            None => health(&self.durability).await,
        }
    }
}

/// The ingest tier's `/health`: up, and what an accepted event survives.
async fn health(durability: &Inspector) -> Response<Body> {
    let body = serde_json::json!({
        "status": "ok",
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "durability": durability.report().await,
    });
    let mut r = Response::new(Body::from(body.to_string()));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// Accepts connections until `shutdown` turns true, then lets open
/// requests finish (up to 10 s). At most `limits.max_connections` are
/// served at once; further ones wait in the kernel's accept queue. A
/// connection from an address that already holds `limits.per_client` is
/// closed at once, with a reset: refusing costs no task, no buffer and no
/// timer, whatever the flood does next, and works the same for HTTP/1 and
/// HTTP/2 (an answer would need its request read first, which is what a
/// slow client withholds).
pub async fn serve(
    listener: TcpListener,
    dispatch: Arc<Dispatch>,
    limits: ConnLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let per_client = PerClient::new(limits.per_client, limits.trusted_proxies.clone());
    let timeouts = limits.timeouts;
    let body_limits = limits.body;
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let ticket = match per_client.admit(peer.ip()).ticket() {
                    Ok(t) => t,
                    Err(per_client::Refused) => {
                        metrics::counter!("sluice_connections_refused_total", "reason" => "per_client")
                            .increment(1);
                        tracing::debug!(%peer, "connection refused: too many from this address");
                        let _ = stream.set_zero_linger();
                        drop(stream);
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let counted = dispatch.monitor.connection();
                let activity = Activity::new();
                let d = dispatch.clone();
                let a = activity.clone();
                let svc = service_fn(move |req: Request<Incoming>| {
                    let d = d.clone();
                    let a = a.clone();
                    async move {
                        Ok::<_, Infallible>(d.handle_within(req, peer, &a, &body_limits).await)
                    }
                });
                let io = TokioIo::new(Watched::new(stream, activity.clone(), ticket));
                let conn = builder.serve_connection_with_upgrades(io, svc).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    tokio::select! {
                        ended = conn => {
                            if let Err(e) = ended {
                                tracing::debug!(error = %e, "connection ended with an error");
                            }
                        }
                        which = watchdog::expired(&activity, timeouts) => {
                            metrics::counter!("sluice_connection_timeouts_total", "phase" => which.as_str())
                                .increment(1);
                            tracing::debug!(%peer, timeout = which.as_str(), "connection closed");
                        }
                    }
                    drop(slot);
                    drop(counted);
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 10 s; closing them");
    }
}
