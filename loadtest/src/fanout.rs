//! The `fanout` subcommand: live-event fan-out on `/ws`. It opens
//! `--clients` WebSocket clients of one tenant, then posts errors of a
//! fingerprint never seen before at `--rate` for `--duration-secs`, so that
//! every stored one makes the workers publish `new_error` to each client.
//! It reports the ingest rate (events answered 2xx per second) beside the
//! `new_error` frames the clients received per second, and how many of the
//! expected frames (accepted events × connected clients) arrived.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Args;
use futures::StreamExt;
use hyper::Method;
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use crate::check;
use crate::http::{Auth, Endpoints, HeaderSets, Http};

#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    /// Where errors are posted (the ingest tier).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Where `/ws` is served (the API tier), when not at `--url`.
    #[arg(long)]
    pub api_url: Option<String>,
    /// WebSocket clients of the tenant (raise the server's
    /// `SLUICE_WS_MAX_PER_TENANT` above it).
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// New errors posted per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 20.0)]
    pub duration_secs: f64,
    /// After the load, how long to wait for the last frames.
    #[arg(long, default_value_t = 10.0)]
    pub drain_secs: f64,
    /// Most posts in flight at once.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    #[arg(long, conflicts_with = "database_url")]
    pub api_key: Option<String>,
    /// Create a fresh tenant and API key in Sluice's Postgres for the run.
    #[arg(long)]
    pub database_url: Option<String>,
    #[arg(long)]
    pub json: bool,
}

/// What the clients saw.
#[derive(Default)]
struct Seen {
    new_error: AtomicU64,
    other: AtomicU64,
    /// Clients the server closed or that failed while the run went on.
    lost: AtomicU64,
    first_ms: AtomicU64,
    last_ms: AtomicU64,
}

impl Seen {
    fn frame(&self, text: &str, since: Instant) {
        if is_new_error(text) {
            let at = since.elapsed().as_millis() as u64;
            self.new_error.fetch_add(1, Ordering::Relaxed);
            let _ =
                self.first_ms
                    .compare_exchange(0, at.max(1), Ordering::Relaxed, Ordering::Relaxed);
            self.last_ms.fetch_max(at, Ordering::Relaxed);
        } else {
            self.other.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Whether a frame is a `new_error` event (its top-level `type`).
fn is_new_error(text: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Typed<'a> {
        #[serde(borrow, rename = "type")]
        kind: Option<&'a str>,
    }
    serde_json::from_str::<Typed>(text)
        .ok()
        .and_then(|t| t.kind)
        == Some("new_error")
}

/// The body of the `i`-th post: a fingerprint of its own, so each one
/// opens a new group.
fn body(run: &str, i: u64) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "message": format!("fan-out probe {i} of run {run}"),
            "level": "error",
            "source": "loadtest-fanout",
            "fingerprint": format!("fanout-{run}-{i}"),
        })
        .to_string(),
    )
}

fn ws_url(http_base: &str, key: &str) -> Result<String> {
    let rest = http_base
        .trim_end_matches('/')
        .strip_prefix("http://")
        .context("only http:// targets are supported")?;
    Ok(format!("ws://{rest}/ws?token={key}"))
}

pub async fn run(args: FanoutArgs) -> Result<()> {
    let endpoints = Endpoints::new(&args.url, args.api_url.as_deref())?;
    let key = match (&args.api_key, &args.database_url) {
        (Some(k), _) => k.clone(),
        (None, Some(db)) => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .connect(db)
                .await
                .context("connecting to --database-url")?;
            let t = check::provision(&pool).await?;
            eprintln!("created tenant {} ({})", t.slug, t.id);
            tokio::time::sleep(check::KEY_PROPAGATION).await;
            t.api_key
        }
        (None, None) => bail!("--api-key or --database-url is needed"),
    };
    let ws = ws_url(args.api_url.as_deref().unwrap_or(&args.url), &key)?;
    let since = Instant::now();
    let seen = Arc::new(Seen::default());
    let (stop_tx, stop_rx) = watch::channel(false);

    // Open the clients, 50 handshakes at a time.
    let gate = Arc::new(Semaphore::new(50));
    let mut opening = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        let (ws, gate) = (ws.clone(), gate.clone());
        opening.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.ok()?;
            let (stream, _) = tokio_tungstenite::connect_async(ws.as_str()).await.ok()?;
            Some(stream)
        }));
    }
    let mut readers = Vec::with_capacity(args.clients);
    let mut refused = 0usize;
    for o in opening {
        let Some(mut stream) = o.await.ok().flatten() else {
            refused += 1;
            continue;
        };
        let (seen, mut stop) = (seen.clone(), stop_rx.clone());
        readers.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    m = stream.next() => match m {
                        Some(Ok(Message::Text(t))) => seen.frame(t.as_str(), since),
                        // pings are answered by the library on the next read
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => {
                            seen.lost.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    },
                }
            }
        }));
    }
    let connected = readers.len();
    eprintln!(
        "{connected} clients connected ({refused} refused) in {:.1} s",
        since.elapsed().as_secs_f64()
    );
    if connected == 0 {
        bail!(
            "no WebSocket client could connect to {}",
            args.api_url.as_deref().unwrap_or(&args.url)
        );
    }

    // Post new errors at the rate.
    let headers = HeaderSets::new(
        &Auth {
            api_key: Some(key.clone()),
            tenant: None,
        },
        "application/json",
        None,
    )?;
    let http = Http::new(args.connections, Duration::from_secs(10));
    let run_id = format!(
        "{:x}",
        since.elapsed().as_nanos() ^ u128::from(std::process::id())
    );
    let total = (args.rate * args.duration_secs).round() as u64;
    let accepted = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let in_flight = Arc::new(Semaphore::new(args.connections.max(1)));
    let load_start = Instant::now();
    let load_start_ms = since.elapsed().as_millis() as u64;
    let before = seen.new_error.load(Ordering::Relaxed);
    let mut posts = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = load_start + Duration::from_secs_f64(i as f64 / args.rate);
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let (http, uri, headers) = (
            http.clone(),
            endpoints.errors.clone(),
            headers.json_key.clone(),
        );
        let (accepted, failed, b) = (accepted.clone(), failed.clone(), body(&run_id, i));
        posts.push(tokio::spawn(async move {
            let a = http.send(Method::POST, &uri, &headers, b).await;
            drop(permit);
            if a.outcome.is_success() {
                accepted.fetch_add(1, Ordering::Relaxed);
            } else {
                failed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for p in posts {
        let _ = p.await;
    }
    let load_secs = load_start.elapsed().as_secs_f64();
    let accepted = accepted.load(Ordering::Relaxed);
    let expected = accepted * connected as u64;
    // Wait for the rest of the frames, or the drain time.
    let deadline = Instant::now() + Duration::from_secs_f64(args.drain_secs);
    while Instant::now() < deadline && seen.new_error.load(Ordering::Relaxed) - before < expected {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(true);
    for r in readers {
        let _ = r.await;
    }

    let delivered = seen.new_error.load(Ordering::Relaxed) - before;
    let last_ms = seen.last_ms.load(Ordering::Relaxed);
    // Delivery is timed from the first post to the last frame received.
    let delivery_secs = (last_ms.saturating_sub(load_start_ms) as f64 / 1e3).max(load_secs);
    let report = serde_json::json!({
        "clients": connected,
        "clients_refused": refused,
        "clients_lost": seen.lost.load(Ordering::Relaxed),
        "posted": total,
        "accepted": accepted,
        "failed": failed.load(Ordering::Relaxed),
        "load_secs": load_secs,
        "ingest_events_per_sec": accepted as f64 / load_secs,
        "frames_expected": expected,
        "frames_delivered": delivered,
        "delivered_fraction": if expected > 0 { delivered as f64 / expected as f64 } else { 0.0 },
        "delivery_secs": delivery_secs,
        "frames_per_sec": delivered as f64 / delivery_secs,
        "frames_per_sec_per_event_per_sec": (delivered as f64 / delivery_secs) / (accepted as f64 / load_secs).max(f64::MIN_POSITIVE),
        "other_frames": seen.other.load(Ordering::Relaxed),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{connected} clients: ingest {:.1} events/s accepted ({accepted} of {total}); \
             {delivered} of {expected} new_error frames delivered ({:.1} %) in {:.1} s = {:.0} frames/s",
            accepted as f64 / load_secs,
            report["delivered_fraction"].as_f64().unwrap_or(0.0) * 100.0,
            delivery_secs,
            delivered as f64 / delivery_secs
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_new_error_frames_count() {
        let s = Seen::default();
        let t0 = Instant::now();
        s.frame(r#"{"type":"new_error","data":{"id":"x"},"id":"x"}"#, t0);
        s.frame(r#"{"id":"x","type":"error_resolved","data":{}}"#, t0);
        s.frame(r#"{"data":{"type":"new_error"}}"#, t0);
        s.frame("not json", t0);
        assert_eq!(s.new_error.load(Ordering::Relaxed), 1);
        assert_eq!(s.other.load(Ordering::Relaxed), 3);
        assert!(s.first_ms.load(Ordering::Relaxed) >= 1);
    }

    #[test]
    fn each_post_has_a_fingerprint_of_its_own() {
        let a: serde_json::Value = serde_json::from_slice(&body("r1", 1)).unwrap();
        let b: serde_json::Value = serde_json::from_slice(&body("r1", 2)).unwrap();
        assert_ne!(a["fingerprint"], b["fingerprint"]);
        assert_eq!(a["level"], "error");
        assert!(a["message"].as_str().unwrap().contains("r1"));
    }

    #[test]
    fn ws_url_follows_the_base() {
        assert_eq!(
            ws_url("http://127.0.0.1:8080/", "k1").unwrap(),
            "ws://127.0.0.1:8080/ws?token=k1"
        );
        assert!(ws_url("https://x", "k").is_err());
    }
}
