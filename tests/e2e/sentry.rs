//! The Sentry SDK protocol on the ingest tier: the official Python and
//! Node SDKs report to a running Sluice with a DSN built from the tenant's
//! write key, and their events are read back through `GET /api/errors`;
//! then bad input over plain HTTP (malformed envelopes, unknown items,
//! wrong keys, oversized bodies and bombs, rate limits).

use std::io::Write;
use std::path::PathBuf;

use serde_json::{json, Value};
use sluice::app::Mode;
use sluice_storage::pg::api_keys;

use crate::support::{gzip, wait_for, TestApp};

fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn dsn(app: &TestApp) -> String {
    let host = app.base.trim_start_matches("http://");
    format!("http://{}@{host}/1", app.key)
}

/// Runs an SDK script against `app`; asserts it exited cleanly.
async fn run_sdk(app: &TestApp, program: &str, script: &str) {
    let out = tokio::process::Command::new(program)
        .arg(repo_path(script))
        .env("SENTRY_DSN", dsn(app))
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("{program} {script} did not start (scripts/services.sh installs it): {e}")
        });
    assert!(
        out.status.success(),
        "{script} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// This tenant's groups once their counts add up to `n`.
async fn groups(app: &TestApp, n: i64) -> Vec<Value> {
    wait_for(&format!("{n} occurrences stored"), || async {
        let (_, v) = app.get_json("/api/errors?limit=100").await;
        let list = v["data"]["errors"].as_array().cloned().unwrap_or_default();
        let total: i64 = list.iter().map(|e| e["count"].as_i64().unwrap_or(0)).sum();
        (total == n).then_some(list)
    })
    .await
}

/// The full error of the group whose message starts with `prefix`.
async fn group(app: &TestApp, list: &[Value], prefix: &str) -> Value {
    let g = list
        .iter()
        .find(|g| g["message"].as_str().unwrap_or("").starts_with(prefix))
        .unwrap_or_else(|| panic!("no group {prefix:?} in {list:#?}"));
    let (s, v) = app
        .get_json(&format!("/api/errors/{}", g["id"].as_str().unwrap()))
        .await;
    assert_eq!(s, 200, "{v}");
    v["data"].clone()
}

/// What both SDKs must produce: an exception captured twice from one code
/// site (one group, count 2), a warning message, a chained exception.
async fn check_sdk_events(app: &TestApp, lang: &str, exc: &str, chain: (&str, &str), func: &str) {
    let list = groups(app, 4).await;
    assert_eq!(list.len(), 3, "{list:#?}");
    let e = group(app, &list, &format!("{exc}: {lang} order ")).await;
    assert_eq!(e["count"], 2, "{e:#}");
    assert_eq!(e["level"], "error");
    assert_eq!(e["environment"], format!("e2e-{lang}"));
    let st = e["stack_trace"].as_str().unwrap_or_default();
    assert!(st.contains(&format!("at {func}")), "{st}");
    assert_eq!(e["context"]["tags"]["suite"], "sentry-e2e", "{e:#}");
    assert_eq!(
        e["context"]["release"],
        format!("{lang}-e2e@1.0").replace("python-", "py-")
    );

    let m = group(app, &list, &format!("{lang} e2e message")).await;
    assert_eq!(m["level"], "warning");
    assert_eq!(m["count"], 1);

    let c = group(
        app,
        &list,
        &format!("{}: {lang} cart failed to load", chain.0),
    )
    .await;
    let st = c["stack_trace"].as_str().unwrap_or_default();
    assert!(st.contains(&format!("Caused by: {}", chain.1)), "{st}");
    assert_eq!(c["level"], "error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_reports_exceptions_messages_and_chains() {
    let app = TestApp::spawn().await;
    let py = format!(
        "{}/bin/python",
        std::env::var("SLUICE_PY").unwrap_or_else(|_| format!(
            "{}/.cache/sluice-py",
            std::env::var("HOME").unwrap_or_default()
        ))
    );
    run_sdk(&app, &py, "tests/sdk/python/capture.py").await;
    check_sdk_events(
        &app,
        "python",
        "ValueError",
        ("RuntimeError", "KeyError"),
        "checkout",
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sdk_reports_exceptions_messages_and_chains() {
    let app = TestApp::spawn().await;
    run_sdk(&app, "node", "tests/sdk/node/capture.js").await;
    check_sdk_events(
        &app,
        "node",
        "TypeError",
        ("Error", "SyntaxError"),
        "checkout",
    )
    .await;
    app.stop().await;
}

/// A new key of the app's tenant with one permission.
async fn key_with(app: &TestApp, permission: &str) -> String {
    let perms = vec![permission.to_string()];
    let new = api_keys::NewKey {
        tenant_id: app.tenant_id,
        name: permission,
        permissions: &perms,
        rate_limit_per_min: None,
        expires_at: None,
    };
    api_keys::create(&app.running.pg, &new).await.unwrap().1
}

fn envelope(items: &[(&str, &[u8])], header: Value) -> Vec<u8> {
    let mut out = Vec::new();
    writeln!(out, "{header}").unwrap();
    for (ty, payload) in items {
        writeln!(out, "{}", json!({"type": ty, "length": payload.len()})).unwrap();
        out.extend_from_slice(payload);
        out.push(b'\n');
    }
    out
}

fn auth(key: &str) -> String {
    format!("Sentry sentry_version=7, sentry_client=sluice-e2e/1, sentry_key={key}")
}

/// Sends; (status, JSON body).
async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_answers_sdks_expect_and_good_input_is_kept() {
    let app = TestApp::spawn().await;
    let url = app.url("/api/1/envelope/");
    let post = |body: Vec<u8>| {
        app.http
            .post(&url)
            .header("X-Sentry-Auth", auth(&app.key))
            .header("Content-Type", "application/x-sentry-envelope")
            .body(body)
    };
    let event = |msg: &str| {
        json!({"event_id": "0123456789abcdef0123456789abcdef", "message": msg, "level": "info"})
            .to_string()
    };

    // a good envelope with an event and items Sluice only counts
    let ev = event("envelope ok");
    let body = envelope(
        &[
            ("event", ev.as_bytes()),
            ("session", br#"{"sid":"x","status":"ok"}"#),
            ("made_up_type", b"whatever"),
        ],
        json!({"event_id": "0123456789abcdef0123456789abcdef"}),
    );
    let (s, v) = send(post(body)).await;
    assert_eq!(
        (s, &v),
        (200, &json!({"id": "0123456789abcdef0123456789abcdef"}))
    );

    // only items Sluice does not store: accepted, never a retry
    let (s, _) = send(post(envelope(&[("client_report", b"{}")], json!({})))).await;
    assert_eq!(s, 200);

    // malformed: 400 with the reason, nothing stored
    let (s, v) = send(post(b"this is not an envelope\n".to_vec())).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("malformed envelope header"),
        "{v}"
    );
    let mut cut = envelope(&[("event", ev.as_bytes())], json!({}));
    cut.truncate(cut.len() - 5);
    let (s, v) = send(post(cut)).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = send(post(envelope(&[("event", b"{not json")], json!({})))).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("malformed event JSON"),
        "{v}"
    );

    // keys: wrong 401, none 401, read-only 403; the DSN in the header works
    let wrong = app
        .http
        .post(&url)
        .header("X-Sentry-Auth", auth("sk_live_notakey"))
        .body(envelope(&[("event", ev.as_bytes())], json!({})));
    assert_eq!(send(wrong).await.0, 401);
    let none = app
        .http
        .post(&url)
        .body(envelope(&[("event", ev.as_bytes())], json!({})));
    assert_eq!(send(none).await.0, 401);
    let reader = key_with(&app, "read").await;
    let read_only = wait_for("the read-only key loaded", || async {
        let r = app
            .http
            .post(&url)
            .header("X-Sentry-Auth", auth(&reader))
            .body(envelope(&[("event", ev.as_bytes())], json!({})));
        let s = send(r).await.0;
        (s != 401).then_some(s)
    })
    .await;
    assert_eq!(read_only, 403);
    let by_dsn = app.http.post(&url).body(envelope(
        &[("event", event("dsn in the header").as_bytes())],
        json!({"dsn": dsn(&app)}),
    ));
    assert_eq!(send(by_dsn).await.0, 200);

    // the store endpoint, key in the query, deflate; an envelope in brotli
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(event("stored deflated").as_bytes()).unwrap();
    let store = app
        .http
        .post(app.url(&format!("/api/7/store?sentry_key={}", app.key)))
        .header("Content-Encoding", "deflate")
        .body(z.finish().unwrap());
    let (s, v) = send(store).await;
    assert_eq!(s, 200, "{v}");
    let mut br = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut br, 4096, 5, 22);
        w.write_all(&envelope(
            &[("event", event("brotli envelope").as_bytes())],
            json!({}),
        ))
        .unwrap();
    }
    let (s, v) = send(post(br).header("Content-Encoding", "br")).await;
    assert_eq!(s, 200, "{v}");

    // too large: an event item over the event cap; a gzip bomb
    let big = json!({"message": "x".repeat(2 << 20)}).to_string();
    let (s, v) = send(post(envelope(&[("event", big.as_bytes())], json!({})))).await;
    assert_eq!(s, 413, "{v}");
    let bomb = gzip(&envelope(
        &[("attachment", &vec![0u8; 64 << 20])],
        json!({}),
    ));
    assert!(bomb.len() < 1 << 20);
    let (s, v) = send(post(bomb).header("Content-Encoding", "gzip")).await;
    assert_eq!(s, 413, "{v}");

    // what was accepted is all there, counted by item type in /metrics
    let list = groups(&app, 4).await;
    for m in [
        "envelope ok",
        "dsn in the header",
        "stored deflated",
        "brotli envelope",
    ] {
        assert!(
            list.iter().any(|g| g["message"] == m),
            "{m} missing: {list:#?}"
        );
    }
    let metrics = app.metrics_text().await;
    for ty in ["session", "client_report", "other", "event"] {
        assert!(
            metrics.contains(&format!("sluice_sentry_items_total{{type=\"{ty}\"}}")),
            "{ty} not counted"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_rate_limit_sdks_are_told_when_to_come_back() {
    let app = TestApp::spawn_with(Mode::ALL, |c| c.ingest_rate_limit = 2).await;
    let url = app.url("/api/1/envelope/");
    let mut statuses = Vec::new();
    let mut last = None;
    for i in 0..4 {
        let ev = json!({"message": format!("limited {i}")}).to_string();
        let r = app
            .http
            .post(&url)
            .header("X-Sentry-Auth", auth(&app.key))
            .body(envelope(&[("event", ev.as_bytes())], json!({})))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        last = Some(r);
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    let r = last.unwrap();
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert_eq!(
        r.headers()["x-sentry-rate-limits"].to_str().unwrap(),
        format!("{retry}::organization")
    );
    groups(&app, 2).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_key_shows_its_dsn_once_and_the_list_a_masked_one() {
    let app = TestApp::spawn().await;
    let admin = key_with(&app, "admin").await;
    let keys = app.url("/api/settings/api-keys");
    let (s, v) = wait_for("the admin key loaded", || async {
        let r = app
            .http
            .post(&keys)
            .header("X-API-Key", &admin)
            .json(&json!({"name": "sdk", "permissions": ["write"]}));
        let (s, v) = send(r).await;
        (s != 401).then_some((s, v))
    })
    .await;
    assert_eq!(s, 201, "{v}");
    let key = v["data"]["key"].as_str().unwrap();
    let host = app.base.trim_start_matches("http://");
    let full = v["data"]["dsn"].as_str().unwrap().to_string();
    assert_eq!(full, format!("http://{key}@{host}/1"));

    // the DSN as an SDK uses it: the key in the envelope header only
    let posted = wait_for("the new key accepted", || async {
        let r = app.http.post(app.url("/api/1/envelope/")).body(envelope(
            &[("event", br#"{"message":"through the new DSN"}"#)],
            json!({"dsn": full}),
        ));
        let s = send(r).await.0;
        (s != 401).then_some(s)
    })
    .await;
    assert_eq!(posted, 200);
    groups(&app, 1).await;

    let (s, v) = send(app.http.get(&keys).header("X-API-Key", &admin)).await;
    assert_eq!(s, 200);
    let listed = v["data"]["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "sdk")
        .unwrap()
        .clone();
    let masked = listed["dsn"].as_str().unwrap();
    assert_eq!(
        masked,
        format!(
            "http://{}@{host}/1",
            listed["key_preview"].as_str().unwrap()
        )
    );
    assert!(!masked.contains(key));
    app.stop().await;
}
