//! Bodies of `/api/v1/servers`: servers, their connection test and databases.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// How Sluice reaches a server's database tools.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServerType {
    /// On the worker's own host.
    Local,
    /// Over SSH with `credentials`.
    Ssh,
    /// Over SSH, `docker exec` into `container`.
    Docker,
}

/// A database engine (MariaDB is `mysql`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DbType {
    Postgresql,
    Mysql,
}

/// `POST /api/v1/servers`; on `PUT` every field is optional (absent keeps
/// the old value, secrets included; `null` clears an optional one).
#[derive(Serialize, ToSchema)]
pub struct ServerRequest {
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub kind: ServerType,
    pub environment: Option<String>,
    pub host: Option<String>,
    #[schema(minimum = 1, maximum = 65535)]
    pub port: Option<i32>,
    /// The container's name, for `docker`.
    pub container: Option<String>,
    pub credentials: Option<CredentialsRequest>,
    pub database: Option<DatabaseRequest>,
    /// Free labels; at most 16 KiB of JSON.
    pub tags: Option<BTreeMap<String, Value>>,
}

/// SSH credentials; the secrets are sealed and never answered.
#[derive(Serialize, ToSchema)]
pub struct CredentialsRequest {
    pub username: Option<String>,
    pub password: Option<String>,
    pub ssh_key: Option<String>,
}

/// The database endpoint as seen from the server.
#[derive(Serialize, ToSchema)]
pub struct DatabaseRequest {
    #[serde(rename = "type")]
    pub kind: DbType,
    pub host: String,
    /// 5432 (PostgreSQL) or 3306 (MySQL) when absent.
    #[schema(minimum = 1, maximum = 65535)]
    pub port: Option<i32>,
    pub username: String,
    pub password: Option<String>,
}

/// A server, without any secret.
#[derive(Serialize, ToSchema)]
pub struct ServerView {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub kind: ServerType,
    pub environment: Option<String>,
    pub host: Option<String>,
    pub port: Option<i32>,
    pub container: Option<String>,
    pub tags: BTreeMap<String, Value>,
    pub credentials: Option<CredentialsView>,
    pub database: Option<DatabaseView>,
    /// `unknown` until the first health check.
    pub health_status: String,
    pub last_heartbeat: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct CredentialsView {
    pub username: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = ServerDatabaseView)]
pub struct DatabaseView {
    #[serde(rename = "type")]
    pub kind: DbType,
    pub host: Option<String>,
    pub port: Option<i32>,
    pub username: Option<String>,
}

/// The outcome of a real connection to the server's database.
#[derive(Serialize, ToSchema)]
pub struct ConnectionTest {
    pub success: bool,
    pub message: String,
    /// Absent when no connection was attempted (no usable endpoint).
    pub latency_ms: Option<f64>,
}

/// `GET /api/v1/servers/{id}/databases`.
#[derive(Serialize, ToSchema)]
pub struct Databases {
    pub databases: Vec<DatabaseEntry>,
}

#[derive(Serialize, ToSchema)]
pub struct DatabaseEntry {
    pub name: String,
    /// Megabytes, to two decimals.
    pub size_mb: f64,
    pub size_bytes: i64,
    #[serde(rename = "type")]
    pub kind: DbType,
}
