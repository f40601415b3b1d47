//! Live events for the product's WebSocket (`/ws`), carried by Redis
//! pub/sub so that every API process sees every event.
//!
//! A producer (a job, an alert worker) calls [`Publisher::publish`] with a
//! tenant, an event type and its data; the event goes, already rendered as
//! the text frame clients receive, to the tenant's channel
//! `{prefix}:live:{tenant_id}`. Each API process holds one
//! [`Subscription`] on the pattern `{prefix}:live:*` and fans what arrives
//! out to its sockets of that tenant. Pub/sub is fire-and-forget: an event
//! published while no API process is subscribed is not kept.

use futures::StreamExt;
use redis::AsyncCommands;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{Result, StorageError};

/// The channel of one tenant's live events.
pub fn channel(prefix: &str, tenant: Uuid) -> String {
    format!("{prefix}:live:{tenant}")
}

/// The "tenant" of events for every tenant (Sluice's own service status):
/// the API tier hands what arrives on its channel to every socket.
pub const BROADCAST: Uuid = Uuid::nil();

/// The pattern matching every tenant's channel (glob characters in the
/// prefix are escaped, so it matches this prefix's channels only).
pub fn pattern(prefix: &str) -> String {
    let mut p = String::with_capacity(prefix.len() + 7);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push_str(":live:*");
    p
}

/// The largest frame [`Publisher::publish`] sends (1 MiB): live events are
/// notices, not payloads, and every socket queues them.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// The tenant a channel name belongs to, if it is one of `prefix`'s.
pub fn tenant_of(prefix: &str, channel: &str) -> Option<Uuid> {
    let rest = channel.strip_prefix(prefix)?.strip_prefix(":live:")?;
    Uuid::parse_str(rest).ok()
}

/// The text frame of an event, serving both contracts at once:
/// `{"type": ..., "data": {...}}` (Health Monitor) with, when `data` is an
/// object, its fields also at the top level (the Backup contract's flat
/// `{"type": "backup_progress", "backup_id", "progress", "status"}`).
/// `type` and `data` themselves are never overwritten by a field of `data`.
pub fn frame(event_type: &str, data: &Value) -> String {
    let mut out = Map::new();
    if let Value::Object(fields) = data {
        for (k, v) in fields {
            if k != "type" && k != "data" {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out.insert("type".into(), Value::String(event_type.to_string()));
    out.insert("data".into(), data.clone());
    Value::Object(out).to_string()
}

/// Publishes live events to per-tenant channels.
#[derive(Clone)]
pub struct Publisher {
    pool: deadpool_redis::Pool,
    prefix: String,
}

impl Publisher {
    pub fn new(pool: deadpool_redis::Pool, prefix: impl Into<String>) -> Self {
        Self {
            pool,
            prefix: prefix.into(),
        }
    }

    /// Sends one event to `tenant`'s sockets on every API process; answers
    /// how many API processes received it (0: nobody is listening).
    pub async fn publish(&self, tenant: Uuid, event_type: &str, data: &Value) -> Result<u64> {
        let text = frame(event_type, data);
        if text.len() > MAX_FRAME_BYTES {
            return Err(StorageError::Invalid(format!(
                "live event {event_type} is {} bytes; at most {MAX_FRAME_BYTES}",
                text.len()
            )));
        }
        let mut conn = self.pool.get().await?;
        let receivers: u64 = conn.publish(channel(&self.prefix, tenant), text).await?;
        Ok(receivers)
    }
}

/// One pattern subscription to every tenant's channel of a prefix.
pub struct Subscription {
    pubsub: redis::aio::PubSub,
    prefix: String,
}

impl Subscription {
    /// Connects to Redis and subscribes to `{prefix}:live:*`.
    pub async fn connect(redis_url: &str, prefix: &str) -> Result<Self> {
        let client = redis::Client::open(redis_url)?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.psubscribe(pattern(prefix)).await?;
        Ok(Self {
            pubsub,
            prefix: prefix.to_string(),
        })
    }

    /// Calls `deliver(tenant, frame)` for every event until the connection
    /// to Redis ends (the caller reconnects). Messages on channels that do
    /// not name a tenant, or are not UTF-8, are skipped.
    pub async fn run(mut self, mut deliver: impl FnMut(Uuid, String)) {
        let prefix = self.prefix.clone();
        let mut messages = self.pubsub.on_message();
        while let Some(msg) = messages.next().await {
            let Some(tenant) = tenant_of(&prefix, msg.get_channel_name()) else {
                continue;
            };
            match String::from_utf8(msg.get_payload_bytes().to_vec()) {
                Ok(text) => deliver(tenant, text),
                Err(_) => tracing::warn!("live event that is not UTF-8 skipped"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frame_has_both_shapes() {
        let f: Value = serde_json::from_str(&frame(
            "backup_progress",
            &json!({"backup_id": 7, "progress": 45, "status": "in_progress", "type": "x"}),
        ))
        .unwrap();
        assert_eq!(f["type"], "backup_progress");
        assert_eq!(f["backup_id"], 7);
        assert_eq!(f["progress"], 45);
        assert_eq!(f["data"]["status"], "in_progress");
        let f: Value = serde_json::from_str(&frame("new_error", &json!([1, 2]))).unwrap();
        assert_eq!(f, json!({"type": "new_error", "data": [1, 2]}));
    }

    #[test]
    fn channels_name_their_tenant() {
        let t = Uuid::new_v4();
        assert_eq!(tenant_of("p", &channel("p", t)), Some(t));
        assert_eq!(tenant_of("q", &channel("p", t)), None);
        assert_eq!(tenant_of("p", "p:live:nope"), None);
        assert_eq!(pattern("a*b"), "a\\*b:live:*");
    }
}
