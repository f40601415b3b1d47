//! Micro-benchmarks of the ingest hot path: normalisation and
//! fingerprinting, event decoding (validation, scrubbing, fingerprint), and
//! the stream wire format.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_ingest::event::{decode, RequestMeta};
use sluice_ingest::fingerprint::{fingerprint, normalize_message, normalize_stack};
use sluice_ingest::scrub::scrub_str;
use sluice_ingest::scrub::ScrubConfig;
use sluice_storage::wire;

const STACK: &str = "Error: Connection timeout after 3000ms\n    at Database.connect (/srv/app/releases/20250120/src/db/pool.js:142:17)\n    at async UserRepository.find (/srv/app/releases/20250120/src/users/repo.js:88:5)\n    at async handler (/srv/app/releases/20250120/src/routes/users.js:31:12)\n    at async Layer.handle (/srv/app/node_modules/express/lib/router/layer.js:95:5)";

fn event_json(i: u32) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "level": "error",
        "message": format!("Database connection failed for user {i} (request 550e8400-e29b-41d4-a716-44665544{i:04})"),
        "stack_trace": STACK,
        "context": {"user_id": i.to_string(), "session_id": "abc-def-ghi", "password": "hunter2", "email": "bob@example.com"},
        "source": "backend",
        "environment": "production",
        "url": "https://api.example.com/users?page=2"
    }))
    .unwrap_or_default()
}

fn meta() -> RequestMeta {
    RequestMeta {
        tenant_id: uuid::Uuid::from_u128(42),
        ts_ms: 1_700_000_000_000,
        user_agent: Some("bench/1.0".into()),
        ip_address: Some("10.1.2.3".into()),
    }
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("hot_path");
    g.throughput(Throughput::Elements(1));
    g.bench_function("fingerprint", |b| {
        let mut i = 0u32;
        b.iter(|| {
            i = i.wrapping_add(1);
            let msg = format!("Timeout after {i} ms for order {}", i * 7);
            black_box(fingerprint(&msg, Some(STACK), "backend"))
        })
    });
    g.bench_function("normalize_message", |b| {
        b.iter(|| black_box(normalize_message(black_box("Database connection failed for user 4242 (request 550e8400-e29b-41d4-a716-446655440000) at 10.0.0.12:5432 'primary'"))))
    });
    g.bench_function("normalize_stack", |b| {
        b.iter(|| black_box(normalize_stack(black_box(STACK))))
    });
    g.bench_function("scrub_str", |b| {
        b.iter(|| black_box(scrub_str(black_box("Database connection failed for user 4242 (request 550e8400-e29b-41d4-a716-446655440000)"))))
    });
    let long_stack = STACK.repeat(4);
    g.bench_function("scrub_stack_1500b", |b| {
        b.iter(|| black_box(scrub_str(black_box(&long_stack))))
    });
    let body = event_json(7);
    let scrub = ScrubConfig::default();
    let m = meta();
    g.bench_function("decode_event", |b| {
        b.iter(|| black_box(decode(black_box(&body), &m, &scrub)))
    });
    let ev = decode(&body, &m, &scrub).unwrap_or_else(|e| panic!("{e}"));
    g.bench_function("wire_encode", |b| {
        b.iter(|| black_box(wire::encode(black_box(&ev))))
    });
    let bytes = wire::encode(&ev);
    g.bench_function("wire_decode", |b| {
        b.iter(|| black_box(wire::decode("1-0", black_box(&bytes))))
    });
    g.finish();
}

criterion_group!(hot_path, benches);
criterion_main!(hot_path);
