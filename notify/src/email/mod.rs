//! E-mail over SMTP (lettre on tokio): STARTTLS (rustls on ring) when the
//! server offers it, plain otherwise; AUTH with `username`/`password` when
//! both are set. One message to every address of `to`.

use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::fields::Reader;
use crate::{Channel, FieldProblem, Notification, NotifyError};

/// The config fields that are secrets.
pub const SECRETS: &[&str] = &["password"];

/// How long one SMTP command may wait for the server.
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// An e-mail channel's settings.
#[derive(Clone, Serialize)]
pub struct Config {
    pub smtp_host: String,
    pub smtp_port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    pub from: String,
    pub to: Vec<String>,
}

/// Reads the settings, every problem named by its field.
pub fn parse(c: &Map<String, Value>) -> Result<Config, Vec<FieldProblem>> {
    let mut r = Reader::default();
    let smtp_host = r.req_str(c, "smtp_host");
    let smtp_port = r.req_port(c, "smtp_port");
    let username = r.opt_str(c, "username");
    let password = r.opt_str(c, "password");
    let from = r.req_address(c, "from");
    let to = r.req_addresses(c, "to");
    r.finish(Config {
        smtp_host,
        smtp_port,
        username,
        password,
        from,
        to,
    })
}

/// The message sent for `n`.
pub fn message(cfg: &Config, n: &Notification) -> Result<Message, NotifyError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| NotifyError::Config(format!("{what}: {e}"));
    let from: Mailbox = cfg.from.parse().map_err(|e| bad("from", &e))?;
    let subject = if n.title.is_empty() {
        format!("[Sluice {}] {}", n.level.as_str(), first_line(&n.message))
    } else {
        format!("[Sluice {}] {}", n.level.as_str(), n.title)
    };
    let mut b = Message::builder().from(from).subject(subject);
    for to in &cfg.to {
        b = b.to(to.parse().map_err(|e| bad("to", &e))?);
    }
    let mut text = n.message.clone();
    if !n.details.is_null() {
        text.push_str("\n\nDetails:\n");
        text.push_str(&serde_json::to_string_pretty(&n.details).unwrap_or_default());
    }
    b.header(ContentType::TEXT_PLAIN)
        .body(text)
        .map_err(|e| bad("message", &e))
}

fn first_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(120)
        .collect()
}

pub struct Email {
    cfg: Config,
}

impl Email {
    pub fn new(cfg: Config) -> Self {
        Self { cfg }
    }

    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, NotifyError> {
        let tls = TlsParameters::new(self.cfg.smtp_host.clone())
            .map_err(|e| NotifyError::Config(format!("TLS: {e}")))?;
        let mut t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.cfg.smtp_host)
            .port(self.cfg.smtp_port)
            .tls(Tls::Opportunistic(tls))
            .timeout(Some(SMTP_TIMEOUT));
        if let (Some(u), Some(p)) = (&self.cfg.username, &self.cfg.password) {
            t = t.credentials(Credentials::new(u.clone(), p.clone()));
        }
        Ok(t.build())
    }
}

impl Channel for Email {
    async fn send(&self, n: &Notification) -> Result<(), NotifyError> {
        let msg = message(&self.cfg, n)?;
        let transport = self.transport()?;
        match transport.send(msg).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let text = format!("SMTP delivery failed: {}", chain(&e));
                if e.is_permanent() {
                    Err(NotifyError::Rejected(text))
                } else {
                    Err(NotifyError::Transient(text))
                }
            }
        }
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        src = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Level;
    use serde_json::json;

    #[test]
    fn required_fields_are_named() {
        let e = parse(json!({"smtp_host": "h"}).as_object().unwrap())
            .err()
            .unwrap();
        let fields: Vec<&str> = e.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["smtp_port", "from", "to"]);
    }

    #[test]
    fn message_goes_to_every_recipient() {
        let c = json!({"smtp_host": "h", "smtp_port": 25, "from": "sluice@example.com",
                       "to": ["a@example.com", "b@example.com"]});
        let cfg = parse(c.as_object().unwrap()).unwrap();
        let n = Notification::new(Level::Info, "Backup done", "all good");
        let m = message(&cfg, &n).unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(raw.contains("a@example.com") && raw.contains("b@example.com"));
        assert!(raw.contains("Subject: [Sluice info] Backup done"));
        assert!(raw.contains("all good"));
    }
}
