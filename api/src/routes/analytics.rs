//! `GET /api/stats` and `GET /api/analytics/trends`: occurrence counts from
//! the ClickHouse rollups, group counts from Postgres, each answer cached
//! per tenant for the contract's minute.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use serde_json::{json, Value};
use sluice_storage::ch::events::{self, Bucket};
use sluice_storage::pg::{error_extra, error_groups};

use super::Params;
use crate::auth::Caller;
use crate::error::{ok, ApiError, ApiResult};
use crate::openapi::health_monitor as hm;
use crate::ApiState;

fn cached(v: Value) -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "private, max-age=60")], ok(v))
}

/// `2h 15m`, `3d 4h`, `12m`.
pub fn human_duration(secs: f64) -> String {
    let m = (secs.max(0.0) / 60.0).round() as i64;
    let (d, h, m) = (m / 1440, (m % 1440) / 60, m % 60);
    match (d, h) {
        (0, 0) => format!("{m}m"),
        (0, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn day_start(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.from_utc_datetime(&t.date_naive().and_hms_opt(0, 0, 0).unwrap_or_default())
}

fn month_start(t: DateTime<Utc>) -> DateTime<Utc> {
    let d = NaiveDate::from_ymd_opt(t.year(), t.month(), 1).unwrap_or_default();
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

/// `GET /api/stats`. Every count is in error groups (the objects the API
/// lists, resolves and deletes): `total_errors` all groups, `errors_today`
/// / `_this_week` / `_this_month` the groups with an occurrence since the
/// start of today (UTC), of the 7 days ending today and of the 30 days
/// ending today. The windows nest, so the counts do, and
/// `resolution_rate` is `resolved_errors / total_errors` in percent.
/// `error_rate_24h` is a rate, not a count: occurrences per hour over the
/// last 24 hours.
#[utoipa::path(
    get,
    path = "/api/stats",
    operation_id = "analytics_stats",
    tag = "health-monitor",
    responses(
        (status = 200, body = hm::Data<hm::Stats>, description = "Counts of error groups (see README: one unit)"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
pub async fn stats(State(state): State<ApiState>, caller: Caller) -> ApiResult<impl IntoResponse> {
    caller.require("read")?;
    let tenant = caller.tenant();
    let key = (tenant, "stats".to_string());
    if let Some(v) = state.analytics_cache.get(&key).await {
        return Ok(cached(v));
    }
    let now = Utc::now();
    let (today, week, month) = stat_windows(now);
    let (totals, last24) = tokio::try_join!(
        state
            .pg
            .run(|pg| error_extra::stats(pg, tenant, today, week, month)),
        state
            .ch
            .run(|ch| events::count_since(ch, tenant, now - Duration::hours(24))),
    )?;
    let resolution_rate = if totals.total > 0 {
        round(totals.resolved as f64 * 100.0 / totals.total as f64, 1)
    } else {
        0.0
    };
    let v = json!({
        "total_errors": totals.total,
        "resolved_errors": totals.resolved,
        "errors_today": totals.today,
        "errors_this_week": totals.week,
        "errors_this_month": totals.month,
        "error_rate_24h": round(last24 as f64 / 24.0, 2),
        "resolution_rate": resolution_rate,
        "avg_resolution_time": human_duration(totals.avg_resolution_secs.unwrap_or(0.0)),
    });
    state.analytics_cache.insert(key, v.clone()).await;
    Ok(cached(v))
}

/// The starts of the stats windows, nested: today (UTC), the 7 days ending
/// today, the 30 days ending today.
pub fn stat_windows(now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>, DateTime<Utc>) {
    let today = day_start(now);
    (today, today - Duration::days(6), today - Duration::days(29))
}

/// The start of the bucket holding `t`.
pub fn bucket_start(b: Bucket, t: DateTime<Utc>) -> DateTime<Utc> {
    match b {
        Bucket::Hour => t - Duration::seconds(t.timestamp().rem_euclid(3600)),
        Bucket::Day => day_start(t),
        Bucket::Week => {
            day_start(t) - Duration::days(i64::from(t.weekday().num_days_from_monday()))
        }
        Bucket::Month => month_start(t),
    }
}

fn next_bucket(b: Bucket, t: DateTime<Utc>) -> DateTime<Utc> {
    match b {
        Bucket::Hour => t + Duration::hours(1),
        Bucket::Day => t + Duration::days(1),
        Bucket::Week => t + Duration::weeks(1),
        Bucket::Month => month_start(t + Duration::days(32)),
    }
}

#[utoipa::path(
    get,
    path = "/api/analytics/trends",
    operation_id = "analytics_trends",
    tag = "health-monitor",
    params(("period" = Option<hm::Period>, Query, description = "Default week"), ("group_by" = Option<hm::GroupBy>, Query, description = "Default: hour for day, day for week and month, month for year")),
    responses(
        (status = 200, body = hm::Data<hm::Trends>, description = "Counts per bucket"),
        (status = 400, body = hm::HmError, description = "A parameter or the body is invalid"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
pub async fn trends(
    State(state): State<ApiState>,
    caller: Caller,
    params: Params,
) -> ApiResult<impl IntoResponse> {
    caller.require("read")?;
    let period = params.str("period").unwrap_or("week").to_ascii_lowercase();
    let (span, default_group) = match period.as_str() {
        "day" | "time" => (Duration::hours(24), Bucket::Hour),
        "week" => (Duration::days(7), Bucket::Day),
        "month" => (Duration::days(30), Bucket::Day),
        "year" => (Duration::days(365), Bucket::Month),
        _ => {
            return Err(ApiError::BadRequest(
                "period must be one of day, week, month, year".into(),
            ))
        }
    };
    let group = match params
        .str("group_by")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None => default_group,
        Some("hour") => Bucket::Hour,
        Some("day") => Bucket::Day,
        Some("week") => Bucket::Week,
        Some("month") => Bucket::Month,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "group_by must be one of hour, day, week, month".into(),
            ))
        }
    };
    if group == Bucket::Hour && span > Duration::days(31) {
        return Err(ApiError::BadRequest(
            "group_by=hour is available for periods up to a month".into(),
        ));
    }
    let tenant = caller.tenant();
    let key = (tenant, format!("trends:{period}:{group:?}"));
    if let Some(v) = state.analytics_cache.get(&key).await {
        return Ok(cached(v));
    }
    let now = Utc::now();
    let start = bucket_start(group, now - span);
    let (points, resolved) = tokio::try_join!(
        state.ch.run(|ch| events::trend(ch, tenant, start, group)),
        state
            .pg
            .run(|pg| error_groups::resolved_since(pg, tenant, start)),
    )?;
    let mut data = Vec::new();
    let mut t = start;
    while t <= now {
        let next = next_bucket(group, t);
        let p = points.iter().find(|p| i64::from(p.start) == t.timestamp());
        let resolved_count = resolved.iter().filter(|r| **r >= t && **r < next).count();
        data.push(json!({
            "timestamp": t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "error_count": p.map_or(0, |p| p.events),
            "resolved_count": resolved_count,
            "critical_count": p.map_or(0, |p| p.critical),
        }));
        t = next;
    }
    let v = json!({"period": period, "group_by": format!("{group:?}").to_lowercase(), "data_points": data});
    state.analytics_cache.insert(key, v.clone()).await;
    Ok(cached(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_the_contract() {
        assert_eq!(human_duration(8100.0), "2h 15m");
        assert_eq!(human_duration(600.0), "10m");
        assert_eq!(human_duration(2.0 * 86400.0 + 3.0 * 3600.0), "2d 3h");
    }

    #[test]
    fn stat_windows_nest() {
        // 2025-03-02 is a Sunday: a calendar week would start in February.
        let now = Utc.with_ymd_and_hms(2025, 3, 2, 10, 0, 0).unwrap();
        let (d, w, m) = stat_windows(now);
        assert_eq!(d, Utc.with_ymd_and_hms(2025, 3, 2, 0, 0, 0).unwrap());
        assert_eq!(w, Utc.with_ymd_and_hms(2025, 2, 24, 0, 0, 0).unwrap());
        assert_eq!(m, Utc.with_ymd_and_hms(2025, 2, 1, 0, 0, 0).unwrap()); // 30 days, today included
        assert!(m <= w && w <= d && d <= now);
    }

    #[test]
    fn buckets_align_in_utc() {
        let t = Utc.with_ymd_and_hms(2025, 1, 15, 10, 30, 0).unwrap(); // a Wednesday
        assert_eq!(
            bucket_start(Bucket::Hour, t),
            Utc.with_ymd_and_hms(2025, 1, 15, 10, 0, 0).unwrap()
        );
        assert_eq!(
            bucket_start(Bucket::Week, t),
            Utc.with_ymd_and_hms(2025, 1, 13, 0, 0, 0).unwrap()
        );
        assert_eq!(
            bucket_start(Bucket::Month, t),
            Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            next_bucket(
                Bucket::Month,
                Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
            ),
            Utc.with_ymd_and_hms(2025, 2, 1, 0, 0, 0).unwrap()
        );
    }
}
