//! A batch (`POST /api/errors/batch`): a JSON array or NDJSON, through
//! [`sluice_ingest::decode_batch`] as the handler decodes it.
//!
//! A batch is refused whole only with a client error; each item is decided
//! as if it had been posted alone, and an accepted item has every property
//! of a single event ([`super::event`]); NDJSON whose lines are all
//! accepted means the same as the array of those lines.

use serde_json::value::RawValue;
use sluice_ingest::event;
use sluice_ingest::{decode_batch, IngestConfig};
use sluice_storage::model::ErrorEvent;

/// Items checked in full as single events: the first few of each batch
/// (every item is still compared with its decoding alone). Checking all of
/// a thousand-event batch would make the fuzzer a hundred times slower.
const FULLY_CHECKED: usize = 16;

pub fn check(data: &[u8]) {
    let meta = super::meta();
    let cfg = IngestConfig::default();
    let items: Vec<Result<ErrorEvent<'_>, String>> = match decode_batch(data, &meta, &cfg) {
        Ok(items) => items.collect(),
        Err(r) => {
            assert!(
                matches!(r.status.as_u16(), 400 | 413),
                "a batch refused with {}: {}",
                r.status,
                r.message
            );
            return;
        }
    };
    assert!(items.len() <= cfg.max_batch_events);
    let (raws, ndjson) = split(data).expect("decode_batch split what the reference cannot");
    assert_eq!(raws.len(), items.len(), "items miscounted");
    for (i, (raw, item)) in raws.iter().zip(&items).enumerate() {
        match (item, event::decode(raw, &meta, &cfg.scrub)) {
            (Ok(ev), Ok(alone)) => {
                assert_eq!(*ev, alone, "an item decodes differently alone");
                if i < FULLY_CHECKED {
                    super::event::accepted(raw, ev, &meta, &cfg.scrub);
                }
            }
            (Err(_), Err(_)) => {}
            (Err(e), Ok(_)) => assert!(
                raw.len() > cfg.max_event_bytes,
                "an item refused in a batch ({e}) is accepted alone"
            ),
            (Ok(_), Err(e)) => panic!("an item accepted in a batch is refused alone: {e}"),
        }
    }
    let accepted: Vec<ErrorEvent<'_>> = items.iter().filter_map(|i| i.clone().ok()).collect();
    super::event::stream_round_trip(&accepted);
    if ndjson && !accepted.is_empty() && accepted.len() == items.len() {
        let array = format!(
            "[{}]",
            raws.iter()
                .map(|r| String::from_utf8_lossy(r))
                .collect::<Vec<_>>()
                .join(",")
        );
        let same: Vec<ErrorEvent<'_>> = decode_batch(array.as_bytes(), &meta, &cfg)
            .expect("the NDJSON lines as an array are refused")
            .map(|i| i.expect("an NDJSON line is refused inside an array"))
            .collect();
        assert_eq!(same, accepted, "NDJSON and the same array differ");
    }
}

/// The documented format, read independently: the items' texts, and
/// whether it was NDJSON.
fn split(data: &[u8]) -> Option<(Vec<&[u8]>, bool)> {
    let body = data.trim_ascii_start();
    if body.first() == Some(&b'[') {
        let items: Vec<&RawValue> = serde_json::from_slice(body).ok()?;
        return Some((items.iter().map(|r| r.get().as_bytes()).collect(), false));
    }
    let lines = body
        .split(|b| *b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|l| !l.is_empty())
        .collect();
    Some((lines, true))
}
