//! [`Notifier`]: what other parts of Sluice call to notify a tenant —
//! loads the channels, delivers with retries, records each outcome and
//! publishes the `notification` live event.

use serde_json::{json, Map, Value};
use sluice_storage::live::Publisher;
use sluice_storage::pg::notification_channels::{self as store, NotificationChannel};
use sluice_storage::secrets::SecretBox;
use sqlx::PgPool;
use tracing::Instrument;
use uuid::Uuid;

use crate::{registry, Channel, Notification, NotifyError, RetryPolicy};

/// How long connecting to an HTTP receiver may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// One channel's delivery outcome.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub channel_id: i64,
    pub delivered: bool,
    pub attempts: u32,
    /// Why it failed (never a secret).
    pub error: Option<String>,
}

/// Delivers notifications through a tenant's channels.
#[derive(Clone)]
pub struct Notifier {
    pg: PgPool,
    secrets: SecretBox,
    live: Publisher,
    http: reqwest::Client,
    policy: RetryPolicy,
}

/// The HTTP client channels post with (rustls on ring, no redirects
/// followed, a connect timeout).
pub fn http_client() -> Result<reqwest::Client, NotifyError> {
    reqwest::Client::builder()
        .user_agent(concat!("sluice-notify/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|e| NotifyError::Config(format!("HTTP client: {e}")))
}

/// A stored channel's whole config: its public fields and its opened
/// secrets.
pub fn open_config(
    secrets: &SecretBox,
    ch: &NotificationChannel,
) -> Result<Map<String, Value>, NotifyError> {
    let mut config = match &ch.fields.config.0 {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    if let Some(sealed) = &ch.fields.secrets_sealed {
        let plain = secrets.open(sealed)?;
        if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&plain) {
            config.extend(m);
        }
    }
    Ok(config)
}

/// Splits a whole (checked) config into the public part to store and the
/// sealed secrets (none when there are no secrets).
pub fn seal_config(
    secrets: &SecretBox,
    kind: &str,
    config: Map<String, Value>,
) -> Result<(Value, Option<Vec<u8>>), NotifyError> {
    let (public, secret) = registry::split(kind, config);
    let sealed = if secret.is_empty() {
        None
    } else {
        Some(secrets.seal(&Value::Object(secret).to_string())?)
    };
    Ok((Value::Object(public), sealed))
}

impl Notifier {
    pub fn new(pg: PgPool, secrets: SecretBox, live: Publisher, http: reqwest::Client) -> Self {
        Self {
            pg,
            secrets,
            live,
            http,
            policy: RetryPolicy::default(),
        }
    }

    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Delivers `n` to each enabled channel of `tenant` among
    /// `channel_ids` (unknown, other tenants' and disabled channels are
    /// skipped), concurrently; records each outcome and publishes one
    /// `notification` event to the tenant's `/ws` sockets.
    pub async fn notify(
        &self,
        tenant: Uuid,
        channel_ids: &[i64],
        n: &Notification,
    ) -> Result<Vec<Outcome>, NotifyError> {
        let channels = store::get_many(&self.pg, tenant, channel_ids).await?;
        let sends = channels
            .iter()
            .filter(|c| c.fields.is_enabled)
            .map(|c| self.deliver(c, n));
        let outcomes = futures::future::join_all(sends).await;
        self.publish(tenant, n, &outcomes).await;
        Ok(outcomes)
    }

    /// Delivers `n` through one channel now (enabled or not, as a test
    /// does), publishes the `notification` event, and answers the outcome.
    pub async fn test(&self, ch: &NotificationChannel, n: &Notification) -> Outcome {
        let o = self.deliver(ch, n).await;
        self.publish(ch.tenant_id, n, std::slice::from_ref(&o))
            .await;
        o
    }

    /// Delivers `n` through a channel of `kind` built from `config` (its
    /// secrets already opened: an integration configured in the Health
    /// Monitor's settings rather than in the channel list), with the same
    /// retries; answers whether it was delivered.
    pub async fn send_to(
        &self,
        kind: &str,
        config: &serde_json::Map<String, Value>,
        n: &Notification,
    ) -> Result<(), NotifyError> {
        let channel = registry::build(kind, config, &self.http)?;
        let (result, attempts) = self.policy.run(|| channel.send(n)).await;
        match &result {
            Ok(()) => tracing::info!(kind, attempts, "notification delivered"),
            Err(e) => tracing::warn!(kind, attempts, error = %e, "notification not delivered"),
        }
        result
    }

    /// One channel's delivery with retries; its outcome is recorded.
    pub async fn deliver(&self, ch: &NotificationChannel, n: &Notification) -> Outcome {
        let span = tracing::info_span!(
            "notification_delivery",
            channel_id = ch.id,
            tenant = %ch.tenant_id,
            kind = %ch.fields.kind
        );
        async {
            let (result, attempts) = match open_config(&self.secrets, ch)
                .and_then(|c| registry::build(&ch.fields.kind, &c, &self.http))
            {
                Ok(channel) => self.policy.run(|| channel.send(n)).await,
                Err(e) => (Err(e), 0),
            };
            let error = result.err().map(|e| e.to_string());
            let status = if error.is_none() {
                "delivered"
            } else {
                "failed"
            };
            match &error {
                None => tracing::info!(attempts, "notification delivered"),
                Some(e) => tracing::warn!(attempts, error = %e, "notification not delivered"),
            }
            let tries = i32::try_from(attempts).unwrap_or(i32::MAX);
            if let Err(e) = store::record_delivery(
                &self.pg,
                ch.tenant_id,
                ch.id,
                status,
                tries,
                error.as_deref(),
            )
            .await
            {
                tracing::warn!(error = %e, "delivery outcome not recorded");
            }
            Outcome {
                channel_id: ch.id,
                delivered: error.is_none(),
                attempts,
                error,
            }
        }
        .instrument(span)
        .await
    }

    /// The `notification` live event (best effort: a Redis failure is
    /// logged, never the caller's).
    async fn publish(&self, tenant: Uuid, n: &Notification, outcomes: &[Outcome]) {
        let channels: Vec<Value> = outcomes
            .iter()
            .map(|o| json!({"channel_id": o.channel_id, "delivered": o.delivered}))
            .collect();
        let data = json!({
            "level": n.level,
            "title": n.title,
            "message": n.message,
            "details": n.details,
            "channels": channels,
            "timestamp": n.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        });
        if let Err(e) = self.live.publish(tenant, "notification", &data).await {
            tracing::warn!(error = %e, "notification live event not published");
        }
    }
}
