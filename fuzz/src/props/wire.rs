//! The stream wire format (storage/src/wire.rs): what a worker reads from
//! a Redis stream entry, which anything able to write to Redis can forge.
//!
//! Decoding never claims more events than the bytes can hold; what it
//! decodes encodes again into an entry that decodes to the same events and
//! that is its own canonical form; entries joined chunk by chunk decode to
//! the events of each, in order.

use sluice_storage::wire;

/// The fewest bytes an event takes: group id, level, and a length or
/// presence byte for each of its seven strings.
const MIN_EVENT_BYTES: usize = 16 + 1 + 7;

pub fn check(data: &[u8]) {
    let Ok(events) = wire::decode("0-0", data) else {
        return;
    };
    assert!(
        events.len() * MIN_EVENT_BYTES <= data.len(),
        "{} events out of {} bytes",
        events.len(),
        data.len()
    );
    let encoded = wire::encode(&events);
    let back = wire::decode("0-0", &encoded).expect("a re-encoded entry decodes");
    assert_eq!(back, events, "events changed when encoded again");
    assert_eq!(wire::encode(&back), encoded, "encoding is not canonical");
    // two requests' chunks in one entry, as the sink joins them
    let mut joined = wire::Envelope::default();
    joined.push(&data[1..], events.len() as u32);
    joined.push(&data[1..], events.len() as u32);
    let twice = joined.to_vec();
    let both = wire::decode("0-0", &twice).expect("joined chunks decode");
    assert_eq!(both.len(), 2 * events.len());
    assert_eq!(both[..events.len()], events);
    assert_eq!(both[events.len()..], events);
}
