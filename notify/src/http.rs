//! One JSON POST, its outcome classified: connection errors, 5xx and 429
//! are transient, other non-2xx answers a refusal. Error texts never carry
//! the URL (a Slack webhook URL is a secret).

use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};

use crate::NotifyError;

/// How much of a refusing answer's body is quoted in the error.
const QUOTE_MAX: usize = 200;

pub(crate) async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    extra: &[(HeaderName, String)],
) -> Result<(), NotifyError> {
    let mut req = client
        .post(url)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(body);
    for (name, value) in extra {
        req = req.header(name.clone(), value.as_str());
    }
    let res = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            let e = e.without_url();
            let what = if e.is_connect() {
                "cannot connect to the receiver"
            } else if e.is_timeout() {
                "the receiver did not answer in time"
            } else if e.is_builder() {
                return Err(NotifyError::Config(format!("unusable URL: {e}")));
            } else {
                "the request to the receiver failed"
            };
            return Err(NotifyError::Transient(format!("{what}: {}", chain(&e))));
        }
    };
    let status = res.status();
    if status.is_success() {
        return Ok(());
    }
    let text = res.text().await.unwrap_or_default();
    let quoted: String = text.chars().take(QUOTE_MAX).collect();
    let msg = if quoted.trim().is_empty() {
        format!("the receiver answered HTTP {}", status.as_u16())
    } else {
        format!(
            "the receiver answered HTTP {}: {}",
            status.as_u16(),
            quoted.trim()
        )
    };
    if status.is_server_error() || status.as_u16() == 429 {
        Err(NotifyError::Transient(msg))
    } else {
        Err(NotifyError::Rejected(msg))
    }
}

/// An error and its sources, joined.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        src = s.source();
    }
    out
}
