//! The properties every fuzz target checks, one module per decoder of
//! untrusted input. The same code runs under libFuzzer (`fuzz/fuzz_targets`,
//! `scripts/fuzz.sh`) and, over the committed corpus, as a plain test of the
//! workspace (`ingest/tests/fuzz_corpus.rs`), so every input the corpus holds
//! is a regression test.
//!
//! A check panics when a property does not hold; each takes the raw input
//! exactly as libFuzzer hands it over (a request body, a stream entry).

pub mod batch;
pub mod body;
pub mod event;
pub mod sentry;
pub mod tracking;
pub mod wire;

use sluice_ingest::event::RequestMeta;
use uuid::Uuid;

/// A target's check of one input; it panics when a property breaks.
pub type Check = fn(&[u8]);

/// Every target: its name (the folder of its corpus under `fuzz/corpus/`,
/// the binary under `fuzz/fuzz_targets/`) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("event", event::check),
    ("batch", batch::check),
    ("tracking", tracking::check),
    ("body", body::check),
    ("wire", wire::check),
    ("sentry", sentry::check),
];

/// The request facts ingest adds to every event (the same for each input,
/// so results can be compared).
pub fn meta() -> RequestMeta {
    RequestMeta {
        tenant_id: Uuid::from_u128(0x51u128 << 64 | 8),
        ts_ms: 1_764_000_000_000,
        user_agent: Some("sluice-fuzz/1".into()),
        ip_address: Some("127.0.0.1".into()),
    }
}

/// How deep `{`/`[` nest in JSON text (strings skipped), without parsing it.
pub fn nesting_depth(text: &[u8]) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in text {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}
