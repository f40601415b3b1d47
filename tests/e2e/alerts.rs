//! Alert rules and incidents (`/api/alerts/...`): CRUD with the Health
//! Monitor envelopes, validation, tenant isolation; and the alert engine
//! in the worker: a threshold rule fires once into a real webhook receiver
//! and onto the right tenant's `/ws`, a `new_error` rule fires for a new
//! fingerprint only, and two engines on one deployment fire a rule once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use futures::StreamExt;
use serde_json::{json, Value};
use sluice::app::Mode;
use sluice_storage::pg::notification_channels::{self, ChannelFields};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::support::{new_tenant, status_json, wait_for, TestApp};

const RULES: &str = "/api/alerts/rules";
const INCIDENTS: &str = "/api/alerts/incidents";
const ERROR_COUNT: &str = "error_count > threshold in time_window";

/// One POST a receiver got: its content type and JSON body.
#[derive(Clone, Debug)]
struct Got {
    content_type: String,
    body: Value,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
}

impl Receiver {
    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    r.got.lock().unwrap().push(Got { content_type, body });
    StatusCode::OK
}

/// A webhook receiver on a spare port; answers its URL.
async fn start_receiver() -> (String, Receiver) {
    let r = Receiver::default();
    let app = axum::Router::new()
        .fallback(axum::routing::post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}/hook"), r)
}

/// The tenant's webhook channel (the `webhook` integration) to `url`.
async fn add_webhook(app: &TestApp, tenant: Uuid, url: &str) {
    notification_channels::insert(
        &app.running.pg,
        tenant,
        &ChannelFields {
            name: "alerts hook".into(),
            kind: "webhook".into(),
            is_enabled: true,
            config: sqlx::types::Json(json!({"url": url})),
            secrets_sealed: None,
        },
    )
    .await
    .unwrap();
}

/// A second tenant of the same app and its key, once the key works.
async fn other_tenant(app: &TestApp) -> (Uuid, String) {
    let (tenant, key) = new_tenant(&app.running.pg).await;
    let k = key.clone();
    wait_for("the new key to load", || {
        let r = app.http.get(app.url(RULES)).header("X-API-Key", &k);
        async move { (r.send().await.unwrap().status() == 200).then_some(()) }
    })
    .await;
    (tenant, key)
}

fn assert_error(status: u16, body: &Value, want: u16) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["status"], "error", "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
}

async fn create_rule(app: &TestApp, body: Value) -> Value {
    let (s, b) = status_json(app.post(RULES).json(&body)).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["status"], "success");
    b["data"].clone()
}

async fn incidents(app: &TestApp, query: &str) -> Vec<Value> {
    let (s, b) = app.get_json(&format!("{INCIDENTS}{query}")).await;
    assert_eq!(s, 200, "{b}");
    b["data"]["incidents"].as_array().unwrap().clone()
}

async fn rule(app: &TestApp, id: &str) -> Value {
    let (s, b) = app.get_json(RULES).await;
    assert_eq!(s, 200, "{b}");
    b["data"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .cloned()
        .unwrap()
}

fn is_iso(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_crud_envelopes_validation_and_isolation() {
    let app = TestApp::spawn_with(Mode::API, |_| {}).await;

    let r = create_rule(
        &app,
        json!({"name": "High Error Rate", "condition": ERROR_COUNT, "threshold": 50,
               "time_window": "5m", "notifications": ["email", "slack"]}),
    )
    .await;
    let id = r["id"].as_str().expect("string id").to_string();
    assert_eq!(r["name"], "High Error Rate");
    assert_eq!(r["condition"], ERROR_COUNT);
    assert_eq!(r["threshold"], 50);
    assert_eq!(r["time_window"], "5m");
    assert_eq!(r["enabled"], true);
    assert_eq!(r["notifications"], json!(["email", "slack"]));
    assert_eq!(r["severity"], "warning");
    for f in ["source", "level", "environment", "last_triggered"] {
        assert_eq!(r[f], Value::Null, "{f}");
    }
    assert!(is_iso(&r["created_at"]));

    // new_error needs neither threshold nor window; filters are kept.
    let n = create_rule(
        &app,
        json!({"name": "New", "condition": "new_error", "severity": "critical",
               "source": "api", "level": "error", "environment": "prod", "enabled": false}),
    )
    .await;
    assert_eq!(n["condition"], "new_error");
    assert_eq!(n["threshold"], Value::Null);
    assert_eq!(
        (&n["source"], &n["level"], &n["environment"]),
        (&json!("api"), &json!("error"), &json!("prod"))
    );
    assert_eq!(n["enabled"], false);

    let (s, b) = app.get_json(RULES).await;
    assert_eq!(s, 200);
    assert_eq!(b["status"], "success");
    let ids: Vec<&str> = b["data"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![id.as_str(), n["id"].as_str().unwrap()]);

    // Partial PUT: present fields replace, absent ones are kept.
    let (s, b) = status_json(
        app.put(&format!("{RULES}/{id}"))
            .json(&json!({"enabled": false, "source": "web"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let u = &b["data"];
    assert_eq!(u["enabled"], false);
    assert_eq!(u["source"], "web");
    assert_eq!(u["name"], "High Error Rate");
    assert_eq!(u["threshold"], 50);
    assert_eq!(u["time_window"], "5m");
    assert_eq!(u["notifications"], json!(["email", "slack"]));
    assert_eq!(rule(&app, &id).await, *u, "a GET shows the write");

    // 400s on create.
    for bad in [
        json!({"condition": ERROR_COUNT, "threshold": 1, "time_window": "1m"}),
        json!({"name": "", "condition": ERROR_COUNT, "threshold": 1, "time_window": "1m"}),
        json!({"name": "x", "condition": "error_count > 5", "threshold": 1, "time_window": "1m"}),
        json!({"name": "x", "threshold": 1, "time_window": "1m"}),
        json!({"name": "x", "condition": ERROR_COUNT, "threshold": -1, "time_window": "1m"}),
        json!({"name": "x", "condition": ERROR_COUNT, "threshold": "5", "time_window": "1m"}),
        json!({"name": "x", "condition": ERROR_COUNT, "time_window": "1m"}),
        json!({"name": "x", "condition": ERROR_COUNT, "threshold": 1}),
        json!({"name": "x", "condition": ERROR_COUNT, "threshold": 1, "time_window": "5 minutes"}),
        json!({"name": "x", "condition": ERROR_COUNT, "threshold": 1, "time_window": "5x"}),
        json!({"name": "x", "condition": "new_error", "notifications": ["pager"]}),
        json!({"name": "x", "condition": "new_error", "notifications": "slack"}),
        json!({"name": "x", "condition": "new_error", "severity": "urgent"}),
        json!({"name": "x", "condition": "new_error", "level": "fatal"}),
        json!({"name": "x", "condition": "new_error", "enabled": "yes"}),
        json!([1, 2]),
    ] {
        let (s, b) = status_json(app.post(RULES).json(&bad)).await;
        assert_error(s, &b, 400);
    }
    let (s, b) = status_json(
        app.post(RULES)
            .header("content-type", "application/json")
            .body("{\"name\": "),
    )
    .await;
    assert_error(s, &b, 400);

    // An invalid PUT is refused and changes nothing.
    for bad in [
        json!({"threshold": -5}),
        json!({"condition": "sometimes"}),
        json!({"time_window": null}),
        json!({"name": ""}),
    ] {
        let (s, b) = status_json(app.put(&format!("{RULES}/{id}")).json(&bad)).await;
        assert_error(s, &b, 400);
    }
    assert_eq!(rule(&app, &id).await, *u);

    // Unknown and malformed ids.
    for path in [format!("{RULES}/999999999"), format!("{RULES}/abc")] {
        let (s, b) = status_json(app.put(&path).json(&json!({"name": "y"}))).await;
        assert_error(s, &b, 404);
        let (s, b) = status_json(app.delete(&path)).await;
        assert_error(s, &b, 404);
    }

    // Another tenant neither sees nor changes the rule.
    let (_, other) = other_tenant(&app).await;
    let (s, b) = status_json(app.http.get(app.url(RULES)).header("X-API-Key", &other)).await;
    assert_eq!(s, 200);
    assert_eq!(b["data"]["rules"], json!([]));
    let (s, b) = status_json(
        app.http
            .put(app.url(&format!("{RULES}/{id}")))
            .header("X-API-Key", &other)
            .json(&json!({"name": "hijacked"})),
    )
    .await;
    assert_error(s, &b, 404);
    let (s, _) = status_json(
        app.http
            .delete(app.url(&format!("{RULES}/{id}")))
            .header("X-API-Key", &other),
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(rule(&app, &id).await["name"], "High Error Rate");

    // Delete: 204 without a body, then 404.
    let r = app.delete(&format!("{RULES}/{id}")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.bytes().await.unwrap().is_empty());
    let (s, b) = status_json(app.delete(&format!("{RULES}/{id}"))).await;
    assert_error(s, &b, 404);
    let (_, b) = app.get_json(RULES).await;
    assert_eq!(b["data"]["rules"].as_array().unwrap().len(), 1);

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_crud_filters_validation_and_isolation() {
    let app = TestApp::spawn_with(Mode::API, |_| {}).await;

    let (s, b) = status_json(app.post(INCIDENTS).json(&json!({
        "title": "Database Connection Timeout", "severity": "critical",
        "description": "Multiple timeouts", "assigned_to": "user-123"})))
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["status"], "success");
    let a = b["data"].clone();
    let a_id = a["id"].as_str().expect("string id").to_string();
    assert_eq!(a["title"], "Database Connection Timeout");
    assert_eq!(a["severity"], "critical");
    assert_eq!(a["status"], "investigating");
    assert_eq!(a["description"], "Multiple timeouts");
    assert_eq!(a["assigned_to"], "user-123");
    assert!(is_iso(&a["created_at"]) && is_iso(&a["updated_at"]));

    let (s, b) = status_json(app.post(INCIDENTS).json(
        &json!({"title": "Slow checkout", "severity": "low", "description": null, "assigned_to": null}),
    ))
    .await;
    assert_eq!(s, 201, "{b}");
    let b_id = b["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(b["data"]["assigned_to"], Value::Null);

    for bad in [
        json!({"severity": "high"}),
        json!({"title": "", "severity": "high"}),
        json!({"title": "x", "severity": "sev1"}),
        json!({"title": "x", "severity": "high", "assigned_to": 5}),
    ] {
        let (s, b) = status_json(app.post(INCIDENTS).json(&bad)).await;
        assert_error(s, &b, 400);
    }

    // Newest first; filters; limits.
    let all = incidents(&app, "").await;
    let ids: Vec<&str> = all.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![b_id.as_str(), a_id.as_str()]);
    let crit = incidents(&app, "?severity=critical").await;
    assert_eq!(crit.len(), 1);
    assert_eq!(crit[0]["id"], a_id.as_str());
    assert_eq!(incidents(&app, "?limit=1").await.len(), 1);
    assert_eq!(
        incidents(&app, "?limit=1&offset=1").await[0]["id"],
        a_id.as_str()
    );
    for q in [
        "?status=open",
        "?severity=urgent",
        "?limit=0",
        "?limit=1001",
        "?limit=x",
    ] {
        let (s, b) = app.get_json(&format!("{INCIDENTS}{q}")).await;
        assert_error(s, &b, 400);
    }

    // Partial PUT; updated_at moves forward; bad status 400.
    let (s, b) = status_json(
        app.put(&format!("{INCIDENTS}/{a_id}"))
            .json(&json!({"status": "identified"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let u = &b["data"];
    assert_eq!(u["status"], "identified");
    assert_eq!(u["title"], "Database Connection Timeout");
    assert_eq!(u["assigned_to"], "user-123");
    let before = chrono::DateTime::parse_from_rfc3339(a["updated_at"].as_str().unwrap()).unwrap();
    let after = chrono::DateTime::parse_from_rfc3339(u["updated_at"].as_str().unwrap()).unwrap();
    assert!(after > before, "{before} then {after}");
    assert_eq!(incidents(&app, "?status=identified").await.len(), 1);
    assert_eq!(incidents(&app, "?status=investigating").await.len(), 1);
    let (s, b) = status_json(
        app.put(&format!("{INCIDENTS}/{a_id}"))
            .json(&json!({"status": "closed"})),
    )
    .await;
    assert_error(s, &b, 400);
    for path in [format!("{INCIDENTS}/987654321"), format!("{INCIDENTS}/x-1")] {
        let (s, b) = status_json(app.put(&path).json(&json!({"status": "resolved"}))).await;
        assert_error(s, &b, 404);
    }

    // Another tenant: empty list, 404 on update, nothing changed.
    let (_, other) = other_tenant(&app).await;
    let (s, b) = status_json(app.http.get(app.url(INCIDENTS)).header("X-API-Key", &other)).await;
    assert_eq!(s, 200);
    assert_eq!(b["data"]["incidents"], json!([]));
    let (s, b) = status_json(
        app.http
            .put(app.url(&format!("{INCIDENTS}/{b_id}")))
            .header("X-API-Key", &other)
            .json(&json!({"status": "resolved"})),
    )
    .await;
    assert_error(s, &b, 404);
    assert_eq!(incidents(&app, "?status=resolved").await.len(), 0);

    app.stop().await;
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open_ws(app: &TestApp, key: &str) -> Ws {
    let url = format!(
        "{}/ws?token={key}",
        app.base.replacen("http://", "ws://", 1)
    );
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// The next `alert_triggered` message within `within` (other events are
/// skipped), or none.
async fn next_alert(ws: &mut Ws, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next()).await.ok()??;
        if let Ok(Message::Text(t)) = msg {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] == "alert_triggered" {
                return Some(v["data"].clone());
            }
        }
    }
}

fn spawn_alerting(
    tweak: impl FnOnce(&mut sluice::config::Config),
) -> impl FnOnce(&mut sluice::config::Config) {
    move |c| {
        c.alert_eval_ms = 200;
        tweak(c);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threshold_rule_fires_once_into_a_webhook_and_the_tenants_ws() {
    let app = TestApp::spawn_with(Mode::ALL, spawn_alerting(|_| {})).await;
    let (url, rx) = start_receiver().await;
    // The tenant's webhook integration, configured as a client does (with
    // an admin key of the tenant).
    let perms = vec!["admin".to_string()];
    let (_, admin) = sluice_storage::pg::api_keys::create(
        &app.running.pg,
        &sluice_storage::pg::api_keys::NewKey {
            tenant_id: app.tenant_id,
            name: "admin",
            permissions: &perms,
            rate_limit_per_min: None,
            expires_at: None,
        },
    )
    .await
    .unwrap();
    wait_for("the webhook integration configured", || {
        let r = app
            .http
            .put(app.url("/api/settings/integrations/webhook"))
            .header("X-API-Key", &admin)
            .json(&json!({"config": {"url": url}}));
        async move { (r.send().await.unwrap().status() == 200).then_some(()) }
    })
    .await;
    let (other_tenant_id, other_key) = other_tenant(&app).await;
    // The other tenant has a webhook too, and must get nothing.
    let (other_url, other_rx) = start_receiver().await;
    add_webhook(&app, other_tenant_id, &other_url).await;
    let mut ws_mine = open_ws(&app, &app.key).await;
    let mut ws_other = open_ws(&app, &other_key).await;

    let rule = create_rule(
        &app,
        json!({"name": "Checkout errors", "condition": ERROR_COUNT, "threshold": 2,
               "time_window": "5m", "notifications": ["webhook"], "severity": "critical",
               "source": "checkout", "level": "error"}),
    )
    .await;
    let rule_id = rule["id"].as_str().unwrap().to_string();

    // Occurrences that miss a filter do not count.
    for i in 0..3 {
        app.post_error(
            json!({"message": format!("miss source {i}"), "level": "error", "source": "search"}),
        )
        .await;
        app.post_error(
            json!({"message": format!("miss level {i}"), "level": "warning", "source": "checkout"}),
        )
        .await;
    }
    // Two matching ones: not strictly more than the threshold.
    for _ in 0..2 {
        app.post_error(json!({"message": "card declined", "level": "error", "source": "checkout"}))
            .await;
    }
    app.wait_stored(8).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(rx.got().is_empty(), "fired too early: {:?}", rx.got());
    assert!(incidents(&app, "").await.is_empty());
    assert_eq!(
        rule_fetch(&app, &rule_id).await["last_triggered"],
        Value::Null
    );

    // The third matching occurrence makes it fire.
    app.post_error(json!({"message": "card declined", "level": "error", "source": "checkout"}))
        .await;
    let got = wait_for("the alert webhook", || {
        let g = rx.got();
        async move { (!g.is_empty()).then_some(g) }
    })
    .await;
    let hook = &got[0];
    assert!(
        hook.content_type.starts_with("application/json"),
        "{}",
        hook.content_type
    );
    let body = &hook.body;
    assert_eq!(body["type"], "alert_triggered", "{body}");
    assert_eq!(body["rule"]["id"], rule_id.as_str());
    assert_eq!(body["rule"]["name"], "Checkout errors");
    assert_eq!(body["rule"]["severity"], "critical");
    assert!(body["incident"]["title"]
        .as_str()
        .unwrap()
        .contains("Checkout errors"));
    assert!(is_iso(&body["triggered_at"]), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    let incident_id = body["incident"]["id"].as_str().unwrap().to_string();

    let open = incidents(&app, "").await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["id"], incident_id.as_str());
    assert_eq!(open[0]["rule_id"], rule_id.as_str());
    assert_eq!(open[0]["severity"], "critical");
    assert_eq!(open[0]["status"], "investigating");
    assert!(open[0]["title"]
        .as_str()
        .unwrap()
        .contains("Checkout errors"));
    assert!(is_iso(&rule_fetch(&app, &rule_id).await["last_triggered"]));

    let event = next_alert(&mut ws_mine, Duration::from_secs(10))
        .await
        .expect("alert_triggered on the tenant's socket");
    assert_eq!(event["rule_id"], rule_id.as_str());
    assert_eq!(event["rule_name"], "Checkout errors");
    assert_eq!(event["incident_id"], incident_id.as_str());
    assert_eq!(event["severity"], "critical");
    assert!(is_iso(&event["triggered_at"]));

    // While its incident is open, the rule does not fire again.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(rx.got().len(), 1, "{:?}", rx.got());
    assert_eq!(incidents(&app, "").await.len(), 1);
    assert!(other_rx.got().is_empty());
    assert_eq!(
        next_alert(&mut ws_other, Duration::from_millis(500)).await,
        None,
        "another tenant's socket never sees the alert"
    );

    // Resolved, the next firing (the condition still holds) opens another.
    let (s, b) = status_json(
        app.put(&format!("{INCIDENTS}/{incident_id}"))
            .json(&json!({"status": "resolved"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    wait_for("a second firing", || {
        let n = rx.got().len();
        async move { (n >= 2).then_some(()) }
    })
    .await;
    let all = incidents(&app, "").await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["status"], "investigating");
    assert_eq!(all[1]["status"], "resolved");

    // Disabled, it never fires.
    let (s, _) = status_json(
        app.put(&format!("{RULES}/{rule_id}"))
            .json(&json!({"enabled": false})),
    )
    .await;
    assert_eq!(s, 200);
    let second = all[0]["id"].as_str().unwrap().to_string();
    status_json(
        app.put(&format!("{INCIDENTS}/{second}"))
            .json(&json!({"status": "resolved"})),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rx.got().len(), 2);
    assert!(other_rx.got().is_empty());

    app.stop().await;
}

async fn rule_fetch(app: &TestApp, id: &str) -> Value {
    rule(app, id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_error_rule_fires_for_a_new_fingerprint_only() {
    let app = TestApp::spawn_with(Mode::ALL, spawn_alerting(|_| {})).await;
    let (url, rx) = start_receiver().await;
    add_webhook(&app, app.tenant_id, &url).await;

    // A fingerprint known before the rule exists.
    let known = json!({"message": "known failure", "level": "error", "source": "api"});
    app.post_error(known.clone()).await;
    app.wait_stored(1).await;
    let rule = create_rule(
        &app,
        json!({"name": "Fresh errors", "condition": "new_error", "notifications": ["webhook"],
               "source": "api"}),
    )
    .await;
    let rule_id = rule["id"].as_str().unwrap().to_string();

    // Known fingerprints, and a new one that misses the filter, never fire.
    app.post_error(known.clone()).await;
    app.post_error(json!({"message": "other source", "level": "error", "source": "web"}))
        .await;
    app.wait_stored(3).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(rx.got().is_empty(), "{:?}", rx.got());
    assert!(incidents(&app, "").await.is_empty());

    // A new matching fingerprint fires.
    app.post_error(json!({"message": "never seen before", "level": "error", "source": "api"}))
        .await;
    let got = wait_for("the new_error webhook", || {
        let g = rx.got();
        async move { (!g.is_empty()).then_some(g) }
    })
    .await;
    assert_eq!(got[0].body["type"], "alert_triggered");
    assert_eq!(got[0].body["rule"]["id"], rule_id.as_str());
    let open = incidents(&app, "").await;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["rule_id"], rule_id.as_str());

    // Resolved; more occurrences of known fingerprints never fire again.
    let id = open[0]["id"].as_str().unwrap();
    status_json(
        app.put(&format!("{INCIDENTS}/{id}"))
            .json(&json!({"status": "resolved"})),
    )
    .await;
    app.post_error(known).await;
    app.post_error(json!({"message": "never seen before", "level": "error", "source": "api"}))
        .await;
    app.wait_stored(6).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(rx.got().len(), 1, "{:?}", rx.got());
    assert_eq!(incidents(&app, "").await.len(), 1);

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_fire_a_rule_once() {
    let app = TestApp::spawn_with(Mode::ALL, spawn_alerting(|_| {})).await;
    // A second engine of the same deployment, as another worker process.
    let secret = sluice_auth::signing_secret(app.cfg.secret_key.as_deref(), app.cfg.dev).unwrap();
    let live = sluice_storage::live::Publisher::new(
        app.running.redis.clone(),
        app.cfg.redis_prefix.clone(),
    );
    let second = sluice_jobs::alerts::Engine {
        pg: app.running.pg.clone(),
        ch: app.running.ch.clone(),
        notifier: Some(sluice_notify::Notifier::new(
            app.running.pg.clone(),
            sluice_storage::secrets::SecretBox::new(&secret),
            live.clone(),
            sluice_notify::http_client().unwrap(),
        )),
        live,
        secrets: sluice_storage::secrets::SecretBox::new(&secret),
        namespace: app.cfg.redis_prefix.clone(),
        settings: sluice_jobs::alerts::AlertSettings {
            every: Duration::from_millis(200),
            ..Default::default()
        },
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let engine = tokio::spawn(second.clone().run(async move {
        let _ = stop_rx.await;
    }));

    let (url, rx) = start_receiver().await;
    add_webhook(&app, app.tenant_id, &url).await;
    let count = create_rule(
        &app,
        json!({"name": "Any error", "condition": ERROR_COUNT, "threshold": 0,
               "time_window": "1m", "notifications": ["webhook"]}),
    )
    .await;
    let fresh = create_rule(
        &app,
        json!({"name": "Any new error", "condition": "new_error", "notifications": ["webhook"]}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    app.post_error(json!({"message": "boom", "level": "error", "source": "api"}))
        .await;
    // Both engines also evaluate at once, as fast as they can.
    let (a, b) = tokio::join!(second.tick(), second.tick());
    a.unwrap();
    b.unwrap();
    wait_for("both rules' webhooks", || {
        let n = rx.got().len();
        async move { (n >= 2).then_some(()) }
    })
    .await;
    for _ in 0..5 {
        let (a, b) = tokio::join!(second.tick(), second.tick());
        a.unwrap();
        b.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let got = rx.got();
    assert_eq!(got.len(), 2, "{got:?}");
    let mut fired: Vec<&str> = got
        .iter()
        .map(|g| g.body["rule"]["id"].as_str().unwrap())
        .collect();
    fired.sort();
    let mut want = vec![count["id"].as_str().unwrap(), fresh["id"].as_str().unwrap()];
    want.sort();
    assert_eq!(fired, want, "each rule fired once");
    assert_eq!(incidents(&app, "").await.len(), 2);

    let _ = stop_tx.send(());
    engine.await.unwrap();
    app.stop().await;
}
