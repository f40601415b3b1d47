//! Notification channels over HTTP, against real receivers the tests
//! start: an axum HTTP server for Slack and webhook POSTs (body, content
//! type, HMAC signature), a real SMTP server (`python3 -m aiosmtpd`) for
//! e-mail, a receiver answering 500 then 200 (retries), a closed port
//! (unreachable). Also: secrets never answered and sealed at rest, the
//! 422 form, tenant isolation, and the `notification` event on `/ws`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use futures::StreamExt;
use hmac_check::verify;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{status_json, wait_for, TestApp, User};

const CHANNELS: &str = "/api/v1/notifications/channels";
const TEST: &str = "/api/v1/notifications/test";
const SIGNING_SECRET: &str = "sign-secret-Qx71Lm";
const SMTP_PASSWORD: &str = "smtp-pass-Bn42Vc";

mod hmac_check {
    use sha2::{Digest, Sha256};

    /// HMAC-SHA256 (RFC 2104) of `body` under `key`, as `sha256=<hex>`.
    pub fn verify(key: &[u8], body: &[u8]) -> String {
        let mut k = [0u8; 64];
        if key.len() > 64 {
            k[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
        let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
        let inner = Sha256::new()
            .chain_update(&ipad)
            .chain_update(body)
            .finalize();
        let outer = Sha256::new()
            .chain_update(&opad)
            .chain_update(inner)
            .finalize();
        format!("sha256={}", hex::encode(outer))
    }
}

/// One request a receiver got.
#[derive(Clone, Debug)]
struct Got {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    /// Statuses to answer, in order; 200 once spent.
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    fn got(&self, path: &str) -> Vec<Got> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|g| g.path == path)
            .cloned()
            .collect()
    }
}

async fn receive(
    State(r): State<Receiver>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    r.got.lock().unwrap().push(Got {
        path: uri.path().to_string(),
        headers,
        body: body.to_vec(),
    });
    let code = if uri.path() == "/refuse" {
        400
    } else {
        r.script.lock().unwrap().pop_front().unwrap_or(200)
    };
    StatusCode::from_u16(code).unwrap()
}

/// An HTTP receiver on a spare port; answers its base URL.
async fn start_receiver(script: &[u16]) -> (String, Receiver) {
    let r = Receiver::default();
    r.script.lock().unwrap().extend(script.iter().copied());
    let app = axum::Router::new()
        .fallback(axum::routing::post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), r)
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

async fn call(
    app: &TestApp,
    user: &User,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = app
        .http
        .request(method, app.url(path))
        .bearer_auth(&user.token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    status_json(r).await
}

async fn create(app: &TestApp, user: &User, body: Value) -> Value {
    let (s, b) = call(app, user, Method::POST, CHANNELS, Some(body)).await;
    assert_eq!(s, 201, "{b}");
    b
}

async fn test_channel(app: &TestApp, user: &User, id: i64, message: &str) -> Value {
    let (s, b) = call(
        app,
        user,
        Method::POST,
        TEST,
        Some(json!({"channel_id": id, "message": message})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_and_signed_webhook_reach_a_real_receiver_and_ws() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let (base, rx) = start_receiver(&[]).await;
    let slack_url = format!("{base}/services/T000/B000/slack-token-Kp93");

    let ws_url = format!(
        "{}/ws?token={}",
        app.base.replacen("http://", "ws://", 1),
        user.token
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();

    let slack = create(
        &app,
        &user,
        json!({"name": "Slack Alerts", "type": "slack", "is_enabled": true,
               "config": {"webhook_url": slack_url, "channel": "#alerts"}}),
    )
    .await;
    assert_eq!(slack["type"], "slack");
    assert_eq!(slack["is_enabled"], true);
    assert_eq!(slack["config"]["channel"], "#alerts");
    assert_eq!(slack["config"]["webhook_url"], "********");
    assert!(!slack.to_string().contains("slack-token-Kp93"));
    assert!(slack["created_at"].as_str().unwrap().ends_with('Z'));
    let slack_id = slack["id"].as_i64().unwrap();

    let hook = create(
        &app,
        &user,
        json!({"name": "Ops hook", "type": "webhook",
               "config": {"url": format!("{base}/hook"), "secret": SIGNING_SECRET}}),
    )
    .await;
    let hook_id = hook["id"].as_i64().unwrap();
    assert!(hook_id > slack_id, "ids in creation order");
    assert_eq!(hook["config"]["url"], format!("{base}/hook"));
    assert!(!hook.to_string().contains(SIGNING_SECRET));

    // Slack: the incoming-webhook payload.
    let t = test_channel(&app, &user, slack_id, "Slack test 1").await;
    assert_eq!(t["success"], true, "{t}");
    let got = rx.got("/services/T000/B000/slack-token-Kp93");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].headers["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert!(body["text"].as_str().unwrap().contains("Slack test 1"));
    assert_eq!(body["channel"], "#alerts");

    // The notification event reaches the tenant's socket.
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("notification event")
            .unwrap()
            .unwrap();
        let Message::Text(t) = msg else { continue };
        let e: Value = serde_json::from_str(t.as_str()).unwrap();
        if e["type"] == "notification" {
            assert_eq!(e["message"], "Slack test 1");
            assert_eq!(e["level"], "info");
            assert_eq!(e["details"]["channel_id"], slack_id);
            assert!(!t.as_str().contains("slack-token-Kp93"));
            break;
        }
    }

    // Webhook: JSON with `message`, signed with HMAC-SHA256 of the body.
    let t = test_channel(&app, &user, hook_id, "Webhook test 1").await;
    assert_eq!(t["success"], true, "{t}");
    let got = rx.got("/hook");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].headers["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["message"], "Webhook test 1");
    assert_eq!(body["level"], "info");
    assert!(body["timestamp"].as_str().is_some());
    assert_eq!(
        got[0].headers["x-sluice-signature"].to_str().unwrap(),
        verify(SIGNING_SECRET.as_bytes(), &got[0].body)
    );

    // A partial update keeps the stored secret; the answer masks it.
    let (s, up) = call(
        &app,
        &user,
        Method::PUT,
        &format!("{CHANNELS}/{hook_id}"),
        Some(json!({"name": "Ops hook 2", "is_enabled": false})),
    )
    .await;
    assert_eq!(s, 200, "{up}");
    assert_eq!(up["name"], "Ops hook 2");
    assert_eq!(up["is_enabled"], false);
    assert_eq!(up["config"]["secret"], "********");
    let t = test_channel(&app, &user, hook_id, "Webhook test 2").await;
    assert_eq!(t["success"], true, "{t}");
    let got = rx.got("/hook");
    assert_eq!(
        got[1].headers["x-sluice-signature"].to_str().unwrap(),
        verify(SIGNING_SECRET.as_bytes(), &got[1].body)
    );

    // No answer carries a secret; the database holds them only sealed.
    let (s, all) = call(&app, &user, Method::GET, CHANNELS, None).await;
    assert_eq!(s, 200);
    assert_eq!(all.as_array().unwrap().len(), 2);
    let (_, one) = call(
        &app,
        &user,
        Method::GET,
        &format!("{CHANNELS}/{slack_id}"),
        None,
    )
    .await;
    for text in [all.to_string(), one.to_string()] {
        assert!(
            !text.contains(SIGNING_SECRET) && !text.contains("slack-token-Kp93"),
            "{text}"
        );
    }
    type Row = (Value, Option<Vec<u8>>);
    for (id, secret) in [(slack_id, "slack-token-Kp93"), (hook_id, SIGNING_SECRET)] {
        let (config, sealed): Row = sqlx::query_as(
            "SELECT config, secrets_sealed FROM notification_channels WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&app.running.pg)
        .await
        .unwrap();
        assert!(!config.to_string().contains(secret));
        let sealed = sealed.unwrap();
        assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }

    // Every delivery was recorded (three tests, all delivered).
    let (n_status, deliveries): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'delivered'), count(*) \
         FROM notification_deliveries WHERE tenant_id = $1",
    )
    .bind(user.tenant_id)
    .fetch_one(&app.running.pg)
    .await
    .unwrap();
    assert_eq!((n_status, deliveries), (3, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifier_delivers_to_enabled_channels_only() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let (base, rx) = start_receiver(&[]).await;
    let on = create(
        &app,
        &user,
        json!({"name": "on", "type": "webhook", "config": {"url": format!("{base}/on")}}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let off = create(
        &app,
        &user,
        json!({"name": "off", "type": "webhook", "is_enabled": false,
               "config": {"url": format!("{base}/off")}}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let secret = sluice_auth::signing_secret(app.cfg.secret_key.as_deref(), app.cfg.dev).unwrap();
    let notifier = sluice_notify::Notifier::new(
        app.running.pg.clone(),
        sluice_storage::secrets::SecretBox::new(&secret),
        sluice_storage::live::Publisher::new(
            deadpool_redis::Config::from_url(&app.cfg.redis_url)
                .create_pool(Some(deadpool_redis::Runtime::Tokio1))
                .unwrap(),
            app.cfg.redis_prefix.clone(),
        ),
        sluice_notify::http_client().unwrap(),
    );
    let n = sluice_notify::Notification::new(
        sluice_notify::Level::Error,
        "Backup failed",
        "db1 failed",
    )
    .with_details(json!({"backup_id": 7}));
    // Another tenant's id (a made-up one) is skipped like a disabled one.
    let outcomes = notifier
        .notify(user.tenant_id, &[on, off, on + 1000], &n)
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 1);
    assert!(outcomes[0].delivered);
    assert_eq!(rx.got("/on").len(), 1);
    assert_eq!(rx.got("/off").len(), 0);
    let body: Value = serde_json::from_slice(&rx.got("/on")[0].body).unwrap();
    assert_eq!(body["level"], "error");
    assert_eq!(body["title"], "Backup failed");
    assert_eq!(body["details"]["backup_id"], 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_a_500_and_reports_unreachable_or_refusing_receivers() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let (base, rx) = start_receiver(&[500]).await;

    let flaky = create(
        &app,
        &user,
        json!({"name": "flaky", "type": "webhook", "config": {"url": format!("{base}/flaky")}}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let t = test_channel(&app, &user, flaky, "after a retry").await;
    assert_eq!(t["success"], true, "{t}");
    assert_eq!(t["attempts"], 2);
    assert_eq!(rx.got("/flaky").len(), 2);
    let (status, attempts): (String, i32) = sqlx::query_as(
        "SELECT status, attempts FROM notification_deliveries WHERE channel_id = $1",
    )
    .bind(flaky)
    .fetch_one(&app.running.pg)
    .await
    .unwrap();
    assert_eq!((status.as_str(), attempts), ("delivered", 2));

    let down = create(
        &app,
        &user,
        json!({"name": "down", "type": "slack",
               "config": {"webhook_url": format!("http://127.0.0.1:{}/x/secret-path-Zt5", closed_port())}}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let t = test_channel(&app, &user, down, "nobody hears this").await;
    assert_eq!(t["success"], false, "{t}");
    assert_eq!(t["attempts"], 3);
    assert!(!t["message"].as_str().unwrap().is_empty());
    assert!(!t.to_string().contains("secret-path-Zt5"), "{t}");

    let refusing = create(
        &app,
        &user,
        json!({"name": "refusing", "type": "webhook", "config": {"url": format!("{base}/refuse")}}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let t = test_channel(&app, &user, refusing, "refused").await;
    assert_eq!(t["success"], false, "{t}");
    assert_eq!(t["attempts"], 1, "a 400 is not retried");
    assert!(t["message"].as_str().unwrap().contains("400"));
}

/// A real SMTP server (aiosmtpd's Debugging handler prints each message).
struct Smtp {
    child: std::process::Child,
    out: std::path::PathBuf,
    port: u16,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.out);
    }
}

async fn start_smtp() -> Smtp {
    let port = closed_port();
    let out = std::env::temp_dir().join(format!("sluice-smtp-{}.log", uuid::Uuid::new_v4()));
    let file = std::fs::File::create(&out).unwrap();
    let child = std::process::Command::new("python3")
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-c",
            "aiosmtpd.handlers.Debugging",
            "-l",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .env("PYTHONUNBUFFERED", "1")
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("python3 -m aiosmtpd (scripts/services.sh installs it)");
    wait_for("the SMTP server", || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
    })
    .await;
    Smtp { child, out, port }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_reaches_a_real_smtp_server() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let smtp = start_smtp().await;
    let c = create(
        &app,
        &user,
        json!({"name": "Mail", "type": "email", "config": {
            "smtp_host": "127.0.0.1", "smtp_port": smtp.port,
            "from": "sluice@example.com", "to": ["dba@example.com", "ops@example.com"]}}),
    )
    .await;
    let id = c["id"].as_i64().unwrap();
    assert_eq!(
        c["config"]["to"],
        json!(["dba@example.com", "ops@example.com"])
    );
    let t = test_channel(&app, &user, id, "Mail body Wq83").await;
    assert_eq!(t["success"], true, "{t}");
    let out = smtp.out.clone();
    let text = wait_for("the message on the SMTP server", || {
        let out = out.clone();
        async move {
            let t = std::fs::read_to_string(&out).unwrap_or_default();
            t.contains("Mail body Wq83").then_some(t)
        }
    })
    .await;
    assert!(text.contains("dba@example.com") && text.contains("ops@example.com"));
    assert!(text.contains("Subject: [Sluice info] Test notification"));

    // A password is stored sealed and answered masked; PUT without it keeps it.
    let (s, up) = call(
        &app,
        &user,
        Method::PUT,
        &format!("{CHANNELS}/{id}"),
        Some(json!({"config": {"username": "mailer", "password": SMTP_PASSWORD}})),
    )
    .await;
    assert_eq!(s, 200, "{up}");
    assert_eq!(up["config"]["password"], "********");
    assert_eq!(up["config"]["username"], "mailer");
    assert_eq!(up["config"]["smtp_host"], "127.0.0.1");
    let (s, again) = call(
        &app,
        &user,
        Method::PUT,
        &format!("{CHANNELS}/{id}"),
        Some(json!({"name": "Mail 2"})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(again["config"]["password"], "********");
    assert!(!again.to_string().contains(SMTP_PASSWORD));
    let sealed: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT secrets_sealed FROM notification_channels WHERE id = $1")
            .bind(id)
            .fetch_one(&app.running.pg)
            .await
            .unwrap();
    let secret = sluice_auth::signing_secret(app.cfg.secret_key.as_deref(), app.cfg.dev).unwrap();
    let opened = sluice_storage::secrets::SecretBox::new(&secret)
        .open(&sealed.unwrap())
        .unwrap();
    assert!(opened.contains(SMTP_PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_and_tenant_isolation() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let other = app.register_user().await;

    let (s, b) = call(
        &app,
        &user,
        Method::POST,
        CHANNELS,
        Some(json!({"name": "x", "type": "pager", "config": {}})),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["detail"][0]["loc"], json!(["body", "type"]));

    let (s, b) = call(
        &app,
        &user,
        Method::POST,
        CHANNELS,
        Some(json!({"name": "x", "type": "webhook", "config": {}})),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["detail"][0]["loc"], json!(["body", "config", "url"]));

    let (s, b) = call(
        &app,
        &user,
        Method::POST,
        CHANNELS,
        Some(json!({"name": "x", "type": "email", "config": {"smtp_host": "h", "smtp_port": 25}})),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    let locs: Vec<Value> = b["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["loc"].clone())
        .collect();
    assert!(locs.contains(&json!(["body", "config", "from"])));
    assert!(locs.contains(&json!(["body", "config", "to"])));

    let (s, _) = call(
        &app,
        &user,
        Method::POST,
        CHANNELS,
        Some(json!({"type": "slack"})),
    )
    .await;
    assert_eq!(s, 422);

    let mine = create(
        &app,
        &user,
        json!({"name": "mine", "type": "webhook", "config": {"url": "http://127.0.0.1:9/x"}}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let path = format!("{CHANNELS}/{mine}");
    for (m, body) in [
        (Method::GET, None),
        (Method::PUT, Some(json!({"name": "stolen"}))),
        (Method::DELETE, None),
    ] {
        let (s, b) = call(&app, &other, m.clone(), &path, body).await;
        assert_eq!(s, 404, "{m} {b}");
        assert!(b["detail"].is_string());
    }
    let (s, _) = call(
        &app,
        &other,
        Method::POST,
        TEST,
        Some(json!({"channel_id": mine, "message": "hi"})),
    )
    .await;
    assert_eq!(s, 404);
    let (_, list) = call(&app, &other, Method::GET, CHANNELS, None).await;
    assert_eq!(list, json!([]));
    // Untouched.
    let (s, b) = call(&app, &user, Method::GET, &path, None).await;
    assert_eq!(s, 200);
    assert_eq!(b["name"], "mine");

    let (s, _) = call(
        &app,
        &user,
        Method::POST,
        TEST,
        Some(json!({"channel_id": mine + 100000, "message": "hi"})),
    )
    .await;
    assert_eq!(s, 404);

    let (s, _) = call(&app, &user, Method::DELETE, &path, None).await;
    assert!(s == 200 || s == 204);
    let (s, _) = call(&app, &user, Method::GET, &path, None).await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_notify_on_success_and_on_failure() {
    use crate::backups::{pg, pg_server, unique, Cleanup};
    let app = TestApp::spawn_with(sluice::app::Mode::ALL, |c| c.schedule_tick_ms = 100).await;
    let user = app.register_user().await;
    let (base, receiver) = start_receiver(&[]).await;
    create(
        &app,
        &user,
        json!({"name": "hook", "type": "webhook", "config": {"url": format!("{base}/sched")}}),
    )
    .await;
    let db = unique("notify_src");
    let _c = Cleanup {
        pg: vec![db.clone()],
        my: vec![],
    };
    pg("postgres", &format!("CREATE DATABASE \"{db}\""));
    pg(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);",
    );
    let server = pg_server(&app, &user).await;
    let mut ids = Vec::new();
    for (name, database, flags) in [
        (
            "ok",
            db.as_str(),
            json!({"notify_on_success": true, "notify_on_failure": false}),
        ),
        (
            "missing",
            "notify_no_such_db",
            json!({"notify_on_success": false, "notify_on_failure": true}),
        ),
        (
            "quiet",
            db.as_str(),
            json!({"notify_on_success": false, "notify_on_failure": false}),
        ),
    ] {
        let mut body = json!({"name": name, "server_id": server, "database_name": database,
            "cron_expression": "0 0 1 1 *", "timezone": "UTC"});
        for (k, v) in flags.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (s, v) = call(&app, &user, Method::POST, "/api/v1/schedules", Some(body)).await;
        assert_eq!(s, 201, "{v}");
        ids.push(v["id"].as_i64().unwrap());
    }
    for id in &ids {
        sqlx::query("UPDATE schedules SET next_run = now() - interval '1 second' WHERE id = $1")
            .bind(id)
            .execute(&app.running.pg)
            .await
            .unwrap();
    }
    let got = wait_for("two notifications", || {
        let r = receiver.clone();
        async move {
            let got = r.got("/sched");
            (got.len() >= 2).then_some(got)
        }
    })
    .await;
    let texts: Vec<Value> = got
        .iter()
        .map(|g| serde_json::from_slice(&g.body).unwrap())
        .collect();
    let success = texts
        .iter()
        .find(|t| t["message"].as_str().unwrap().contains("completed"))
        .expect("a success notification");
    assert_eq!(success["details"]["schedule_id"], ids[0]);
    let failure = texts
        .iter()
        .find(|t| t["message"].as_str().unwrap().contains("failed"))
        .expect("a failure notification");
    assert_eq!(failure["details"]["schedule_id"], ids[1]);
    assert_eq!(failure["level"], "error");
    assert!(failure["message"]
        .as_str()
        .unwrap()
        .contains("does not exist"));
    // The quiet schedule's backup completes without a word.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.got("/sched").len(), 2);
    app.stop().await;
}
