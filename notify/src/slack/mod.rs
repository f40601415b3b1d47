//! Slack: an incoming-webhook JSON POST whose `text` carries the message
//! (and `channel`, when configured, overrides the webhook's default).

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::fields::Reader;
use crate::{http, Channel, FieldProblem, Notification, NotifyError};

/// The config fields that are secrets (the webhook URL grants posting).
pub const SECRETS: &[&str] = &["webhook_url"];

/// A Slack channel's settings.
#[derive(Clone, Serialize)]
pub struct Config {
    pub webhook_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// Reads the settings, every problem named by its field.
pub fn parse(c: &Map<String, Value>) -> Result<Config, Vec<FieldProblem>> {
    let mut r = Reader::default();
    let webhook_url = r.req_url(c, "webhook_url");
    let channel = r.opt_str(c, "channel");
    r.finish(Config {
        webhook_url,
        channel,
    })
}

/// Slack's incoming-webhook payload for `n`.
pub fn payload(cfg: &Config, n: &Notification) -> Value {
    let text = if n.title.is_empty() {
        n.message.clone()
    } else {
        format!("*{}*\n{}", n.title, n.message)
    };
    let mut p = json!({ "text": text });
    if let Some(ch) = &cfg.channel {
        p["channel"] = json!(ch);
    }
    p
}

pub struct Slack {
    cfg: Config,
    http: reqwest::Client,
}

impl Slack {
    pub fn new(cfg: Config, http: reqwest::Client) -> Self {
        Self { cfg, http }
    }
}

impl Channel for Slack {
    async fn send(&self, n: &Notification) -> Result<(), NotifyError> {
        let body = serde_json::to_vec(&payload(&self.cfg, n))
            .map_err(|e| NotifyError::Config(e.to_string()))?;
        http::post_json(&self.http, &self.cfg.webhook_url, body, &[]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Level;

    #[test]
    fn payload_carries_the_message_and_channel() {
        let c = json!({"webhook_url": "https://hooks.slack.com/services/T/B/x", "channel": "#ops"});
        let cfg = parse(c.as_object().unwrap()).unwrap();
        let p = payload(
            &cfg,
            &Notification::new(Level::Warning, "Backup", "disk is full"),
        );
        assert!(p["text"].as_str().unwrap().contains("disk is full"));
        assert_eq!(p["channel"], "#ops");
    }

    #[test]
    fn webhook_url_is_required_and_must_be_http() {
        let e = parse(&Map::new()).err().unwrap();
        assert_eq!(e[0].field, "webhook_url");
        assert_eq!(e[0].kind, "value_error.missing");
        let c = json!({"webhook_url": "ftp://x"});
        assert_eq!(
            parse(c.as_object().unwrap()).err().unwrap()[0].field,
            "webhook_url"
        );
    }
}
