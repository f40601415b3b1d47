//! `GET /api/errors/export?format=csv|json`: every error group matching the
//! list's filters, streamed from a Postgres cursor through a bounded
//! channel ([`EXPORT_BUFFER`] rows), so memory stays flat however many
//! groups there are. No envelope: a JSON array of full error objects, or
//! RFC 4180 CSV with a header row.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use sluice_storage::model::ErrorGroup;
use sluice_storage::pg::error_extra;

use super::errors::list_filter;
use super::Params;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::openapi::health_monitor as hm;
use crate::ApiState;

/// Rows buffered between the database cursor and the client.
pub const EXPORT_BUFFER: usize = 64;

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

/// One CSV field (RFC 4180): quoted when it holds a comma, a quote or a
/// line break, quotes doubled.
fn csv_field(out: &mut String, v: &str) {
    if v.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
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
    let csv = match params.str("format").unwrap_or("csv") {
        "csv" => true,
        "json" => false,
        _ => return Err(ApiError::BadRequest("format must be csv or json".into())),
    };
    let filter = list_filter(&params)?;
    let pool = state
        .pg
        .run(|pg| async move { Ok::<_, sluice_storage::StorageError>(pg.clone()) })
        .await?;
    let (tx, rx) = tokio::sync::mpsc::channel(EXPORT_BUFFER);
    let span = tracing::info_span!("error_export", tenant = %caller.tenant(), csv);
    tokio::spawn(tracing::Instrument::instrument(
        error_extra::stream(pool, caller.tenant(), filter, tx),
        span,
    ));
    // (receiver, rows sent so far, finished)
    let body = futures::stream::unfold((rx, 0u64, false), move |(mut rx, n, done)| async move {
        if done {
            return None;
        }
        let first = n == 0;
        match rx.recv().await {
            Some(Ok(g)) => {
                let chunk = if csv {
                    let row = csv_row(&g);
                    if first {
                        format!("{}{row}", csv_header())
                    } else {
                        row
                    }
                } else {
                    format!("{}{}", if first { "[" } else { "," }, json_item(&g))
                };
                Some((Ok(Bytes::from(chunk)), (rx, n + 1, false)))
            }
            Some(Err(e)) => {
                tracing::error!(error = %e, "error export stopped");
                Some((
                    Err(std::io::Error::other("error export failed")),
                    (rx, n, true),
                ))
            }
            None => {
                let tail = match (csv, first) {
                    (true, true) => csv_header(),
                    (true, false) => String::new(),
                    (false, true) => "[]".to_string(),
                    (false, false) => "]".to_string(),
                };
                Some((Ok(Bytes::from(tail)), (rx, n, true)))
            }
        }
    });
    let (content_type, name) = if csv {
        ("text/csv; charset=utf-8", "errors.csv")
    } else {
        ("application/json", "errors.json")
    };
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        let mut s = String::new();
        csv_field(&mut s, "plain");
        s.push('|');
        csv_field(&mut s, "a,b \"c\"\nd");
        assert_eq!(s, "plain|\"a,b \"\"c\"\"\nd\"");
    }

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
