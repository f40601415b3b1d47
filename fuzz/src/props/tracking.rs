//! The Database Tracking bodies (`POST /api/v1/tracking/operations/start`
//! and `/complete`): [`sluice_ingest::tracking::decode_start`] and
//! [`decode_complete`]. Every input goes through both.
//!
//! A refusal is a 400; what is accepted meets the contract's rules (a
//! trimmed name of at most 500 characters, an upper-case type, a 32-hex
//! operation id) and decodes to the same when sent again.

use serde_json::json;
use sluice_ingest::tracking::{decode_complete, decode_start};

pub fn check(data: &[u8]) {
    match decode_start(data) {
        Ok(s) => {
            assert!(!s.script_name.is_empty());
            assert_eq!(s.script_name.trim(), s.script_name);
            assert!(s.script_name.chars().count() <= 500);
            let t = s.script_type.as_bytes();
            assert!(
                (1..=50).contains(&t.len())
                    && t[0].is_ascii_uppercase()
                    && t.iter()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_'),
                "script_type {:?}",
                s.script_type
            );
            let again = json!({"script_name": s.script_name, "script_type": s.script_type});
            assert_eq!(decode_start(again.to_string().as_bytes()), Ok(s));
        }
        Err(r) => assert_eq!(r.status, 400, "start refused with {}", r.status),
    }
    match decode_complete(data) {
        Ok(c) => {
            assert!(
                c.operation_id.len() == 32
                    && c.operation_id
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "operation_id {:?}",
                c.operation_id
            );
            assert!(c
                .error_message
                .as_ref()
                .is_none_or(|m| !m.trim().is_empty()));
            let again = json!({
                "operation_id": c.operation_id,
                "success": c.success,
                "error_message": c.error_message,
            });
            assert_eq!(decode_complete(again.to_string().as_bytes()), Ok(c));
        }
        Err(r) => assert_eq!(r.status, 400, "complete refused with {}", r.status),
    }
}
