//! Micro-benchmarks of the hot path: normalisation and fingerprinting,
//! event decoding (validation, scrubbing, fingerprint), the stream wire
//! format, and the worker's side of it (entry decoding, rows for
//! ClickHouse, the per-batch fold for Postgres).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_benches::{batch_body, event_json, meta, STACK};
use sluice_ingest::event::{decode, RequestMeta};
use sluice_ingest::fingerprint::{fingerprint, normalize_message, normalize_stack};
use sluice_ingest::scrub::{scrub_str, ScrubConfig};
use sluice_storage::ch::events::EventRow;
use sluice_storage::model::ErrorEvent;
use sluice_storage::wire;

fn decode_all<'a>(
    bodies: &'a [Vec<u8>],
    m: &'a RequestMeta,
    s: &ScrubConfig,
) -> Vec<ErrorEvent<'a>> {
    bodies
        .iter()
        .map(|b| decode(b, m, s).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("hot_path");
    g.throughput(Throughput::Elements(1));
    g.bench_function("fingerprint", |b| {
        let mut i = 0u32;
        b.iter(|| {
            i = i.wrapping_add(1);
            let msg = format!("Timeout after {i} ms for order {}", i * 7);
            black_box(fingerprint(&msg, Some(&STACK), "backend"))
        })
    });
    g.bench_function("normalize_message", |b| {
        b.iter(|| black_box(normalize_message(black_box("Database connection failed for user 4242 (request 550e8400-e29b-41d4-a716-446655440000) at 10.0.0.12:5432 'primary'"))))
    });
    g.bench_function("normalize_stack", |b| {
        b.iter(|| black_box(normalize_stack(black_box(&STACK))))
    });
    g.bench_function("scrub_str", |b| {
        b.iter(|| black_box(scrub_str(black_box("Database connection failed for user 4242 (request 550e8400-e29b-41d4-a716-446655440000)"))))
    });
    g.bench_function("scrub_stack", |b| {
        b.iter(|| black_box(scrub_str(black_box(&STACK))))
    });
    let body = event_json(7);
    let scrub = ScrubConfig::default();
    let m = meta();
    g.bench_function("decode_event", |b| {
        b.iter(|| black_box(decode(black_box(&body), &m, &scrub)))
    });
    g.finish();

    // A batch of 100 realistic events (about 2 KB each), per event.
    let mut g = c.benchmark_group("batch_100");
    g.throughput(Throughput::Elements(100));
    let bodies: Vec<Vec<u8>> = (0..100).map(event_json).collect();
    g.bench_function("decode_events", |b| {
        b.iter(|| black_box(decode_all(black_box(&bodies), &m, &scrub)))
    });
    let events = decode_all(&bodies, &m, &scrub);
    g.bench_function("wire_encode", |b| {
        b.iter(|| black_box(wire::encode(black_box(&events))))
    });
    let envelope = wire::encode(&events);
    g.bench_function("wire_decode", |b| {
        b.iter(|| black_box(wire::decode("1-0", black_box(&envelope))))
    });
    let ids: Vec<String> = (0..100)
        .map(|i| format!("sluice:errors:{{1}}/1700000000000-0/{i}"))
        .collect();
    g.bench_function("clickhouse_rows", |b| {
        b.iter(|| {
            let decoded = wire::decode("1-0", black_box(&envelope)).unwrap_or_default();
            let rows: Vec<EventRow<'_>> = ids
                .iter()
                .zip(&decoded)
                .map(|(id, e)| EventRow::new(id, e))
                .collect();
            black_box(sluice_benches::row_binary(&rows))
        })
    });
    let batch = batch_body(100);
    let gz = sluice_benches::gzip(&batch);
    g.bench_function("gunzip_body", |b| {
        b.iter(|| black_box(sluice_benches::gunzip(black_box(&gz))))
    });
    g.bench_function("gunzip_body_streaming", |b| {
        b.iter(|| black_box(sluice_benches::gunzip_streaming(black_box(&gz))))
    });
    g.bench_function("split_and_decode_batch_body", |b| {
        b.iter(|| {
            let raws: Vec<&serde_json::value::RawValue> =
                serde_json::from_slice(black_box(&batch)).unwrap_or_default();
            let n = raws
                .iter()
                .filter(|r| decode(r.get().as_bytes(), &m, &scrub).is_ok())
                .count();
            black_box(n)
        })
    });
    g.finish();
}

/// The load generator's own events (PII-heavy contexts, 8-20 frame
/// stacks), and the parts of decoding them.
fn loadgen(c: &mut Criterion) {
    let bodies = sluice_benches::loadgen_events(200);
    let m = meta();
    let scrub = ScrubConfig::default();
    let mut g = c.benchmark_group("loadgen_200");
    g.throughput(Throughput::Elements(bodies.len() as u64));
    g.bench_function("decode_events", |b| {
        b.iter(|| black_box(decode_all(black_box(&bodies), &m, &scrub)))
    });
    let off = ScrubConfig::disabled();
    let mut array = b"[".to_vec();
    for (i, b) in bodies.iter().enumerate() {
        if i > 0 {
            array.push(b',');
        }
        array.extend_from_slice(b);
    }
    array.push(b']');
    let gz = sluice_benches::gzip(&array);
    g.bench_function("gunzip_body", |b| {
        b.iter(|| black_box(sluice_benches::gunzip(black_box(&gz))))
    });
    g.bench_function("gunzip_body_streaming", |b| {
        b.iter(|| black_box(sluice_benches::gunzip_streaming(black_box(&gz))))
    });
    g.bench_function("split_body", |b| {
        b.iter(|| {
            let raws: Vec<&serde_json::value::RawValue> =
                serde_json::from_slice(black_box(&array)).unwrap_or_default();
            black_box(raws.len())
        })
    });
    g.bench_function("decode_events_unscrubbed", |b| {
        b.iter(|| black_box(decode_all(black_box(&bodies), &m, &off)))
    });
    let values: Vec<serde_json::Value> = bodies
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap_or_default())
        .collect();
    let strings: Vec<String> = values
        .iter()
        .flat_map(|v| {
            ["message", "stack_trace", "url"]
                .into_iter()
                .filter_map(|k| v[k].as_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect();
    g.bench_function("scrub_strings", |b| {
        b.iter(|| {
            for s in &strings {
                black_box(scrub_str(black_box(s)));
            }
        })
    });
    let contexts: Vec<String> = values.iter().map(|v| v["context"].to_string()).collect();
    g.bench_function("scrub_contexts", |b| {
        b.iter(|| {
            for c in &contexts {
                black_box(sluice_ingest::context::scrub(black_box(c), &scrub).ok());
            }
        })
    });
    g.bench_function("fingerprints", |b| {
        b.iter(|| {
            for v in &values {
                black_box(fingerprint(
                    v["message"].as_str().unwrap_or(""),
                    v["stack_trace"].as_str(),
                    "backend",
                ));
            }
        })
    });
    g.finish();
}

criterion_group!(hot_path, benches, loadgen);
criterion_main!(hot_path);
