//! The Sentry SDK protocol on the ingest tier: `POST /api/{project}/envelope/`
//! and `POST /api/{project}/store/`. The SDKs' requests go through the
//! same pipeline as `POST /api/errors` — key directory, rate limit, body
//! caps and budget, gate, decompression, validation, scrubbing,
//! fingerprinting, the stream sink — and only the protocol differs:
//! where the key is ([`auth`]), the body's shape ([`envelope`], [`event`]),
//! and the answers (`{"id": …}`; errors as `{"detail": …}`; 429 with
//! `X-Sentry-Rate-Limits`, which the SDKs obey).
//!
//! The project id in the path is any decimal number: the key alone
//! chooses the tenant. Items other than events are counted by type in
//! `sluice_sentry_items_total` and not stored.

pub mod auth;
pub mod envelope;
pub mod event;

use std::net::SocketAddr;

use bytes::Bytes;
use http::{header, HeaderValue, Request, StatusCode};
use serde_json::json;

use crate::event::RequestMeta;
use crate::response::{Rejection, Reply};
use crate::{client_ip, Ingest, Writer};

/// The two endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Envelope,
    Store,
}

/// The endpoint a path names: `/api/<digits>/envelope/` or `…/store/`,
/// the trailing slash optional.
pub fn route(path: &str) -> Option<Endpoint> {
    let rest = path.strip_prefix("/api/")?;
    let (project, rest) = rest.split_once('/')?;
    if project.is_empty() || project.len() > 20 || !project.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match rest.strip_suffix('/').unwrap_or(rest) {
        "envelope" => Some(Endpoint::Envelope),
        "store" => Some(Endpoint::Store),
        _ => None,
    }
}

/// Item types a metric label may name; others count as `other`.
const KNOWN_ITEMS: &[&str] = &[
    "event",
    "transaction",
    "session",
    "sessions",
    "client_report",
    "attachment",
    "check_in",
    "user_report",
    "feedback",
    "profile",
    "profile_chunk",
    "replay_event",
    "replay_recording",
    "replay_video",
    "statsd",
    "metric_buckets",
    "span",
    "log",
    "otel_log",
    "security",
    "raw_security",
    "unreal_report",
];

fn item_label(ty: &str) -> &'static str {
    KNOWN_ITEMS
        .iter()
        .find(|k| **k == ty)
        .copied()
        .unwrap_or("other")
}

/// A refusal in the form Sentry's SDKs read: `{"detail": …}`; a 429 (also
/// for a full backlog, which SDKs should wait out rather than drop on)
/// carries `Retry-After` and `X-Sentry-Rate-Limits`.
fn sentry_reply(rej: Rejection) -> Reply {
    let (status, retry_after) = match rej.reason {
        "queue_full" | "backlog" => (StatusCode::TOO_MANY_REQUESTS, rej.retry_after),
        _ => (rej.status, rej.retry_after),
    };
    let mut r = crate::response::json(status, &json!({ "detail": rej.message }));
    if let Some(secs) = retry_after {
        let secs = secs.max(1);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        if status == StatusCode::TOO_MANY_REQUESTS {
            if let Ok(v) = HeaderValue::from_str(&format!("{secs}::organization")) {
                r.headers_mut().insert("x-sentry-rate-limits", v);
            }
        }
    }
    r
}

impl Ingest {
    /// Serves a Sentry SDK request; every problem is an answer.
    pub(crate) async fn serve_sentry<B>(
        &self,
        endpoint: Endpoint,
        req: Request<B>,
        peer: SocketAddr,
    ) -> Reply
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        match self.sentry(endpoint, req, peer).await {
            Ok(reply) => reply,
            Err(rej) => {
                metrics::counter!("sluice_ingest_rejected_total", "reason" => rej.reason)
                    .increment(1);
                tracing::debug!(status = %rej.status, reason = rej.reason, "sentry request rejected");
                sentry_reply(rej)
            }
        }
    }

    /// The key's writer, once its rate limit allows another request.
    fn sentry_writer(&self, key: &str) -> Result<Writer, Rejection> {
        let w = self.writer_of_key(key)?;
        tracing::Span::current().record("tenant", tracing::field::display(w.tenant_id));
        self.check_rate(&w)?;
        Ok(w)
    }

    async fn sentry<B>(
        &self,
        endpoint: Endpoint,
        req: Request<B>,
        peer: SocketAddr,
    ) -> Result<Reply, Rejection>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // A key in the header or query is checked before the body is read;
        // one only in the envelope's DSN after.
        let mut writer = match auth::from_request(req.headers(), req.uri().query()) {
            Some(k) => Some(self.sentry_writer(&k)?),
            None => None,
        };
        if writer.is_none() && endpoint == Endpoint::Store {
            return Err(missing_key());
        }
        let peer_ip =
            client_ip::client_ip(peer, req.headers(), &self.cfg.trusted_proxies).to_string();
        let sdk_agent = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let limit = match endpoint {
            Endpoint::Envelope => self.cfg.max_request_bytes,
            Endpoint::Store => self.cfg.max_event_bytes,
        };
        let (parts, body) = req.into_parts();
        let raw = crate::body::read_raw(&parts.headers, body, limit, &self.budget).await?;
        let slot = self.gate.enter().await?;
        let bytes = raw.decompress(limit, &self.budget).await?;

        let (events, others, envelope_id): (Vec<&[u8]>, Vec<&str>, Option<String>) = match endpoint
        {
            Endpoint::Store => (vec![&bytes[..]], Vec::new(), None),
            Endpoint::Envelope => {
                let env = envelope::parse(&bytes, self.cfg.max_batch_events)
                    .map_err(Rejection::bad_request)?;
                if writer.is_none() {
                    let key = env
                        .header
                        .dsn
                        .as_deref()
                        .and_then(auth::from_dsn)
                        .ok_or_else(missing_key)?;
                    writer = Some(self.sentry_writer(key)?);
                }
                let mut events = Vec::new();
                let mut others = Vec::new();
                for item in &env.items {
                    if item.ty == "event" {
                        events.push(item.payload);
                    } else {
                        others.push(item_label(&item.ty));
                    }
                }
                (events, others, env.header.event_id)
            }
        };
        let writer = writer.ok_or_else(missing_key)?;
        let ts_ms = chrono::Utc::now().timestamp_millis();
        let mut chunks = Vec::with_capacity(events.len());
        let mut first_id = None;
        for (i, payload) in events.iter().enumerate() {
            if payload.len() > self.cfg.max_event_bytes {
                return Err(Rejection::too_large(format!(
                    "event item {i} is {} bytes; at most {} are accepted",
                    payload.len(),
                    self.cfg.max_event_bytes
                )));
            }
            let mapped = event::map(payload, &self.cfg.scrub).map_err(Rejection::bad_request)?;
            let meta = RequestMeta {
                tenant_id: writer.tenant_id,
                ts_ms,
                user_agent: mapped.user_agent.or_else(|| sdk_agent.clone()),
                ip_address: mapped.ip_address.or_else(|| Some(peer_ip.clone())),
            };
            let ev = crate::event::decode(&mapped.body, &meta, &self.cfg.scrub)
                .map_err(Rejection::bad_request)?;
            chunks.extend(crate::chunks(std::slice::from_ref(&ev)));
            first_id = first_id.or(mapped.event_id);
        }
        drop(bytes);
        let n = chunks.len();
        if n > 0 {
            let meta = RequestMeta {
                tenant_id: writer.tenant_id,
                ts_ms,
                user_agent: None,
                ip_address: None,
            };
            self.store(&meta, chunks).await?;
        }
        drop(slot);
        metrics::counter!("sluice_ingest_events_total").increment(n as u64);
        if n > 0 {
            metrics::counter!("sluice_sentry_items_total", "type" => "event").increment(n as u64);
        }
        for ty in others {
            metrics::counter!("sluice_sentry_items_total", "type" => ty).increment(1);
        }
        let id = first_id
            .or(envelope_id)
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        Ok(crate::response::json(StatusCode::OK, &json!({ "id": id })))
    }
}

fn missing_key() -> Rejection {
    Rejection::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing sentry_key: set the DSN to http(s)://<Sluice API key>@<host>/<project id>",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/api/1/envelope/"), Some(Endpoint::Envelope));
        assert_eq!(route("/api/42/envelope"), Some(Endpoint::Envelope));
        assert_eq!(route("/api/7/store/"), Some(Endpoint::Store));
        assert_eq!(route("/api/7/store"), Some(Endpoint::Store));
        assert_eq!(route("/api/errors/batch"), None);
        assert_eq!(route("/api/x1/store/"), None);
        assert_eq!(route("/api//store/"), None);
        assert_eq!(route("/api/1/envelope/x"), None);
        assert_eq!(item_label("session"), "session");
        assert_eq!(item_label("made-up"), "other");
    }

    #[test]
    fn a_full_backlog_is_a_429_the_sdks_obey() {
        let r = sentry_reply(Rejection::unavailable("backlog", "full", 5));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()["retry-after"], "5");
        assert_eq!(r.headers()["x-sentry-rate-limits"], "5::organization");
        let r = sentry_reply(Rejection::bad_request("bad"));
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r.headers().get("x-sentry-rate-limits").is_none());
    }
}
