//! The Database Tracking contract's hot endpoints:
//! `POST /api/v1/tracking/operations/start` and `/complete`. In-flight
//! state lives in Redis ([`sluice_storage::ops`]); the finished operation
//! goes to the operations stream in the same atomic step.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use serde::Deserialize;
use serde_json::json;
use sluice_auth::principal::{self, Principal};
use sluice_auth::token::Tokens;
use sluice_auth::AuthError;
use sluice_storage::durability::ReplicaWait;
use sluice_storage::keys::KeyDirectory;
use sluice_storage::model::OpStatus;
use sluice_storage::ops::{self, Finish};
use sluice_storage::ratelimit::KeyLimiter;
use sluice_storage::streams::StreamLayout;

use crate::body;
use crate::response::{tracking_success, Rejection, Reply};

pub const START_PATH: &str = "/api/v1/tracking/operations/start";
pub const COMPLETE_PATH: &str = "/api/v1/tracking/operations/complete";

const MAX_BODY: usize = 64 * 1024;
const MAX_NAME: usize = 500;

#[derive(Debug, Clone)]
pub struct TrackingConfig {
    /// Requests per minute per caller on start and on complete (contract: 100).
    pub rate_limit_per_min: u32,
    /// Operations still running after this long are reported as timed out.
    pub operation_timeout_secs: u64,
    /// Replicas that must acknowledge a start or a completion before it is
    /// answered (`SLUICE_REDIS_MIN_REPLICAS`).
    pub replicas: ReplicaWait,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        Self {
            rate_limit_per_min: 100,
            operation_timeout_secs: 6 * 3600,
            replicas: ReplicaWait::none(),
        }
    }
}

pub struct Tracking {
    cfg: TrackingConfig,
    keys: KeyDirectory,
    tokens: Arc<Tokens>,
    redis: deadpool_redis::Pool,
    layout: StreamLayout,
    start_limiter: KeyLimiter,
    complete_limiter: KeyLimiter,
}

#[derive(Deserialize)]
struct StartBody {
    script_name: Option<String>,
    script_type: Option<String>,
}

#[derive(Deserialize)]
struct CompleteBody {
    operation_id: Option<String>,
    success: Option<bool>,
    error_message: Option<String>,
}

pub fn auth_rejection(e: AuthError) -> Rejection {
    let status = match e {
        AuthError::WrongTenant => StatusCode::FORBIDDEN,
        _ => StatusCode::UNAUTHORIZED,
    };
    Rejection::new(status, "unauthorized", e.to_string())
}

fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, Rejection> {
    sluice_storage::limits::from_slice(bytes)
        .map_err(|e| Rejection::bad_request(format!("invalid JSON body: {e}")))
}

/// `MAINTENANCE`, `MIGRATION`, `REPORTING`...: upper-case words.
fn script_type(raw: Option<String>) -> Result<String, Rejection> {
    let t = raw
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "MANUAL".to_string());
    let ok = t.len() <= 50
        && t.starts_with(|c: char| c.is_ascii_uppercase())
        && t.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(t)
    } else {
        Err(Rejection::bad_request(
            "script_type must be upper-case letters, digits and underscores (e.g. MAINTENANCE), at most 50",
        ))
    }
}

/// A start request's body, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// Trimmed, not empty, at most [`MAX_NAME`] characters.
    pub script_name: String,
    /// Upper-case letters, digits and underscores; `MANUAL` when absent.
    pub script_type: String,
}

/// Decodes and validates a `POST .../operations/start` body.
pub fn decode_start(bytes: &[u8]) -> Result<Start, Rejection> {
    let b: StartBody = parse(bytes)?;
    let script_name = b
        .script_name
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Rejection::bad_request("script_name is required"))?;
    if script_name.chars().count() > MAX_NAME {
        return Err(Rejection::bad_request(format!(
            "script_name is longer than {MAX_NAME} characters"
        )));
    }
    let script_type = script_type(b.script_type)?;
    Ok(Start {
        script_name,
        script_type,
    })
}

/// A complete request's body, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Complete {
    /// 32 lower-case hexadecimal characters.
    pub operation_id: String,
    /// `success` as sent; true when absent.
    pub success: bool,
    /// Absent when blank.
    pub error_message: Option<String>,
}

/// Decodes and validates a `POST .../operations/complete` body.
pub fn decode_complete(bytes: &[u8]) -> Result<Complete, Rejection> {
    let b: CompleteBody = parse(bytes)?;
    let operation_id = b
        .operation_id
        .map(|s| s.trim().to_ascii_lowercase())
        .ok_or_else(|| Rejection::bad_request("operation_id is required"))?;
    if !ops::valid_operation_id(&operation_id) {
        return Err(Rejection::bad_request(
            "operation_id must be 32 hexadecimal characters",
        ));
    }
    Ok(Complete {
        operation_id,
        success: b.success.unwrap_or(true),
        error_message: b.error_message.filter(|m| !m.trim().is_empty()),
    })
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Tracking {
    pub fn new(
        cfg: TrackingConfig,
        keys: KeyDirectory,
        tokens: Arc<Tokens>,
        redis: deadpool_redis::Pool,
        layout: StreamLayout,
    ) -> Self {
        Self {
            start_limiter: KeyLimiter::new(cfg.rate_limit_per_min),
            complete_limiter: KeyLimiter::new(cfg.rate_limit_per_min),
            cfg,
            keys,
            tokens,
            redis,
            layout,
        }
    }

    pub(crate) fn principal<B>(&self, req: &Request<B>) -> Result<Principal, Rejection> {
        let h = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        let p = principal::resolve(
            h("authorization"),
            h("x-tenant-id"),
            &self.keys,
            &self.tokens,
        )
        .map_err(auth_rejection)?;
        if !p.role.can_write() {
            return Err(Rejection::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("role {} may not record operations", p.role.as_str()),
            ));
        }
        Ok(p)
    }

    async fn conn(&self) -> Result<deadpool_redis::Connection, Rejection> {
        self.redis.get().await.map_err(|_| {
            Rejection::unavailable("redis", "operation store unavailable, retry later", 2)
        })
    }

    /// Waits for the replicas to hold what `conn` wrote, when asked to.
    async fn replicated(&self, conn: &mut deadpool_redis::Connection) -> Result<(), Rejection> {
        match self.cfg.replicas.wait(conn).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Rejection::unavailable(
                "not_replicated",
                "too few Redis replicas acknowledged the operation in time, retry later",
                2,
            )),
            Err(_) => Err(Rejection::unavailable(
                "redis",
                "operation store unavailable, retry later",
                2,
            )),
        }
    }

    pub async fn serve<B>(&self, req: Request<B>, budget: &body::Budget) -> Result<Reply, Rejection>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let start = req.uri().path() == START_PATH;
        let p = self.principal(&req)?;
        tracing::Span::current().record("tenant", tracing::field::display(p.tenant_id));
        let limiter = if start {
            &self.start_limiter
        } else {
            &self.complete_limiter
        };
        if let Err(wait) = limiter.check(p.subject.id(), None) {
            return Err(Rejection {
                retry_after: Some(wait),
                ..Rejection::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "rate limit exceeded",
                )
            });
        }
        let (parts, b) = req.into_parts();
        let bytes = body::read(&parts.headers, b, MAX_BODY, budget).await?;
        if start {
            self.start(&p, &bytes).await
        } else {
            self.complete(&p, &bytes).await
        }
    }

    async fn start(&self, p: &Principal, bytes: &[u8]) -> Result<Reply, Rejection> {
        let Start {
            script_name: name,
            script_type: kind,
        } = decode_start(bytes)?;
        let id = ops::new_operation_id();
        let mut conn = self.conn().await?;
        let keep = self.cfg.operation_timeout_secs + 24 * 3600;
        let started = ops::start(
            &mut conn,
            &self.layout,
            p.tenant_id,
            &id,
            &name,
            &kind,
            keep,
        )
        .await
        .map_err(|_| {
            Rejection::unavailable("redis", "operation store unavailable, retry later", 2)
        })?;
        self.replicated(&mut conn).await?;
        metrics::counter!("sluice_tracking_started_total").increment(1);
        Ok(tracking_success(
            "Operation tracking started",
            json!({
                "operation_id": id,
                "script_name": name,
                "script_type": kind,
                "status": "RUNNING",
                "started_at": iso(started),
            }),
        ))
    }

    async fn complete(&self, p: &Principal, bytes: &[u8]) -> Result<Reply, Rejection> {
        let Complete {
            operation_id: id,
            success,
            error_message: error,
        } = decode_complete(bytes)?;
        let status = if success {
            OpStatus::Completed
        } else {
            OpStatus::Failed
        };
        let mut conn = self.conn().await?;
        let found = ops::finish(
            &mut conn,
            &self.layout,
            p.tenant_id,
            &id,
            status,
            error.as_deref(),
        )
        .await
        .map_err(|_| {
            Rejection::unavailable("redis", "operation store unavailable, retry later", 2)
        })?;
        match found {
            Finish::Finished {
                started_ms,
                completed_ms,
                ..
            } => {
                self.replicated(&mut conn).await?;
                metrics::counter!("sluice_tracking_completed_total", "status" => status.as_str())
                    .increment(1);
                Ok(tracking_success(
                    if success {
                        "Operation completed successfully"
                    } else {
                        "Operation marked as failed"
                    },
                    json!({
                        "operation_id": id,
                        "status": status.as_str(),
                        "duration_ms": completed_ms - started_ms,
                        "completed_at": iso(completed_ms),
                    }),
                ))
            }
            Finish::AlreadyFinished(prev) => Err(Rejection::bad_request(format!(
                "operation {id} has already finished ({})",
                prev.map_or("COMPLETED", OpStatus::as_str)
            ))),
            Finish::NotFound => Err(Rejection::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("operation {id} not found"),
            )),
        }
    }
}
