//! `/ws`, the product's one WebSocket endpoint: live events of the
//! caller's tenant.
//!
//! Producers publish through [`sluice_storage::live::Publisher`] to a
//! per-tenant Redis channel. Each API process runs ONE [`Hub::run`] task
//! holding a pattern subscription to every tenant's channel; it hands each
//! event to the sockets of that tenant only, through a bounded queue per
//! socket. A queue that is full means its client reads too slowly: that
//! socket is closed (1008, "too slow") instead of buffering more. A frame
//! that cannot be written within the send timeout counts the same. The
//! server pings every `ping_interval` and closes a socket whose client has
//! not answered within `pong_timeout`. Sockets are capped per tenant and
//! per process; over a cap the handshake is refused with 429.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;
use uuid::Uuid;

use crate::error::ApiError;
use crate::openapi::backup::BackupError;
use crate::ApiState;

/// Limits of the live endpoint.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Events queued per socket; a client that lets more pile up is dropped.
    pub buffer: usize,
    /// How often the server pings each socket.
    pub ping_interval: Duration,
    /// How long a client has to answer a ping (any frame counts).
    pub pong_timeout: Duration,
    /// How long writing one frame may take before the client counts as slow.
    pub send_timeout: Duration,
    /// Sockets one tenant may hold on one API process.
    pub max_per_tenant: usize,
    /// Sockets one API process holds at most.
    pub max_total: usize,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            buffer: 256,
            ping_interval: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(10),
            max_per_tenant: 100,
            max_total: 10_000,
        }
    }
}

/// Wakes a socket the fan-out dropped as too slow.
struct Kick {
    notify: Notify,
}

struct Slot {
    tx: mpsc::Sender<Utf8Bytes>,
    kick: Arc<Kick>,
}

#[derive(Default)]
struct Sockets {
    by_tenant: HashMap<Uuid, HashMap<u64, Slot>>,
    counts: HashMap<Uuid, usize>,
    total: usize,
}

struct Inner {
    cfg: LiveConfig,
    sockets: Mutex<Sockets>,
    next_id: AtomicU64,
    subscribed: watch::Sender<bool>,
    closing: watch::Sender<bool>,
}

/// This process's fan-out of live events to its sockets, by tenant.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// A cap that refused a new socket.
#[derive(Debug, Clone, Copy)]
pub enum Full {
    Tenant,
    Total,
}

/// A socket's place in the hub, released when dropped.
pub struct Registration {
    hub: Hub,
    tenant: Uuid,
    id: u64,
    rx: mpsc::Receiver<Utf8Bytes>,
    kick: Arc<Kick>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut s = self.hub.lock();
        if let Some(conns) = s.by_tenant.get_mut(&self.tenant) {
            conns.remove(&self.id);
            if conns.is_empty() {
                s.by_tenant.remove(&self.tenant);
            }
        }
        if let Some(n) = s.counts.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                s.counts.remove(&self.tenant);
            }
        }
        s.total -= 1;
        metrics::gauge!("sluice_ws_connections").set(s.total as f64);
    }
}

impl Hub {
    pub fn new(cfg: LiveConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                cfg,
                sockets: Mutex::new(Sockets::default()),
                next_id: AtomicU64::new(0),
                subscribed: watch::channel(false).0,
                closing: watch::channel(false).0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sockets> {
        // the map stays consistent even if a holder panicked
        self.inner
            .sockets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn config(&self) -> &LiveConfig {
        &self.inner.cfg
    }

    /// Reserves a socket of `tenant`, within the caps.
    pub fn register(&self, tenant: Uuid) -> Result<Registration, Full> {
        let cfg = &self.inner.cfg;
        let mut s = self.lock();
        if s.total >= cfg.max_total {
            return Err(Full::Total);
        }
        if s.counts.get(&tenant).copied().unwrap_or(0) >= cfg.max_per_tenant {
            return Err(Full::Tenant);
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(cfg.buffer.max(1));
        let kick = Arc::new(Kick {
            notify: Notify::new(),
        });
        s.by_tenant.entry(tenant).or_default().insert(
            id,
            Slot {
                tx,
                kick: kick.clone(),
            },
        );
        *s.counts.entry(tenant).or_default() += 1;
        s.total += 1;
        metrics::gauge!("sluice_ws_connections").set(s.total as f64);
        Ok(Registration {
            hub: self.clone(),
            tenant,
            id,
            rx,
            kick,
        })
    }

    /// Hands one event to every socket of `tenant` (and no other). A socket
    /// whose queue is full is kicked out as too slow.
    pub fn deliver(&self, tenant: Uuid, frame: Utf8Bytes) {
        if tenant == sluice_storage::live::BROADCAST {
            // Sluice's own events (service status) go to every tenant
            let tenants: Vec<Uuid> = self.lock().by_tenant.keys().copied().collect();
            for t in tenants.into_iter().filter(|t| *t != tenant) {
                self.deliver(t, frame.clone());
            }
            return;
        }
        let mut s = self.lock();
        let Some(conns) = s.by_tenant.get_mut(&tenant) else {
            return;
        };
        let mut delivered = 0u64;
        conns.retain(|_, slot| match slot.tx.try_send(frame.clone()) {
            Ok(()) => {
                delivered += 1;
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                slot.kick.notify.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        metrics::counter!("sluice_ws_events_total").increment(delivered);
    }

    /// Waits (at most `within`) until the Redis subscription is up.
    pub async fn wait_subscribed(&self, within: Duration) -> bool {
        let mut rx = self.inner.subscribed.subscribe();
        tokio::time::timeout(within, rx.wait_for(|up| *up))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The one subscriber task of this process: subscribes to every
    /// tenant's channel under `prefix`, fans events out, and reconnects
    /// (after 1 s) when Redis goes away, until `shutdown`; then closes
    /// every socket.
    pub async fn run(self, redis_url: String, prefix: String, mut shutdown: watch::Receiver<bool>) {
        loop {
            let attempt = async {
                match sluice_storage::live::Subscription::connect(&redis_url, &prefix).await {
                    Ok(sub) => {
                        self.inner.subscribed.send_replace(true);
                        tracing::info!("live events: subscribed");
                        sub.run(|tenant, text| self.deliver(tenant, Utf8Bytes::from(text)))
                            .await;
                        self.inner.subscribed.send_replace(false);
                        tracing::warn!("live events: Redis subscription ended; reconnecting");
                    }
                    Err(e) => tracing::warn!(error = %e, "live events: cannot subscribe"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            };
            tokio::select! {
                _ = attempt => {}
                _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
            }
        }
        self.inner.subscribed.send_replace(false);
        self.inner.closing.send_replace(true);
    }
}

/// Why the server ends a socket.
#[derive(Debug, Clone, Copy)]
enum End {
    /// The client closed or the connection failed: nothing more to send.
    Gone,
    Slow,
    NoPong,
    Shutdown,
}

#[utoipa::path(
    get,
    path = "/ws",
    operation_id = "ws_connect",
    tag = "backup",
    params(
        ("token" = Option<String>, Query, description = "An access token or API key (browsers cannot set headers); else X-API-Key, else Authorization: Bearer"),
        ("tenant" = Option<String>, Query, description = "The tenant (id or slug) of a user of several; else X-Tenant-ID"),
    ),
    responses(
        (status = 101, description = "Switching to a WebSocket (RFC 6455): JSON text frames of the tenant's events, e.g. backup_progress {type, backup_id, progress, status}"),
        (status = 400, body = BackupError, description = "Not a WebSocket upgrade request, or a malformed query string"),
        (status = 401, body = BackupError, description = "No token, or an invalid one (refused at the handshake)"),
        (status = 403, body = BackupError, description = "The tenant named is not the caller's"),
        (status = 429, body = BackupError, description = "Too many sockets open; see Retry-After"),
        (status = 503, body = BackupError, description = "A backing store is unavailable; see Retry-After"),
    ),
    security((), ("bearerAuth" = []), ("apiKey" = []))
)]
/// `GET /ws`: authenticates (`?token=` with a JWT or an API key, else
/// `X-API-Key`, else `Authorization: Bearer`; `?tenant=` or `X-Tenant-ID`
/// picks the tenant of a JWT whose user has several), then upgrades.
pub async fn connect(
    State(state): State<ApiState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let checked = match authenticate(&state, query.as_deref(), &headers) {
        Ok(p) => crate::auth::current(&state, p).await,
        Err(e) => Err(e),
    };
    let tenant = match checked {
        Ok(p) => p.tenant_id,
        Err(e) => return e.into_response(),
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rej) => return ApiError::BadRequest(rej.body_text()).into_response(),
    };
    let hub = state.live.clone();
    let reg = match hub.register(tenant) {
        Ok(r) => r,
        Err(full) => {
            let reason = match full {
                Full::Tenant => "tenant_cap",
                Full::Total => "total_cap",
            };
            metrics::counter!("sluice_ws_refused_total", "reason" => reason).increment(1);
            return ApiError::RateLimited { retry_after: 5 }.into_response();
        }
    };
    if !hub.wait_subscribed(Duration::from_secs(5)).await {
        tracing::warn!("live events: socket opened while the Redis subscription is down");
    }
    let cfg = hub.config().clone();
    let closing = hub.inner.closing.subscribe();
    let span = tracing::info_span!("ws", tenant = %tenant);
    // clients send only pongs and close frames: nothing large is read
    ws.max_message_size(64 << 10)
        .max_frame_size(64 << 10)
        .on_upgrade(move |socket| {
            tracing::Instrument::instrument(serve(socket, reg, cfg, closing), span)
        })
}

fn authenticate(
    state: &ApiState,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<sluice_auth::principal::Principal, ApiError> {
    let params: HashMap<String, String> = query
        .map(serde_urlencoded::from_str)
        .transpose()
        .map_err(|_| ApiError::BadRequest("malformed query string".into()))?
        .unwrap_or_default();
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let tenant_hint = params
        .get("tenant")
        .map(String::as_str)
        .or_else(|| h("x-tenant-id"));
    // `?token=` and `X-API-Key` are read as a Bearer credential: the same
    // checks (JWT or API key, the named tenant) for every way in
    let token = params
        .get("token")
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .or_else(|| h("x-api-key").map(str::trim));
    let bearer = token.map(|t| format!("Bearer {t}"));
    let authorization = bearer.as_deref().or_else(|| h("authorization"));
    sluice_auth::principal::resolve(authorization, tenant_hint, &state.keys, &state.tokens).map_err(
        |e| match e {
            sluice_auth::AuthError::WrongTenant => ApiError::Forbidden(e.to_string()),
            _ => ApiError::Unauthorized(e.to_string()),
        },
    )
}

/// One socket's life: events out, pings out, pongs in, until one side ends.
async fn serve(
    socket: WebSocket,
    mut reg: Registration,
    cfg: LiveConfig,
    mut closing: watch::Receiver<bool>,
) {
    let (mut sink, mut stream) = socket.split();
    let mut ping = tokio::time::interval_at(Instant::now() + cfg.ping_interval, cfg.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // when the unanswered ping was sent
    let mut awaiting: Option<Instant> = None;
    let kick = reg.kick.clone();
    let end = loop {
        let pong_deadline = awaiting.map(|at| at + cfg.pong_timeout);
        tokio::select! {
            ev = reg.rx.recv() => match ev {
                Some(text) => {
                    match tokio::time::timeout(cfg.send_timeout, sink.send(Message::Text(text))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break End::Gone,
                        Err(_) => break End::Slow,
                    }
                }
                None => break End::Slow,
            },
            _ = kick.notify.notified() => break End::Slow,
            _ = ping.tick() => {
                if awaiting.is_none() {
                    awaiting = Some(Instant::now());
                }
                match tokio::time::timeout(cfg.send_timeout, sink.send(Message::Ping(Default::default()))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break End::Gone,
                    Err(_) => break End::Slow,
                }
            }
            _ = async { tokio::time::sleep_until(pong_deadline.unwrap_or_else(Instant::now)).await }, if pong_deadline.is_some() => {
                break End::NoPong;
            }
            msg = stream.next() => match msg {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break End::Gone,
                // any frame shows the client is there; text from clients is ignored
                Some(Ok(_)) => awaiting = None,
            },
            _ = async { let _ = closing.wait_for(|c| *c).await; } => break End::Shutdown,
        }
    };
    let frame = match end {
        End::Gone => None,
        End::Slow => {
            metrics::counter!("sluice_ws_dropped_total", "reason" => "slow").increment(1);
            tracing::info!("live socket dropped: client too slow to read");
            Some((close_code::POLICY, "client too slow: send buffer full"))
        }
        End::NoPong => {
            metrics::counter!("sluice_ws_dropped_total", "reason" => "ping_timeout").increment(1);
            tracing::info!("live socket dropped: no pong");
            Some((close_code::POLICY, "no pong within the ping timeout"))
        }
        End::Shutdown => Some((close_code::AWAY, "server shutting down")),
    };
    // the closing handshake, one second at most for each half: our close
    // frame (or the reply to the client's), then the client's answer
    let second = Duration::from_secs(1);
    let Some((code, reason)) = frame else {
        let _ = tokio::time::timeout(second, sink.close()).await;
        return;
    };
    let close = Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }));
    if let Ok(Ok(())) = tokio::time::timeout(second, sink.send(close)).await {
        let until = Instant::now() + second;
        while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(until, stream.next()).await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    }
}
