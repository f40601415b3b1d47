//! Bodies of `/api/v1/notifications`, `/api/v1/audit`, `/api/v1/users`
//! and the `/ws` events.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::identity::{RegisterRequest, Role};

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChannelType {
    Webhook,
    Slack,
    Email,
}

/// `POST /api/v1/notifications/channels`; on `PUT` every field is
/// optional, and `config`'s fields are laid over the stored ones (`null`
/// removes one) unless the type changes.
#[derive(Serialize, ToSchema)]
pub struct ChannelRequest {
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ChannelType,
    /// `webhook`: `{"url"}`; `slack`: `{"webhook_url", "channel"}`;
    /// `email`: `{"smtp_host", "smtp_port", "username", "password",
    /// "from", "to": [addresses]}`. At most 16 KiB of JSON.
    pub config: BTreeMap<String, Value>,
    /// `true` when absent.
    pub is_enabled: Option<bool>,
}

/// A channel; its secrets (such as `config.password`) are masked.
#[derive(Serialize, ToSchema)]
pub struct ChannelView {
    pub id: i64,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ChannelType,
    pub is_enabled: bool,
    pub config: BTreeMap<String, Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /api/v1/notifications/test`.
#[derive(Serialize, ToSchema)]
pub struct ChannelTestRequest {
    #[schema(minimum = 1)]
    pub channel_id: i64,
    /// `Test notification from Sluice` when absent.
    pub message: Option<String>,
}

/// Whether the message was delivered.
#[derive(Serialize, ToSchema)]
pub struct ChannelTestOutcome {
    pub success: bool,
    pub message: String,
    /// Delivery attempts made (absent when nothing could be sent).
    pub attempts: Option<u32>,
}

/// One audited action.
#[derive(Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub user_id: Option<i64>,
    /// Whoever acted (`api-key:<id>` for an API key).
    pub username: Option<String>,
    /// `server_create`, `backup_create`, `backup_restore`,
    /// `command_execute`, `user_create`, `login`, …
    pub action: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<i64>,
    pub details: BTreeMap<String, Value>,
    /// The client's address as Sluice sees it.
    pub ip_address: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// `GET /api/v1/audit/logs`: a page of matches, newest first.
#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    /// Every match before `limit`/`offset`.
    pub total: i64,
    pub items: Vec<AuditEntry>,
}

/// `format` of `GET /api/v1/audit/export`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = AuditExportFormat)]
pub enum ExportFormat {
    Csv,
    Json,
}

/// `POST /api/v1/users`: an account as registration gives it, and its
/// role here.
#[derive(Serialize, ToSchema)]
pub struct UserRequest {
    #[serde(flatten)]
    pub account: RegisterRequest,
    /// `viewer` when absent; only an owner grants `owner`.
    pub role: Option<Role>,
    /// `true` when absent.
    pub is_active: Option<bool>,
}

/// `PUT /api/v1/users/{id}`: every field optional.
#[derive(Serialize, ToSchema)]
pub struct UserUpdate {
    pub email: Option<String>,
    pub full_name: Option<String>,
    #[schema(min_length = 8)]
    pub password: Option<String>,
    pub role: Option<Role>,
    pub is_active: Option<bool>,
}

/// A user of the tenant (never a password or its hash).
#[derive(Serialize, ToSchema)]
pub struct UserView {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub role: Role,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}
