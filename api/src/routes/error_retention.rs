//! `GET`/`PUT /api/settings/retention`: how many days of error occurrences
//! the caller's tenant keeps (`{"events_days": N}`, 1 to 3650, 90 until
//! set). The sweep that applies it runs in the workers
//! (`sluice_workers::error_retention`).

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use sluice_storage::pg::error_extra::{self, EVENTS_DAYS_RANGE};

use crate::auth::Caller;
use crate::error::{ok, ApiError, ApiResult};
use crate::openapi::health_monitor as hm;
use crate::ApiState;

/// `events_days` from a `PUT` body: `Ok(None)` when absent (kept, as `PUT`
/// is a partial update), `400` for anything but an integer in range.
pub fn parse_events_days(body: &[u8]) -> ApiResult<Option<i32>> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    let Value::Object(fields) = v else {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        ));
    };
    match fields.get("events_days") {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(d) if EVENTS_DAYS_RANGE.contains(&d) => Ok(Some(d as i32)),
            _ => Err(ApiError::BadRequest(
                "events_days must be an integer from 1 to 3650".into(),
            )),
        },
        Some(_) => Err(ApiError::BadRequest(
            "events_days must be an integer from 1 to 3650".into(),
        )),
    }
}

#[utoipa::path(
    get,
    path = "/api/settings/retention",
    operation_id = "retention_get",
    tag = "health-monitor",
    responses(
        (status = 200, body = hm::Data<hm::Retention>, description = "Days of occurrences the tenant keeps"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
pub async fn get(State(state): State<ApiState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require("read")?;
    let days = state
        .pg
        .run(|pg| error_extra::events_days(pg, caller.tenant()))
        .await?;
    Ok(ok(json!({ "events_days": days })))
}

#[utoipa::path(
    put,
    path = "/api/settings/retention",
    operation_id = "retention_put",
    tag = "health-monitor",
    request_body(content = hm::RetentionRequest, content_type = "application/json"),
    responses(
        (status = 200, body = hm::Data<hm::Retention>, description = "The setting now in force"),
        (status = 400, body = hm::HmError, description = "A parameter or the body is invalid"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
pub async fn put(
    State(state): State<ApiState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    // Roles before the body: a forbidden request gets 403 whatever it holds.
    caller.require("admin")?;
    let days = match parse_events_days(&body)? {
        Some(d) => {
            state
                .pg
                .run(|pg| error_extra::set_events_days(pg, caller.tenant(), d))
                .await?
        }
        None => {
            state
                .pg
                .run(|pg| error_extra::events_days(pg, caller.tenant()))
                .await?
        }
    };
    Ok(ok(json!({ "events_days": days })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_integers_in_range() {
        assert_eq!(
            parse_events_days(br#"{"events_days": 30}"#).ok(),
            Some(Some(30))
        );
        assert_eq!(
            parse_events_days(br#"{"events_days": 3650}"#).ok(),
            Some(Some(3650))
        );
        assert_eq!(
            parse_events_days(br#"{"events_days": 1}"#).ok(),
            Some(Some(1))
        );
        assert_eq!(parse_events_days(b"{}").ok(), Some(None));
        for bad in [
            r#"{"events_days": 0}"#,
            r#"{"events_days": 3651}"#,
            r#"{"events_days": -5}"#,
            r#"{"events_days": "30"}"#,
            r#"{"events_days": null}"#,
            r#"{"events_days": 7.5}"#,
            r#"[30]"#,
            r#"{"events_days": "#,
        ] {
            assert!(parse_events_days(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
