//! Realistic error events: `fingerprints` distinct kinds of error, each a
//! message template whose ids and numbers change on every occurrence (so the
//! server's normalisation decides the grouping), a JavaScript, Python or
//! Rust stack trace 8 to 20 frames deep whose line numbers vary, and a
//! context full of PII for the scrubber (emails, passwords, card numbers,
//! bearer tokens).

use serde_json::{json, Value};

use crate::rng::Rng;

const CLASSES: [&str; 15] = [
    "TimeoutError",
    "ConnectionError",
    "ValueError",
    "KeyError",
    "TypeError",
    "DatabaseError",
    "IntegrityError",
    "PermissionDenied",
    "NotFound",
    "RateLimited",
    "SerializationError",
    "IoError",
    "InvariantViolation",
    "ProtocolError",
    "ConfigError",
];

const COMPONENTS: [&str; 20] = [
    "orders",
    "billing",
    "inventory",
    "checkout",
    "auth",
    "search",
    "shipping",
    "notifications",
    "reports",
    "catalog",
    "users",
    "sessions",
    "payments",
    "cart",
    "pricing",
    "analytics",
    "exports",
    "imports",
    "webhooks",
    "scheduler",
];

const OPERATIONS: [&str; 15] = [
    "create", "update", "delete", "fetch", "list", "sync", "validate", "refresh", "commit",
    "rollback", "publish", "consume", "render", "resolve", "reserve",
];

/// Message shapes; the placeholders change on every occurrence:
/// `{n}` a number, `{id}` a numeric id, `{uuid}`, `{email}`, `{ip}` with a
/// port, `{q}` a quoted value, `{hex}` an address, `{card}` a card number.
const PHRASES: [&str; 12] = [
    "timeout after {n} ms for order {id}",
    "connection to {ip} refused after {n} retries",
    "user {email} not found in tenant {uuid}",
    "failed to parse {q} at offset {n}",
    "deadlock detected on relation {n} for transaction {hex}",
    "rate limit exceeded for key {uuid}: {n} requests in {n} s",
    "payment {id} declined for card {card}",
    "query took {n} ms, over the budget of {n} ms ({n} rows)",
    "upstream answered {n} for request {uuid}",
    "cannot read property {q} of undefined (item {n})",
    "pool exhausted: {n} of {n} connections busy, waited {n} ms",
    "file {q} not found (errno {n})",
];

const TOTAL_COMBOS: u64 =
    (PHRASES.len() * CLASSES.len() * COMPONENTS.len() * OPERATIONS.len()) as u64;
/// Coprime with [`TOTAL_COMBOS`] (2^4·3^3·5^3): spreads consecutive
/// template numbers over every class, component and operation.
const SPREAD: u64 = 7919;

const JS_FRAMEWORK: [(&str, &str); 8] = [
    (
        "Layer.handle [as handle_request]",
        "node_modules/express/lib/router/layer.js",
    ),
    ("next", "node_modules/express/lib/router/route.js"),
    ("Route.dispatch", "node_modules/express/lib/router/route.js"),
    (
        "Function.process_params",
        "node_modules/express/lib/router/index.js",
    ),
    (
        "processTicksAndRejections",
        "node:internal/process/task_queues",
    ),
    ("async Promise.all", "index"),
    ("Pool.connect", "node_modules/pg-pool/index.js"),
    (
        "Client._handleReadyForQuery",
        "node_modules/pg/lib/client.js",
    ),
];
const PY_FRAMEWORK: [(&str, &str); 8] = [
    ("wsgi_app", "/usr/lib/python3.12/site-packages/flask/app.py"),
    (
        "full_dispatch_request",
        "/usr/lib/python3.12/site-packages/flask/app.py",
    ),
    (
        "dispatch_request",
        "/usr/lib/python3.12/site-packages/flask/app.py",
    ),
    (
        "execute",
        "/usr/lib/python3.12/site-packages/sqlalchemy/engine/base.py",
    ),
    (
        "_execute_context",
        "/usr/lib/python3.12/site-packages/sqlalchemy/engine/base.py",
    ),
    (
        "do_execute",
        "/usr/lib/python3.12/site-packages/sqlalchemy/engine/default.py",
    ),
    (
        "run",
        "/usr/lib/python3.12/site-packages/celery/app/trace.py",
    ),
    (
        "__call__",
        "/usr/lib/python3.12/site-packages/celery/app/task.py",
    ),
];
const RS_FRAMEWORK: [(&str, &str); 8] = [
    (
        "tokio::runtime::task::harness::Harness<T,S>::poll",
        "/cargo/registry/src/tokio-1.47.1/src/runtime/task/harness.rs",
    ),
    (
        "tokio::runtime::scheduler::multi_thread::worker::Context::run_task",
        "/cargo/registry/src/tokio-1.47.1/src/runtime/scheduler/multi_thread/worker.rs",
    ),
    (
        "hyper::proto::h1::dispatch::Dispatcher<D,Bs,I,T>::poll_catch",
        "/cargo/registry/src/hyper-1.7.0/src/proto/h1/dispatch.rs",
    ),
    (
        "<axum::routing::Router as tower_service::Service>::call",
        "/cargo/registry/src/axum-0.8.4/src/routing/mod.rs",
    ),
    (
        "sqlx_core::pool::inner::PoolInner<DB>::acquire",
        "/cargo/registry/src/sqlx-core-0.8.6/src/pool/inner.rs",
    ),
    (
        "<F as futures_core::future::TryFuture>::try_poll",
        "/cargo/registry/src/futures-core-0.3.31/src/future.rs",
    ),
    (
        "core::ops::function::FnOnce::call_once",
        "/rustc/library/core/src/ops/function.rs",
    ),
    (
        "std::panicking::try::do_call",
        "/rustc/library/std/src/panicking.rs",
    ),
];

const FUNCTION_VERBS: [&str; 12] = [
    "load", "save", "apply", "check", "build", "send", "parse", "lookup", "merge", "handle",
    "dispatch", "compute",
];
const FUNCTION_NOUNS: [&str; 12] = [
    "order", "invoice", "stock", "session", "token", "query", "batch", "payload", "quote",
    "customer", "ledger", "report",
];
const FIRST_NAMES: [&str; 10] = [
    "jane", "omar", "li", "sofia", "marek", "aisha", "pablo", "yuki", "nina", "tom",
];
const DOMAINS: [&str; 5] = [
    "example.com",
    "mail.example.org",
    "corp.example.net",
    "shop.example",
    "users.example.io",
];
const QUOTED: [&str; 8] = [
    "customer_ref",
    "shipping.address",
    "total_amount",
    "items[0].sku",
    "created_at",
    "discount_code",
    "/var/data/export.csv",
    "config/prod.yaml",
];
const SCRIPT_TYPES: [&str; 6] = [
    "MAINTENANCE",
    "MIGRATION",
    "BACKUP",
    "REPORTING",
    "MANUAL",
    "ETL",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Js,
    Python,
    Rust,
}

#[derive(Debug, Clone)]
struct Frame {
    function: String,
    file: String,
    line: u64,
}

/// One kind of error: everything that stays the same between occurrences.
#[derive(Debug, Clone)]
struct Template {
    class: &'static str,
    phrase: &'static str,
    component: &'static str,
    operation: &'static str,
    suffix: String,
    lang: Lang,
    source: &'static str,
    frames: Vec<Frame>,
}

/// The set of error kinds a run draws from.
#[derive(Debug, Clone)]
pub struct Generator {
    templates: Vec<Template>,
}

impl Generator {
    /// `kinds` distinct error kinds (at least one), the same for the same seed.
    pub fn new(kinds: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let templates = (0..kinds.max(1) as u64)
            .map(|i| template(i, &mut rng))
            .collect();
        Self { templates }
    }

    #[cfg(test)]
    pub fn kinds(&self) -> usize {
        self.templates.len()
    }

    /// One occurrence of a random kind: hot kinds (the first tenth) get half
    /// of the traffic, as in real systems where a few errors dominate.
    pub fn event(&self, rng: &mut Rng) -> Value {
        let i = self.pick_kind(rng);
        self.event_of(i, rng)
    }

    /// The kind of the next occurrence: hot kinds (the first tenth) get half
    /// of the picks.
    fn pick_kind(&self, rng: &mut Rng) -> usize {
        let n = self.templates.len() as u64;
        let hot = (n / 10).max(1);
        let i = if rng.chance(50) {
            rng.below(hot)
        } else {
            rng.below(n)
        };
        i as usize
    }

    /// One occurrence of a random kind as a Sentry SDK sends it (exception
    /// type and value with structured frames, oldest first; level, tags,
    /// user, request, extra and contexts), for the envelope scenario.
    pub fn sentry_event(&self, rng: &mut Rng) -> Value {
        let i = self.pick_kind(rng);
        let Some(t) = self.templates.get(i) else {
            return json!({"message": "empty generator"});
        };
        let value = format!(
            "{} in {}.{}{}",
            fill(t.phrase, rng),
            t.component,
            t.operation,
            t.suffix
        );
        let platform = match t.lang {
            Lang::Js => "node",
            Lang::Python => "python",
            Lang::Rust => "rust",
        };
        let frames: Vec<Value> = t
            .frames
            .iter()
            .rev()
            .map(|f| {
                json!({
                    "function": f.function,
                    "filename": f.file,
                    "lineno": f.line + rng.below(40),
                    "in_app": true,
                })
            })
            .collect();
        let level = match rng.below(100) {
            0..=69 => "error",
            70..=84 => "warning",
            85..=94 => "fatal",
            _ => "info",
        };
        json!({
            "event_id": hex32(rng),
            "platform": platform,
            "level": level,
            "environment": if rng.chance(80) { "production" } else { "staging" },
            "release": format!("{}@1.{}.{}", t.source, rng.below(20), rng.below(10)),
            "server_name": format!("web-{}", rng.below(12)),
            "exception": {"values": [{
                "type": t.class,
                "value": value,
                "stacktrace": {"frames": frames},
            }]},
            "tags": {"component": t.component, "operation": t.operation},
            "user": {"id": rng.between(1, 5_000_000).to_string(), "email": email(rng)},
            "request": {
                "url": format!("https://api.example.com/{}/{}", t.component, rng.between(1000, 9_999_999)),
                "method": "POST",
                "headers": {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"},
            },
            "extra": context(rng),
            "contexts": {"runtime": {"name": platform, "version": "20.11.1"}},
        })
    }

    /// One occurrence of kind `i`.
    fn event_of(&self, i: usize, rng: &mut Rng) -> Value {
        let Some(t) = self.templates.get(i % self.templates.len().max(1)) else {
            return json!({"message": "empty generator"});
        };
        let message = format!(
            "{}: {} in {}.{}{}",
            t.class,
            fill(t.phrase, rng),
            t.component,
            t.operation,
            t.suffix
        );
        let level = match rng.below(100) {
            0..=69 => "error",
            70..=84 => "warning",
            85..=94 => "critical",
            _ => "info",
        };
        let environment = if rng.chance(80) {
            "production"
        } else {
            "staging"
        };
        let mut ev = json!({
            "level": level,
            "message": message,
            "stack_trace": stack_trace(t, &message, rng),
            "context": context(rng),
            "source": t.source,
            "environment": environment,
        });
        if rng.chance(60) {
            let url = if rng.chance(30) {
                format!(
                    "https://api.example.com/{}/{}?email={}",
                    t.component,
                    rng.between(1000, 9_999_999),
                    email(rng)
                )
            } else {
                format!(
                    "https://api.example.com/{}/{}",
                    t.component,
                    rng.between(1000, 9_999_999)
                )
            };
            ev["url"] = Value::String(url);
        }
        ev
    }
}

/// The body of a tracked operation's start.
pub fn operation_start(rng: &mut Rng) -> Value {
    let name = format!(
        "{} {} {}",
        capitalise(rng.pick(&FUNCTION_VERBS)),
        rng.pick(&COMPONENTS),
        rng.pick(&FUNCTION_NOUNS)
    );
    json!({"script_name": name, "script_type": rng.pick(&SCRIPT_TYPES)})
}

/// The body of a tracked operation's completion: 3 in 100 fail.
pub fn operation_complete(operation_id: &str, rng: &mut Rng) -> Value {
    if rng.chance(3) {
        json!({
            "operation_id": operation_id,
            "success": false,
            "error_message": format!("relation {} is locked by pid {}", rng.pick(&COMPONENTS), rng.between(100, 99_999)),
        })
    } else {
        json!({"operation_id": operation_id, "success": true})
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Letters only: a kind's identity must survive the server's normalisation,
/// which replaces digits.
fn letters(mut n: u64) -> String {
    let mut s = String::new();
    loop {
        s.push(char::from(b'a' + (n % 26) as u8));
        n /= 26;
        if n == 0 {
            return s;
        }
    }
}

fn template(i: u64, rng: &mut Rng) -> Template {
    let spread = (i % TOTAL_COMBOS) * SPREAD % TOTAL_COMBOS;
    let mut rest = spread;
    let mut take = |len: usize| {
        let v = (rest % len as u64) as usize;
        rest /= len as u64;
        v
    };
    let phrase = PHRASES
        .get(take(PHRASES.len()))
        .copied()
        .unwrap_or_default();
    let class = CLASSES
        .get(take(CLASSES.len()))
        .copied()
        .unwrap_or_default();
    let component = COMPONENTS
        .get(take(COMPONENTS.len()))
        .copied()
        .unwrap_or_default();
    let operation = OPERATIONS
        .get(take(OPERATIONS.len()))
        .copied()
        .unwrap_or_default();
    let round = i / TOTAL_COMBOS;
    let suffix = if round == 0 {
        String::new()
    } else {
        format!(" (region {})", letters(round))
    };
    let lang = match i % 3 {
        0 => Lang::Js,
        1 => Lang::Python,
        _ => Lang::Rust,
    };
    let source = match (lang, rng.below(2)) {
        (Lang::Js, 0) => "frontend",
        (Lang::Js, _) => "backend",
        (Lang::Python, 0) => "backend",
        (Lang::Python, _) => "worker",
        (Lang::Rust, 0) => "backend",
        (Lang::Rust, _) => "ingest",
    };
    let depth = rng.between(8, 20) as usize;
    let own = rng.between(3, depth as u64 - 2) as usize;
    let mut frames = Vec::with_capacity(depth);
    for k in 0..depth {
        let line = rng.between(10, 900);
        if k < own {
            let verb = rng.pick(&FUNCTION_VERBS);
            let noun = rng.pick(&FUNCTION_NOUNS);
            let (function, file) = match lang {
                Lang::Js => (
                    format!(
                        "{}Service.{verb}{}",
                        capitalise(component),
                        capitalise(noun)
                    ),
                    format!("/srv/app/src/{component}/{noun}.js"),
                ),
                Lang::Python => (
                    format!("{verb}_{noun}"),
                    format!("/app/{component}/{noun}.py"),
                ),
                Lang::Rust => (
                    format!("{component}::{noun}::{verb}_{noun}"),
                    format!("./src/{component}/{noun}.rs"),
                ),
            };
            frames.push(Frame {
                function,
                file,
                line,
            });
        } else {
            let table = match lang {
                Lang::Js => &JS_FRAMEWORK,
                Lang::Python => &PY_FRAMEWORK,
                Lang::Rust => &RS_FRAMEWORK,
            };
            let (function, file) = rng.pick(table);
            frames.push(Frame {
                function: function.to_string(),
                file: file.to_string(),
                line,
            });
        }
    }
    Template {
        class,
        phrase,
        component,
        operation,
        suffix,
        lang,
        source,
        frames,
    }
}

fn email(rng: &mut Rng) -> String {
    format!(
        "{}.{}{}@{}",
        rng.pick(&FIRST_NAMES),
        rng.pick(&FIRST_NAMES),
        rng.below(1000),
        rng.pick(&DOMAINS)
    )
}

/// 32 lowercase hex digits, as Sentry's event ids.
fn hex32(rng: &mut Rng) -> String {
    format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}

/// A Sentry envelope of one `event` item: the envelope header (its
/// `event_id`), the item header (type and length) and the event, one line
/// each.
pub fn sentry_envelope(event: &Value) -> serde_json::Result<Vec<u8>> {
    let payload = serde_json::to_vec(event)?;
    let header = json!({"event_id": event.get("event_id").cloned().unwrap_or(Value::Null)});
    let mut out = serde_json::to_vec(&header)?;
    out.push(b'\n');
    serde_json::to_writer(&mut out, &json!({"type": "event", "length": payload.len()}))?;
    out.push(b'\n');
    out.extend_from_slice(&payload);
    out.push(b'\n');
    Ok(out)
}

fn uuid(rng: &mut Rng) -> String {
    uuid::Uuid::from_u64_pair(rng.next_u64(), rng.next_u64()).to_string()
}

/// A Luhn-valid 16-digit card number in 4 groups (the scrubber redacts
/// exactly those, so every occurrence of a kind is scrubbed alike).
fn card(rng: &mut Rng) -> String {
    let prefix = rng.pick(&[4111u64, 5500, 3782, 6011]);
    let mut digits: Vec<u8> = prefix.to_string().bytes().map(|b| b - b'0').collect();
    while digits.len() < 15 {
        digits.push(rng.below(10) as u8);
    }
    // the check digit makes the Luhn sum a multiple of ten
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 0 {
                let v = d * 2;
                if v > 9 {
                    v - 9
                } else {
                    v
                }
            } else {
                d
            }
        })
        .sum();
    digits.push(((10 - sum % 10) % 10) as u8);
    let mut out = String::with_capacity(19);
    for (i, d) in digits.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push(' ');
        }
        out.push(char::from(b'0' + d));
    }
    out
}

/// The template with its placeholders replaced by fresh values.
fn fill(phrase: &str, rng: &mut Rng) -> String {
    let mut out = String::with_capacity(phrase.len() + 48);
    let mut rest = phrase;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let name = &rest[start + 1..start + len];
        match name {
            "n" => out.push_str(&rng.between(1, 30_000).to_string()),
            "id" => out.push_str(&rng.between(10_000, 99_999_999).to_string()),
            "uuid" => out.push_str(&uuid(rng)),
            "email" => out.push_str(&email(rng)),
            "ip" => out.push_str(&format!(
                "10.{}.{}.{}:{}",
                rng.below(256),
                rng.below(256),
                rng.between(1, 254),
                rng.pick(&[5432u64, 6379, 8123, 3306, 443])
            )),
            "q" => {
                out.push('\'');
                out.push_str(rng.pick(&QUOTED));
                out.push('\'');
            }
            "hex" => out.push_str(&format!("0x{:x}", rng.next_u64() >> 16)),
            "card" => out.push_str(&card(rng)),
            other => out.push_str(other),
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

/// The kind's frames with this occurrence's line numbers (a deploy moves
/// code around), sometimes with extra runtime frames at the bottom.
fn stack_trace(t: &Template, message: &str, rng: &mut Rng) -> String {
    let mut lines: Vec<String> = Vec::with_capacity(t.frames.len() * 2 + 3);
    let line_of = |f: &Frame, rng: &mut Rng| f.line + rng.below(40);
    match t.lang {
        Lang::Js => {
            lines.push(format!(
                "{}: {} {} failed",
                t.class, t.component, t.operation
            ));
            for f in &t.frames {
                let col = rng.between(5, 60);
                lines.push(format!(
                    "    at {} ({}:{}:{col})",
                    f.function,
                    f.file,
                    line_of(f, rng)
                ));
            }
            if rng.chance(30) {
                lines.push(
                    "    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)"
                        .to_string(),
                );
            }
        }
        Lang::Python => {
            lines.push("Traceback (most recent call last):".to_string());
            for f in &t.frames {
                lines.push(format!(
                    "  File \"{}\", line {}, in {}",
                    f.file,
                    line_of(f, rng),
                    f.function
                ));
                lines.push(format!("    result = self.{}(payload)", f.function));
            }
            lines.push(message.to_string());
        }
        Lang::Rust => {
            let first = t.frames.first();
            lines.push(format!(
                "thread 'tokio-runtime-worker' panicked at {}:{}:{}:",
                first.map_or("src/main.rs", |f| f.file.as_str()),
                first.map_or(1, |f| line_of(f, rng)),
                rng.between(5, 60)
            ));
            lines.push("stack backtrace:".to_string());
            for (k, f) in t.frames.iter().enumerate() {
                lines.push(format!("  {k:>2}: {}", f.function));
                lines.push(format!(
                    "             at {}:{}:{}",
                    f.file,
                    line_of(f, rng),
                    rng.between(5, 60)
                ));
            }
            if rng.chance(30) {
                lines.push(format!(
                    "  {:>2}: std::sys::pal::unix::thread::Thread::new::thread_start",
                    t.frames.len()
                ));
            }
        }
    }
    lines.join("\n")
}

/// Request facts with PII the server is expected to scrub.
fn context(rng: &mut Rng) -> Value {
    let mut c = json!({
        "user_id": rng.between(1, 5_000_000).to_string(),
        "session_id": uuid(rng),
        "request_id": format!("req-{}", rng.between(100_000, 999_999_999)),
        "email": email(rng),
        "attempt": rng.between(1, 5),
        "order": {
            "id": rng.between(10_000, 99_999_999),
            "amount_cents": rng.between(100, 2_000_000),
            "billing_email": email(rng),
        },
    });
    if rng.chance(50) {
        c["password"] = Value::String(format!("hunter{}!", rng.below(100_000)));
    }
    if rng.chance(35) {
        c["card_number"] = Value::String(card(rng));
    }
    if rng.chance(30) {
        c["headers"] = json!({
            "authorization": format!("Bearer eyJhbGciOiJIUzI1NiJ9.{:016x}.{:016x}", rng.next_u64(), rng.next_u64()),
            "user-agent": "Mozilla/5.0 (X11; Linux x86_64)",
        });
    }
    if rng.chance(20) {
        c["api_token"] = Value::String(format!(
            "tok_{:032x}",
            u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())
        ));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn kinds_are_distinct_even_past_the_combinations() {
        let g = Generator::new(TOTAL_COMBOS as usize + 50, 1);
        let mut keys = HashSet::new();
        for t in &g.templates {
            keys.insert((
                t.class,
                t.phrase,
                t.component,
                t.operation,
                t.suffix.clone(),
            ));
        }
        assert_eq!(keys.len(), g.kinds());
    }

    #[test]
    fn sentry_envelopes_have_three_lines_and_a_framed_exception() {
        let g = Generator::new(100, 3);
        let mut rng = Rng::new(5);
        let mut ids = HashSet::new();
        for _ in 0..200 {
            let ev = g.sentry_event(&mut rng);
            let body = sentry_envelope(&ev).unwrap();
            assert_eq!(body.last(), Some(&b'\n'));
            let lines: Vec<&[u8]> = body[..body.len() - 1].split(|&b| b == b'\n').collect();
            assert_eq!(lines.len(), 3);
            let header: Value = serde_json::from_slice(lines[0]).unwrap();
            let item: Value = serde_json::from_slice(lines[1]).unwrap();
            let event: Value = serde_json::from_slice(lines[2]).unwrap();
            let id = header["event_id"].as_str().unwrap();
            assert_eq!(id.len(), 32);
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            assert_eq!(event["event_id"], header["event_id"]);
            assert!(ids.insert(id.to_string()), "event ids repeat");
            assert_eq!(item["type"], "event");
            assert_eq!(item["length"].as_u64(), Some(lines[2].len() as u64));
            let exc = &event["exception"]["values"][0];
            assert!(!exc["type"].as_str().unwrap().is_empty());
            assert!(!exc["value"].as_str().unwrap().is_empty());
            let frames = exc["stacktrace"]["frames"].as_array().unwrap();
            assert!(frames.len() >= 8, "{}", frames.len());
            for f in frames {
                assert!(f["function"].is_string() && f["filename"].is_string());
                assert!(f["lineno"].as_u64().unwrap() > 0);
            }
            assert!(
                ["error", "warning", "fatal", "info"].contains(&event["level"].as_str().unwrap())
            );
        }
    }

    #[test]
    fn events_are_valid_varied_and_realistic() {
        let g = Generator::new(1000, 42);
        let mut rng = Rng::new(9);
        let mut messages = HashSet::new();
        let mut with_password = 0;
        for _ in 0..500 {
            let ev = g.event(&mut rng);
            // round-trips as JSON
            let bytes = serde_json::to_vec(&ev).unwrap();
            let back: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(back, ev);
            let msg = ev["message"].as_str().unwrap();
            assert!(!msg.contains('{'), "unfilled placeholder in {msg}");
            messages.insert(msg.to_string());
            let st = ev["stack_trace"].as_str().unwrap();
            let frames = st
                .lines()
                .filter(|l| {
                    let l = l.trim_start();
                    l.starts_with("at ") || l.starts_with("File ")
                })
                .count();
            assert!((8..=21).contains(&frames), "{frames} frames:\n{st}");
            let ctx = &ev["context"];
            assert!(ctx["email"].as_str().unwrap().contains('@'));
            if ctx.get("password").is_some() {
                with_password += 1;
            }
            assert!(
                ["error", "warning", "critical", "info"].contains(&ev["level"].as_str().unwrap())
            );
        }
        assert!(messages.len() > 490, "messages vary: {}", messages.len());
        assert!(with_password > 150 && with_password < 350);
    }

    #[test]
    fn same_kind_differs_only_in_values() {
        let g = Generator::new(10, 3);
        let mut rng = Rng::new(5);
        let a = g.event_of(4, &mut rng);
        let b = g.event_of(4, &mut rng);
        assert_ne!(a["message"], b["message"]);
        let strip = |v: &Value| -> String {
            v["message"]
                .as_str()
                .unwrap()
                .split(':')
                .next()
                .unwrap()
                .to_string()
        };
        assert_eq!(strip(&a), strip(&b));
        assert_eq!(a["source"], b["source"]);
        let fa: Vec<&str> = a["stack_trace"].as_str().unwrap().lines().collect();
        let fb: Vec<&str> = b["stack_trace"].as_str().unwrap().lines().collect();
        assert!(fa.len().abs_diff(fb.len()) <= 1);
    }

    #[test]
    fn fill_replaces_every_placeholder() {
        let mut rng = Rng::new(1);
        for p in PHRASES {
            let s = fill(p, &mut rng);
            assert!(!s.contains('{') && !s.contains('}'), "{s}");
        }
        assert_eq!(letters(0), "a");
        assert_eq!(letters(27), "bb");
    }

    #[test]
    fn operations_bodies() {
        let mut rng = Rng::new(2);
        let s = operation_start(&mut rng);
        assert!(s["script_name"].as_str().unwrap().len() > 3);
        let c = operation_complete("abc", &mut rng);
        assert_eq!(c["operation_id"], "abc");
    }
}

/// The payloads against the server's own normalisation and fingerprint.
#[cfg(test)]
mod grouping_tests {
    use super::*;
    use sluice_ingest::event::{decode, RequestMeta};
    use sluice_ingest::scrub::ScrubConfig;
    use std::collections::{HashMap, HashSet};

    /// The fingerprint the server computes: decoded, scrubbed, normalised.
    fn fp(ev: &Value) -> String {
        let meta = RequestMeta {
            tenant_id: uuid::Uuid::nil(),
            ts_ms: 0,
            user_agent: None,
            ip_address: None,
        };
        let bytes = serde_json::to_vec(ev).unwrap();
        decode(&bytes, &meta, &ScrubConfig::default())
            .unwrap()
            .fingerprint
            .into_owned()
    }

    #[test]
    fn cards_pass_luhn() {
        let mut rng = Rng::new(8);
        for _ in 0..100 {
            let c = card(&mut rng);
            assert_eq!(c.len(), 19);
            assert_eq!(sluice_ingest::scrub::scrub_str(&c), "[card]", "{c}");
        }
    }

    #[test]
    fn each_kind_is_one_group_and_kinds_are_distinct_groups() {
        let g = Generator::new(300, 11);
        let mut rng = Rng::new(4);
        let mut groups: HashMap<String, usize> = HashMap::new();
        for kind in 0..g.kinds() {
            let first = g.event_of(kind, &mut rng);
            let second = g.event_of(kind, &mut rng);
            assert_ne!(first["message"], second["message"]);
            assert_ne!(first["stack_trace"], second["stack_trace"]);
            assert_eq!(
                fp(&first),
                fp(&second),
                "kind {kind} split:\n{first:#}\n{second:#}"
            );
            if let Some(other) = groups.insert(fp(&first), kind) {
                panic!("kinds {other} and {kind} share a fingerprint");
            }
        }
        // random draws land on known groups only
        let known: HashSet<&String> = groups.keys().collect();
        for _ in 0..1000 {
            assert!(known.contains(&fp(&g.event(&mut rng))));
        }
    }
}
