//! Shared OpenAPI components of the Health Monitor routes (tag
//! `health-monitor`): the `{"data": ..., "status": "success"}` answer, the
//! `{"error": ..., "status": "error"}` envelope, the refusals every route
//! can give ([`Refusals`]), and the bodies of each route group.
//!
//! These shapes describe what the handlers of [`crate::routes`] build with
//! `json!` (field names as the contract and its conventions spell them);
//! they are never built themselves.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, IntoResponses, OpenApi, ToSchema};
use uuid::Uuid;

/// The tag of every Health Monitor route.
pub const TAG: &str = "health-monitor";

/// A successful answer: `{"data": ..., "status": "success"}`.
#[derive(Serialize, ToSchema)]
pub struct Data<T: ToSchema> {
    pub data: T,
    pub status: Success,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Success {
    Success,
}

/// The contract's error answer.
#[derive(Serialize, ToSchema)]
pub struct HmError {
    /// What went wrong, for a person.
    pub error: String,
    pub status: ErrorStatus,
    /// Present on some answers: which field, limit or batch item was at fault.
    pub details: Option<Value>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ErrorStatus {
    Error,
}

/// What every authenticated Health Monitor route may answer before it
/// looks at the request itself.
#[derive(IntoResponses)]
pub enum Refusals {
    /// No `X-API-Key` or `Authorization: Bearer`, or one Sluice does not know.
    #[response(status = 401)]
    Unauthorized(HmError),
    /// The caller's role may not do this (conventions, Roles).
    #[response(status = 403)]
    Forbidden(HmError),
    /// Over the key's rate limit; see `Retry-After`.
    #[response(status = 429)]
    RateLimited(HmError),
    /// A backing store is unavailable; see `Retry-After`.
    #[response(status = 503)]
    Unavailable(HmError),
}

// ---- Errors ----

/// An error group as the list shows it.
#[derive(Serialize, ToSchema)]
pub struct ErrorSummary {
    pub id: Uuid,
    pub timestamp: DateTime<Utc>,
    pub level: Level,
    pub message: String,
    pub source: String,
    pub resolved: bool,
    pub count: i64,
    pub fingerprint: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Critical,
    Error,
    Warning,
    Info,
    Debug,
}

/// A page of error groups.
#[derive(Serialize, ToSchema)]
pub struct ErrorList {
    pub errors: Vec<ErrorSummary>,
    pub total: i64,
    pub page: i64,
    pub limit: i64,
    pub offset: i64,
}

/// The full error object (`GET /api/errors/{id}`, and what
/// `POST /api/errors` answers for the occurrence it accepted).
#[derive(Serialize, ToSchema)]
pub struct ErrorObject {
    pub id: Uuid,
    pub timestamp: DateTime<Utc>,
    pub level: Level,
    pub message: String,
    pub stack_trace: Option<String>,
    /// The context as it was sent (PII scrubbed).
    #[schema(value_type = Option<Object>)]
    pub context: Option<Value>,
    pub source: String,
    pub environment: Option<String>,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
    pub url: Option<String>,
    pub fingerprint: String,
    pub resolved: bool,
    pub count: i64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The list's and the export's filters.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ErrorFilter {
    /// Only this level.
    pub level: Option<Level>,
    /// Only this source (at most 255 bytes).
    pub source: Option<String>,
    /// Only resolved (`true`) or open (`false`) groups.
    pub resolved: Option<bool>,
    /// Words of the message or the stack trace (at most 500 characters).
    pub search: Option<String>,
}

/// Paging of a list.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// Items per page (1–100, default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Items skipped (default 0).
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// `{"status": "resolved"}`.
#[derive(Serialize, ToSchema)]
pub struct ResolvedAnswer {
    pub status: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = ErrorExportFormat)]
pub enum ExportFormat {
    Csv,
    Json,
}

// ---- Analytics ----

#[derive(Serialize, ToSchema)]
pub struct Stats {
    /// Error groups, all time.
    pub total_errors: i64,
    pub resolved_errors: i64,
    /// Groups seen today (UTC), in the last 7 and the last 30 days.
    pub errors_today: i64,
    pub errors_this_week: i64,
    pub errors_this_month: i64,
    /// Occurrences per hour over the last 24 hours.
    pub error_rate_24h: f64,
    /// Percent of the groups resolved.
    pub resolution_rate: f64,
    /// Like `2h 15m`.
    pub avg_resolution_time: String,
}

#[derive(Serialize, ToSchema)]
pub struct Trends {
    pub period: String,
    pub group_by: String,
    pub data_points: Vec<TrendPoint>,
}

#[derive(Serialize, ToSchema)]
pub struct TrendPoint {
    pub timestamp: DateTime<Utc>,
    pub error_count: i64,
    pub resolved_count: i64,
    pub critical_count: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Week,
    Month,
    Year,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Hour,
    Day,
    Week,
    Month,
}

#[derive(Serialize, ToSchema)]
pub struct Performance {
    /// Milliseconds, over the last hour.
    pub avg_response_time: f64,
    pub error_rate_percent: f64,
    pub throughput_rpm: f64,
    pub availability_percent: f64,
    /// 10 × availability × (1 − 5xx share) × min(1, 200 ms / average latency), 0–10.
    pub performance_score: f64,
}

// ---- Monitoring ----

#[derive(Serialize, ToSchema)]
pub struct Services {
    pub services: Vec<Service>,
    pub overall_health: String,
}

#[derive(Serialize, ToSchema)]
pub struct Service {
    pub name: String,
    pub status: String,
    pub uptime_percent: f64,
    pub response_time_ms: Option<f64>,
    pub last_checked: DateTime<Utc>,
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct HostMetrics {
    pub cpu_usage_percent: f64,
    pub memory_usage_percent: f64,
    pub disk_usage_percent: f64,
    pub network_io: NetworkIo,
    pub active_connections: i64,
    pub requests_per_minute: f64,
}

#[derive(Serialize, ToSchema)]
pub struct NetworkIo {
    pub bytes_in: i64,
    pub bytes_out: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Timeframe {
    #[serde(rename = "1h")]
    H1,
    #[serde(rename = "6h")]
    H6,
    #[serde(rename = "24h")]
    H24,
    #[serde(rename = "7d")]
    D7,
    #[serde(rename = "30d")]
    D30,
}

#[derive(Serialize, ToSchema)]
pub struct Uptime {
    pub uptime_percent_24h: f64,
    pub uptime_percent_7d: f64,
    pub uptime_percent_30d: f64,
    pub incidents_count: i64,
    pub last_downtime: Option<DateTime<Utc>>,
    pub current_uptime_hours: f64,
}

/// `GET /health`.
#[derive(Serialize, ToSchema)]
#[schema(as = ProcessHealth)]
pub struct Health {
    /// `ok`, or `degraded` while a store's circuit is open.
    pub status: String,
    pub timestamp: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub stores: Value,
    #[schema(value_type = Object)]
    pub durability: Value,
}

// ---- Dead letters ----

#[derive(Serialize, ToSchema)]
pub struct DeadLetters {
    #[schema(value_type = Vec<Object>)]
    pub dead_letters: Vec<Value>,
    pub count: i64,
    pub limit: i64,
    /// Pass as `before` for the next page.
    pub next_before: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Replayed {
    pub status: String,
    pub entry_id: String,
}

// ---- Settings ----

#[derive(Serialize, ToSchema)]
pub struct Retention {
    /// Days of error occurrences kept (1–3650).
    pub events_days: i64,
}

#[derive(Serialize, ToSchema)]
pub struct RetentionRequest {
    #[schema(minimum = 1, maximum = 3650)]
    pub events_days: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Read,
    Write,
    Admin,
    Owner,
}

/// An API key as the list shows it: never the key or its hash.
#[derive(Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    /// The key's first characters and `...`.
    pub key_preview: String,
    pub permissions: Vec<String>,
    pub last_used: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The Sentry DSN of the key (`http(s)://<key>@<host>/1`): with the
    /// masked preview in lists, the whole key when it is created; absent
    /// or `null` when Sluice's public address is unknown.
    pub dsn: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeys {
    pub api_keys: Vec<ApiKeyView>,
}

/// A key just created or rotated: `key` is shown this once.
#[derive(Serialize, ToSchema)]
pub struct ApiKeySecret {
    #[serde(flatten)]
    pub view: ApiKeyView,
    pub key: String,
    /// Rotation only: seconds the old secret keeps working.
    pub grace_seconds: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyRequest {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    pub permissions: Vec<Permission>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct RotateRequest {
    /// Default 3600.
    #[schema(minimum = 0)]
    pub grace_seconds: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct TeamMember {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub role: String,
    pub status: String,
    pub last_active: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Invitees only: when the invitation lapses.
    pub expires_at: Option<DateTime<Utc>>,
    /// The invitation answer only, shown this once: what the invitee
    /// sends to `POST /api/settings/team/accept`.
    pub invite_token: Option<String>,
    /// The accept answer only: the tenant joined.
    pub tenant_id: Option<String>,
}

/// `POST /api/settings/team/accept`: the invitation token, and either a
/// new account's `username`/`password` (`full_name` optional) or, with
/// `Authorization: Bearer`, the caller's own account.
#[derive(Serialize, ToSchema)]
pub struct AcceptRequest {
    pub token: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub full_name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Team {
    pub members: Vec<TeamMember>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = TeamRole)]
pub enum Role {
    Owner,
    Admin,
    Developer,
    Viewer,
}

#[derive(Serialize, ToSchema)]
pub struct InviteRequest {
    #[schema(format = Email)]
    pub email: String,
    pub role: Role,
}

#[derive(Serialize, ToSchema)]
pub struct Integration {
    pub name: String,
    pub status: String,
    /// The settings, secrets masked to their last 4 characters.
    pub config: Map<String, Value>,
    pub last_test: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct Integrations {
    pub integrations: Vec<Integration>,
}

#[derive(Serialize, ToSchema)]
pub struct IntegrationRequest {
    /// slack: `webhook_url`; webhook: `url` (and `secret`); email: SMTP settings and `to`.
    pub config: Map<String, Value>,
}

#[derive(Serialize, ToSchema)]
pub struct IntegrationTest {
    pub success: bool,
    pub integration: String,
    pub message: String,
    pub last_test: DateTime<Utc>,
}

// ---- Alerts ----

#[derive(Serialize, ToSchema)]
pub struct AlertRule {
    pub id: String,
    pub name: String,
    /// `error_count` or `new_error`.
    pub condition: String,
    pub threshold: Option<f64>,
    /// Like `5m`, `1h`.
    pub time_window: Option<String>,
    pub enabled: bool,
    pub notifications: Vec<String>,
    pub severity: String,
    pub source: Option<String>,
    pub level: Option<String>,
    pub environment: Option<String>,
    pub last_triggered: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct AlertRules {
    pub rules: Vec<AlertRule>,
}

/// A rule's fields; on `PUT` every field is optional and absent ones are kept.
#[derive(Serialize, ToSchema)]
pub struct AlertRuleRequest {
    pub name: String,
    pub condition: Condition,
    pub threshold: Option<f64>,
    pub time_window: Option<String>,
    pub enabled: Option<bool>,
    pub notifications: Option<Vec<String>>,
    pub severity: Option<Severity>,
    pub source: Option<String>,
    pub level: Option<String>,
    pub environment: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    ErrorCount,
    NewError,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Warning,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IncidentStatus {
    Investigating,
    Identified,
    Monitoring,
    Resolved,
}

#[derive(Serialize, ToSchema)]
pub struct Incident {
    pub id: String,
    pub title: String,
    pub severity: String,
    pub status: String,
    pub description: Option<String>,
    pub assigned_to: Option<String>,
    pub rule_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct Incidents {
    pub incidents: Vec<Incident>,
}

/// An incident's fields; on `PUT` every field is optional and absent ones are kept.
#[derive(Serialize, ToSchema)]
pub struct IncidentRequest {
    pub title: String,
    pub severity: Option<Severity>,
    /// `PUT` only.
    pub status: Option<IncidentStatus>,
    pub description: Option<String>,
    pub assigned_to: Option<String>,
}

#[derive(OpenApi)]
#[openapi(components(schemas(
    HmError,
    ErrorStatus,
    Success,
    Level,
    Period,
    GroupBy,
    Timeframe,
    ExportFormat,
    IncidentStatus,
    Severity
)))]
pub struct Doc;
