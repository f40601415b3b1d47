//! The Health Monitor's monitoring (`/api/monitoring/services`, `metrics`,
//! `uptime`) and `/api/analytics/performance`: Sluice's own health, read
//! from this process's [`Monitor`] (latest probe round, host reading,
//! requests not yet flushed) and the history in ClickHouse.
//!
//! Figures are the deployment's, not a tenant's: every tenant sees the
//! same. Answers are cached for a few seconds (services 5 s, metrics 5 s,
//! uptime history 10 s, performance 10 s), well within the conventions'
//! limits.
//!
//! `performance_score` (0–10, higher is better) is
//! `10 × A × (1 − E) × L`, where `A` is `availability_percent / 100`,
//! `E` is `error_rate_percent / 100`, and `L` is the latency factor:
//! 1 while `avg_response_time` ≤ 200 ms, else `200 / avg_response_time`.
//! It is rounded to one decimal.

use std::time::Duration;

use axum::extract::State;
use axum::{Extension, Json};
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use sluice_storage::ch::monitoring::{self as chm, OVERALL};
use sluice_storage::monitor::{probe, Monitor};

use super::Params;
use crate::auth::Caller;
use crate::error::{ok, ApiError, ApiResult};
use crate::openapi::health_monitor as hm;
use crate::ApiState;

fn iso(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        100.0
    } else {
        (part as f64 * 100.0 / whole as f64).clamp(0.0, 100.0)
    }
}

/// The documented `performance_score`.
pub fn performance_score(availability: f64, error_rate: f64, avg_ms: f64) -> f64 {
    let a = (availability / 100.0).clamp(0.0, 1.0);
    let e = (error_rate / 100.0).clamp(0.0, 1.0);
    let l = if avg_ms <= 200.0 { 1.0 } else { 200.0 / avg_ms };
    ((10.0 * a * (1.0 - e) * l).clamp(0.0, 10.0) * 10.0).round() / 10.0
}

/// A timeframe's length in seconds.
pub fn timeframe_secs(p: Option<&str>) -> Result<i64, ApiError> {
    match p.unwrap_or("1h") {
        "1h" => Ok(3600),
        "6h" => Ok(6 * 3600),
        "24h" => Ok(24 * 3600),
        "7d" => Ok(7 * 86400),
        "30d" => Ok(30 * 86400),
        _ => Err(ApiError::BadRequest(
            "timeframe must be one of 1h, 6h, 24h, 7d, 30d".into(),
        )),
    }
}

/// `GET /api/monitoring/services`.
#[utoipa::path(
    get,
    path = "/api/monitoring/services",
    operation_id = "monitoring_services",
    tag = "health-monitor",
    responses(
        (status = 200, body = hm::Data<hm::Services>, description = "Each store and tier, as last probed"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
pub async fn services(
    State(state): State<ApiState>,
    Extension(mon): Extension<Monitor>,
    caller: Caller,
) -> ApiResult<Json<Value>> {
    caller.require("read")?;
    let v = mon
        .cached("services", Duration::from_secs(5), || async {
            // the prober's first round comes at start-up; a process that
            // runs none says so rather than guess
            let round = match mon.latest_round(Duration::from_secs(10)).await {
                Some(r) => r,
                None => std::sync::Arc::new(probe::Round::unknown()),
            };
            let since = Utc::now().timestamp() - 86400;
            let deployment = mon.deployment().to_string();
            let shares = state
                .ch
                .run(|ch| chm::service_shares(ch, &deployment, since))
                .await;
            let local = mon.local_shares();
            let services: Vec<Value> = round
                .services
                .iter()
                .map(|s| {
                    let (probes, healthy) = match &shares {
                        Ok(rows) => rows
                            .iter()
                            .find(|r| r.service == s.name)
                            .map(|r| (r.probes, r.healthy))
                            .unwrap_or((0, 0)),
                        Err(_) => local.get(s.name).copied().unwrap_or((0, 0)),
                    };
                    let uptime = if probes == 0 {
                        if s.status == "healthy" {
                            100.0
                        } else {
                            0.0
                        }
                    } else {
                        pct(healthy, probes)
                    };
                    json!({
                        "name": s.name,
                        "status": s.status,
                        "uptime_percent": uptime,
                        "response_time_ms": s.response_ms,
                        "last_checked": iso(round.at.timestamp_millis()),
                        "details": s.details,
                    })
                })
                .collect();
            Ok::<_, ApiError>(json!({"services": services, "overall_health": round.overall}))
        })
        .await?;
    Ok(ok(v))
}

/// `GET /api/monitoring/metrics?timeframe=`.
#[utoipa::path(
    get,
    path = "/api/monitoring/metrics",
    operation_id = "monitoring_metrics",
    tag = "health-monitor",
    params(("timeframe" = Option<hm::Timeframe>, Query, description = "Default 1h")),
    responses(
        (status = 200, body = hm::Data<hm::HostMetrics>, description = "Host readings and request rates"),
        (status = 400, body = hm::HmError, description = "A parameter or the body is invalid"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
pub async fn metrics(
    State(state): State<ApiState>,
    Extension(mon): Extension<Monitor>,
    caller: Caller,
    params: Params,
) -> ApiResult<Json<Value>> {
    caller.require("read")?;
    let span = timeframe_secs(params.str("timeframe"))?;
    let key = format!("metrics:{span}");
    let v = mon
        .cached(&key, Duration::from_secs(5), || async {
            let now = Utc::now().timestamp();
            let since = now - span;
            let deployment = mon.deployment().to_string();
            let fresh = now - mon.heartbeat_ttl().as_secs() as i64;
            let (net, totals, elsewhere) = tokio::try_join!(
                state.ch.run(|ch| chm::net_totals(ch, &deployment, since)),
                state
                    .ch
                    .run(|ch| chm::request_totals(ch, &deployment, since)),
                state.ch.run(|ch| chm::connections_elsewhere(
                    ch,
                    &deployment,
                    mon.instance(),
                    fresh
                )),
            )?;
            let host = mon.host_now();
            let requests = totals.requests + mon.unflushed().requests;
            Ok::<_, ApiError>(json!({
                "cpu_usage_percent": host.cpu_percent,
                "memory_usage_percent": host.memory_percent,
                "disk_usage_percent": host.disk_percent,
                "network_io": {"bytes_in": net.bytes_in, "bytes_out": net.bytes_out},
                "active_connections": mon.open_connections() + elsewhere,
                "requests_per_minute": requests as f64 / (span as f64 / 60.0),
            }))
        })
        .await?;
    Ok(ok(v))
}

/// Uptime history from the stored probe rounds (cached 10 s).
async fn history(state: &ApiState, mon: &Monitor) -> Result<Value, ApiError> {
    mon.cached("history", Duration::from_secs(10), || async {
        let now = Utc::now().timestamp();
        let deployment = mon.deployment().to_string();
        let share = |secs: i64| {
            let deployment = deployment.clone();
            async move {
                let rows = state
                    .ch
                    .run(|ch| chm::service_shares(ch, &deployment, now - secs))
                    .await?;
                let (probes, up) = rows
                    .iter()
                    .find(|r| r.service == OVERALL)
                    .map(|r| (r.probes, r.healthy))
                    .unwrap_or((0, 0));
                Ok::<_, ApiError>(pct(up, probes))
            }
        };
        let (d1, d7, d30, down) =
            tokio::try_join!(share(86400), share(7 * 86400), share(30 * 86400), async {
                Ok::<_, ApiError>(
                    state
                        .ch
                        .run(|ch| chm::down_minutes(ch, &deployment, now - 30 * 86400))
                        .await?,
                )
            },)?;
        let (incidents, last) = probe::downtime_periods(&down);
        Ok(json!({
            "uptime_percent_24h": d1,
            "uptime_percent_7d": d7,
            "uptime_percent_30d": d30,
            "incidents_count": incidents,
            "last_downtime": last.map(|ms| iso(ms as i64)),
        }))
    })
    .await
}

/// `GET /api/monitoring/uptime`.
#[utoipa::path(
    get,
    path = "/api/monitoring/uptime",
    operation_id = "monitoring_uptime",
    tag = "health-monitor",
    responses(
        (status = 200, body = hm::Data<hm::Uptime>, description = "Uptime from the stored probe history"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
pub async fn uptime(
    State(state): State<ApiState>,
    Extension(mon): Extension<Monitor>,
    caller: Caller,
) -> ApiResult<Json<Value>> {
    caller.require("read")?;
    let mut v = history(&state, &mon).await?;
    let (started, _) = sluice_storage::monitor::process_started();
    v["current_uptime_hours"] = json!(started.elapsed().as_secs_f64() / 3600.0);
    Ok(ok(v))
}

/// `GET /api/analytics/performance`: the last hour of requests Sluice
/// served, every tier.
#[utoipa::path(
    get,
    path = "/api/analytics/performance",
    operation_id = "monitoring_performance",
    tag = "health-monitor",
    responses(
        (status = 200, body = hm::Data<hm::Performance>, description = "The last hour of requests Sluice served"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
pub async fn performance(
    State(state): State<ApiState>,
    Extension(mon): Extension<Monitor>,
    caller: Caller,
) -> ApiResult<Json<Value>> {
    caller.require("read")?;
    let hist = history(&state, &mon).await?;
    let v = mon
        .cached("performance", Duration::from_secs(10), || async {
            let deployment = mon.deployment().to_string();
            let since = Utc::now().timestamp() - 3600;
            let t = state
                .ch
                .run(|ch| chm::request_totals(ch, &deployment, since))
                .await?;
            let u = mon.unflushed();
            let requests = t.requests + u.requests;
            let errors = t.errors_5xx + u.errors_5xx;
            let latency_us = t.latency_us + u.latency_us;
            let avg_ms = if requests == 0 {
                0.0
            } else {
                latency_us as f64 / requests as f64 / 1000.0
            };
            let error_rate = if requests == 0 {
                0.0
            } else {
                pct(errors, requests)
            };
            let availability = hist["uptime_percent_30d"].as_f64().unwrap_or(100.0);
            Ok::<_, ApiError>(json!({
                "avg_response_time": avg_ms,
                "error_rate_percent": error_rate,
                "throughput_rpm": requests as f64 / 60.0,
                "availability_percent": availability,
                "performance_score": performance_score(availability, error_rate, avg_ms),
            }))
        })
        .await?;
    Ok(ok(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_formula() {
        assert_eq!(performance_score(100.0, 0.0, 50.0), 10.0);
        assert_eq!(performance_score(100.0, 0.0, 400.0), 5.0);
        assert_eq!(performance_score(99.95, 0.8, 245.0), 8.1);
        assert_eq!(performance_score(0.0, 0.0, 1.0), 0.0);
        assert_eq!(performance_score(100.0, 100.0, 1.0), 0.0);
    }

    #[test]
    fn timeframes() {
        assert_eq!(timeframe_secs(None).unwrap(), 3600);
        assert_eq!(timeframe_secs(Some("30d")).unwrap(), 2_592_000);
        assert!(timeframe_secs(Some("2h")).is_err());
    }
}
