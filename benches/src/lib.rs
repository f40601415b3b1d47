//! Inputs for the criterion benchmarks in `benches/`: realistic events
//! (about 2 KB: a 14-frame stack, a context with PII, a URL), shaped like
//! the load generator's.

use sluice_ingest::event::RequestMeta;
use sluice_storage::ch::events::EventRow;

/// A stack trace of realistic depth whose line numbers vary by `i`.
pub fn stack(i: u32) -> String {
    let mut s = format!("TimeoutError: Connection timeout after {} ms", 3000 + i % 7);
    let frames = [
        (
            "OrderService.loadOrder",
            "/srv/app/releases/20250120/src/orders/service.js",
        ),
        (
            "OrderRepository.find",
            "/srv/app/releases/20250120/src/orders/repo.js",
        ),
        (
            "async handler",
            "/srv/app/releases/20250120/src/routes/orders.js",
        ),
        (
            "Layer.handle [as handle_request]",
            "/srv/app/node_modules/express/lib/router/layer.js",
        ),
        ("next", "/srv/app/node_modules/express/lib/router/route.js"),
        (
            "Route.dispatch",
            "/srv/app/node_modules/express/lib/router/route.js",
        ),
        (
            "Function.process_params",
            "/srv/app/node_modules/express/lib/router/index.js",
        ),
        ("Pool.connect", "/srv/app/node_modules/pg-pool/index.js"),
        (
            "Client._handleReadyForQuery",
            "/srv/app/node_modules/pg/lib/client.js",
        ),
        (
            "processTicksAndRejections",
            "node:internal/process/task_queues",
        ),
        ("async Promise.all", "index"),
        (
            "CheckoutService.reserveStock",
            "/srv/app/releases/20250120/src/checkout/service.js",
        ),
        (
            "StockClient.reserve",
            "/srv/app/releases/20250120/src/stock/client.js",
        ),
        ("retry", "/srv/app/releases/20250120/src/lib/retry.js"),
    ];
    for (k, (f, file)) in frames.iter().enumerate() {
        let line = 10 + (i as usize * 31 + k * 17) % 890;
        s.push_str(&format!("\n    at {f} ({file}:{line}:{})", 5 + k));
    }
    s
}

/// The 14-frame stack of event 0.
pub static STACK: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| stack(0));

/// One posted event as JSON.
pub fn event_json(i: u32) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "level": "error",
        "message": format!("TimeoutError: timeout after {} ms for order {} in orders.create (request 550e8400-e29b-41d4-a716-44665544{:04})", 3000 + i % 97, 100_000 + i * 7, i % 10_000),
        "stack_trace": stack(i),
        "context": {
            "user_id": (12_345 + i).to_string(),
            "session_id": "abc-def-ghi",
            "request_id": format!("req-{i}"),
            "email": format!("user{i}@example.com"),
            "password": "hunter2",
            "card": "4111 1111 1111 1111",
            "cart": {"items": i % 9, "total": 12.5, "currency": "EUR"},
            "headers": {"authorization": "Bearer abc.def.ghi", "accept": "application/json"}
        },
        "source": "backend",
        "environment": "production",
        "url": format!("https://api.example.com/orders/{}?page=2", 100_000 + i)
    }))
    .unwrap_or_default()
}

/// A batch body (a JSON array) of `n` events.
pub fn batch_body(n: u32) -> Vec<u8> {
    let mut out = b"[".to_vec();
    for i in 0..n {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&event_json(i));
    }
    out.push(b']');
    out
}

pub fn meta() -> RequestMeta {
    RequestMeta {
        tenant_id: uuid::Uuid::from_u128(42),
        ts_ms: 1_700_000_000_000,
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) bench/1.0".into()),
        ip_address: Some("10.1.2.3".into()),
    }
}

/// The `RowBinary` bytes ClickHouse receives for `rows`.
pub fn row_binary(rows: &[EventRow<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 2048);
    for r in rows {
        r.write_row_binary(&mut out);
    }
    out
}

/// `n` events as the load generator sends them (seed 1, 1,000 kinds).
pub fn loadgen_events(n: usize) -> Vec<Vec<u8>> {
    let generator = sluice_loadtest::payload::Generator::new(1000, 1);
    let mut rng = sluice_loadtest::rng::Rng::new(1);
    (0..n)
        .map(|_| serde_json::to_vec(&generator.event(&mut rng)).unwrap_or_default())
        .collect()
}

/// `data` gzip'd at the default level, as the load generator sends it.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

/// What ingest does to a gzip'd body of one member: libdeflate, into a
/// buffer sized from the trailer.
pub fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; sluice_ingest::gunzip::stated_size(data).unwrap_or(0)];
    if sluice_ingest::gunzip::one_member(data, &mut out).is_none() {
        out.clear();
    }
    out
}

/// What ingest does to other gzip'd bodies: flate2, streaming.
pub fn gunzip_streaming(data: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::with_capacity(data.len() * 8);
    let _ = flate2::read::MultiGzDecoder::new(data).read_to_end(&mut out);
    out
}
