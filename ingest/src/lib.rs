//! Sluice's ingest tier: the hot path, on raw hyper.
//!
//! An error's path: [`Ingest::handle`] authenticates the `X-API-Key` from
//! the in-memory [`KeyDirectory`] (no database round trip), applies the
//! key's rate limit ([`sluice_storage::ratelimit`]), reads the body within
//! its caps, waits for its turn ([`gate`]), decompresses it ([`body`]),
//! validates each event, scrubs PII ([`scrub`]) and fingerprints it
//! ([`fingerprint`]), then hands it to the [`sink`], which appends it to
//! the tenant's Redis stream shard in a pipelined round trip shared with
//! concurrent requests.
//!
//! What a success answer guarantees: the event is in Redis (durable as far
//! as Redis is configured to be: [`sluice_storage::durability`], reported
//! on `/health`), and on `SLUICE_REDIS_MIN_REPLICAS` replicas when that is
//! set. It does not guarantee the event is yet visible through the API:
//! workers store it shortly after.

pub mod body;
pub mod client_ip;
pub mod context;
pub mod event;
pub mod fingerprint;
pub mod frames;
pub mod gate;
pub mod gunzip;
pub mod response;
pub mod scrub;
pub mod sentry;
pub mod sink;
pub mod tracking;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use ipnet::IpNet;
use sluice_storage::keys::{KeyDirectory, KeyInfo};
use sluice_storage::model::ErrorEvent;
use tracing::Instrument;

use crate::event::RequestMeta;
use crate::response::{Rejection, Reply};
use crate::scrub::ScrubConfig;
use crate::sink::{SinkError, StreamSink};
use sluice_storage::ratelimit::KeyLimiter;

/// Ingest settings.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Requests per minute per key when the key sets none; 0 = unlimited.
    pub rate_limit_per_min: u32,
    pub max_event_bytes: usize,
    pub max_request_bytes: usize,
    pub max_batch_events: usize,
    /// Request bytes (as received and decompressed) all requests together
    /// may hold: the bound on ingest's memory for bodies.
    pub max_inflight_body_bytes: usize,
    /// Requests between their body and their answer at once ([`gate`]),
    /// and how long a request may wait for its turn before it is refused
    /// (503).
    pub decode_slots: usize,
    pub decode_wait: std::time::Duration,
    pub scrub: ScrubConfig,
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            rate_limit_per_min: 1000,
            max_event_bytes: 1 << 20,
            max_request_bytes: 20 << 20,
            max_batch_events: 1000,
            max_inflight_body_bytes: 64 << 20,
            decode_slots: 64,
            decode_wait: std::time::Duration::from_secs(2),
            scrub: ScrubConfig::default(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// The paths this tier serves; everything else belongs to the API tier.
pub fn is_ingest_path(path: &str) -> bool {
    matches!(
        path,
        "/api/errors" | "/api/errors/batch" | tracking::START_PATH | tracking::COMPLETE_PATH
    ) || sentry::route(path).is_some()
}

/// Whether a request is for this tier (`POST` to an ingest path).
pub fn is_ingest_request<B>(req: &Request<B>) -> bool {
    req.method() == Method::POST && is_ingest_path(req.uri().path())
}

/// Who posts errors: the tenant, and the key or user that rate limits
/// count against.
struct Writer {
    tenant_id: uuid::Uuid,
    id: uuid::Uuid,
    rate_limit: Option<u32>,
}

pub struct Ingest {
    cfg: IngestConfig,
    budget: body::Budget,
    gate: gate::Gate,
    keys: KeyDirectory,
    limiter: KeyLimiter,
    sink: Arc<StreamSink>,
    tracking: tracking::Tracking,
}

impl Ingest {
    pub fn new(
        cfg: IngestConfig,
        keys: KeyDirectory,
        sink: Arc<StreamSink>,
        tracking: tracking::Tracking,
    ) -> Self {
        Self {
            limiter: KeyLimiter::new(cfg.rate_limit_per_min),
            budget: body::Budget::new(cfg.max_inflight_body_bytes),
            gate: gate::Gate::new(cfg.decode_slots, cfg.decode_wait),
            cfg,
            keys,
            sink,
            tracking,
        }
    }

    /// Serves one request. Never fails: every problem is an answer.
    pub async fn handle<B>(&self, req: Request<B>, peer: SocketAddr) -> Reply
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let span =
            tracing::info_span!("ingest", path = %req.uri().path(), tenant = tracing::field::Empty);
        let tracking = req.uri().path().starts_with("/api/v1/tracking/");
        let sentry = sentry::route(req.uri().path());
        async move {
            if let Some(endpoint) = sentry.filter(|_| req.method() == Method::POST) {
                return self.serve_sentry(endpoint, req, peer).await;
            }
            let result = if tracking && req.method() == Method::POST {
                self.tracking.serve(req, &self.budget).await
            } else {
                self.serve(req, peer).await
            };
            match result {
                Ok(reply) => reply,
                Err(rej) => {
                    metrics::counter!("sluice_ingest_rejected_total", "reason" => rej.reason)
                        .increment(1);
                    tracing::debug!(status = %rej.status, reason = rej.reason, "rejected");
                    if tracking {
                        rej.into_tracking_reply()
                    } else {
                        rej.into_reply()
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn serve<B>(&self, req: Request<B>, peer: SocketAddr) -> Result<Reply, Rejection>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = req.uri().path();
        if !matches!(path, "/api/errors" | "/api/errors/batch") {
            return Err(Rejection::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "not found",
            ));
        }
        if req.method() != Method::POST {
            return Err(Rejection::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method",
                "method not allowed",
            ));
        }
        let batch = path.ends_with("/batch");
        let key = self.authenticate(&req)?;
        tracing::Span::current().record("tenant", tracing::field::display(key.tenant_id));
        self.check_rate(&key)?;
        let meta = RequestMeta {
            tenant_id: key.tenant_id,
            ts_ms: chrono::Utc::now().timestamp_millis(),
            user_agent: req
                .headers()
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            ip_address: Some(
                client_ip::client_ip(peer, req.headers(), &self.cfg.trusted_proxies).to_string(),
            ),
        };
        let limit = if batch {
            self.cfg.max_request_bytes
        } else {
            self.cfg.max_event_bytes
        };
        let (parts, body) = req.into_parts();
        let raw = body::read_raw(&parts.headers, body, limit, &self.budget).await?;
        // At most `decode_slots` requests at a time decompress, decode,
        // encode for the stream and wait for Redis; the body and the
        // decoded events are gone before the wait.
        let slot = self.gate.enter().await?;
        let bytes = raw.decompress(limit, &self.budget).await?;
        let (chunks, events, reply) = if batch {
            self.batch(&bytes, &meta)?
        } else {
            self.single(&bytes, &meta)?
        };
        drop(bytes);
        self.store(&meta, chunks).await?;
        drop(slot);
        metrics::counter!("sluice_ingest_events_total").increment(events as u64);
        Ok(reply)
    }

    /// `X-API-Key`, or else `Authorization: Bearer` (an access token or
    /// an API key, as every Health Monitor endpoint accepts); the caller
    /// must be allowed to write.
    fn authenticate<B>(&self, req: &Request<B>) -> Result<Writer, Rejection> {
        let unauthorized = |m: &str| Rejection::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
        let Some(key) = req.headers().get("x-api-key").and_then(|v| v.to_str().ok()) else {
            if req.headers().contains_key(http::header::AUTHORIZATION) {
                let p = self.tracking.principal(req)?;
                return Ok(Writer {
                    tenant_id: p.tenant_id,
                    id: p.subject.id(),
                    rate_limit: None,
                });
            }
            return Err(unauthorized("missing X-API-Key header"));
        };
        self.writer_of_key(key)
    }

    /// A 429 when the writer is over its rate limit.
    fn check_rate(&self, w: &Writer) -> Result<(), Rejection> {
        self.limiter
            .check(w.id, w.rate_limit)
            .map_err(|wait| Rejection {
                retry_after: Some(wait),
                ..Rejection::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "rate limit exceeded for this API key",
                )
            })
    }

    /// The writer an API key stands for: 401 for a key the directory does
    /// not know, 403 for one that may not write.
    fn writer_of_key(&self, key: &str) -> Result<Writer, Rejection> {
        let info: Arc<KeyInfo> = self.keys.authenticate(key.trim()).ok_or_else(|| {
            Rejection::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "invalid, revoked or expired API key",
            )
        })?;
        if !info.can("write") {
            return Err(Rejection::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this API key may not write errors",
            ));
        }
        Ok(Writer {
            tenant_id: info.tenant_id,
            id: info.id,
            rate_limit: info.rate_limit_per_min,
        })
    }

    /// One event: its chunk, and the answer once Redis has it.
    fn single(&self, bytes: &[u8], meta: &RequestMeta) -> Result<Decoded, Rejection> {
        let ev = event::decode(bytes, meta, &self.cfg.scrub).map_err(|e| {
            Rejection::bad_request(if std::str::from_utf8(bytes).is_err() {
                "body is not valid UTF-8".to_string()
            } else {
                e
            })
        })?;
        let ts = event::rfc3339(ev.ts_ms);
        let reply = response::success_of(StatusCode::CREATED, &event::accepted_view(&ev, &ts));
        Ok((chunks(std::slice::from_ref(&ev)), 1, reply))
    }

    /// A batch: the accepted events' chunks, how many, and the answer.
    fn batch(&self, bytes: &[u8], meta: &RequestMeta) -> Result<Decoded, Rejection> {
        let items = decode_batch(bytes, meta, &self.cfg)?;
        // Per item: Ok(index into `accepted`) or the reason it was refused.
        let mut outcomes: Vec<Result<usize, String>> = Vec::with_capacity(items.len());
        let mut accepted: Vec<ErrorEvent<'_>> = Vec::with_capacity(items.len());
        for decoded in items {
            outcomes.push(decoded.map(|ev| {
                accepted.push(ev);
                accepted.len() - 1
            }));
        }
        let n = accepted.len();
        let rejected = outcomes.len() - n;
        if rejected > 0 {
            metrics::counter!("sluice_ingest_rejected_total", "reason" => "invalid_item")
                .increment(rejected as u64);
        }
        let results: Vec<response::ItemResult<'_>> = outcomes
            .iter()
            .enumerate()
            .map(|(index, o)| match o {
                Ok(i) => response::ItemResult::accepted(index, &accepted[*i]),
                Err(reason) => response::ItemResult::rejected(index, reason),
            })
            .collect();
        if n == 0 {
            return Err(Rejection {
                details: serde_json::to_value(&results).ok(),
                ..Rejection::bad_request("no valid events in batch")
            });
        }
        let reply = response::success_of(
            StatusCode::OK,
            &response::BatchResult {
                accepted: n,
                rejected,
                results,
            },
        );
        Ok((chunks(&accepted), n, reply))
    }

    async fn store(&self, meta: &RequestMeta, chunks: Vec<sink::Chunk>) -> Result<(), Rejection> {
        self.sink
            .append(meta.tenant_id, chunks)
            .await
            .map_err(|e| match e {
                SinkError::QueueFull => {
                    Rejection::unavailable("queue_full", "ingest is overloaded, retry later", 1)
                }
                SinkError::Backlog => {
                    Rejection::unavailable("backlog", "ingest backlog is full, retry later", 5)
                }
                SinkError::Redis(_) => {
                    Rejection::unavailable("redis", "event store unavailable, retry later", 2)
                }
                SinkError::NotReplicated(_) => Rejection::unavailable(
                    "not_replicated",
                    "too few Redis replicas acknowledged the event in time, retry later (the primary may have stored it)",
                    2,
                ),
            })
    }
}

/// A batch body decoded as `POST /api/errors/batch` decodes it: split
/// into items (a JSON array, or NDJSON), each item then decoded on its own
/// ([`event::decode`]). The whole request is refused when it cannot be
/// split or holds more than `max_batch_events` items; otherwise each item
/// is its event or the reason it was refused, in order.
pub fn decode_batch<'a>(
    bytes: &'a [u8],
    meta: &'a RequestMeta,
    cfg: &'a IngestConfig,
) -> Result<impl ExactSizeIterator<Item = Result<ErrorEvent<'a>, String>> + 'a, Rejection> {
    let items = split_batch(bytes).map_err(|e| {
        if std::str::from_utf8(bytes).is_err() {
            Rejection::bad_request("body is not valid UTF-8")
        } else {
            e
        }
    })?;
    if items.len() > cfg.max_batch_events {
        return Err(Rejection::too_large(format!(
            "batch has {} events; at most {} are accepted per request",
            items.len(),
            cfg.max_batch_events
        )));
    }
    Ok(items.into_iter().map(move |item| match item {
        Err(e) => Err(e),
        Ok(raw) if raw.len() > cfg.max_event_bytes => {
            Err(format!("event exceeds {} bytes", cfg.max_event_bytes))
        }
        Ok(raw) => decode(raw, meta, &cfg.scrub),
    }))
}

/// Decodes one event; the error says so when the event's bytes are not
/// UTF-8 (checked only then: JSON parsing validates what it reads).
fn decode<'a>(
    raw: &'a [u8],
    meta: &'a RequestMeta,
    scrub: &ScrubConfig,
) -> Result<ErrorEvent<'a>, String> {
    event::decode(raw, meta, scrub).map_err(|e| match std::str::from_utf8(raw) {
        Ok(_) => e,
        Err(_) => "event is not valid UTF-8".to_string(),
    })
}

/// A request decoded: its chunks for the stream, its event count, and the
/// answer to send once Redis holds them.
type Decoded = (Vec<sink::Chunk>, usize, Reply);

/// Encodes a request's events for the stream, in chunks of about
/// [`sink::MAX_ENTRY_BYTES`] at most, so no stream entry grows past that
/// (a single event larger than that is a chunk of its own).
fn chunks(events: &[ErrorEvent<'_>]) -> Vec<sink::Chunk> {
    let size = |e: &ErrorEvent<'_>| {
        let opt = |s: &Option<std::borrow::Cow<'_, str>>| s.as_deref().map_or(0, str::len);
        48 + e.message.len()
            + e.fingerprint.len()
            + e.source.len()
            + opt(&e.stack_trace)
            + opt(&e.context)
            + opt(&e.environment)
            + opt(&e.url)
    };
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, e) in events.iter().enumerate() {
        let s = size(e);
        if i > start && bytes + s > sink::MAX_ENTRY_BYTES {
            out.push(sink::Chunk::encode(&events[start..i], bytes));
            start = i;
            bytes = 0;
        }
        bytes += s;
    }
    if start < events.len() {
        out.push(sink::Chunk::encode(&events[start..], bytes));
    }
    out
}

/// A batch body: a JSON array, or NDJSON (one event a line). A malformed
/// array fails whole; a malformed NDJSON line fails only itself.
fn split_batch(bytes: &[u8]) -> Result<Vec<Result<&[u8], String>>, Rejection> {
    let trimmed = bytes.trim_ascii_start();
    if trimmed.is_empty() {
        return Err(Rejection::bad_request("empty batch"));
    }
    if trimmed[0] == b'[' {
        let raws: Vec<&serde_json::value::RawValue> = serde_json::from_slice(trimmed)
            .map_err(|e| Rejection::bad_request(format!("malformed JSON array: {e}")))?;
        return Ok(raws.into_iter().map(|r| Ok(r.get().as_bytes())).collect());
    }
    Ok(trimmed
        .split(|b| *b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|l| !l.is_empty())
        .map(Ok)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_split_as_array_or_ndjson() {
        let a = split_batch(br#" [{"message":"a"}, {"message":"b"}]"#).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[1].as_ref().unwrap(), &br#"{"message":"b"}"#.as_slice());
        let n = split_batch(b"{\"message\":\"a\"}\n\n{bad\n").unwrap();
        assert_eq!(n.len(), 2);
        assert!(split_batch(b"[{").is_err());
        assert!(split_batch(b"  ").is_err());
        assert!(is_ingest_path("/api/errors/batch"));
        assert!(!is_ingest_path("/api/errors/123"));
    }
}
