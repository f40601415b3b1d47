//! Alert rules and incidents (Health Monitor contract section 5, and the
//! conventions' "Alert rules" and "Incidents"): CRUD scoped to the caller's
//! tenant, string ids, partial `PUT`s (present fields replace, absent ones
//! are kept, and the result is validated as a whole), `400` for any
//! invalid field, `404` for an unknown or malformed id. The engine that
//! fires rules is `sluice_jobs::alerts`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Map, Value};
use sluice_jobs::alerts::{parse_window, ERROR_COUNT, NEW_ERROR};
use sluice_storage::pg::alerts::{self, AlertRule, Incident, IncidentFields, RuleFields};

use super::Params;
use crate::auth::Caller;
use crate::error::{ok, ApiError, ApiResult};
use crate::openapi::health_monitor as hm;
use crate::ApiState;

/// Severities of rules and incidents.
const SEVERITIES: &[&str] = &["critical", "high", "medium", "low", "warning"];
/// Incident statuses.
const STATUSES: &[&str] = &["investigating", "identified", "monitoring", "resolved"];
/// Levels a rule may filter on.
const LEVELS: &[&str] = &["error", "warning", "info", "debug"];
/// Longest name, title, filter or assignee accepted, in characters.
const MAX_TEXT: usize = 500;
/// Longest incident description, in characters.
const MAX_DESCRIPTION: usize = 10_000;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

/// The request body: a JSON object, else `400`.
fn object(body: &[u8]) -> ApiResult<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(bad("the body must be a JSON object")),
        Err(e) => Err(bad(format!("malformed JSON body: {e}"))),
    }
}

fn parse_id(id: &str, what: &str) -> ApiResult<i64> {
    id.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::not_found(what))
}

/// A string field of at most `max` characters without NUL, `null` allowed
/// (as `None`).
fn opt_text(v: &Value, field: &str, max: usize) -> ApiResult<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.chars().count() > max => {
            Err(bad(format!("{field} is longer than {max} characters")))
        }
        Value::String(s) if s.contains('\0') => Err(bad(format!("{field} holds a NUL character"))),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(bad(format!("{field} must be a string or null"))),
    }
}

/// A required non-empty string.
fn req_text(v: &Value, field: &str, max: usize) -> ApiResult<String> {
    match opt_text(v, field, max)? {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(bad(format!(
            "{field} is required and must be a non-empty string"
        ))),
    }
}

fn choice(v: &Value, field: &str, allowed: &[&str]) -> ApiResult<String> {
    match v.as_str() {
        Some(s) if allowed.contains(&s) => Ok(s.to_string()),
        _ => Err(bad(format!(
            "{field} must be one of {}",
            allowed.join(", ")
        ))),
    }
}

/// A JSON number: a whole one as an integer.
fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

fn rule_json(r: &AlertRule) -> Value {
    json!({
        "id": r.id.to_string(),
        "name": r.name,
        "condition": r.condition,
        "threshold": r.threshold.map(number),
        "time_window": r.time_window,
        "enabled": r.enabled,
        "notifications": r.notifications,
        "severity": r.severity,
        "source": r.source,
        "level": r.level,
        "environment": r.environment,
        "last_triggered": r.last_triggered,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
    })
}

fn incident_json(i: &Incident) -> Value {
    json!({
        "id": i.id.to_string(),
        "title": i.title,
        "severity": i.severity,
        "status": i.status,
        "description": i.description,
        "assigned_to": i.assigned_to,
        "rule_id": i.rule_id.map(|r| r.to_string()),
        "created_at": i.created_at,
        "updated_at": i.updated_at,
    })
}

/// Applies the body's present fields to `f` (defaults for a create), then
/// checks the rule as a whole.
fn read_rule(body: &[u8], mut f: RuleFields) -> ApiResult<RuleFields> {
    let obj = object(body)?;
    for (k, v) in &obj {
        match k.as_str() {
            "name" => f.name = req_text(v, "name", MAX_TEXT)?,
            "condition" => f.condition = choice(v, "condition", &[ERROR_COUNT, NEW_ERROR])?,
            "threshold" => {
                f.threshold = match v {
                    Value::Null => None,
                    Value::Number(n) => match n.as_f64() {
                        Some(x) if x >= 0.0 && x.is_finite() => Some(x),
                        _ => return Err(bad("threshold must be a number >= 0")),
                    },
                    _ => return Err(bad("threshold must be a number >= 0")),
                }
            }
            "time_window" => {
                f.time_window = opt_text(v, "time_window", 32)?;
                f.window_secs = match &f.time_window {
                    None => None,
                    Some(w) => Some(parse_window(w).ok_or_else(|| {
                        bad("time_window must be <integer><unit> with unit s, m, h or d, such as 5m")
                    })?),
                };
            }
            "enabled" => {
                f.enabled = v
                    .as_bool()
                    .ok_or_else(|| bad("enabled must be true or false"))?
            }
            "notifications" => {
                let items = v
                    .as_array()
                    .ok_or_else(|| bad("notifications must be a list of integration names"))?;
                let mut names: Vec<String> = Vec::new();
                for item in items {
                    let name = choice(item, "each notification", sluice_notify::registry::KINDS)?;
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
                f.notifications = names;
            }
            "severity" => f.severity = choice(v, "severity", SEVERITIES)?,
            "source" => f.source = opt_text(v, "source", MAX_TEXT)?,
            "environment" => f.environment = opt_text(v, "environment", MAX_TEXT)?,
            "level" => {
                f.level = match v {
                    Value::Null => None,
                    _ => Some(choice(v, "level", LEVELS)?),
                }
            }
            _ => {}
        }
    }
    if f.name.trim().is_empty() {
        return Err(bad("name is required and must be a non-empty string"));
    }
    if f.condition.is_empty() {
        return Err(bad(format!(
            "condition is required: \"{ERROR_COUNT}\" or \"{NEW_ERROR}\""
        )));
    }
    if f.condition == ERROR_COUNT {
        if f.threshold.is_none() {
            return Err(bad("threshold is required for an error_count rule"));
        }
        if f.window_secs.is_none() {
            return Err(bad("time_window is required for an error_count rule"));
        }
    }
    Ok(f)
}

#[utoipa::path(
    get,
    path = "/api/alerts/rules",
    operation_id = "alerts_list_rules",
    tag = "health-monitor",
    responses(
        (status = 200, body = hm::Data<hm::AlertRules>, description = "The tenant's alert rules"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
pub async fn list_rules(State(state): State<ApiState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require("read")?;
    let rules = state
        .pg
        .run(|pg| alerts::list_rules(pg, caller.tenant()))
        .await?;
    Ok(ok(
        json!({"rules": rules.iter().map(rule_json).collect::<Vec<_>>()}),
    ))
}

#[utoipa::path(
    post,
    path = "/api/alerts/rules",
    operation_id = "alerts_create_rule",
    tag = "health-monitor",
    request_body(content = hm::AlertRuleRequest, content_type = "application/json"),
    responses(
        (status = 201, body = hm::Data<hm::AlertRule>, description = "The rule created"),
        (status = 400, body = hm::HmError, description = "A parameter or the body is invalid"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
pub async fn create_rule(
    State(state): State<ApiState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require("write")?;
    let defaults = RuleFields {
        enabled: true,
        severity: "warning".into(),
        ..RuleFields::default()
    };
    let f = read_rule(&body, defaults)?;
    let ns = state.job_namespace.clone();
    let rule = state
        .pg
        .run(|pg| alerts::create_rule(pg, caller.tenant(), &ns, &f))
        .await?;
    Ok((StatusCode::CREATED, ok(rule_json(&rule))))
}

#[utoipa::path(
    put,
    path = "/api/alerts/rules/{id}",
    operation_id = "alerts_update_rule",
    tag = "health-monitor",
    params(("id" = String, Path, description = "The rule's id")),
    request_body(content = hm::AlertRuleRequest, content_type = "application/json"),
    responses(
        (status = 200, body = hm::Data<hm::AlertRule>, description = "The rule updated"),
        (status = 400, body = hm::HmError, description = "A parameter or the body is invalid"),
        (status = 404, body = hm::HmError, description = "No such rule in the tenant"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
pub async fn update_rule(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    caller.require("write")?;
    let id = parse_id(&id, "alert rule")?;
    let old = state
        .pg
        .run(|pg| alerts::get_rule(pg, caller.tenant(), id))
        .await?
        .ok_or_else(|| ApiError::not_found("alert rule"))?;
    let f = read_rule(&body, old.fields())?;
    let rule = state
        .pg
        .run(|pg| alerts::update_rule(pg, caller.tenant(), id, &f))
        .await?
        .ok_or_else(|| ApiError::not_found("alert rule"))?;
    Ok(ok(rule_json(&rule)))
}

#[utoipa::path(
    delete,
    path = "/api/alerts/rules/{id}",
    operation_id = "alerts_delete_rule",
    tag = "health-monitor",
    params(("id" = String, Path, description = "The rule's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, body = hm::HmError, description = "No such rule in the tenant"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
pub async fn delete_rule(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require("write")?;
    let id = parse_id(&id, "alert rule")?;
    if !state
        .pg
        .run(|pg| alerts::delete_rule(pg, caller.tenant(), id))
        .await?
    {
        return Err(ApiError::not_found("alert rule"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Applies the body's present fields to `f` and checks the result.
fn read_incident(body: &[u8], mut f: IncidentFields, create: bool) -> ApiResult<IncidentFields> {
    let obj = object(body)?;
    for (k, v) in &obj {
        match k.as_str() {
            "title" => f.title = req_text(v, "title", MAX_TEXT)?,
            "severity" => f.severity = choice(v, "severity", SEVERITIES)?,
            "status" if !create => f.status = choice(v, "status", STATUSES)?,
            "description" => f.description = opt_text(v, "description", MAX_DESCRIPTION)?,
            "assigned_to" => f.assigned_to = opt_text(v, "assigned_to", MAX_TEXT)?,
            _ => {}
        }
    }
    if f.title.trim().is_empty() {
        return Err(bad("title is required and must be a non-empty string"));
    }
    Ok(f)
}

#[utoipa::path(
    get,
    path = "/api/alerts/incidents",
    operation_id = "alerts_list_incidents",
    tag = "health-monitor",
    params(("status" = Option<hm::IncidentStatus>, Query), ("severity" = Option<hm::Severity>, Query), ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "Default 100"), ("offset" = Option<i64>, Query, minimum = 0)),
    responses(
        (status = 200, body = hm::Data<hm::Incidents>, description = "Incidents, newest first"),
        (status = 400, body = hm::HmError, description = "A parameter or the body is invalid"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
pub async fn list_incidents(
    State(state): State<ApiState>,
    caller: Caller,
    params: Params,
) -> ApiResult<Json<Value>> {
    caller.require("read")?;
    let status = match params.str("status") {
        None => None,
        Some(s) => Some(choice(&json!(s), "status", STATUSES)?),
    };
    let severity = match params.str("severity") {
        None => None,
        Some(s) => Some(choice(&json!(s), "severity", SEVERITIES)?),
    };
    let limit = params.int("limit", 100, 1, 1000)?;
    let offset = params.int("offset", 0, 0, i64::MAX)?;
    let rows = state
        .pg
        .run(|pg| {
            alerts::list_incidents(
                pg,
                caller.tenant(),
                status.as_deref(),
                severity.as_deref(),
                limit,
                offset,
            )
        })
        .await?;
    Ok(ok(
        json!({"incidents": rows.iter().map(incident_json).collect::<Vec<_>>()}),
    ))
}

#[utoipa::path(
    post,
    path = "/api/alerts/incidents",
    operation_id = "alerts_create_incident",
    tag = "health-monitor",
    request_body(content = hm::IncidentRequest, content_type = "application/json"),
    responses(
        (status = 201, body = hm::Data<hm::Incident>, description = "The incident opened"),
        (status = 400, body = hm::HmError, description = "A parameter or the body is invalid"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
pub async fn create_incident(
    State(state): State<ApiState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require("write")?;
    let defaults = IncidentFields {
        severity: "warning".into(),
        status: "investigating".into(),
        ..IncidentFields::default()
    };
    let f = read_incident(&body, defaults, true)?;
    let incident = state
        .pg
        .run(|pg| alerts::create_incident(pg, caller.tenant(), &f))
        .await?;
    Ok((StatusCode::CREATED, ok(incident_json(&incident))))
}

#[utoipa::path(
    put,
    path = "/api/alerts/incidents/{id}",
    operation_id = "alerts_update_incident",
    tag = "health-monitor",
    params(("id" = String, Path, description = "The incident's id")),
    request_body(content = hm::IncidentRequest, content_type = "application/json"),
    responses(
        (status = 200, body = hm::Data<hm::Incident>, description = "The incident updated"),
        (status = 400, body = hm::HmError, description = "A parameter or the body is invalid"),
        (status = 404, body = hm::HmError, description = "No such incident in the tenant"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
pub async fn update_incident(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    caller.require("write")?;
    let id = parse_id(&id, "incident")?;
    let old = state
        .pg
        .run(|pg| alerts::get_incident(pg, caller.tenant(), id))
        .await?
        .ok_or_else(|| ApiError::not_found("incident"))?;
    let f = read_incident(&body, old.fields(), false)?;
    let incident = state
        .pg
        .run(|pg| alerts::update_incident(pg, caller.tenant(), id, &f))
        .await?
        .ok_or_else(|| ApiError::not_found("incident"))?;
    Ok(ok(incident_json(&incident)))
}
