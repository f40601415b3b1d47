//! The channel types, and the one place that maps a type name to its
//! module: which config fields it requires, which are secrets, and how a
//! stored channel becomes a [`Channel`].

use serde_json::{Map, Value};

use crate::email::Email;
use crate::slack::Slack;
use crate::webhook::Webhook;
use crate::{email, slack, webhook, Channel, FieldProblem, Notification, NotifyError};

/// Every channel type, by name.
pub const KINDS: &[&str] = &["slack", "webhook", "email"];

/// The config fields of `kind` that are secrets (sealed at rest, never
/// answered).
pub fn secret_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "slack" => slack::SECRETS,
        "webhook" => webhook::SECRETS,
        "email" => email::SECRETS,
        _ => &[],
    }
}

/// Checks a whole config (secrets included) for `kind` and answers it in
/// its canonical form (known fields only), or every problem found.
pub fn normalize(
    kind: &str,
    config: &Map<String, Value>,
) -> Result<Map<String, Value>, Vec<FieldProblem>> {
    let v = match kind {
        "slack" => serde_json::to_value(slack::parse(config)?),
        "webhook" => serde_json::to_value(webhook::parse(config)?),
        "email" => serde_json::to_value(email::parse(config)?),
        other => {
            return Err(vec![FieldProblem {
                field: String::new(),
                msg: format!("unknown channel type {other}"),
                kind: "type_error.enum",
            }])
        }
    };
    match v {
        Ok(Value::Object(m)) => Ok(m),
        _ => Ok(Map::new()),
    }
}

/// Splits a config into its public fields and its secret ones.
pub fn split(kind: &str, config: Map<String, Value>) -> (Map<String, Value>, Map<String, Value>) {
    let secrets = secret_fields(kind);
    config
        .into_iter()
        .partition(|(k, _)| !secrets.contains(&k.as_str()))
}

/// A configured channel of any type.
pub enum AnyChannel {
    Slack(Slack),
    Webhook(Webhook),
    Email(Email),
}

/// The channel of type `kind` with `config` (secrets included).
pub fn build(
    kind: &str,
    config: &Map<String, Value>,
    http: &reqwest::Client,
) -> Result<AnyChannel, NotifyError> {
    let invalid = |p: Vec<FieldProblem>| {
        let fields: Vec<String> = p
            .into_iter()
            .map(|p| format!("{}: {}", p.field, p.msg))
            .collect();
        NotifyError::Config(fields.join("; "))
    };
    Ok(match kind {
        "slack" => AnyChannel::Slack(Slack::new(
            slack::parse(config).map_err(invalid)?,
            http.clone(),
        )),
        "webhook" => AnyChannel::Webhook(Webhook::new(
            webhook::parse(config).map_err(invalid)?,
            http.clone(),
        )),
        "email" => AnyChannel::Email(Email::new(email::parse(config).map_err(invalid)?)),
        other => return Err(NotifyError::Config(format!("unknown channel type {other}"))),
    })
}

impl Channel for AnyChannel {
    async fn send(&self, n: &Notification) -> Result<(), NotifyError> {
        match self {
            AnyChannel::Slack(c) => c.send(n).await,
            AnyChannel::Webhook(c) => c.send(n).await,
            AnyChannel::Email(c) => c.send(n).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_split_off() {
        let c = json!({"smtp_host": "h", "smtp_port": 587, "username": "u", "password": "p",
                       "from": "a@example.com", "to": ["b@example.com"], "junk": 1});
        let m = normalize("email", c.as_object().unwrap()).unwrap();
        assert!(!m.contains_key("junk"));
        let (public, secret) = split("email", m);
        assert!(!public.contains_key("password"));
        assert_eq!(secret["password"], "p");
        assert_eq!(public["username"], "u");
        let m = normalize(
            "slack",
            json!({"webhook_url": "https://h/x", "channel": "#a"})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        let (public, secret) = split("slack", m);
        assert_eq!(public.keys().collect::<Vec<_>>(), ["channel"]);
        assert_eq!(secret["webhook_url"], "https://h/x");
    }
}
