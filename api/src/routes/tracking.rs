//! The Database Tracking contract's read side and tracked databases:
//! dashboard, history, health and status (the start/complete endpoints are
//! on the ingest tier), and attaching databases for automatic DDL tracking.
//!
//! Statuses come from these thresholds:
//! - success rate: >= 99.5 % EXCELLENT, >= 98 % GOOD, >= 95 % WARNING, else CRITICAL;
//! - average operation duration: <= 10 ms EXCELLENT, <= 1 s GOOD, <= 30 s WARNING, else CRITICAL;
//! - store round trip: <= 10 ms EXCELLENT, <= 50 ms GOOD, <= 200 ms WARNING, else CRITICAL;
//! - stream backlog: <= 1,000 EXCELLENT, <= 100,000 GOOD, <= 1,000,000 WARNING, else CRITICAL;
//! - worker lag (age of the oldest unprocessed entry): <= 2 s EXCELLENT, <= 10 s GOOD, <= 60 s WARNING, else CRITICAL;
//! - a store that does not answer is CRITICAL.
//!
//! With no operations in the window a metric is NORMAL. `system_health` and
//! `overall_status` are the worst status among the checks.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use deadpool_redis::redis;
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_storage::breaker::Ping;
use sluice_storage::ch::operations::{self, HistoryFilter};
use sluice_storage::model::OpStatus;
use sluice_storage::pg::tracked_databases;
use sluice_storage::streams::entry_millis;
use sluice_storage::tracked;
use uuid::Uuid;

use super::Params;
use crate::auth::Member;
use crate::error::{tracking_ok, ApiError, ApiResult};
use crate::openapi::tracking::{
    ApiStatus, AttachRequest, Dashboard, Detached, History, OpStatus as OpStatusDoc, Refused,
    SystemHealth, TenantHeader, Throttled, TrackedDatabase, TrackedDatabases, TrackingOk,
};
use crate::ApiState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    Normal,
    Excellent,
    Good,
    Warning,
    Critical,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Normal => "NORMAL",
            Health::Excellent => "EXCELLENT",
            Health::Good => "GOOD",
            Health::Warning => "WARNING",
            Health::Critical => "CRITICAL",
        }
    }

    fn score(self) -> f64 {
        match self {
            Health::Normal | Health::Excellent => 100.0,
            Health::Good => 85.0,
            Health::Warning => 60.0,
            Health::Critical => 20.0,
        }
    }

    /// Lower values are better: `v <= a` EXCELLENT, `<= b` GOOD, `<= c` WARNING.
    fn lower_is_better(v: f64, a: f64, b: f64, c: f64) -> Health {
        if v <= a {
            Health::Excellent
        } else if v <= b {
            Health::Good
        } else if v <= c {
            Health::Warning
        } else {
            Health::Critical
        }
    }

    pub fn success_rate(rate: f64) -> Health {
        Health::lower_is_better(100.0 - rate, 0.5, 2.0, 5.0)
    }

    pub fn duration_ms(ms: f64) -> Health {
        Health::lower_is_better(ms, 10.0, 1000.0, 30_000.0)
    }
}

fn worst(hs: impl IntoIterator<Item = Health>) -> Health {
    hs.into_iter().max().unwrap_or(Health::Normal)
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

fn limit(state: &ApiState, which: &str, subject: Uuid) -> ApiResult<()> {
    let l = match which {
        "dashboard" => &state.tracking_limits.dashboard,
        "history" => &state.tracking_limits.history,
        "health" => &state.tracking_limits.health,
        _ => &state.tracking_limits.status,
    };
    l.check(subject, None)
        .map_err(|retry_after| ApiError::RateLimited { retry_after })
}

/// Operation totals and statuses over the last `hours`.
#[utoipa::path(
    get,
    path = "/api/v1/tracking/dashboard",
    operation_id = "tracking_dashboard",
    tag = "tracking",
    params(
        TenantHeader,
        ("hours" = Option<i64>, Query, minimum = 1, maximum = 2160, description = "The window, in hours (default 24)"),
    ),
    responses(
        (status = 200, body = TrackingOk<Dashboard>, description = "Dashboard data"),
        Refused, Throttled,
    ),
    security(("bearerAuth" = []))
)]
pub async fn dashboard(
    State(state): State<ApiState>,
    Member(p): Member,
    params: Params,
) -> ApiResult<Json<Value>> {
    limit(&state, "dashboard", p.subject.id())?;
    let hours = params.int("hours", 24, 1, 24 * 90)?;
    let since = Utc::now() - chrono::Duration::hours(hours);
    let t = state
        .ch
        .run(|ch| operations::totals(ch, p.tenant_id, since))
        .await?;
    let failed = t.failed + t.timed_out;
    let (rate, rate_status) = if t.total == 0 {
        (100.0, Health::Normal)
    } else {
        let r = round((t.total - failed) as f64 * 100.0 / t.total as f64, 1);
        (r, Health::success_rate(r))
    };
    let (avg, avg_status) = if t.total == 0 {
        (0.0, Health::Normal)
    } else {
        let a = round(t.duration_sum as f64 / t.total as f64, 1);
        (a, Health::duration_ms(a))
    };
    let ts = now();
    let metric = |name: String, value: Value, unit: &str, status: Health| json!({"metric_name": name, "metric_value": value, "metric_unit": unit, "status": status.as_str(), "last_updated": ts});
    Ok(tracking_ok(
        "Dashboard data retrieved",
        json!({
            "metrics": [
                metric(format!("total_operations_{hours}h"), json!(t.total), "count", Health::Normal),
                metric(format!("success_rate_{hours}h"), json!(rate), "percentage", rate_status),
                metric("avg_duration_ms".into(), json!(avg), "milliseconds", avg_status),
                metric(format!("failed_operations_{hours}h"), json!(failed), "count", Health::Normal),
            ],
            "summary": {
                "system_health": worst([rate_status, avg_status]).as_str(),
                "total_operations": t.total,
                "success_rate": rate,
                "failed_operations": failed,
            }
        }),
    ))
}

/// Finished operations, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/tracking/history",
    operation_id = "tracking_history",
    tag = "tracking",
    params(
        TenantHeader,
        ("days" = Option<i64>, Query, minimum = 1, maximum = 365, description = "The window, in days (default 7)"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "Page size (default 100)"),
        ("offset" = Option<i64>, Query, minimum = 0, maximum = 1000000, description = "Operations skipped (default 0)"),
        ("status" = Option<OpStatusDoc>, Query, description = "Only operations ending so"),
        ("type" = Option<String>, Query, description = "Only this script_type (case-insensitive)"),
    ),
    responses(
        (status = 200, body = TrackingOk<History>, description = "A page of operations"),
        Refused, Throttled,
    ),
    security(("bearerAuth" = []))
)]
pub async fn history(
    State(state): State<ApiState>,
    Member(p): Member,
    params: Params,
) -> ApiResult<Json<Value>> {
    limit(&state, "history", p.subject.id())?;
    let days = params.int("days", 7, 1, 365)?;
    let lim = params.int("limit", 100, 1, 1000)?;
    let offset = params.int("offset", 0, 0, 1_000_000)?;
    let status = match params.str("status") {
        None => None,
        Some(s) => Some(OpStatus::parse(s).ok_or_else(|| {
            ApiError::BadRequest("status must be COMPLETED, FAILED or TIMEOUT".into())
        })?),
    };
    let filter = HistoryFilter {
        script_type: params.str("type").map(|t| t.trim().to_ascii_uppercase()),
        status,
    };
    let since = Utc::now() - chrono::Duration::days(days);
    let (rows, total) = state
        .ch
        .run(|ch| operations::history(ch, p.tenant_id, since, &filter, lim as u64, offset as u64))
        .await?;
    let ops: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "operation_id": r.operation_id,
                "script_name": r.script_name,
                "script_type": r.script_type,
                "execution_status": r.status.as_str(),
                "execution_timestamp": chrono::DateTime::from_timestamp_millis(r.started_ms as i64)
                    .unwrap_or_default()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "execution_duration_ms": r.duration_ms,
                "db_session_user": (!r.db_session_user.is_empty()).then_some(&r.db_session_user),
                "affected_objects": r.affected_objects,
                "error_message": (!r.error_message.is_empty()).then_some(&r.error_message),
                "statement": (!r.statement.is_empty()).then_some(&r.statement),
            })
        })
        .collect();
    let returned = ops.len() as u64;
    Ok(tracking_ok(
        "Operation history retrieved",
        json!({
            "operations": ops,
            "pagination": {
                "total_records": total,
                "returned_records": returned,
                "has_more": offset as u64 + returned < total,
            }
        }),
    ))
}

/// Times a store call; `None` when it failed or took over 2 s.
async fn timed<F, T, E>(f: F) -> Option<f64>
where
    F: std::future::Future<Output = Result<T, E>>,
{
    let t = Instant::now();
    match tokio::time::timeout(Duration::from_secs(2), f).await {
        Ok(Ok(_)) => Some(t.elapsed().as_secs_f64() * 1000.0),
        _ => None,
    }
}

/// Round trips to the three stores, in milliseconds.
async fn probe(state: &ApiState) -> [(&'static str, Option<f64>); 3] {
    let redis = timed(async {
        let mut c = state.redis.get().await.map_err(|e| e.to_string())?;
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map_err(|e| e.to_string())
    });
    let pg = timed(state.pg.run(|pg| pg.ping()));
    let ch = timed(state.ch.run(|ch| ch.ping()));
    let (r, p, c) = tokio::join!(redis, pg, ch);
    [("Redis", r), ("PostgreSQL", p), ("ClickHouse", c)]
}

/// Unprocessed entries, and the age in seconds of the oldest one.
async fn backlog(state: &ApiState) -> Option<(u64, f64)> {
    let mut conn = state.redis.get().await.ok()?;
    let n = state.layout.backlog(&mut conn).await.ok()?;
    let mut pipe = redis::pipe();
    for key in state.layout.all_stream_keys() {
        pipe.cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1);
    }
    let firsts: Vec<redis::streams::StreamRangeReply> = pipe.query_async(&mut conn).await.ok()?;
    let now_ms = Utc::now().timestamp_millis();
    let oldest = firsts
        .iter()
        .filter_map(|v| v.ids.first())
        .filter_map(|s| entry_millis(&s.id))
        .min()
        .map_or(0.0, |ms| (now_ms - ms).max(0) as f64 / 1000.0);
    Some((n, oldest))
}

/// The system's health checks and score.
#[utoipa::path(
    get,
    path = "/api/v1/tracking/health",
    operation_id = "tracking_health",
    tag = "tracking",
    params(TenantHeader),
    responses(
        (status = 200, body = TrackingOk<SystemHealth>, description = "Health checks"),
        Refused, Throttled,
    ),
    security(("bearerAuth" = []))
)]
pub async fn health(State(state): State<ApiState>, Member(p): Member) -> ApiResult<Json<Value>> {
    limit(&state, "health", p.subject.id())?;
    let ts = now();
    let check = |cat: &str, metric: &str, status: Health, details: String| {
        (
            status,
            json!({"health_category": cat, "health_metric": metric, "current_status": status.as_str(), "details": details, "last_checked": ts}),
        )
    };
    let mut checks = Vec::new();
    let probes = probe(&state).await;
    let reachable: Vec<f64> = probes.iter().filter_map(|(_, ms)| *ms).collect();
    if !reachable.is_empty() {
        let avg = reachable.iter().sum::<f64>() / reachable.len() as f64;
        checks.push(check(
            "PERFORMANCE",
            "Average Response Time",
            Health::lower_is_better(avg, 10.0, 50.0, 200.0),
            format!("{avg:.1}ms average store round trip"),
        ));
    }
    let since = Utc::now() - chrono::Duration::hours(24);
    let totals = state
        .ch
        .run(|ch| operations::totals(ch, p.tenant_id, since))
        .await;
    match totals {
        Ok(t) if t.total > 0 => {
            let rate = round(
                (t.total - t.failed - t.timed_out) as f64 * 100.0 / t.total as f64,
                1,
            );
            checks.push(check(
                "RELIABILITY",
                "Success Rate",
                Health::success_rate(rate),
                format!("{rate}% success rate over 24 hours"),
            ));
        }
        Ok(_) => checks.push(check(
            "RELIABILITY",
            "Success Rate",
            Health::Normal,
            "no operations in the last 24 hours".into(),
        )),
        Err(_) => {}
    }
    match backlog(&state).await {
        Some((n, lag)) => {
            checks.push(check(
                "CAPACITY",
                "Stream Backlog",
                Health::lower_is_better(n as f64, 1e3, 1e5, 1e6),
                format!("{n} entries waiting for workers"),
            ));
            checks.push(check(
                "CAPACITY",
                "Worker Lag",
                Health::lower_is_better(lag, 2.0, 10.0, 60.0),
                format!("oldest waiting entry is {lag:.1}s old"),
            ));
        }
        None => checks.push(check(
            "CAPACITY",
            "Stream Backlog",
            Health::Critical,
            "stream backlog could not be read".into(),
        )),
    }
    for (name, ms) in probes {
        checks.push(match ms {
            Some(ms) => check(
                "AVAILABILITY",
                name,
                Health::Excellent,
                format!("reachable, {ms:.1}ms round trip"),
            ),
            None => check("AVAILABILITY", name, Health::Critical, "unreachable".into()),
        });
    }
    let overall = worst(checks.iter().map(|(h, _)| *h));
    let score = round(
        checks.iter().map(|(h, _)| h.score()).sum::<f64>() / checks.len().max(1) as f64,
        1,
    );
    Ok(tracking_ok(
        "System health retrieved",
        json!({
            "overall_status": overall.as_str(),
            "health_checks": checks.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
            "system_score": score,
        }),
    ))
}

/// The peer address, when the server recorded one.
pub struct ClientAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(a)| *a),
        ))
    }
}

/// The API's own status; needs no credentials (limited per client address).
#[utoipa::path(
    get,
    path = "/api/v1/tracking/status",
    operation_id = "tracking_status",
    tag = "tracking",
    responses(
        (status = 200, body = ApiStatus, description = "The API's status"),
        Throttled,
    ),
    security(())
)]
pub async fn status(
    State(state): State<ApiState>,
    ClientAddr(peer): ClientAddr,
) -> ApiResult<Json<Value>> {
    let ip = peer.map_or([0u8; 16], |a| match a.ip() {
        std::net::IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(v) => v.octets(),
    });
    limit(&state, "status", Uuid::from_bytes(ip))?;
    let up = probe(&state).await.iter().all(|(_, ms)| ms.is_some());
    Ok(Json(json!({
        "service": "Database Tracking API",
        "status": if up { "operational" } else { "degraded" },
        "version": "1.0.0",
        "build": env!("CARGO_PKG_VERSION"),
        "features": [
            "automatic_ddl_tracking",
            "manual_operation_tracking",
            "enterprise_dashboard",
            "real_time_monitoring",
            "tenant_isolation"
        ],
        "timestamp": now(),
    })))
}

#[derive(Deserialize)]
pub struct AttachBody {
    name: Option<String>,
    connection_url: Option<String>,
}

fn require_admin(p: &sluice_auth::principal::Principal) -> ApiResult<()> {
    use sluice_auth::principal::Role;
    if matches!(p.role, Role::Owner | Role::Admin | Role::Dba) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "role {} may not manage tracked databases",
            p.role.as_str()
        )))
    }
}

fn db_json(d: &tracked_databases::TrackedDatabase) -> Value {
    json!({"id": d.id, "name": d.name, "status": "ATTACHED", "created_at": d.created_at})
}

/// Attach a database for automatic DDL tracking.
#[utoipa::path(
    post,
    path = "/api/v1/tracking/databases",
    operation_id = "tracking_attach",
    tag = "tracking",
    params(TenantHeader),
    request_body(content = AttachRequest, content_type = "application/json"),
    responses(
        (status = 201, body = TrackingOk<TrackedDatabase>, description = "Attached"),
        Refused,
    ),
    security(("bearerAuth" = []))
)]
pub async fn attach(
    State(state): State<ApiState>,
    Member(p): Member,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_admin(&p)?;
    let b: AttachBody = sluice_storage::limits::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    let name = b
        .name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest("name is required".into()))?;
    if name.contains('\0') {
        return Err(ApiError::BadRequest(
            "name may not hold a NUL character".into(),
        ));
    }
    let url = b
        .connection_url
        .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
        .ok_or_else(|| ApiError::BadRequest("connection_url must be a postgres:// URL".into()))?;
    let db = state
        .pg
        .run(|pg| tracked::attach(pg, &state.secrets, p.tenant_id, &name, &url))
        .await?;
    tracing::info!(db = %db.id, tenant = %p.tenant_id, "database attached for DDL tracking");
    Ok((
        StatusCode::CREATED,
        tracking_ok("Database attached for DDL tracking", db_json(&db)),
    ))
}

/// The tenant's tracked databases.
#[utoipa::path(
    get,
    path = "/api/v1/tracking/databases",
    operation_id = "tracking_list_databases",
    tag = "tracking",
    params(TenantHeader),
    responses(
        (status = 200, body = TrackingOk<TrackedDatabases>, description = "Tracked databases"),
        Refused,
    ),
    security(("bearerAuth" = []))
)]
pub async fn list_databases(
    State(state): State<ApiState>,
    Member(p): Member,
) -> ApiResult<Json<Value>> {
    let dbs = state
        .pg
        .run(|pg| tracked_databases::list(pg, Some(p.tenant_id)))
        .await?;
    Ok(tracking_ok(
        "Tracked databases retrieved",
        json!({"databases": dbs.iter().map(db_json).collect::<Vec<_>>()}),
    ))
}

/// Detach a tracked database: its trigger and queue are removed.
#[utoipa::path(
    delete,
    path = "/api/v1/tracking/databases/{id}",
    operation_id = "tracking_detach",
    tag = "tracking",
    params(TenantHeader, ("id" = String, Path, description = "The tracked database's id (a UUID)")),
    responses(
        (status = 200, body = TrackingOk<Detached>, description = "Detached"),
        (status = 404, body = crate::openapi::tracking::TrackingError, description = "No tracked database of the tenant has this id"),
        Refused,
    ),
    security(("bearerAuth" = []))
)]
pub async fn detach(
    State(state): State<ApiState>,
    Member(p): Member,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_admin(&p)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found("tracked database"))?;
    let detached = state
        .pg
        .run(|pg| {
            state
                .ch
                .run(|ch| tracked::detach(pg, ch, &state.secrets, p.tenant_id, id))
        })
        .await?;
    if !detached {
        return Err(ApiError::not_found("tracked database"));
    }
    Ok(tracking_ok(
        "Database detached; its trigger and queue were removed",
        json!({"id": id, "status": "DETACHED"}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_match_the_documented_ones() {
        assert_eq!(Health::success_rate(99.8), Health::Excellent);
        assert_eq!(Health::success_rate(98.5), Health::Good);
        assert_eq!(Health::success_rate(96.0), Health::Warning);
        assert_eq!(Health::success_rate(50.0), Health::Critical);
        assert_eq!(Health::duration_ms(23.5), Health::Good);
        assert_eq!(Health::duration_ms(5.0), Health::Excellent);
        assert_eq!(
            worst([Health::Normal, Health::Good, Health::Excellent]),
            Health::Good
        );
    }
}
