//! Health Monitor alerting: alert rules and incidents. API reads and
//! writes are scoped to one tenant; the alert engine (`sluice-jobs`) reads
//! the enabled rules of its deployment (`namespace`) across tenants. A
//! rule fires by opening its incident ([`fire`]): the partial unique index
//! `alert_incidents_one_open` lets one insert win however many engines try,
//! and only the winner notifies.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::Result;

/// What a rule says, as written by a create or an update.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleFields {
    pub name: String,
    pub condition: String,
    pub threshold: Option<f64>,
    pub time_window: Option<String>,
    /// `time_window` in seconds.
    pub window_secs: Option<i64>,
    pub enabled: bool,
    pub notifications: Vec<String>,
    pub severity: String,
    pub source: Option<String>,
    pub level: Option<String>,
    pub environment: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AlertRule {
    pub id: i64,
    pub tenant_id: Uuid,
    pub name: String,
    pub condition: String,
    pub threshold: Option<f64>,
    pub time_window: Option<String>,
    pub window_secs: Option<i64>,
    pub enabled: bool,
    pub notifications: Vec<String>,
    pub severity: String,
    pub source: Option<String>,
    pub level: Option<String>,
    pub environment: Option<String>,
    pub last_triggered: Option<DateTime<Utc>>,
    pub checked_until: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl AlertRule {
    pub fn fields(&self) -> RuleFields {
        RuleFields {
            name: self.name.clone(),
            condition: self.condition.clone(),
            threshold: self.threshold,
            time_window: self.time_window.clone(),
            window_secs: self.window_secs,
            enabled: self.enabled,
            notifications: self.notifications.clone(),
            severity: self.severity.clone(),
            source: self.source.clone(),
            level: self.level.clone(),
            environment: self.environment.clone(),
        }
    }
}

/// Stores a new rule of `tenant`, evaluated by the engines of `namespace`.
pub async fn create_rule(
    pool: &PgPool,
    tenant: Uuid,
    namespace: &str,
    f: &RuleFields,
) -> Result<AlertRule> {
    let sql = "INSERT INTO alert_rules (tenant_id, namespace, name, condition, threshold, time_window, window_secs,
                                  enabled, notifications, severity, source, level, environment)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         RETURNING id, tenant_id, name, condition, threshold, time_window, window_secs, enabled, notifications,
                   severity, source, level, environment, last_triggered, checked_until, created_at, updated_at";
    Ok(sqlx::query_as::<_, AlertRule>(sql)
        .bind(tenant)
        .bind(namespace)
        .bind(&f.name)
        .bind(&f.condition)
        .bind(f.threshold)
        .bind(&f.time_window)
        .bind(f.window_secs)
        .bind(f.enabled)
        .bind(&f.notifications)
        .bind(&f.severity)
        .bind(&f.source)
        .bind(&f.level)
        .bind(&f.environment)
        .fetch_one(pool)
        .await?)
}

/// Every rule of the tenant, in creation order.
pub async fn list_rules(pool: &PgPool, tenant: Uuid) -> Result<Vec<AlertRule>> {
    let sql = "SELECT id, tenant_id, name, condition, threshold, time_window, window_secs, enabled, notifications,
                severity, source, level, environment, last_triggered, checked_until, created_at, updated_at
         FROM alert_rules WHERE tenant_id = $1 ORDER BY id";
    Ok(sqlx::query_as::<_, AlertRule>(sql)
        .bind(tenant)
        .fetch_all(pool)
        .await?)
}

pub async fn get_rule(pool: &PgPool, tenant: Uuid, id: i64) -> Result<Option<AlertRule>> {
    let sql = "SELECT id, tenant_id, name, condition, threshold, time_window, window_secs, enabled, notifications,
                severity, source, level, environment, last_triggered, checked_until, created_at, updated_at
         FROM alert_rules WHERE tenant_id = $1 AND id = $2";
    Ok(sqlx::query_as::<_, AlertRule>(sql)
        .bind(tenant)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// Replaces the rule's fields; none when it is not the tenant's. A rule
/// enabled again starts looking for new errors from now, so errors first
/// seen while it was disabled never fire it.
pub async fn update_rule(
    pool: &PgPool,
    tenant: Uuid,
    id: i64,
    f: &RuleFields,
) -> Result<Option<AlertRule>> {
    let sql = "UPDATE alert_rules SET name = $3, condition = $4, threshold = $5, time_window = $6, window_secs = $7,
                checked_until = CASE WHEN NOT enabled AND $8 THEN now() ELSE checked_until END,
                enabled = $8, notifications = $9, severity = $10, source = $11, level = $12,
                environment = $13, updated_at = now()
         WHERE tenant_id = $1 AND id = $2
         RETURNING id, tenant_id, name, condition, threshold, time_window, window_secs, enabled, notifications,
                   severity, source, level, environment, last_triggered, checked_until, created_at, updated_at";
    Ok(sqlx::query_as::<_, AlertRule>(sql)
        .bind(tenant)
        .bind(id)
        .bind(&f.name)
        .bind(&f.condition)
        .bind(f.threshold)
        .bind(&f.time_window)
        .bind(f.window_secs)
        .bind(f.enabled)
        .bind(&f.notifications)
        .bind(&f.severity)
        .bind(&f.source)
        .bind(&f.level)
        .bind(&f.environment)
        .fetch_optional(pool)
        .await?)
}

/// Deletes the rule; false when it is not the tenant's. Its incidents
/// stay, without their `rule_id`.
pub async fn delete_rule(pool: &PgPool, tenant: Uuid, id: i64) -> Result<bool> {
    Ok(
        sqlx::query("DELETE FROM alert_rules WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
            == 1,
    )
}

/// The enabled rules the engines of `namespace` evaluate, across tenants.
pub async fn enabled_rules(pool: &PgPool, namespace: &str) -> Result<Vec<AlertRule>> {
    let sql = "SELECT id, tenant_id, name, condition, threshold, time_window, window_secs, enabled, notifications,
                severity, source, level, environment, last_triggered, checked_until, created_at, updated_at
         FROM alert_rules WHERE namespace = $1 AND enabled ORDER BY id";
    Ok(sqlx::query_as::<_, AlertRule>(sql)
        .bind(namespace)
        .fetch_all(pool)
        .await?)
}

/// Claims the error groups created after the rule's `checked_until` (as
/// this engine read it: `seen`) and up to `lag` ago: moves `checked_until`
/// there if no other engine moved it first. Answers the claimed range's
/// end, or none when another engine claimed it.
pub async fn claim_new_error_range(
    pool: &PgPool,
    rule_id: i64,
    seen: DateTime<Utc>,
    lag_secs: f64,
) -> Result<Option<DateTime<Utc>>> {
    let sql = "UPDATE alert_rules
            SET checked_until = GREATEST(checked_until, now() - make_interval(secs => $3))
          WHERE id = $1 AND enabled AND checked_until = $2
          RETURNING checked_until";
    Ok(sqlx::query_scalar::<_, DateTime<Utc>>(sql)
        .bind(rule_id)
        .bind(seen)
        .bind(lag_secs)
        .fetch_optional(pool)
        .await?)
}

/// One error group first seen in a claimed range.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NewGroup {
    pub id: Uuid,
    pub fingerprint: String,
    pub message: String,
}

/// The tenant's error groups created in `(after, until]` that match the
/// rule's filters (at most `limit`).
pub async fn new_groups(
    pool: &PgPool,
    rule: &AlertRule,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<NewGroup>> {
    let sql = "SELECT id, fingerprint, message FROM error_groups
          WHERE tenant_id = $1 AND created_at > $2 AND created_at <= $3
            AND ($4::text IS NULL OR level = $4)
            AND ($5::text IS NULL OR source = $5)
            AND ($6::text IS NULL OR environment = $6)
          ORDER BY created_at LIMIT $7";
    Ok(sqlx::query_as::<_, NewGroup>(sql)
        .bind(rule.tenant_id)
        .bind(after)
        .bind(until)
        .bind(&rule.level)
        .bind(&rule.source)
        .bind(&rule.environment)
        .bind(limit)
        .fetch_all(pool)
        .await?)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Incident {
    pub id: i64,
    pub tenant_id: Uuid,
    pub rule_id: Option<i64>,
    pub title: String,
    pub severity: String,
    pub status: String,
    pub description: Option<String>,
    pub assigned_to: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What an incident says, as written by a create or an update.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentFields {
    pub title: String,
    pub severity: String,
    pub status: String,
    pub description: Option<String>,
    pub assigned_to: Option<String>,
}

impl Incident {
    pub fn fields(&self) -> IncidentFields {
        IncidentFields {
            title: self.title.clone(),
            severity: self.severity.clone(),
            status: self.status.clone(),
            description: self.description.clone(),
            assigned_to: self.assigned_to.clone(),
        }
    }
}

/// A rule's firing: opens its incident and sets its `last_triggered`, in
/// one transaction. None when the rule already has an unresolved incident
/// (or is gone or disabled): then it does not fire.
pub async fn fire(
    pool: &PgPool,
    rule_id: i64,
    title: &str,
    description: &str,
) -> Result<Option<Incident>> {
    let mut tx = pool.begin().await?;
    let sql = "INSERT INTO alert_incidents (tenant_id, rule_id, title, severity, status, description)
         SELECT tenant_id, id, $2, severity, 'investigating', $3 FROM alert_rules WHERE id = $1 AND enabled
         ON CONFLICT (rule_id) WHERE status <> 'resolved' DO NOTHING
         RETURNING id, tenant_id, rule_id, title, severity, status, description, assigned_to, created_at, updated_at";
    let incident = sqlx::query_as::<_, Incident>(sql)
        .bind(rule_id)
        .bind(title)
        .bind(description)
        .fetch_optional(&mut *tx)
        .await?;
    if incident.is_some() {
        sqlx::query("UPDATE alert_rules SET last_triggered = now() WHERE id = $1")
            .bind(rule_id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(incident)
}

pub async fn create_incident(pool: &PgPool, tenant: Uuid, f: &IncidentFields) -> Result<Incident> {
    let sql = "INSERT INTO alert_incidents (tenant_id, title, severity, status, description, assigned_to)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, tenant_id, rule_id, title, severity, status, description, assigned_to, created_at, updated_at";
    Ok(sqlx::query_as::<_, Incident>(sql)
        .bind(tenant)
        .bind(&f.title)
        .bind(&f.severity)
        .bind(&f.status)
        .bind(&f.description)
        .bind(&f.assigned_to)
        .fetch_one(pool)
        .await?)
}

pub async fn get_incident(pool: &PgPool, tenant: Uuid, id: i64) -> Result<Option<Incident>> {
    let sql = "SELECT id, tenant_id, rule_id, title, severity, status, description, assigned_to, created_at, updated_at
         FROM alert_incidents WHERE tenant_id = $1 AND id = $2";
    Ok(sqlx::query_as::<_, Incident>(sql)
        .bind(tenant)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// Replaces the incident's fields; `updated_at` becomes now (and always
/// moves forward). None when it is not the tenant's.
pub async fn update_incident(
    pool: &PgPool,
    tenant: Uuid,
    id: i64,
    f: &IncidentFields,
) -> Result<Option<Incident>> {
    let sql = "UPDATE alert_incidents SET title = $3, severity = $4, status = $5, description = $6, assigned_to = $7,
                updated_at = GREATEST(clock_timestamp(), updated_at + interval '1 microsecond')
         WHERE tenant_id = $1 AND id = $2
         RETURNING id, tenant_id, rule_id, title, severity, status, description, assigned_to, created_at, updated_at";
    Ok(sqlx::query_as::<_, Incident>(sql)
        .bind(tenant)
        .bind(id)
        .bind(&f.title)
        .bind(&f.severity)
        .bind(&f.status)
        .bind(&f.description)
        .bind(&f.assigned_to)
        .fetch_optional(pool)
        .await?)
}

/// The tenant's incidents, newest first, optionally of one status and one
/// severity.
pub async fn list_incidents(
    pool: &PgPool,
    tenant: Uuid,
    status: Option<&str>,
    severity: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<Vec<Incident>> {
    let sql = "SELECT id, tenant_id, rule_id, title, severity, status, description, assigned_to, created_at, updated_at
         FROM alert_incidents
         WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR severity = $3)
         ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5";
    Ok(sqlx::query_as::<_, Incident>(sql)
        .bind(tenant)
        .bind(status)
        .bind(severity)
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await?)
}
