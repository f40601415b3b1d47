//! One listener, raw hyper: ingest paths go to the ingest handler, the rest
//! to the axum router (in `all` mode); or one of the two alone.

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

/// What a listener serves.
pub struct Dispatch {
    pub ingest: Option<Arc<Ingest>>,
    pub api: Option<axum::Router>,
    /// What Redis promises, for `/health` when no API tier answers it.
    pub durability: Inspector,
}

impl Dispatch {
    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
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
/// requests finish (up to 10 s). At most `max_connections` are served at
/// once; further ones wait in the kernel's accept queue.
pub async fn serve(
    listener: TcpListener,
    dispatch: Arc<Dispatch>,
    max_connections: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
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
                let _ = stream.set_nodelay(true);
                let d = dispatch.clone();
                let svc = service_fn(move |req: Request<Incoming>| {
                    let d = d.clone();
                    async move { Ok::<_, Infallible>(d.handle(req, peer).await) }
                });
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    drop(slot);
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
