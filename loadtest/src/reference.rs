//! The reference server: bare hyper that reads each request's whole body
//! and answers 201 with a small JSON body, whatever the path. Load-testing
//! it measures the cost of HTTP alone on this machine, the yardstick Sluice
//! is compared against.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

pub const BODY: &str =
    r#"{"data":{"id":"00000000-0000-0000-0000-000000000000"},"status":"success"}"#;

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // read (and drop) the whole body, as a real handler would
    let _ = req.into_body().collect().await;
    let mut resp = Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
    *resp.status_mut() = StatusCode::CREATED;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// Binds `addr` and serves until the process is killed.
pub async fn serve(addr: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    eprintln!(
        "reference server listening on http://{}",
        listener.local_addr()?
    );
    serve_on(listener).await
}

pub async fn serve_on(listener: TcpListener) -> Result<()> {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // out of file descriptors and the like: back off, go on
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Http;
    use crate::stats::Outcome;
    use hyper::Method;
    use std::time::Duration;

    #[tokio::test]
    async fn answers_201_to_anything() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_on(listener));
        let http = Http::new(2, Duration::from_secs(5));
        let uri = format!("http://{addr}/api/errors/batch").parse().unwrap();
        let a = http
            .send(Method::POST, &uri, &[], Bytes::from(vec![b'x'; 100_000]))
            .await;
        assert_eq!(a.outcome, Outcome::Status(201));
        assert_eq!(&a.body[..], BODY.as_bytes());
    }
}
