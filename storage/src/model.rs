//! Domain types shared by ingest, workers and api.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_repr::{Deserialize_repr, Serialize_repr};
use uuid::Uuid;

/// Severity of an error event. Stored as `Enum8` in ClickHouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize_repr, Deserialize_repr)]
#[repr(i8)]
pub enum Level {
    Debug = 1,
    Info = 2,
    Warning = 3,
    Error = 4,
    Critical = 5,
}

impl Level {
    pub const ALL: [Level; 5] = [
        Level::Debug,
        Level::Info,
        Level::Warning,
        Level::Error,
        Level::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Critical => "critical",
        }
    }

    /// The level stored as `code` (its `Enum8` value).
    pub fn from_code(code: u8) -> Option<Level> {
        Level::ALL.into_iter().find(|l| *l as u8 == code)
    }

    /// Parses a level name, case-insensitively. `warn` and `fatal` are
    /// accepted as the spellings many loggers use.
    pub fn parse(s: &str) -> Option<Level> {
        let l = s.trim();
        Level::ALL
            .into_iter()
            .find(|lvl| lvl.as_str().eq_ignore_ascii_case(l))
            .or_else(|| {
                if l.eq_ignore_ascii_case("warn") {
                    Some(Level::Warning)
                } else if l.eq_ignore_ascii_case("fatal") {
                    Some(Level::Critical)
                } else {
                    None
                }
            })
    }
}

/// One accepted error occurrence, as ingest builds it and workers read it
/// back from a stream entry. Strings borrow from the buffer they were
/// decoded from where they can (the request body, the stream entry).
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorEvent<'a> {
    pub tenant_id: Uuid,
    pub group_id: Uuid,
    /// Epoch milliseconds on the ingest server's clock.
    pub ts_ms: i64,
    pub level: Level,
    pub message: Cow<'a, str>,
    pub stack_trace: Option<Cow<'a, str>>,
    /// The scrubbed context, as the text of a JSON object.
    pub context: Option<Cow<'a, str>>,
    pub source: Cow<'a, str>,
    pub environment: Option<Cow<'a, str>>,
    pub url: Option<Cow<'a, str>>,
    pub user_agent: Option<Cow<'a, str>>,
    pub ip_address: Option<Cow<'a, str>>,
    pub fingerprint: Cow<'a, str>,
}

impl ErrorEvent<'_> {
    pub fn timestamp(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.ts_ms).unwrap_or_default()
    }

    /// The same event, owning all its strings.
    pub fn into_owned(self) -> ErrorEvent<'static> {
        fn own(c: Cow<'_, str>) -> Cow<'static, str> {
            Cow::Owned(c.into_owned())
        }
        ErrorEvent {
            tenant_id: self.tenant_id,
            group_id: self.group_id,
            ts_ms: self.ts_ms,
            level: self.level,
            message: own(self.message),
            stack_trace: self.stack_trace.map(own),
            context: self.context.map(own),
            source: own(self.source),
            environment: self.environment.map(own),
            url: self.url.map(own),
            user_agent: self.user_agent.map(own),
            ip_address: self.ip_address.map(own),
            fingerprint: own(self.fingerprint),
        }
    }
}

/// The id of an error group: derived from tenant and fingerprint, so every
/// tier computes the same id without a lookup.
pub fn group_id(tenant_id: Uuid, fingerprint: &str) -> Uuid {
    let mut buf = Vec::with_capacity(16 + fingerprint.len());
    buf.extend_from_slice(tenant_id.as_bytes());
    buf.extend_from_slice(fingerprint.as_bytes());
    let h = xxhash_rust::xxh3::xxh3_128(&buf);
    Uuid::new_v8(h.to_be_bytes())
}

/// An error group as the API serves it (the contract's error object).
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct ErrorGroup {
    pub id: Uuid,
    #[serde(skip)]
    pub tenant_id: Uuid,
    pub timestamp: DateTime<Utc>,
    pub level: String,
    pub message: String,
    pub stack_trace: Option<String>,
    /// Served as stored (never parsed into a tree), so any context that
    /// was accepted reads back, whatever its depth or numbers.
    pub context: Option<Box<serde_json::value::RawValue>>,
    pub source: String,
    pub environment: Option<String>,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
    pub url: Option<String>,
    pub fingerprint: String,
    pub resolved: bool,
    #[serde(skip)]
    pub resolved_at: Option<DateTime<Utc>>,
    pub count: i64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_id_is_stable_and_tenant_scoped() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        assert_eq!(group_id(a, "fp"), group_id(a, "fp"));
        assert_ne!(group_id(a, "fp"), group_id(b, "fp"));
        assert_ne!(group_id(a, "fp"), group_id(a, "fq"));
    }

    #[test]
    fn levels_parse() {
        assert_eq!(Level::parse("ERROR"), Some(Level::Error));
        assert_eq!(Level::parse("warn"), Some(Level::Warning));
        assert_eq!(Level::parse("critical"), Some(Level::Critical));
        assert_eq!(Level::parse("loud"), None);
    }
}

/// How a tracked operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize_repr, Deserialize_repr)]
#[repr(i8)]
pub enum OpStatus {
    Completed = 1,
    Failed = 2,
    Timeout = 3,
}

impl OpStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OpStatus::Completed => "COMPLETED",
            OpStatus::Failed => "FAILED",
            OpStatus::Timeout => "TIMEOUT",
        }
    }

    pub fn parse(s: &str) -> Option<OpStatus> {
        [OpStatus::Completed, OpStatus::Failed, OpStatus::Timeout]
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// Where a tracked operation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize_repr, Deserialize_repr)]
#[repr(i8)]
pub enum OpOrigin {
    Manual = 1,
    Ddl = 2,
}

/// A finished database operation, as it travels through the operations
/// stream (written by a Lua script in Redis) and into ClickHouse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationEvent {
    pub tenant_id: Uuid,
    pub operation_id: String,
    pub script_name: String,
    pub script_type: String,
    pub status: OpStatus,
    pub started_ms: i64,
    pub completed_ms: i64,
    pub duration_ms: i64,
    #[serde(default)]
    pub error_message: Option<String>,
    #[serde(default)]
    pub db_session_user: Option<String>,
    #[serde(default)]
    pub affected_objects: Vec<String>,
    #[serde(default)]
    pub statement: Option<String>,
    pub origin: OpOrigin,
}
