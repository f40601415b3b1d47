//! Reading the audit log: `GET /api/v1/audit/logs` (a filtered page) and
//! `GET /api/v1/audit/export` (every match, streamed as CSV or a JSON
//! array). Only a tenant's owners and admins may read it; entries are
//! never changed or deleted through the API (no route does).

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{json, Value};
use sluice_auth::principal::{Principal, Role};
use sluice_storage::pg::audit::{self, Entry, Filter};

use crate::auth::Member;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::export::{self, csv_field, Download, Format};
use crate::openapi::backup::admin::{AuditPage, ExportFormat};
use crate::openapi::backup::{BackupError, MemberRefusals, Unprocessable};
use crate::routes::Params;
use crate::ApiState;

fn require_reader(p: &Principal) -> ApiResult<()> {
    if matches!(p.role, Role::Owner | Role::Admin) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "role {} may not read the audit log (owner or admin only)",
            p.role.as_str()
        )))
    }
}

fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn entry_json(e: &Entry) -> Value {
    json!({
        "id": e.id,
        "user_id": e.user_id,
        "username": e.username,
        "action": e.action,
        "resource_type": e.resource_type,
        "resource_id": e.resource_id,
        "details": e.details.0,
        "ip_address": e.ip_address,
        "created_at": rfc3339(&e.created_at),
    })
}

fn query_error(name: &str, msg: &str) -> FieldError {
    FieldError {
        loc: vec!["query".into(), name.into()],
        msg: msg.into(),
        kind: "value_error".into(),
    }
}

/// The filters shared by the list and the export.
fn filter(q: &Params, errors: &mut Vec<FieldError>) -> Filter {
    let text = |name: &str, errors: &mut Vec<FieldError>| match q.str(name) {
        Some(v) if v.len() > 128 => {
            errors.push(query_error(name, "at most 128 characters"));
            None
        }
        v => v.map(str::to_owned),
    };
    let user_id = match q.str("user_id").map(str::parse::<i64>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            errors.push(query_error("user_id", "value is not a valid integer"));
            None
        }
    };
    let mut day = |name: &str| match q.str(name) {
        None => None,
        Some(v) => match NaiveDate::parse_from_str(v, "%Y-%m-%d") {
            Ok(d) => Some(d),
            Err(_) => {
                errors.push(query_error(name, "a date YYYY-MM-DD is required"));
                None
            }
        },
    };
    let start = day("start_date");
    let end = day("end_date");
    let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    Filter {
        action: text("action", errors),
        user_id,
        resource_type: text("resource_type", errors),
        since: start.and_then(midnight),
        // whole days, both ends inclusive: until the next midnight
        until: end.and_then(|d| d.succ_opt()).and_then(midnight),
    }
}

/// `GET /api/v1/audit/logs`: `{"total", "items"}`, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/audit/logs",
    operation_id = "audit_list",
    tag = "backup",
    params(("user_id" = Option<i64>, Query, description = "Only this user's actions"),
        ("action" = Option<String>, Query, max_length = 128, description = "Only this action (backup_create, …)"),
        ("resource_type" = Option<String>, Query, max_length = 128, description = "Only actions on this resource type"),
        ("start_date" = Option<chrono::NaiveDate>, Query, description = "From this day (UTC, inclusive), YYYY-MM-DD"),
        ("end_date" = Option<chrono::NaiveDate>, Query, description = "To this day (UTC, inclusive), YYYY-MM-DD"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "Page size (default 100)"),
        ("offset" = Option<i64>, Query, minimum = 0, description = "Entries skipped (default 0)"),),
    responses(
        (status = 200, body = AuditPage, description = "A page of entries"),
        (status = 400, body = BackupError, description = "A malformed query string"),
        (status = 422, body = Unprocessable, description = "Query parameters at fault"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn list(
    State(state): State<ApiState>,
    Member(p): Member,
    q: Params,
) -> ApiResult<Json<Value>> {
    require_reader(&p)?;
    let mut errors = Vec::new();
    let f = filter(&q, &mut errors);
    let limit = match q.str("limit").map(str::parse::<i64>) {
        None => 100,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            errors.push(query_error("limit", "ensure 1 <= limit <= 1000"));
            100
        }
    };
    let offset = match q.str("offset").map(str::parse::<i64>) {
        None => 0,
        Some(Ok(n)) if n >= 0 => n,
        Some(_) => {
            errors.push(query_error("offset", "ensure offset >= 0"));
            0
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::Fields(errors));
    }
    let tenant = p.tenant_id;
    let (total, items) = state
        .pg
        .run(|pg| audit::list(pg, tenant, &f, limit, offset))
        .await?;
    Ok(Json(json!({
        "total": total,
        "items": items.iter().map(entry_json).collect::<Vec<_>>(),
    })))
}

const CSV_HEADER: &str =
    "id,user_id,username,action,resource_type,resource_id,details,ip_address,created_at\r\n";

fn csv_row(e: &Entry) -> String {
    let cells = [
        e.id.to_string(),
        e.user_id.map(|n| n.to_string()).unwrap_or_default(),
        e.username.clone().unwrap_or_default(),
        e.action.clone(),
        e.resource_type.clone().unwrap_or_default(),
        e.resource_id.map(|n| n.to_string()).unwrap_or_default(),
        e.details.0.to_string(),
        e.ip_address.clone().unwrap_or_default(),
        rfc3339(&e.created_at),
    ];
    let mut out = String::with_capacity(128);
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(&mut out, c);
    }
    out.push_str("\r\n");
    out
}

/// `GET /api/v1/audit/export?format=csv|json`: every match, newest first,
/// streamed from a database cursor through a bounded buffer.
/// Every matching entry, streamed: CSV (a header row, then one row per
/// entry) or a JSON array.
#[utoipa::path(
    get,
    path = "/api/v1/audit/export",
    operation_id = "audit_export",
    tag = "backup",
    params(("format" = Option<ExportFormat>, Query, description = "csv (default) or json"),
        ("user_id" = Option<i64>, Query, description = "Only this user's actions"),
        ("action" = Option<String>, Query, max_length = 128, description = "Only this action (backup_create, …)"),
        ("resource_type" = Option<String>, Query, max_length = 128, description = "Only actions on this resource type"),
        ("start_date" = Option<chrono::NaiveDate>, Query, description = "From this day (UTC, inclusive), YYYY-MM-DD"),
        ("end_date" = Option<chrono::NaiveDate>, Query, description = "To this day (UTC, inclusive), YYYY-MM-DD"),),
    responses(
        (status = 200, content((String = "text/csv"), (Vec<crate::openapi::backup::admin::AuditEntry> = "application/json")), description = "The entries; columns id, user_id, username, action, resource_type, resource_id, details, ip_address, created_at"),
        (status = 400, body = BackupError, description = "A malformed query string"),
        (status = 422, body = Unprocessable, description = "Query parameters at fault"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn export(
    State(state): State<ApiState>,
    Member(p): Member,
    q: Params,
) -> ApiResult<Response> {
    require_reader(&p)?;
    let mut errors = Vec::new();
    let f = filter(&q, &mut errors);
    let format = Format::parse(q.str("format")).unwrap_or_else(|| {
        errors.push(query_error("format", "permitted: 'csv', 'json'"));
        Format::Csv
    });
    if !errors.is_empty() {
        return Err(ApiError::Fields(errors));
    }
    let pool = state
        .pg
        .run(|pg| async move { Ok::<_, sluice_storage::StorageError>(pg.clone()) })
        .await?;
    let (tx, rx) = export::channel();
    tokio::spawn(audit::stream(pool, p.tenant_id, f, tx));
    Ok(export::respond(
        rx,
        Download {
            format,
            csv_header: CSV_HEADER.to_string(),
            name: "audit",
            csv_row,
            json_item: |e| entry_json(e).to_string(),
        },
    ))
}
