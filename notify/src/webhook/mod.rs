//! Generic webhooks: a JSON POST (`Content-Type: application/json`) of
//! `{"type": "notification" (or "test"), "message", "level", "title", "details",
//! "timestamp"}`, signed when the channel holds a `secret`: the header
//! `X-Sluice-Signature: sha256=<hex>` is HMAC-SHA256 of the exact body
//! bytes under that secret.

use hmac::{Hmac, Mac};
use reqwest::header::HeaderName;
use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::Sha256;

use crate::fields::Reader;
use crate::{http, Channel, FieldProblem, Notification, NotifyError};

/// The config fields that are secrets.
pub const SECRETS: &[&str] = &["secret"];

/// The signature header's name.
pub const SIGNATURE_HEADER: &str = "x-sluice-signature";

/// A webhook channel's settings.
#[derive(Clone, Serialize)]
pub struct Config {
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// Reads the settings, every problem named by its field.
pub fn parse(c: &Map<String, Value>) -> Result<Config, Vec<FieldProblem>> {
    let mut r = Reader::default();
    let url = r.req_url(c, "url");
    let secret = r.opt_str(c, "secret");
    r.finish(Config { url, secret })
}

/// The body posted for `n`: its own webhook body when it has one.
pub fn body(n: &Notification) -> Value {
    if let Some(b) = &n.webhook_body {
        return b.clone();
    }
    json!({
        "type": n.event_type,
        "message": n.message,
        "level": n.level,
        "title": n.title,
        "details": n.details,
        "timestamp": n.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

/// `sha256=<hex>` of HMAC-SHA256 over `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> Result<String, NotifyError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|e| NotifyError::Config(e.to_string()))?;
    mac.update(body);
    Ok(format!(
        "sha256={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

pub struct Webhook {
    cfg: Config,
    http: reqwest::Client,
}

impl Webhook {
    pub fn new(cfg: Config, http: reqwest::Client) -> Self {
        Self { cfg, http }
    }
}

impl Channel for Webhook {
    async fn send(&self, n: &Notification) -> Result<(), NotifyError> {
        let bytes = serde_json::to_vec(&body(n)).map_err(|e| NotifyError::Config(e.to_string()))?;
        let mut headers = Vec::new();
        if let Some(secret) = &self.cfg.secret {
            headers.push((
                HeaderName::from_static(SIGNATURE_HEADER),
                signature(secret, &bytes)?,
            ));
        }
        http::post_json(&self.http, &self.cfg.url, bytes, &headers).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Level;

    #[test]
    fn signature_is_rfc4231_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?").unwrap(),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn body_has_the_message_and_level() {
        let n = Notification::new(Level::Error, "t", "m").with_details(json!({"a": 1}));
        let b = body(&n);
        assert_eq!(b["message"], "m");
        assert_eq!(b["level"], "error");
        assert_eq!(b["details"]["a"], 1);
        assert!(b["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn url_is_required() {
        let e = parse(json!({"secret": "s"}).as_object().unwrap())
            .err()
            .unwrap();
        assert_eq!(e[0].field, "url");
    }
}
