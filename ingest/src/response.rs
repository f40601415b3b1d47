//! Answers in the Health Monitor envelope: `{"data": ..., "status":
//! "success"}` and `{"error": "...", "status": "error"}`.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;
use serde_json::Value;
use sluice_storage::model::ErrorEvent;

pub type Reply = Response<Full<Bytes>>;

fn json_bytes(status: StatusCode, body: Vec<u8>) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `body` as a JSON answer.
pub fn json(status: StatusCode, body: &Value) -> Reply {
    json_bytes(status, body.to_string().into_bytes())
}

#[derive(Serialize)]
struct Success<'d, T> {
    data: &'d T,
    status: &'static str,
}

/// `{"data": data, "status": "success"}`, serialized straight from `data`.
pub fn success_of<T: Serialize>(status: StatusCode, data: &T) -> Reply {
    let body = Success {
        data,
        status: "success",
    };
    // Structs of strings and numbers always serialize.
    json_bytes(status, serde_json::to_vec(&body).unwrap_or_default())
}

/// One item of a batch answer.
#[derive(Serialize)]
#[serde(untagged)]
pub enum ItemResult<'a> {
    Accepted {
        index: usize,
        status: &'static str,
        id: uuid::Uuid,
        fingerprint: &'a str,
    },
    Rejected {
        index: usize,
        status: &'static str,
        error: &'a str,
    },
}

impl<'a> ItemResult<'a> {
    pub fn accepted(index: usize, ev: &'a ErrorEvent<'_>) -> Self {
        ItemResult::Accepted {
            index,
            status: "accepted",
            id: ev.group_id,
            fingerprint: &ev.fingerprint,
        }
    }

    pub fn rejected(index: usize, error: &'a str) -> Self {
        ItemResult::Rejected {
            index,
            status: "rejected",
            error,
        }
    }
}

/// The answer to a batch.
#[derive(Serialize)]
pub struct BatchResult<'a> {
    pub accepted: usize,
    pub rejected: usize,
    pub results: Vec<ItemResult<'a>>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `{"success": true, "message": ..., "data": ...}` (Database Tracking).
pub fn tracking_success(message: &str, data: Value) -> Reply {
    json(
        StatusCode::OK,
        &serde_json::json!({"success": true, "message": message, "data": data}),
    )
}

/// A failed request, with the reason a client can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: StatusCode,
    pub message: String,
    pub retry_after: Option<u64>,
    /// The metric label for why it was rejected.
    pub reason: &'static str,
    pub details: Option<Value>,
}

impl Rejection {
    pub fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
            reason,
            details: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    pub fn unavailable(reason: &'static str, message: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, reason, message)
        }
    }

    /// The Database Tracking contract's error code for this status.
    pub fn tracking_code(&self) -> &'static str {
        match self.status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "AUTH_FAILED",
            StatusCode::NOT_FOUND => "OPERATION_NOT_FOUND",
            StatusCode::TOO_MANY_REQUESTS => "RATE_LIMITED",
            StatusCode::SERVICE_UNAVAILABLE => "DATABASE_ERROR",
            _ => "INVALID_REQUEST",
        }
    }

    /// In the Database Tracking envelope.
    pub fn into_tracking_reply(self) -> Reply {
        let body = serde_json::json!({
            "success": false,
            "error": self.message,
            "error_code": self.tracking_code(),
            "timestamp": now(),
        });
        self.finish(json(self.status, &body))
    }

    fn finish(&self, mut r: Reply) -> Reply {
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        r
    }

    pub fn into_reply(self) -> Reply {
        let mut body = serde_json::json!({"error": self.message, "status": "error"});
        if let Some(d) = &self.details {
            body["details"] = d.clone();
        }
        self.finish(json(self.status, &body))
    }
}
