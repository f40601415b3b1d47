//! The alert engine (Health Monitor contract section 5): every worker
//! process evaluates the enabled alert rules of its deployment (the
//! `namespace`, as the scheduler's) every [`AlertSettings::every`].
//!
//! - `error_count > threshold in time_window`: one ClickHouse query per
//!   evaluation counts the occurrences of every window of every rule
//!   ([`sluice_storage::ch::alert_counts`]); a rule holds when the
//!   occurrences matching its filters are strictly more than `threshold`.
//! - `new_error`: error groups (one per fingerprint, upserted in Postgres by
//!   the ingest consumers) created since the rule last looked. Each engine
//!   claims the range by moving the rule's `checked_until` with a
//!   compare-and-set, so of several engines exactly one considers each new
//!   group; the range ends [`AlertSettings::new_error_lag`] ago so that a
//!   consumer's transaction still in flight is not skipped.
//!
//! A rule that holds fires by opening its incident
//! ([`sluice_storage::pg::alerts::fire`]): while an incident it opened is
//! unresolved it does not fire again, and a unique index makes one engine
//! win when several see it hold at once. Only the winner sends the rule's
//! notifications (through [`sluice_notify::Notifier`], to the tenant's
//! enabled channels of each listed type) and publishes `alert_triggered`
//! on `/ws`.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde_json::json;
use sluice_notify::{Level, Notification, Notifier};
use sluice_storage::ch::alert_counts;
use sluice_storage::live::Publisher;
use sluice_storage::pg::alerts::{self, AlertRule, Incident};
use sluice_storage::pg::{notification_channels, settings};
use tracing::Instrument;
use uuid::Uuid;

use crate::error::JobError;

/// The condition of threshold rules, as the API stores it.
pub const ERROR_COUNT: &str = "error_count > threshold in time_window";
/// The condition of new-fingerprint rules.
pub const NEW_ERROR: &str = "new_error";

/// Engine settings.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// How often every enabled rule is evaluated.
    pub every: Duration,
    /// How far behind now a `new_error` rule's look ends.
    pub new_error_lag: Duration,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(30),
            new_error_lag: Duration::from_secs(2),
        }
    }
}

/// One deployment's alert engine.
#[derive(Clone)]
pub struct Engine {
    pub pg: sqlx::PgPool,
    pub ch: clickhouse::Client,
    /// None when its HTTP client could not be built (rules then fire
    /// without notifications).
    pub notifier: Option<Notifier>,
    pub live: Publisher,
    /// Opens the secrets of the tenant's configured integrations.
    pub secrets: sluice_storage::secrets::SecretBox,
    pub namespace: String,
    pub settings: AlertSettings,
}

/// Why a rule fired, for its incident and notifications.
struct Firing {
    message: String,
}

impl Engine {
    /// Evaluates until `stop` resolves.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut every = tokio::time::interval(self.settings.every.max(Duration::from_millis(50)));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = every.tick() => {}
            }
            let span = tracing::info_span!("alert_evaluation", namespace = %self.namespace);
            match self.tick().instrument(span).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(fired = n, "alert rules fired"),
                Err(e) => tracing::warn!(error = %e, "alert evaluation failed"),
            }
        }
    }

    /// One evaluation of every enabled rule; answers how many fired here.
    pub async fn tick(&self) -> Result<usize, JobError> {
        let rules = alerts::enabled_rules(&self.pg, &self.namespace).await?;
        let mut fired = 0;
        let counting: Vec<&AlertRule> = rules
            .iter()
            .filter(|r| r.condition == ERROR_COUNT && r.window_secs.is_some())
            .collect();
        // ClickHouse down only holds the counting rules back.
        let holding = match self.holding_counts(&counting).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "error_count rules not evaluated");
                Vec::new()
            }
        };
        for (rule, n) in holding {
            let message = format!(
                "{n} errors in the last {} (threshold {})",
                rule.time_window.as_deref().unwrap_or("?"),
                number(rule.threshold.unwrap_or(0.0))
            );
            if self.fire(rule, Firing { message }).await? {
                fired += 1;
            }
        }
        for rule in rules.iter().filter(|r| r.condition == NEW_ERROR) {
            if let Some(firing) = self.new_errors(rule).await? {
                if self.fire(rule, firing).await? {
                    fired += 1;
                }
            }
        }
        Ok(fired)
    }

    /// The counting rules whose condition holds, with their counts.
    async fn holding_counts<'r>(
        &self,
        rules: &[&'r AlertRule],
    ) -> Result<Vec<(&'r AlertRule, u64)>, JobError> {
        let windows: Vec<u64> = rules
            .iter()
            .filter_map(|r| r.window_secs)
            .map(|w| w.max(1) as u64)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let tenants: Vec<Uuid> = rules
            .iter()
            .map(|r| r.tenant_id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let now_ms = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
        let mut totals: HashMap<i64, u64> = HashMap::new();
        for chunk in windows.chunks(alert_counts::MAX_WINDOWS) {
            let rows = alert_counts::count_windows(&self.ch, &tenants, chunk, now_ms)
                .await
                .map_err(|e| JobError::Transient(format!("ClickHouse: {e}")))?;
            for row in &rows {
                let Ok(tenant) = Uuid::parse_str(&row.tenant) else {
                    continue;
                };
                for rule in rules.iter().filter(|r| r.tenant_id == tenant) {
                    let Some(w) = rule.window_secs.map(|w| w.max(1) as u64) else {
                        continue;
                    };
                    let Some(i) = chunk.iter().position(|c| *c == w) else {
                        continue;
                    };
                    if matches(rule, &row.level, &row.source, &row.environment) {
                        *totals.entry(rule.id).or_default() +=
                            row.counts.get(i).copied().unwrap_or(0);
                    }
                }
            }
        }
        Ok(rules
            .iter()
            .filter_map(|r| {
                let n = totals.get(&r.id).copied().unwrap_or(0);
                (n as f64 > r.threshold.unwrap_or(0.0)).then_some((*r, n))
            })
            .collect())
    }

    /// A `new_error` rule's look at the groups created since its last one
    /// (none when another engine took this range, or nothing new matched).
    async fn new_errors(&self, rule: &AlertRule) -> Result<Option<Firing>, JobError> {
        let lag = self.settings.new_error_lag.as_secs_f64();
        let Some(until) =
            alerts::claim_new_error_range(&self.pg, rule.id, rule.checked_until, lag).await?
        else {
            return Ok(None);
        };
        if until <= rule.checked_until {
            return Ok(None);
        }
        let groups = alerts::new_groups(&self.pg, rule, rule.checked_until, until, 10).await?;
        let Some(first) = groups.first() else {
            return Ok(None);
        };
        let message = if groups.len() == 1 {
            format!(
                "new error (fingerprint {}): {}",
                first.fingerprint,
                truncate(&first.message, 200)
            )
        } else {
            format!(
                "{}{} new errors, the first (fingerprint {}): {}",
                groups.len(),
                if groups.len() >= 10 { "+" } else { "" },
                first.fingerprint,
                truncate(&first.message, 200)
            )
        };
        Ok(Some(Firing { message }))
    }

    /// Opens the rule's incident; when this engine opened it, notifies and
    /// publishes. False when the rule already had an unresolved incident.
    async fn fire(&self, rule: &AlertRule, firing: Firing) -> Result<bool, JobError> {
        let title = format!("Alert: {}", rule.name);
        let Some(incident) = alerts::fire(&self.pg, rule.id, &title, &firing.message).await? else {
            return Ok(false);
        };
        let span = tracing::info_span!("alert_fired", rule_id = rule.id, tenant = %rule.tenant_id, incident_id = incident.id);
        async {
            tracing::info!(message = %firing.message, "alert rule fired");
            let triggered_at = incident
                .created_at
                .to_rfc3339_opts(SecondsFormat::Millis, true);
            let event = json!({
                "rule_id": rule.id.to_string(),
                "rule_name": rule.name,
                "incident_id": incident.id.to_string(),
                "severity": rule.severity,
                "triggered_at": triggered_at,
            });
            if let Err(e) = self
                .live
                .publish(rule.tenant_id, "alert_triggered", &event)
                .await
            {
                tracing::warn!(error = %e, "alert_triggered not published");
            }
            self.notify(rule, &incident, &firing, &triggered_at).await;
        }
        .instrument(span)
        .await;
        Ok(true)
    }

    /// One notification through each integration the rule lists (the
    /// tenant's enabled channels of that type); failures are logged and
    /// recorded by the notifier, never the engine's.
    async fn notify(&self, rule: &AlertRule, incident: &Incident, firing: &Firing, at: &str) {
        if rule.notifications.is_empty() {
            return;
        }
        let Some(notifier) = &self.notifier else {
            tracing::warn!("no notifier: alert notifications not sent");
            return;
        };
        let message = format!("Alert \"{}\" fired: {}", rule.name, firing.message);
        let body = json!({
            "type": "alert_triggered",
            "rule": {"id": rule.id.to_string(), "name": rule.name, "severity": rule.severity},
            "incident": {"id": incident.id.to_string(), "title": incident.title},
            "triggered_at": at,
            "message": message,
        });
        let n = Notification::new(level(&rule.severity), incident.title.clone(), message)
            .with_details(json!({
                "rule_id": rule.id.to_string(),
                "incident_id": incident.id.to_string(),
                "severity": rule.severity,
            }))
            .with_webhook_body(body);
        // Each listed name: the integration configured in the settings
        // (`/api/settings/integrations/{name}`), else the tenant's enabled
        // notification channels of that type.
        let mut channel_ids = Vec::new();
        for name in &rule.notifications {
            match settings::integration(&self.pg, rule.tenant_id, name).await {
                Ok(Some(row)) => {
                    let sent = match settings::open_config(&self.secrets, &row) {
                        Ok(config) => notifier
                            .send_to(name, &config, &n)
                            .await
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    if let Err(e) = sent {
                        tracing::warn!(integration = %name, error = %e, "alert notification not delivered");
                    }
                }
                Ok(None) => match notification_channels::list(&self.pg, rule.tenant_id).await {
                    Ok(channels) => channel_ids.extend(
                        channels
                            .iter()
                            .filter(|c| &c.fields.kind == name)
                            .map(|c| c.id),
                    ),
                    Err(e) => tracing::warn!(error = %e, "notification channels unreadable"),
                },
                Err(e) => tracing::warn!(integration = %name, error = %e, "integration unreadable"),
            }
        }
        if channel_ids.is_empty() {
            return;
        }
        if let Err(e) = notifier.notify(rule.tenant_id, &channel_ids, &n).await {
            tracing::warn!(error = %e, "alert notifications not sent");
        }
    }
}

/// Whether an occurrence of (level, source, environment) passes the rule's
/// filters.
fn matches(rule: &AlertRule, level: &str, source: &str, environment: &str) -> bool {
    rule.level.as_deref().is_none_or(|l| l == level)
        && rule.source.as_deref().is_none_or(|s| s == source)
        && rule.environment.as_deref().is_none_or(|e| e == environment)
}

fn level(severity: &str) -> Level {
    match severity {
        "critical" => Level::Critical,
        "high" => Level::Error,
        "low" => Level::Info,
        _ => Level::Warning,
    }
}

fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        x.to_string()
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// `<integer><unit>` (unit `s`, `m`, `h` or `d`) in seconds; none when
/// malformed, zero or absurdly long (over a year).
pub fn parse_window(w: &str) -> Option<i64> {
    let (digits, unit) = w.split_at(w.len().checked_sub(1)?);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = digits.parse().ok()?;
    let secs = n.checked_mul(match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    })?;
    (1..=366 * 86400).contains(&secs).then_some(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> AlertRule {
        AlertRule {
            id: 1,
            tenant_id: Uuid::nil(),
            name: "r".into(),
            condition: ERROR_COUNT.into(),
            threshold: Some(1.0),
            time_window: Some("1m".into()),
            window_secs: Some(60),
            enabled: true,
            notifications: vec![],
            severity: "warning".into(),
            source: None,
            level: None,
            environment: None,
            last_triggered: None,
            checked_until: Utc::now(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn windows_parse() {
        assert_eq!(parse_window("30s"), Some(30));
        assert_eq!(parse_window("1m"), Some(60));
        assert_eq!(parse_window("5m"), Some(300));
        assert_eq!(parse_window("1h"), Some(3600));
        assert_eq!(parse_window("2d"), Some(172800));
        for bad in [
            "",
            "m",
            "5",
            "5x",
            "-5m",
            "1.5m",
            "0m",
            " 5m",
            "5 m",
            "99999999999999d",
        ] {
            assert_eq!(parse_window(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn filters_match_every_set_field() {
        let mut r = rule();
        assert!(matches(&r, "error", "api", ""));
        r.source = Some("api".into());
        r.level = Some("error".into());
        assert!(matches(&r, "error", "api", "prod"));
        assert!(!matches(&r, "warning", "api", "prod"));
        assert!(!matches(&r, "error", "web", "prod"));
        r.environment = Some("prod".into());
        assert!(matches(&r, "error", "api", "prod"));
        assert!(!matches(&r, "error", "api", ""));
    }

    #[test]
    fn severities_map_to_levels() {
        assert_eq!(level("critical"), Level::Critical);
        assert_eq!(level("high"), Level::Error);
        assert_eq!(level("medium"), Level::Warning);
        assert_eq!(level("warning"), Level::Warning);
        assert_eq!(level("low"), Level::Info);
        assert_eq!(number(50.0), "50");
        assert_eq!(number(2.5), "2.5");
    }
}
