//! The HTTP/1.1 client: hyper-util's pooled keep-alive client, one request
//! in, status and whole body out, with a per-request time-out.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::stats::Outcome;

pub type Headers = Vec<(HeaderName, HeaderValue)>;

#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

/// A request's answer: its status (or why there is none) and its body.
pub struct Answer {
    pub outcome: Outcome,
    pub body: Bytes,
}

impl Http {
    /// A client keeping up to `connections` idle connections to the target.
    pub fn new(connections: usize, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(connections)
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Self { client, timeout }
    }

    pub async fn send(
        &self,
        method: Method,
        uri: &Uri,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Answer {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = uri.clone();
        let h = req.headers_mut();
        for (name, value) in headers {
            h.insert(name.clone(), value.clone());
        }
        let exchange = async {
            let resp = self.client.request(req).await.ok()?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.ok()?.to_bytes();
            Some((status, body))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Some((status, body))) => Answer {
                outcome: Outcome::Status(status),
                body,
            },
            Ok(None) => Answer {
                outcome: Outcome::ConnError,
                body: Bytes::new(),
            },
            Err(_) => Answer {
                outcome: Outcome::Timeout,
                body: Bytes::new(),
            },
        }
    }
}

/// The target's endpoints, resolved once: writes go to the ingest base,
/// reads to the API base (the same one for `sluice all`).
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub errors: Uri,
    pub batch: Uri,
    pub start: Uri,
    pub complete: Uri,
    pub stats: Uri,
    pub trends: Uri,
    pub dashboard: Uri,
    /// Sentry's envelope endpoint of the project ([`Self::sentry_project`]).
    pub envelope: Uri,
    base: String,
    api: String,
}

fn base_url(flag: &str, base: &str) -> Result<String> {
    let base = base.trim_end_matches('/').to_string();
    let probe: Uri = base
        .parse()
        .with_context(|| format!("{flag} {base:?} is not a URL"))?;
    match probe.scheme_str() {
        Some("http") => Ok(base),
        Some(other) => bail!("{flag}: only http:// targets are supported, not {other}://"),
        None => bail!("{flag} {base:?} needs a scheme, e.g. http://127.0.0.1:8080"),
    }
}

impl Endpoints {
    /// `api`: where reads go when they are not served at `base`.
    pub fn new(base: &str, api: Option<&str>) -> Result<Self> {
        let base = base_url("--url", base)?;
        let api = match api {
            Some(a) => base_url("--api-url", a)?,
            None => base.clone(),
        };
        let e = Self {
            errors: join(&base, "/api/errors")?,
            batch: join(&base, "/api/errors/batch")?,
            start: join(&base, "/api/v1/tracking/operations/start")?,
            complete: join(&base, "/api/v1/tracking/operations/complete")?,
            stats: join(&api, "/api/stats")?,
            trends: join(&api, "/api/analytics/trends?period=week")?,
            dashboard: join(&api, "/api/v1/tracking/dashboard")?,
            envelope: join(&base, "/api/1/envelope/")?,
            base,
            api,
        };
        Ok(e)
    }

    /// Sentry requests go to project `id` (the DSN's path).
    pub fn sentry_project(mut self, id: &str) -> Result<Self> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            bail!("--sentry-project {id:?}: letters, digits and dashes only");
        }
        self.envelope = join(&self.base, &format!("/api/{id}/envelope/"))?;
        Ok(self)
    }

    pub fn error_by_id(&self, id: &str) -> Result<Uri> {
        join(&self.api, &format!("/api/errors/{id}"))
    }
}

fn join(base: &str, path: &str) -> Result<Uri> {
    format!("{base}{path}")
        .parse()
        .with_context(|| format!("bad URL {base}{path}"))
}

/// How requests authenticate: `X-API-Key` for the Health Monitor routes,
/// `Authorization: Bearer` (plus `X-Tenant-ID` when known) for Tracking.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    pub api_key: Option<String>,
    pub tenant: Option<String>,
}

/// The header sets each kind of request carries, built once.
#[derive(Debug, Clone)]
pub struct HeaderSets {
    pub json_key: Headers,
    pub batch: Headers,
    pub key_only: Headers,
    pub json_bearer: Headers,
    pub bearer_only: Headers,
    /// A Sentry SDK's: `X-Sentry-Auth` with the key as `sentry_key`.
    pub sentry: Headers,
}

impl HeaderSets {
    pub fn new(
        auth: &Auth,
        batch_type: &'static str,
        batch_encoding: Option<&'static str>,
    ) -> Result<Self> {
        let json = (CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let mut key_only = Headers::new();
        let mut bearer_only = Headers::new();
        if let Some(k) = &auth.api_key {
            key_only.push((
                HeaderName::from_static("x-api-key"),
                HeaderValue::from_str(k).context("--api-key is not a valid header value")?,
            ));
            bearer_only.push((
                hyper::header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {k}"))
                    .context("--api-key is not a valid header value")?,
            ));
        }
        if let Some(t) = &auth.tenant {
            bearer_only.push((
                HeaderName::from_static("x-tenant-id"),
                HeaderValue::from_str(t).context("--tenant-id is not a valid header value")?,
            ));
        }
        let mut sentry = vec![(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-sentry-envelope"),
        )];
        if let Some(k) = &auth.api_key {
            sentry.push((
                HeaderName::from_static("x-sentry-auth"),
                HeaderValue::from_str(&format!(
                    "Sentry sentry_key={k}, sentry_version=7, sentry_client=sluice-loadtest/{}",
                    env!("CARGO_PKG_VERSION")
                ))
                .context("--api-key is not a valid header value")?,
            ));
        }
        let with = |base: &Headers, extra: &[(HeaderName, HeaderValue)]| {
            let mut h = base.clone();
            h.extend_from_slice(extra);
            h
        };
        let mut batch_extra = vec![(CONTENT_TYPE, HeaderValue::from_static(batch_type))];
        if let Some(enc) = batch_encoding {
            batch_extra.push((CONTENT_ENCODING, HeaderValue::from_static(enc)));
        }
        Ok(Self {
            json_key: with(&key_only, std::slice::from_ref(&json)),
            batch: with(&key_only, &batch_extra),
            json_bearer: with(&bearer_only, std::slice::from_ref(&json)),
            key_only,
            bearer_only,
            sentry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_join_the_base() {
        let e = Endpoints::new("http://127.0.0.1:8080/", None).unwrap();
        assert_eq!(e.errors.to_string(), "http://127.0.0.1:8080/api/errors");
        assert_eq!(
            e.trends.to_string(),
            "http://127.0.0.1:8080/api/analytics/trends?period=week"
        );
        assert_eq!(
            e.error_by_id("abc").unwrap().to_string(),
            "http://127.0.0.1:8080/api/errors/abc"
        );
        assert!(Endpoints::new("https://example.com", None).is_err());
        assert!(Endpoints::new("127.0.0.1:8080", None).is_err());
        let split = Endpoints::new("http://ingest:1", Some("http://api:2")).unwrap();
        assert_eq!(split.batch.to_string(), "http://ingest:1/api/errors/batch");
        assert_eq!(split.stats.to_string(), "http://api:2/api/stats");
        assert_eq!(
            split.envelope.to_string(),
            "http://ingest:1/api/1/envelope/"
        );
        let p = split.clone().sentry_project("42").unwrap();
        assert_eq!(p.envelope.to_string(), "http://ingest:1/api/42/envelope/");
        assert!(split.clone().sentry_project("4/../x").is_err());
        assert!(split.clone().sentry_project("").is_err());
        assert_eq!(
            split.error_by_id("x").unwrap().to_string(),
            "http://api:2/api/errors/x"
        );
    }

    #[test]
    fn sentry_requests_carry_the_key_in_x_sentry_auth() {
        let auth = Auth {
            api_key: Some("sk_test".into()),
            tenant: None,
        };
        let h = HeaderSets::new(&auth, "application/json", None).unwrap();
        let get = |name: &str| {
            h.sentry
                .iter()
                .find(|(n, _)| n.as_str() == name)
                .map(|(_, v)| v.to_str().unwrap().to_string())
        };
        let auth = get("x-sentry-auth").unwrap();
        assert!(
            auth.starts_with("Sentry sentry_key=sk_test, sentry_version=7"),
            "{auth}"
        );
        assert_eq!(
            get("content-type").as_deref(),
            Some("application/x-sentry-envelope")
        );
        assert!(get("x-api-key").is_none());
    }
}
