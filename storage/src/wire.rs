//! The format of an event inside a Redis stream entry: one field, `e`,
//! holding the event as JSON. JSON keeps entries readable with `XRANGE`
//! and lets fields be added without breaking older workers.

use crate::model::ErrorEvent;
use crate::{Result, StorageError};

/// The stream entry field that carries the event.
pub const FIELD: &str = "e";

pub fn encode(event: &ErrorEvent) -> Vec<u8> {
    // Serializing a struct of strings and numbers into a Vec cannot fail.
    serde_json::to_vec(event).unwrap_or_default()
}

pub fn decode(entry_id: &str, bytes: &[u8]) -> Result<ErrorEvent> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Wire {
        id: entry_id.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Level;
    use uuid::Uuid;

    #[test]
    fn round_trip() {
        let ev = ErrorEvent {
            tenant_id: Uuid::from_u128(7),
            group_id: Uuid::from_u128(8),
            ts_ms: 1_700_000_000_123,
            level: Level::Warning,
            message: "m".into(),
            stack_trace: None,
            context: Some(serde_json::json!({"a": 1})),
            source: "backend".into(),
            environment: Some("prod".into()),
            url: None,
            user_agent: None,
            ip_address: Some("10.0.0.1".into()),
            fingerprint: "abc".into(),
        };
        let bytes = encode(&ev);
        assert_eq!(decode("1-0", &bytes).unwrap(), ev);
        assert!(decode("1-0", b"{").is_err());
    }
}
