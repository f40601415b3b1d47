//! Sluice's ingest tier: the hot path, on raw hyper.
//!
//! An error's path: [`Ingest::handle`] authenticates the `X-API-Key` from
//! the in-memory [`KeyDirectory`] (no database round trip), applies the
//! key's rate limit ([`sluice_storage::ratelimit`]), reads the body within its caps and
//! decompresses it ([`body`]), validates each event, scrubs PII
//! ([`scrub`]) and fingerprints it ([`fingerprint`]), then hands it to the
//! [`sink`], which appends it to the tenant's Redis stream shard in a
//! pipelined round trip shared with concurrent requests.
//!
//! What a success answer guarantees: the event is in Redis (durable as far
//! as Redis is configured to be). It does not guarantee the event is yet
//! visible through the API: workers store it shortly after.

pub mod body;
pub mod client_ip;
pub mod event;
pub mod fingerprint;
pub mod response;
pub mod scrub;
pub mod sink;
pub mod tracking;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use ipnet::IpNet;
use serde_json::{json, Value};
use sluice_storage::keys::{KeyDirectory, KeyInfo};
use sluice_storage::model::ErrorEvent;
use sluice_storage::wire;
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
    )
}

/// Whether a request is for this tier (`POST` to an ingest path).
pub fn is_ingest_request<B>(req: &Request<B>) -> bool {
    req.method() == Method::POST && is_ingest_path(req.uri().path())
}

pub struct Ingest {
    cfg: IngestConfig,
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
            cfg,
            keys,
            sink,
            tracking,
        }
    }

    /// Serves one request. Never fails: every problem is an answer.
    pub async fn handle<B>(&self, req: Request<B>, peer: SocketAddr) -> Reply
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let span =
            tracing::info_span!("ingest", path = %req.uri().path(), tenant = tracing::field::Empty);
        let tracking = req.uri().path().starts_with("/api/v1/tracking/");
        async move {
            let result = if tracking && req.method() == Method::POST {
                self.tracking.serve(req).await
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
        B: hyper::body::Body<Data = Bytes>,
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
        if let Err(wait) = self.limiter.check(key.id, key.rate_limit_per_min) {
            return Err(Rejection {
                retry_after: Some(wait),
                ..Rejection::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "rate limit exceeded for this API key",
                )
            });
        }
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
        let bytes = body::read(&parts.headers, body, limit).await?;
        if std::str::from_utf8(&bytes).is_err() {
            return Err(Rejection::bad_request("body is not valid UTF-8"));
        }
        if batch {
            self.batch(&bytes, &meta).await
        } else {
            self.single(&bytes, &meta).await
        }
    }

    fn authenticate<B>(&self, req: &Request<B>) -> Result<Arc<KeyInfo>, Rejection> {
        let unauthorized = |m: &str| Rejection::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
        let key = req
            .headers()
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| unauthorized("missing X-API-Key header"))?;
        let info = self
            .keys
            .authenticate(key.trim())
            .ok_or_else(|| unauthorized("invalid or revoked API key"))?;
        if !info.can("write") {
            return Err(Rejection::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this API key may not write errors",
            ));
        }
        Ok(info)
    }

    async fn single(&self, bytes: &[u8], meta: &RequestMeta) -> Result<Reply, Rejection> {
        let ev = event::decode(bytes, meta, &self.cfg.scrub).map_err(Rejection::bad_request)?;
        self.store(meta, vec![Bytes::from(wire::encode(&ev))])
            .await?;
        metrics::counter!("sluice_ingest_events_total").increment(1);
        Ok(response::success(
            StatusCode::CREATED,
            event::accepted_view(&ev),
        ))
    }

    async fn batch(&self, bytes: &[u8], meta: &RequestMeta) -> Result<Reply, Rejection> {
        let items = split_batch(bytes)?;
        if items.len() > self.cfg.max_batch_events {
            return Err(Rejection::too_large(format!(
                "batch has {} events; at most {} are accepted per request",
                items.len(),
                self.cfg.max_batch_events
            )));
        }
        let mut results: Vec<Value> = Vec::with_capacity(items.len());
        let mut accepted: Vec<ErrorEvent> = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            let decoded = match item {
                Err(e) => Err(e),
                Ok(raw) if raw.len() > self.cfg.max_event_bytes => {
                    Err(format!("event exceeds {} bytes", self.cfg.max_event_bytes))
                }
                Ok(raw) => event::decode(raw, meta, &self.cfg.scrub),
            };
            match decoded {
                Ok(ev) => {
                    results.push(json!({"index": index, "status": "accepted", "id": ev.group_id, "fingerprint": ev.fingerprint}));
                    accepted.push(ev);
                }
                Err(reason) => {
                    results.push(json!({"index": index, "status": "rejected", "error": reason}))
                }
            }
        }
        let n = accepted.len();
        let rejected = results.len() - n;
        if rejected > 0 {
            metrics::counter!("sluice_ingest_rejected_total", "reason" => "invalid_item")
                .increment(rejected as u64);
        }
        if n == 0 {
            return Err(Rejection {
                details: Some(Value::Array(results)),
                ..Rejection::bad_request("no valid events in batch")
            });
        }
        let payloads = accepted
            .iter()
            .map(|e| Bytes::from(wire::encode(e)))
            .collect();
        self.store(meta, payloads).await?;
        metrics::counter!("sluice_ingest_events_total").increment(n as u64);
        Ok(response::success(
            StatusCode::OK,
            json!({"accepted": n, "rejected": rejected, "results": results}),
        ))
    }

    async fn store(&self, meta: &RequestMeta, payloads: Vec<Bytes>) -> Result<(), Rejection> {
        self.sink
            .append(meta.tenant_id, payloads)
            .await
            .map(|_| ())
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
            })
    }
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
