//! Sluice's notification channels: delivering one notification through a
//! channel, for every product that notifies (backup jobs, the alert
//! engine, the migration orchestrator).
//!
//! A notification's path:
//! 1. a caller asks [`Notifier::notify`] (tenant, channel ids,
//!    [`Notification`]); the tenant's enabled channels among those ids are
//!    loaded, their sealed secrets opened;
//! 2. [`registry::build`] turns each channel's type and config into a
//!    [`Channel`] — one module per type: [`slack`], [`webhook`], [`email`];
//! 3. [`retry::RetryPolicy`] runs [`Channel::send`]: transient failures
//!    (connection errors, timeouts, HTTP 5xx and 429, SMTP 4xx) are retried
//!    with exponential backoff a bounded number of times, each attempt under
//!    a timeout; a refusal (other HTTP 4xx, SMTP 5xx) ends it at once;
//! 4. each channel's outcome is recorded (`notification_deliveries`), and
//!    one `notification` event goes to the tenant's `/ws` sockets.
//!
//! What it does not promise: delivery is attempted now, in the caller's
//! task; an outcome that failed after every attempt is recorded, not
//! queued for later. Error texts never carry a channel's secrets (URLs are
//! left out of HTTP errors, since a Slack webhook URL is one).

pub mod email;
mod error;
mod fields;
mod http;
mod notifier;
pub mod registry;
pub mod retry;
pub mod slack;
pub mod webhook;

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

pub use error::NotifyError;
pub use fields::FieldProblem;
pub use notifier::{http_client, open_config, seal_config, Notifier, Outcome};
pub use registry::AnyChannel;

/// The HTTP client the Slack and webhook channels post with.
pub type HttpClient = reqwest::Client;
pub use retry::RetryPolicy;

/// How serious a notification is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warning,
    Error,
    Critical,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Critical => "critical",
        }
    }
}

/// One notification, the same whatever the channel.
#[derive(Clone, Debug, Serialize)]
pub struct Notification {
    pub level: Level,
    /// A short headline (may be empty).
    pub title: String,
    /// The human-readable text every channel carries.
    pub message: String,
    /// Structured context (an object, or null).
    pub details: Value,
    pub timestamp: DateTime<Utc>,
    /// What a webhook's body names as its `type`: `notification`, or
    /// `test` for an integration's test message.
    #[serde(skip)]
    pub event_type: &'static str,
    /// A product's own webhook body (the alert engine's `alert_triggered`
    /// message): when set, webhooks post it instead of the generic one.
    #[serde(skip)]
    pub webhook_body: Option<Value>,
}

impl Notification {
    pub fn new(level: Level, title: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            level,
            title: title.into(),
            message: message.into(),
            details: Value::Null,
            timestamp: Utc::now(),
            event_type: "notification",
            webhook_body: None,
        }
    }

    /// The same notification sent as a test (a webhook body's `type` is
    /// `test`).
    pub fn as_test(mut self) -> Self {
        self.event_type = "test";
        self
    }

    /// Sets the body webhooks post for this notification.
    pub fn with_webhook_body(mut self, body: Value) -> Self {
        self.webhook_body = Some(body);
        self
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// A configured channel that can deliver a notification: one attempt,
/// classified as transient or permanent on failure (retries are the
/// caller's, see [`RetryPolicy`]).
pub trait Channel: Send + Sync {
    fn send(&self, n: &Notification) -> impl Future<Output = Result<(), NotifyError>> + Send;
}
