//! `/ws`: authentication at the handshake, per-tenant fan-out of events
//! published through the storage publisher (also across two API
//! processes sharing a Redis prefix), dropping a slow reader, keep-alive.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sluice::app::Mode;
use sluice_storage::live::Publisher;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use crate::support::TestApp;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn ws_url(app: &TestApp, query: &str) -> String {
    format!("{}/ws{query}", app.base.replacen("http://", "ws://", 1))
}

/// Opens `/ws` with `query` and the given headers.
async fn open(app: &TestApp, query: &str, headers: &[(&str, &str)]) -> Result<Ws, WsError> {
    let mut req = ws_url(app, query).into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

fn publisher(app: &TestApp) -> Publisher {
    Publisher::new(app.running.redis.clone(), app.cfg.redis_prefix.clone())
}

/// The next text frame, as JSON (pings are skipped), within 10 s.
async fn next_event(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an event within 10 s")
            .expect("socket open")
            .expect("frame");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// The close frame's reason, skipping the events still queued before it.
async fn close_reason(ws: &mut Ws) -> (String, usize) {
    let mut texts = 0;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("the socket ends within 30 s");
        match msg {
            Some(Ok(Message::Text(_))) => texts += 1,
            Some(Ok(Message::Close(Some(f)))) => return (f.reason.to_string(), texts),
            Some(Ok(Message::Close(None))) | None => return (String::new(), texts),
            Some(Ok(_)) => {}
            Some(Err(e)) => return (format!("error: {e}"), texts),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_authenticates_at_the_handshake() {
    let app = TestApp::spawn_with(Mode::API, |_| {}).await;
    let user = app.register_user().await;

    // a browser's JWT in ?token=, an API key in ?token=, the headers
    let mut ws = open(&app, &format!("?token={}", user.token), &[])
        .await
        .unwrap();
    ws.close(None).await.unwrap();
    let mut ws = open(&app, &format!("?token={}", app.key), &[])
        .await
        .unwrap();
    ws.close(None).await.unwrap();
    let mut ws = open(&app, "", &[("X-API-Key", &app.key)]).await.unwrap();
    ws.close(None).await.unwrap();
    let bearer = format!("Bearer {}", user.token);
    let mut ws = open(&app, "", &[("Authorization", &bearer)]).await.unwrap();
    ws.close(None).await.unwrap();

    // refused before the upgrade, in the Backup contract's envelope
    for (query, headers) in [
        ("", vec![]),
        ("?token=not-a-token", vec![]),
        ("?token=eyJhbGciOiJIUzI1NiJ9.e30.bad", vec![]),
        ("", vec![("X-API-Key", "sk_live_nope")]),
    ] {
        match open(&app, query, &headers).await {
            Err(WsError::Http(res)) => {
                assert_eq!(res.status(), 401, "{query} {headers:?}");
                let body: Value = serde_json::from_slice(res.body().as_deref().unwrap()).unwrap();
                assert!(body["detail"].is_string(), "{body}");
                assert_eq!(body["code"], "AUTH_FAILED");
                assert!(body["timestamp"].is_string(), "{body}");
            }
            other => panic!(
                "{query} {headers:?}: expected a 401, got {:?}",
                other.map(|_| ())
            ),
        }
    }
    // clients send only pongs and closes: a large frame ends the socket
    let mut ws = open(&app, "", &[("X-API-Key", &app.key)]).await.unwrap();
    ws.send(Message::text("x".repeat(100 << 10))).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "a 100 KiB client frame ends the socket");

    // a plain GET with a good key is not an upgrade: a clear 400
    let r = app.get("/ws").send().await.unwrap();
    assert_eq!(r.status(), 400);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_events_reach_only_their_tenant() {
    let app = TestApp::spawn_with(Mode::API, |_| {}).await;
    let user = app.register_user().await;
    let publisher = publisher(&app);
    let mut mine = open(&app, "", &[("X-API-Key", &app.key)]).await.unwrap();
    let mut theirs = open(&app, &format!("?token={}", user.token), &[])
        .await
        .unwrap();

    // published in this order on one connection, fanned out in this order
    publisher
        .publish(user.tenant_id, "notification", &json!({"n": "theirs-1"}))
        .await
        .unwrap();
    let progress = json!({"backup_id": 7, "progress": 45, "status": "in_progress"});
    let n = publisher
        .publish(app.tenant_id, "backup_progress", &progress)
        .await
        .unwrap();
    assert_eq!(n, 1, "one API process subscribed");
    publisher
        .publish(user.tenant_id, "notification", &json!({"n": "theirs-2"}))
        .await
        .unwrap();

    let ev = next_event(&mut mine).await;
    assert_eq!(ev["type"], "backup_progress");
    assert_eq!(ev["backup_id"], 7);
    assert_eq!(ev["progress"], 45);
    assert_eq!(ev["status"], "in_progress");
    assert_eq!(ev["data"], progress);
    assert_eq!(next_event(&mut theirs).await["n"], "theirs-1");
    assert_eq!(next_event(&mut theirs).await["n"], "theirs-2");

    // nothing else arrived at either: a marker published last comes next
    publisher
        .publish(app.tenant_id, "marker", &json!({}))
        .await
        .unwrap();
    assert_eq!(next_event(&mut mine).await["type"], "marker");
    // a tenant nobody listens to reaches nobody
    publisher
        .publish(Uuid::new_v4(), "notification", &json!({"n": "nobody"}))
        .await
        .unwrap();
    publisher
        .publish(user.tenant_id, "marker", &json!({}))
        .await
        .unwrap();
    assert_eq!(next_event(&mut theirs).await["type"], "marker");

    // too large an event is refused by the publisher
    let huge = "x".repeat(sluice_storage::live::MAX_FRAME_BYTES);
    assert!(publisher
        .publish(app.tenant_id, "notification", &json!({ "huge": huge }))
        .await
        .is_err());

    // shutting down closes the sockets with 1001
    app.stop().await;
    let (reason, _) = close_reason(&mut mine).await;
    assert_eq!(reason, "server shutting down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_event_published_once_reaches_both_api_processes() {
    let a = TestApp::spawn_with(Mode::API, |_| {}).await;
    let prefix = a.cfg.redis_prefix.clone();
    let b = TestApp::spawn_with(Mode::API, move |c| c.redis_prefix = prefix).await;
    // b knows a's key once its key directory has loaded it
    let mut on_a = open(&a, "", &[("X-API-Key", &a.key)]).await.unwrap();
    let mut on_b = crate::support::wait_for("b to accept a's key", || async {
        open(&b, "", &[("X-API-Key", &a.key)]).await.ok()
    })
    .await;
    let n = publisher(&b)
        .publish(
            a.tenant_id,
            "server_health",
            &json!({"server_id": 1, "health_status": "healthy"}),
        )
        .await
        .unwrap();
    assert_eq!(n, 2, "both API processes subscribed, one pattern each");
    for ws in [&mut on_a, &mut on_b] {
        let ev = next_event(ws).await;
        assert_eq!(ev["type"], "server_health");
        assert_eq!(ev["health_status"], "healthy");
    }
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_slow_reader_is_dropped_and_others_keep_receiving() {
    let app = TestApp::spawn_with(Mode::API, |c| {
        c.ws_buffer = 256;
        c.ws_send_timeout_secs = 2;
        c.ws_ping_secs = 600;
    })
    .await;
    let publisher = publisher(&app);

    // the slow reader: a small receive window, and it never reads
    let addr = app.running.addr.unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(8 * 1024).unwrap();
    let stream = sock.connect(addr).await.unwrap();
    let mut req = ws_url(&app, "").into_client_request().unwrap();
    req.headers_mut()
        .insert("X-API-Key", HeaderValue::from_str(&app.key).unwrap());
    let (mut slow, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(stream))
        .await
        .unwrap();

    let mut normal = open(&app, "", &[("X-API-Key", &app.key)]).await.unwrap();
    const EVENTS: usize = 800;
    let reader = tokio::spawn(async move {
        for i in 0..EVENTS {
            let ev = next_event(&mut normal).await;
            assert_eq!(ev["i"], i, "in order, none lost");
        }
        normal
    });
    // 800 × 16 KB = 12.8 MB, well over what the slow socket's kernel
    // buffers and queue hold
    let pad = "x".repeat(16 * 1024);
    for i in 0..EVENTS {
        publisher
            .publish(app.tenant_id, "notification", &json!({"i": i, "pad": pad}))
            .await
            .unwrap();
        if i % 8 == 7 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let mut normal = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the normal reader gets every event")
        .unwrap();

    let (reason, got) = close_reason(&mut slow).await;
    assert!(reason.contains("too slow"), "closed with {reason:?}");
    assert!(got < EVENTS, "the slow reader was cut off ({got} events)");
    let metrics = app.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sluice_ws_dropped_total{reason=\"slow\"}")),
        "drops counted"
    );

    // the normal reader is still served
    publisher
        .publish(app.tenant_id, "marker", &json!({}))
        .await
        .unwrap();
    assert_eq!(next_event(&mut normal).await["type"], "marker");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_ping_pong_keeps_idle_sockets_and_closes_silent_ones() {
    let app = TestApp::spawn_with(Mode::API, |c| {
        c.ws_ping_secs = 1;
        c.ws_pong_timeout_secs = 1;
    })
    .await;
    let mut idle = open(&app, "", &[("X-API-Key", &app.key)]).await.unwrap();
    let mut silent = open(&app, "", &[("X-API-Key", &app.key)]).await.unwrap();

    // the idle client reads (its library answers pings) but sends nothing
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(4500);
    while let Ok(msg) = tokio::time::timeout_at(until, idle.next()).await {
        match msg {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("idle socket got {other:?}"),
        }
    }
    assert!(pings >= 3, "pinged every second ({pings})");
    publisher(&app)
        .publish(app.tenant_id, "marker", &json!({}))
        .await
        .unwrap();
    assert_eq!(next_event(&mut idle).await["type"], "marker");

    // the silent one never read, so never answered: closed. (Reading now,
    // its library answers the queued pings first, which may fail on the
    // closed connection before the close frame is read: either is an end.)
    let (reason, _) = close_reason(&mut silent).await;
    assert!(
        reason.contains("no pong") || reason.starts_with("error:"),
        "closed with {reason:?}"
    );
    let metrics = app.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sluice_ws_dropped_total{reason=\"ping_timeout\"} ")),
        "drop counted"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_sockets_per_tenant_are_capped() {
    let app = TestApp::spawn_with(Mode::API, |c| c.ws_max_per_tenant = 2).await;
    let user = app.register_user().await;
    let key = [("X-API-Key", app.key.as_str())];
    let first = open(&app, "", &key).await.unwrap();
    let _second = open(&app, "", &key).await.unwrap();
    match open(&app, "", &key).await {
        Err(WsError::Http(res)) => {
            assert_eq!(res.status(), 429);
            assert!(res.headers().contains_key("retry-after"));
        }
        other => panic!("expected a 429, got {:?}", other.map(|_| ())),
    }
    // another tenant has its own allowance
    let mut theirs = open(&app, &format!("?token={}", user.token), &[])
        .await
        .unwrap();
    // an API key naming another tenant is refused
    match open(&app, &format!("?tenant={}", user.tenant_id), &key).await {
        Err(WsError::Http(res)) => assert_eq!(res.status(), 403),
        other => panic!("expected a 403, got {:?}", other.map(|_| ())),
    }
    // a closed socket frees its place
    drop(first);
    let _third = crate::support::wait_for("a freed place", || async {
        open(&app, "", &key).await.ok()
    })
    .await;
    theirs.close(None).await.unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_subscription_comes_back_after_redis_drops_it() {
    let proxy = crate::outage::Proxy::start("127.0.0.1:6379").await;
    let url = format!("redis://{}", proxy.addr);
    let app = TestApp::spawn_with(Mode::API, |c| c.redis_url = url).await;
    // the producer reaches Redis directly; only the API process is cut off
    let direct = sluice_storage::redis_pool("redis://127.0.0.1:6379", 2).unwrap();
    let publisher = Publisher::new(direct, app.cfg.redis_prefix.clone());
    let mut ws = open(&app, "", &[("X-API-Key", &app.key)]).await.unwrap();
    publisher
        .publish(app.tenant_id, "marker", &json!({"n": 1}))
        .await
        .unwrap();
    assert_eq!(next_event(&mut ws).await["n"], 1);

    proxy.cut();
    crate::support::wait_for("the subscription to drop", || async {
        (publisher
            .publish(app.tenant_id, "lost", &json!({}))
            .await
            .unwrap()
            == 0)
            .then_some(())
    })
    .await;
    proxy.restore();
    crate::support::wait_for("the subscription to return", || async {
        (publisher
            .publish(app.tenant_id, "marker", &json!({"n": 2}))
            .await
            .unwrap()
            == 1)
            .then_some(())
    })
    .await;
    // the socket stayed open and gets events again
    loop {
        let ev = next_event(&mut ws).await;
        if ev["n"] == 2 {
            break;
        }
        assert_eq!(ev["type"], "lost", "only events from the outage before it");
    }
    app.stop().await;
}
