//! `GET /api/errors/export?format=csv|json`: every error group matching the
//! list's filters, streamed from a Postgres cursor by [`crate::export`]
//! (a bounded channel), so memory stays flat however many groups there
//! are. No envelope: a JSON array of full error objects, or
//! RFC 4180 CSV with a header row.

use axum::extract::State;
use axum::response::Response;
use serde_json::Value;
use sluice_storage::model::ErrorGroup;
use sluice_storage::pg::error_extra;

use super::errors::list_filter;
use super::Params;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::export::{self, csv_field, Download, Format};
use crate::openapi::health_monitor as hm;
use crate::ApiState;

/// The CSV columns, named after the error object's fields.
pub const CSV_COLUMNS: [&str; 18] = [
    "id",
    "timestamp",
    "level",
    "message",
    "source",
    "fingerprint",
    "count",
    "resolved",
    "first_seen",
    "last_seen",
    "created_at",
    "updated_at",
    "environment",
    "url",
    "user_agent",
    "ip_address",
    "stack_trace",
    "context",
];

fn csv_header() -> String {
    let mut s = CSV_COLUMNS.join(",");
    s.push_str("\r\n");
    s
}

/// A group as one CSV record, each value as the JSON object has it
/// (strings as they are, numbers and booleans as JSON text, the context
/// as its stored JSON text, a missing value empty).
fn csv_row(g: &ErrorGroup) -> String {
    let v = serde_json::to_value(g).unwrap_or(Value::Null);
    let mut out = String::with_capacity(256);
    for (i, col) in CSV_COLUMNS.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if *col == "context" {
            csv_field(&mut out, g.context.as_ref().map_or("", |c| c.get()));
            continue;
        }
        match v.get(col) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => csv_field(&mut out, s),
            Some(other) => csv_field(&mut out, &other.to_string()),
        }
    }
    out.push_str("\r\n");
    out
}

fn json_item(g: &ErrorGroup) -> String {
    serde_json::to_string(g).unwrap_or_else(|_| "null".into())
}

/// `GET /api/errors/export`.
#[utoipa::path(
    get,
    path = "/api/errors/export",
    operation_id = "errors_export",
    tag = "health-monitor",
    params(("format" = Option<hm::ExportFormat>, Query, description = "Default csv"), hm::ErrorFilter),
    responses(
        (status = 200, description = "Every matching error group, streamed", content((String = "text/csv"), (Vec<hm::ErrorObject> = "application/json"))),
        (status = 400, body = hm::HmError, description = "A parameter or the body is invalid"),
        hm::Refusals,
    ),
    security(("apiKey" = []), ("bearerAuth" = []))
)]
pub async fn export(
    State(state): State<ApiState>,
    caller: Caller,
    params: Params,
) -> ApiResult<Response> {
    caller.require("read")?;
    let format = Format::parse(params.str("format"))
        .ok_or_else(|| ApiError::BadRequest("format must be csv or json".into()))?;
    let filter = list_filter(&params)?;
    let pool = state
        .pg
        .run(|pg| async move { Ok::<_, sluice_storage::StorageError>(pg.clone()) })
        .await?;
    let (tx, rx) = export::channel();
    let span = tracing::info_span!("error_export", tenant = %caller.tenant(), ?format);
    tokio::spawn(tracing::Instrument::instrument(
        error_extra::stream(pool, caller.tenant(), filter, tx),
        span,
    ));
    Ok(export::respond(
        rx,
        Download {
            format,
            csv_header: csv_header(),
            name: "errors",
            csv_row,
            json_item,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_the_required_fields() {
        let h = csv_header();
        for f in [
            "id",
            "level",
            "message",
            "source",
            "count",
            "resolved",
            "first_seen",
            "last_seen",
            "fingerprint",
        ] {
            assert!(h.trim_end().split(',').any(|c| c == f), "{f}");
        }
    }
}
