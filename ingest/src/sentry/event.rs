//! A Sentry event in Sluice's terms: the event is rewritten as the body
//! `POST /api/errors` takes (message, level, stack trace, context, source,
//! environment, URL, fingerprint), which then goes through the same
//! validation, scrubbing and fingerprinting ([`crate::event::decode`]).
//!
//! - message: the outermost exception of the chain as `Type: value`, else
//!   the log message (`logentry.formatted`, `logentry.message`, `message`);
//! - stack trace: each exception of the chain, outermost first, its
//!   frames newest first as `at function (file:line)` (the module when
//!   a frame names no file), causes after a
//!   `Caused by:` line;
//! - fingerprint: message and in-app frames only (all frames when none is
//!   in app), as Sentry groups; the event's own `fingerprint` array
//!   replaces it, `{{ default }}` standing for it;
//! - context: tags, extra, contexts, user, release, server name, … .

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::fingerprint::fingerprint;
use crate::scrub::ScrubConfig;

/// The parts of a Sentry event Sluice reads; every other field is ignored.
#[derive(Debug, Default, Deserialize)]
pub struct SentryEvent {
    #[serde(default)]
    pub event_id: Option<String>,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    message: Option<Value>,
    #[serde(default)]
    logentry: Option<Value>,
    #[serde(default)]
    exception: Option<Value>,
    #[serde(default)]
    stacktrace: Option<Stacktrace>,
    #[serde(default)]
    platform: Option<String>,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    release: Option<Value>,
    #[serde(default)]
    dist: Option<Value>,
    #[serde(default)]
    server_name: Option<Value>,
    #[serde(default)]
    logger: Option<Value>,
    #[serde(default)]
    transaction: Option<Value>,
    #[serde(default)]
    request: Option<RequestInterface>,
    #[serde(default)]
    user: Option<Value>,
    #[serde(default)]
    tags: Option<Value>,
    #[serde(default)]
    extra: Option<Value>,
    #[serde(default)]
    contexts: Option<Value>,
    #[serde(default)]
    fingerprint: Option<Vec<Value>>,
    #[serde(default)]
    sdk: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
struct Exception {
    #[serde(default, rename = "type")]
    ty: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    module: Option<String>,
    #[serde(default)]
    stacktrace: Option<Stacktrace>,
}

#[derive(Debug, Default, Deserialize)]
struct Stacktrace {
    #[serde(default)]
    frames: Vec<Frame>,
}

#[derive(Debug, Default, Deserialize)]
struct Frame {
    #[serde(default)]
    function: Option<String>,
    #[serde(default)]
    module: Option<String>,
    #[serde(default)]
    filename: Option<String>,
    #[serde(default)]
    abs_path: Option<String>,
    #[serde(default)]
    lineno: Option<u64>,
    #[serde(default)]
    in_app: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
struct RequestInterface {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    query_string: Option<Value>,
    #[serde(default)]
    headers: Option<Value>,
    #[serde(default)]
    env: Option<Value>,
}

/// A Sentry event rewritten for Sluice: the native body, and the user
/// agent and IP address the event's request interface names.
#[derive(Debug)]
pub struct Mapped {
    pub body: Vec<u8>,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
    pub event_id: Option<String>,
}

/// Sentry's level in Sluice's words; what Sluice does not know is an error.
pub fn level(l: Option<&str>) -> &'static str {
    match l.map(str::to_ascii_lowercase).as_deref() {
        Some("fatal" | "critical") => "critical",
        Some("warning" | "warn") => "warning",
        Some("info" | "log") => "info",
        Some("debug") => "debug",
        _ => "error",
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The exception chain, outermost first (Sentry lists the cause first).
fn exceptions(v: Option<&Value>) -> Vec<Exception> {
    let values = match v {
        Some(Value::Object(o)) => o.get("values").cloned(),
        Some(a @ Value::Array(_)) => Some(a.clone()),
        _ => None,
    };
    let mut list: Vec<Exception> = values
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    list.reverse();
    list
}

fn exception_title(e: &Exception) -> Option<String> {
    let ty = e.ty.as_deref().filter(|t| !t.is_empty());
    let value = e.value.as_deref().filter(|v| !v.is_empty());
    match (ty, value) {
        (Some(t), Some(v)) => Some(format!("{t}: {v}")),
        (Some(t), None) => Some(t.to_string()),
        (None, Some(v)) => Some(v.to_string()),
        (None, None) => None,
    }
    .map(|t| match e.module.as_deref() {
        // Python's builtins carry no module worth showing
        Some(m) if !m.is_empty() && m != "builtins" && ty.is_some() => format!("{m}.{t}"),
        _ => t,
    })
}

/// The log message: `logentry`, else `message` (a string or a log entry).
fn log_message(ev: &SentryEvent) -> Option<String> {
    let entry = |v: &Value| match v {
        Value::Object(o) => o
            .get("formatted")
            .and_then(text)
            .or_else(|| o.get("message").and_then(text)),
        v => text(v),
    };
    ev.logentry
        .as_ref()
        .and_then(entry)
        .or_else(|| ev.message.as_ref().and_then(entry))
}

/// One frame as a stack trace line.
fn frame_line(f: &Frame, out: &mut String) {
    let function = f.function.as_deref().unwrap_or("<anonymous>");
    let place = f
        .filename
        .as_deref()
        .or(f.abs_path.as_deref())
        .or(f.module.as_deref())
        .unwrap_or("<unknown>");
    out.push_str("    at ");
    out.push_str(function);
    out.push_str(" (");
    out.push_str(place);
    if let Some(l) = f.lineno {
        out.push(':');
        out.push_str(&l.to_string());
    }
    out.push_str(")\n");
}

/// Frames newest first; only in-app ones when `in_app_only`.
fn render_frames(st: &Stacktrace, in_app_only: bool, out: &mut String) {
    for f in st.frames.iter().rev() {
        if !in_app_only || f.in_app == Some(true) {
            frame_line(f, out);
        }
    }
}

/// The readable stack trace, and the frames that group it.
fn stacks(chain: &[Exception], top: Option<&Stacktrace>) -> (String, String) {
    let all_frames = chain
        .iter()
        .filter_map(|e| e.stacktrace.as_ref())
        .chain(top)
        .flat_map(|s| s.frames.iter());
    let any_in_app = all_frames.clone().any(|f| f.in_app == Some(true));
    let mut shown = String::new();
    let mut grouping = String::new();
    for (i, e) in chain.iter().enumerate() {
        if i > 0 {
            shown.push_str("Caused by: ");
        }
        shown.push_str(
            exception_title(e)
                .as_deref()
                .unwrap_or("<unknown exception>"),
        );
        shown.push('\n');
        if let Some(st) = &e.stacktrace {
            render_frames(st, false, &mut shown);
            render_frames(st, any_in_app, &mut grouping);
        }
    }
    if let Some(st) = top {
        render_frames(st, false, &mut shown);
        render_frames(st, any_in_app, &mut grouping);
    }
    (shown, grouping)
}

/// Header `name` of the request interface (an object or a list of pairs).
fn header(headers: Option<&Value>, name: &str) -> Option<String> {
    match headers? {
        Value::Object(o) => o
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| text(v)),
        Value::Array(a) => a.iter().find_map(|pair| match pair.as_array()?.as_slice() {
            [Value::String(k), v] if k.eq_ignore_ascii_case(name) => text(v),
            _ => None,
        }),
        _ => None,
    }
}

/// `{{ default }}` in a fingerprint array.
fn is_default(part: &str) -> bool {
    let p = part.trim();
    p.strip_prefix("{{")
        .and_then(|p| p.strip_suffix("}}"))
        .is_some_and(|p| p.trim() == "default")
}

/// The group's fingerprint from the event's `fingerprint` array, given
/// the default one: the default when the array is empty or only
/// `{{ default }}`, else a hash of the parts with the default expanded.
pub fn custom_fingerprint(parts: &[Value], default: &str) -> String {
    let parts: Vec<String> = parts
        .iter()
        .map(|p| match p {
            Value::String(s) if is_default(s) => default.to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    match parts.as_slice() {
        [] => default.to_string(),
        [only] if only == default => default.to_string(),
        _ => format!(
            "{:016x}",
            xxhash_rust::xxh3::xxh3_64(parts.join("\n").as_bytes())
        ),
    }
}

/// Puts `v` under `k` when it has something to say.
fn put(ctx: &mut Map<String, Value>, k: &str, v: Option<Value>) {
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Object(o)) if o.is_empty() => {}
        Some(Value::Array(a)) if a.is_empty() => {}
        Some(v) => {
            ctx.insert(k.to_string(), v);
        }
    }
}

/// Tags as an object (SDKs send an object or a list of pairs).
fn tags_object(v: Option<Value>) -> Option<Value> {
    match v? {
        Value::Array(a) => Some(Value::Object(
            a.into_iter()
                .filter_map(|p| match p {
                    Value::Array(mut kv) if kv.len() == 2 => {
                        let v = kv.pop()?;
                        let k = kv.pop()?;
                        Some((k.as_str()?.to_string(), v))
                    }
                    _ => None,
                })
                .collect(),
        )),
        v => Some(v),
    }
}

/// Rewrites a Sentry event (JSON) as Sluice's native body; the error is
/// the client's message.
pub fn map(payload: &[u8], scrub: &ScrubConfig) -> Result<Mapped, String> {
    sluice_storage::limits::check_depth(payload, sluice_storage::limits::MAX_JSON_DEPTH)
        .map_err(|e| format!("invalid event: {e}"))?;
    let ev: SentryEvent = serde_json::from_slice(payload).map_err(|e| {
        if e.is_data() {
            format!("invalid event: {e}")
        } else {
            format!("malformed event JSON: {e}")
        }
    })?;
    let chain = exceptions(ev.exception.as_ref());
    let message = chain
        .first()
        .and_then(exception_title)
        .or_else(|| log_message(&ev))
        .unwrap_or_else(|| "<unlabeled event>".to_string());
    let (shown, grouping) = stacks(&chain, ev.stacktrace.as_ref());
    let source = ev
        .platform
        .clone()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| "sentry".to_string());
    // grouped as the native path groups: on the scrubbed text
    let default_fp = fingerprint(
        &scrub.cow(message.as_str().into()),
        Some(&scrub.cow(grouping.as_str().into())),
        &source,
    );
    let fp = match &ev.fingerprint {
        Some(parts) => custom_fingerprint(parts, &default_fp),
        None => default_fp,
    };

    let req = ev.request.unwrap_or_default();
    let url = req.url.clone().filter(|u| !u.is_empty()).map(|u| {
        match req.query_string.as_ref().and_then(text) {
            Some(q) if !u.contains('?') => format!("{u}?{}", q.trim_start_matches('?')),
            _ => u,
        }
    });
    let user_agent = header(req.headers.as_ref(), "user-agent");
    let user_ip = ev
        .user
        .as_ref()
        .and_then(|u| u.get("ip_address"))
        .and_then(text)
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok());
    let ip_address = req
        .env
        .as_ref()
        .and_then(|e| e.get("REMOTE_ADDR"))
        .and_then(text)
        .or(user_ip);

    let mut ctx = Map::new();
    put(&mut ctx, "tags", tags_object(ev.tags));
    put(&mut ctx, "extra", ev.extra);
    put(&mut ctx, "contexts", ev.contexts);
    put(&mut ctx, "user", ev.user);
    put(&mut ctx, "release", ev.release);
    put(&mut ctx, "dist", ev.dist);
    put(&mut ctx, "server_name", ev.server_name);
    put(&mut ctx, "logger", ev.logger);
    put(&mut ctx, "transaction", ev.transaction);
    put(&mut ctx, "request_method", req.method.map(Value::String));
    put(&mut ctx, "sdk", ev.sdk);
    put(&mut ctx, "event_id", ev.event_id.clone().map(Value::String));

    let mut body = Map::new();
    body.insert("message".into(), Value::String(message));
    body.insert("level".into(), level(ev.level.as_deref()).into());
    if !shown.trim().is_empty() {
        body.insert("stack_trace".into(), Value::String(shown));
    }
    body.insert("context".into(), Value::Object(ctx));
    body.insert("source".into(), Value::String(source));
    if let Some(env) = ev.environment.filter(|e| !e.trim().is_empty()) {
        body.insert("environment".into(), Value::String(env));
    }
    if let Some(u) = url {
        body.insert("url".into(), Value::String(u));
    }
    body.insert("fingerprint".into(), Value::String(fp));
    Ok(Mapped {
        body: serde_json::to_vec(&Value::Object(body)).map_err(|e| e.to_string())?,
        user_agent,
        ip_address,
        event_id: ev.event_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapped(v: Value) -> Value {
        let m = map(v.to_string().as_bytes(), &ScrubConfig::default()).unwrap();
        serde_json::from_slice(&m.body).unwrap()
    }

    fn frame(function: &str, file: &str, line: u64, in_app: bool) -> Value {
        json!({"function": function, "filename": file, "module": null, "lineno": line, "in_app": in_app})
    }

    fn chained(outer_line: u64, lib_fn: &str) -> Value {
        json!({
            "event_id": "9ec79c33ec9942ab8353589fcb2e04dc",
            "level": "fatal",
            "platform": "python",
            "environment": "staging",
            "release": "app@1.2",
            "server_name": "web-1",
            "tags": [["region", "eu"]],
            "user": {"id": "7", "email": "bob@example.com", "ip_address": "10.1.2.3"},
            "extra": {"password": "hunter2"},
            "request": {"url": "https://shop.example.com/cart", "query_string": "a=1",
                        "headers": {"User-Agent": "Mozilla/5.0"}, "env": {"REMOTE_ADDR": "203.0.113.9"}},
            "exception": {"values": [
                {"type": "KeyError", "value": "'sku'", "stacktrace": {"frames": [frame("lookup", "shop/cart.py", 10, true)]}},
                {"type": "ValueError", "value": "cart 42 is broken", "stacktrace": {"frames": [
                    frame("handler", "shop/views.py", outer_line, true),
                    frame(lib_fn, "site-packages/lib.py", 99, false),
                ]}}
            ]}
        })
    }

    #[test]
    fn an_exception_chain_becomes_message_stack_and_context() {
        let v = mapped(chained(20, "call"));
        assert_eq!(v["message"], "ValueError: cart 42 is broken");
        assert_eq!(v["level"], "critical");
        assert_eq!(v["source"], "python");
        assert_eq!(v["environment"], "staging");
        assert_eq!(v["url"], "https://shop.example.com/cart?a=1");
        assert_eq!(
            v["stack_trace"],
            "ValueError: cart 42 is broken\n    at call (site-packages/lib.py:99)\n    at handler (shop/views.py:20)\n\
Caused by: KeyError: 'sku'\n    at lookup (shop/cart.py:10)\n"
        );
        assert_eq!(v["context"]["tags"], json!({"region": "eu"}));
        assert_eq!(v["context"]["release"], "app@1.2");
        assert_eq!(v["context"]["server_name"], "web-1");
        let m = map(
            chained(20, "call").to_string().as_bytes(),
            &ScrubConfig::default(),
        )
        .unwrap();
        assert_eq!(m.user_agent.as_deref(), Some("Mozilla/5.0"));
        assert_eq!(m.ip_address.as_deref(), Some("203.0.113.9"));
    }

    #[test]
    fn only_in_app_frames_group() {
        let a = mapped(chained(20, "call"));
        // another line, another library frame: the same group
        let b = mapped(chained(31, "other_library_fn"));
        assert_eq!(a["fingerprint"], b["fingerprint"]);
        let mut c = chained(20, "call");
        c["exception"]["values"][1]["stacktrace"]["frames"][0]["function"] = json!("checkout");
        assert_ne!(mapped(c)["fingerprint"], a["fingerprint"]);
    }

    #[test]
    fn fingerprint_arrays_are_honoured() {
        let base = mapped(chained(20, "call"));
        let default = base["fingerprint"].as_str().unwrap().to_string();
        let mut e = chained(20, "call");
        e["fingerprint"] = json!(["{{ default }}"]);
        assert_eq!(mapped(e.clone())["fingerprint"], default.as_str());
        e["fingerprint"] = json!(["{{default}}", "tenant-a"]);
        let with_a = mapped(e.clone())["fingerprint"].clone();
        e["fingerprint"] = json!(["{{ default }}", "tenant-b"]);
        let with_b = mapped(e.clone())["fingerprint"].clone();
        assert_ne!(with_a, with_b);
        assert_ne!(with_a, default.as_str());
        e["fingerprint"] = json!(["database-down"]);
        let custom = mapped(e.clone())["fingerprint"].clone();
        let mut other = chained(77, "x");
        other["exception"]["values"][1]["type"] = json!("OSError");
        other["fingerprint"] = json!(["database-down"]);
        assert_eq!(mapped(other)["fingerprint"], custom);
        assert_eq!(custom_fingerprint(&[], "d"), "d");
    }

    #[test]
    fn messages_and_levels() {
        let v = mapped(json!({"message": "plain text", "level": "warning"}));
        assert_eq!(v["message"], "plain text");
        assert_eq!(v["level"], "warning");
        assert_eq!(v["source"], "sentry");
        assert!(v.get("stack_trace").is_none());
        let v = mapped(
            json!({"logentry": {"message": "user %s", "formatted": "user 5"}, "level": "info"}),
        );
        assert_eq!(v["message"], "user 5");
        let v = mapped(json!({"message": {"message": "raw"}, "level": "debug"}));
        assert_eq!(v["message"], "raw");
        assert_eq!(v["level"], "debug");
        assert_eq!(mapped(json!({}))["message"], "<unlabeled event>");
        assert_eq!(level(Some("bogus")), "error");
        assert_eq!(level(Some("FATAL")), "critical");
        assert!(map(b"{nope", &ScrubConfig::default())
            .unwrap_err()
            .starts_with("malformed event JSON"));
        assert!(map(b"[1]", &ScrubConfig::default())
            .unwrap_err()
            .starts_with("invalid event"));
    }
}
