//! Sentry envelopes and events (`POST /api/{project}/envelope/` and
//! `/store/`): [`sluice_ingest::sentry::envelope::parse`], then, for each
//! `event` item (and for the whole input, as a store body),
//! [`sluice_ingest::sentry::event::map`] into a native body, which
//! [`sluice_ingest::event::decode`] takes like any posted error.
//!
//! Items are slices of the input, never more than asked for; a mapped
//! event is a JSON object with a message and a fingerprint; and what the
//! native decoder accepts of it keeps every property of the `event`
//! target. Refusals carry a reason.

use serde_json::Value;
use sluice_ingest::event;
use sluice_ingest::scrub::ScrubConfig;
use sluice_ingest::sentry::{envelope, event as sentry_event};

/// Items an envelope may hold in this check.
const MAX_ITEMS: usize = 16;

pub fn check(data: &[u8]) {
    match envelope::parse(data, MAX_ITEMS) {
        Ok(env) => {
            assert!(env.items.len() <= MAX_ITEMS, "{} items", env.items.len());
            let range = data.as_ptr_range();
            for item in &env.items {
                let p = item.payload.as_ptr_range();
                assert!(
                    item.payload.is_empty() || (range.start <= p.start && p.end <= range.end),
                    "an item's payload outside the body"
                );
                if item.ty == "event" {
                    mapped(item.payload);
                }
            }
        }
        Err(reason) => assert!(!reason.is_empty(), "a refusal without a reason"),
    }
    // the same bytes as a store body
    mapped(data);
}

/// One event payload through the mapping and the native decoder.
fn mapped(payload: &[u8]) {
    let scrub = ScrubConfig::default();
    let m = match sentry_event::map(payload, &scrub) {
        Ok(m) => m,
        Err(reason) => {
            assert!(!reason.is_empty(), "a refusal without a reason");
            return;
        }
    };
    let body: Value = serde_json::from_slice(&m.body).expect("the mapped body is JSON");
    assert!(body["message"].is_string(), "no message in {body}");
    assert!(body["fingerprint"].is_string(), "no fingerprint in {body}");
    let meta = super::meta();
    match event::decode(&m.body, &meta, &scrub) {
        Ok(ev) => super::event::accepted(&m.body, &ev, &meta, &scrub),
        Err(reason) => assert!(!reason.is_empty(), "a refusal without a reason"),
    }
}
