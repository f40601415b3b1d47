//! Slow and careless clients: thousands of connections trickling their
//! headers from one address leave another client's latency alone; silent,
//! idle and trickling connections are cut; a client that writes a whole
//! oversized body before reading still reads its 413.
//!
//! Loopback accepts all of 127.0.0.0/8, so each test's "other" clients
//! bind their sockets to an address of their own before connecting.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice::app::Mode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::{wait_for, TestApp};

fn server_addr(app: &TestApp) -> SocketAddr {
    app.running.addr.expect("listening")
}

/// A connection to the app from `from` (an address of 127.0.0.0/8).
async fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let ip: IpAddr = from.parse().expect("an address");
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(to).await
}

/// An HTTP/1.1 answer read off a raw connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Reads one answer (with a `Content-Length`) off `s`, within 20 s.
async fn read_answer(s: &mut TcpStream) -> std::io::Result<Answer> {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let len = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok(Answer {
            status,
            head,
            body: buf[head_end..head_end + len].to_vec(),
        })
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .unwrap_or(Err(std::io::ErrorKind::TimedOut.into()))
}

/// Waits (at most `within`) for the server to close `s`; how long it took.
async fn closed_within(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((start + within).into(), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// `n` POSTs of one error from 127.0.0.1, each on a new connection (as a
/// client the slow ones would starve); their sorted latencies, and how
/// many failed.
async fn measure(app: &TestApp, n: usize) -> (Vec<Duration>, Vec<String>) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut lat = Vec::with_capacity(n);
    let mut failures = Vec::new();
    for i in 0..n {
        let start = Instant::now();
        let r = http
            .post(app.url("/api/errors"))
            .header("X-API-Key", &app.key)
            .json(&json!({"message": format!("measured {i}"), "source": "slow-clients"}))
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 201 => {
                let _ = r.bytes().await;
                lat.push(start.elapsed());
            }
            Ok(r) => failures.push(format!("status {}", r.status())),
            Err(e) => failures.push(e.to_string()),
        }
    }
    lat.sort();
    (lat, failures)
}

/// Slow clients on a runtime (and OS thread) of their own, like clients
/// on another machine: each connects from `from`, sends a request's
/// headers a byte every 200 ms, and when cut off (refused, or timed out)
/// tries again 1-2 s later, until `stop`.
struct SlowFlood {
    stop: Arc<AtomicBool>,
    connects: Arc<AtomicU64>,
    cut: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SlowFlood {
    fn start(from: &'static str, to: SocketAddr, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let connects = Arc::new(AtomicU64::new(0));
        let cut = Arc::new(AtomicU64::new(0));
        let (st, co, cu) = (stop.clone(), connects.clone(), cut.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut tasks = tokio::task::JoinSet::new();
                for i in 0..clients {
                    let (st, co, cu) = (st.clone(), co.clone(), cu.clone());
                    tasks.spawn(async move {
                        // spread the first connections over a second
                        tokio::time::sleep(Duration::from_millis((i % 1000) as u64)).await;
                        let head = format!(
                            "POST /api/errors HTTP/1.1\r\nHost: sluice\r\nX-Slow: {i}\r\n{}Content-Length: 20\r\n\r\n",
                            "X-Padding: slowly-slowly-slowly\r\n".repeat(4)
                        );
                        while !st.load(Ordering::Relaxed) {
                            if let Ok(mut s) = connect_from(from, to).await {
                                co.fetch_add(1, Ordering::Relaxed);
                                for b in head.as_bytes() {
                                    if st.load(Ordering::Relaxed) {
                                        return;
                                    }
                                    if s.write_all(&[*b]).await.is_err() {
                                        cu.fetch_add(1, Ordering::Relaxed);
                                        break;
                                    }
                                    tokio::time::sleep(Duration::from_millis(200)).await;
                                }
                            }
                            let pause = 1000 + (i as u64 * 7919) % 1000;
                            tokio::time::sleep(Duration::from_millis(pause)).await;
                        }
                    });
                }
                while tasks.join_next().await.is_some() {}
            });
        });
        SlowFlood {
            stop,
            connects,
            cut,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (
            self.connects.load(Ordering::Relaxed),
            self.cut.load(Ordering::Relaxed),
        )
    }
}

/// The value of the first sample of `metric` whose labels contain `label`
/// in `/metrics` (0 when absent).
async fn metric(app: &TestApp, metric: &str, label: &str) -> f64 {
    let text = app.metrics_text().await;
    text.lines()
        .filter(|l| l.starts_with(metric) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .next()
        .unwrap_or(0.0)
}

/// This process's limit of open files (from /proc), if known.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_slow_connections_from_one_address_leave_others_alone() {
    // 2,500 slow clients (fewer where the open-files limit is low: the
    // flood and the server share this process), four times the listener's
    // slots: without the per-client cap they would take every slot and
    // nothing else would be served.
    let clients = open_files_limit()
        .map_or(2500, |l| l.saturating_sub(800) / 2)
        .clamp(200, 2500);
    let app = TestApp::spawn_with(Mode::ALL, |c| {
        c.max_connections = clients / 4;
        c.max_connections_per_client = 32;
        c.header_timeout_secs = 2;
    })
    .await;
    let to = server_addr(&app);
    let n = 200;
    // warm up (connections, caches), then the baseline
    let _ = measure(&app, 20).await;
    let (base, failed) = measure(&app, n).await;
    assert!(failed.is_empty(), "baseline failures: {failed:?}");

    let flood = SlowFlood::start("127.0.0.2", to, clients);
    // let the flood build up: every client connected at least once
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (under, failed) = measure(&app, n).await;
    let (connects, cut) = flood.stop();

    assert!(failed.is_empty(), "failures under the flood: {failed:?}");
    let (p50b, p99b) = (percentile(&base, 0.5), percentile(&base, 0.99));
    let (p50u, p99u) = (percentile(&under, 0.5), percentile(&under, 0.99));
    let ratio = p99u.as_secs_f64() / p99b.max(Duration::from_millis(5)).as_secs_f64();
    println!(
        "slow flood of {clients} clients: {connects} connections, {cut} cut off; POST /api/errors p50 {p50b:?} -> {p50u:?}, p99 {p99b:?} -> {p99u:?} (x{ratio:.2})"
    );
    assert!(
        connects >= clients as u64,
        "the flood made only {connects} connections"
    );
    assert!(cut > 0, "no slow connection was cut off");
    assert!(
        ratio < 5.0,
        "p99 under the flood {p99u:?} vs {p99b:?} without it"
    );
    assert!(metric(&app, "sluice_connections_refused_total", "per_client").await > 0.0);
    assert!(metric(&app, "sluice_connection_timeouts_total", "header").await > 0.0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_trickling_connections_are_closed_at_the_header_timeout() {
    let app = TestApp::spawn_with(Mode::ALL, |c| {
        c.header_timeout_secs = 1;
        c.idle_timeout_secs = 30;
    })
    .await;
    let to = server_addr(&app);
    let start = Instant::now();
    // connects and says nothing
    let mut silent = connect_from("127.0.0.5", to).await.unwrap();
    // sends half a request line, then nothing
    let mut partial = connect_from("127.0.0.5", to).await.unwrap();
    partial.write_all(b"GET /health HT").await.unwrap();
    for (what, s) in [("silent", &mut silent), ("partial", &mut partial)] {
        closed_within(s, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{what} connection still open after 5 s"));
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(800),
            "{what} closed after {took:?}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_at_the_idle_timeout() {
    let app = TestApp::spawn_with(Mode::ALL, |c| {
        c.header_timeout_secs = 1;
        c.idle_timeout_secs = 3;
    })
    .await;
    let mut s = connect_from("127.0.0.6", server_addr(&app)).await.unwrap();
    let get = b"GET /health HTTP/1.1\r\nHost: sluice\r\n\r\n";
    s.write_all(get).await.unwrap();
    assert_eq!(read_answer(&mut s).await.unwrap().status, 200);
    // idle longer than the header timeout: still open, and serves
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(get).await.unwrap();
    assert_eq!(read_answer(&mut s).await.unwrap().status, 200);
    // then idle past the idle timeout: closed
    let took = closed_within(&mut s, Duration::from_secs(8))
        .await
        .expect("idle connection still open after 8 s");
    assert!(took >= Duration::from_millis(2500), "closed after {took:?}");
    assert!(metric(&app, "sluice_connection_timeouts_total", "idle").await > 0.0);
    app.stop().await;
}

/// One HTTP/2 frame: its 9-byte header and payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Reads HTTP/2 frames off `s` until one of `kind` with END_STREAM on
/// stream 1; false when the connection ends first.
async fn h2_read_until_end_of_stream(s: &mut TcpStream) -> bool {
    let read = async {
        loop {
            let mut head = [0u8; 9];
            s.read_exact(&mut head).await?;
            let len =
                (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
            let mut payload = vec![0u8; len];
            s.read_exact(&mut payload).await?;
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            // DATA or HEADERS with END_STREAM, on our stream
            if stream == 1 && (head[3] == 0 || head[3] == 1) && head[4] & 1 == 1 {
                return std::io::Result::Ok(true);
            }
        }
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(10), read).await,
        Ok(Ok(true))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_at_the_idle_timeout_not_before() {
    let app = TestApp::spawn_with(Mode::ALL, |c| {
        c.header_timeout_secs = 1;
        c.idle_timeout_secs = 3;
    })
    .await;
    let mut s = connect_from("127.0.0.11", server_addr(&app)).await.unwrap();
    // preface, empty SETTINGS, then GET /health (HPACK: :method GET,
    // :scheme http, :path "/health" as a literal on the static name)
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(h2_frame(4, 0, 0, &[]));
    let mut block = vec![0x82, 0x86, 0x44, 7];
    block.extend_from_slice(b"/health");
    hello.extend(h2_frame(1, 0x5, 1, &block));
    s.write_all(&hello).await.unwrap();
    assert!(
        h2_read_until_end_of_stream(&mut s).await,
        "no HTTP/2 answer"
    );
    let idle_from = Instant::now();
    // connection-level frames while idle (a PING) are not a request's
    // start: they do not bring the header timeout on
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.write_all(&h2_frame(6, 0, 0, &[7; 8])).await.unwrap();
    closed_within(&mut s, Duration::from_secs(8))
        .await
        .expect("idle HTTP/2 connection still open after 8 s");
    let took = idle_from.elapsed();
    assert!(took >= Duration::from_millis(2500), "closed after {took:?}");
    app.stop().await;
}

/// Sends `head` and the first 10 bytes of a 200-byte body, then a byte
/// every 300 ms; the answer that comes back.
async fn trickle_body(to: SocketAddr, head: &str) -> Answer {
    let mut s = connect_from("127.0.0.7", to).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&[b' '; 10]).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        for _ in 0..190 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if wr.write_all(b" ").await.is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // the answer comes and the connection closes
    loop {
        match tokio::time::timeout(Duration::from_secs(20), rd.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    writer.abort();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "no answer in time"
    );
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Answer {
        status: head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        head: head.to_string(),
        body: body.as_bytes().to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_answered_408_on_ingest_and_api_paths() {
    let app = TestApp::spawn_with(Mode::ALL, |c| {
        c.body_timeout_secs = 1;
        c.body_min_rate = 1_000_000;
    })
    .await;
    let to = server_addr(&app);
    let ingest = trickle_body(
        to,
        &format!(
            "POST /api/errors HTTP/1.1\r\nHost: sluice\r\nX-API-Key: {}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n",
            app.key
        ),
    )
    .await;
    assert_eq!(ingest.status, 408, "{ingest:?}");
    let v = ingest.json();
    assert_eq!(v["status"], "error", "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("in time"), "{v}");

    let api = trickle_body(
        to,
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n",
    )
    .await;
    assert_eq!(api.status, 408, "{api:?}");
    assert!(
        api.head.to_ascii_lowercase().contains("connection: close"),
        "{api:?}"
    );
    assert_eq!(api.json()["code"], "REQUEST_TIMEOUT", "{api:?}");
    assert!(metric(&app, "sluice_connection_timeouts_total", "body").await > 0.0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_past_its_cap_is_refused_and_trusted_proxies_are_not() {
    let app = TestApp::spawn_with(Mode::ALL, |c| {
        c.max_connections_per_client = 5;
        c.trusted_proxies = vec!["127.0.0.9/32".parse().unwrap()];
    })
    .await;
    let to = server_addr(&app);
    let get = b"GET /health HTTP/1.1\r\nHost: sluice\r\n\r\n";
    // five connections served (each answered, so each was accepted)
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut s = connect_from("127.0.0.8", to).await.unwrap();
        s.write_all(get).await.unwrap();
        assert_eq!(read_answer(&mut s).await.unwrap().status, 200);
        held.push(s);
    }
    // the sixth is closed at once, unanswered (the reset may already
    // fail the connect)
    if let Ok(mut sixth) = connect_from("127.0.0.8", to).await {
        let _ = sixth.write_all(get).await;
        assert!(
            read_answer(&mut sixth).await.is_err(),
            "the sixth connection was served"
        );
    }
    // a proxy's connections are not counted
    let mut proxied = Vec::new();
    for _ in 0..12 {
        let mut s = connect_from("127.0.0.9", to).await.unwrap();
        s.write_all(get).await.unwrap();
        assert_eq!(read_answer(&mut s).await.unwrap().status, 200);
        proxied.push(s);
    }
    // one closed: its place is free again
    drop(held.pop());
    wait_for("a place freed for 127.0.0.8", || async {
        let mut s = connect_from("127.0.0.8", to).await.ok()?;
        s.write_all(get).await.ok()?;
        (read_answer(&mut s).await.ok()?.status == 200).then_some(())
    })
    .await;
    assert!(metric(&app, "sluice_connections_refused_total", "per_client").await > 0.0);
    app.stop().await;
}

/// Writes a request with a body of `len` bytes whole before reading
/// anything (as urllib does), then reads the answer.
async fn write_all_then_read(app: &TestApp, path: &str, len: usize) -> Answer {
    let mut s = connect_from("127.0.0.10", server_addr(app)).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: sluice\r\nX-API-Key: {}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n",
        app.key
    );
    let body = vec![b' '; len];
    let write = async {
        s.write_all(head.as_bytes()).await?;
        s.write_all(&body).await
    };
    tokio::time::timeout(Duration::from_secs(30), write)
        .await
        .expect("writing the body took over 30 s")
        .unwrap_or_else(|e| panic!("{path}: writing the body failed: {e}"));
    read_answer(&mut s)
        .await
        .unwrap_or_else(|e| panic!("{path}: no answer: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_writes_25_mib_before_reading_gets_the_413() {
    let app = TestApp::spawn().await;
    for path in ["/api/errors", "/api/errors/batch"] {
        let a = write_all_then_read(&app, path, 25 << 20).await;
        assert_eq!(a.status, 413, "{path}: {a:?}");
        let v = a.json();
        assert_eq!(v["status"], "error", "{path}: {v}");
        assert!(v["error"].as_str().unwrap_or("").contains("exceeds"), "{v}");
    }
    // both bodies were drained (to their end, or until the client closed
    // once it had its answer)
    wait_for("the drains counted", || async {
        let drained = metric(&app, "sluice_body_lingering_total", "\"drained\"").await
            + metric(&app, "sluice_body_lingering_total", "\"closed\"").await;
        (drained >= 2.0).then_some(())
    })
    .await;
    app.stop().await;
}
