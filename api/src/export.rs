//! Streamed downloads (`/api/errors/export`, `/api/v1/audit/export`): rows
//! come from a database cursor through a bounded channel ([`BUFFER`] rows)
//! and leave as one body, CSV (RFC 4180, a header row first) or a JSON
//! array, so memory stays flat however many rows match. Each export says
//! only how one row is written ([`Download`]).

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

/// Rows buffered between the database cursor and the client.
pub const BUFFER: usize = 64;

/// CSV or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

impl Format {
    /// `csv` (also when absent) or `json`; anything else is `None`.
    pub fn parse(v: Option<&str>) -> Option<Format> {
        match v.unwrap_or("csv") {
            "csv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// What one export writes.
pub struct Download<T> {
    pub format: Format,
    /// The CSV header line, `\r\n` included.
    pub csv_header: String,
    /// The file name without extension (`errors` → `errors.csv`).
    pub name: &'static str,
    /// One row as a CSV record, `\r\n` included.
    pub csv_row: fn(&T) -> String,
    /// One row as JSON text.
    pub json_item: fn(&T) -> String,
}

/// One CSV field (RFC 4180): quoted when it holds a comma, a quote or a
/// line break, quotes doubled.
pub fn csv_field(out: &mut String, v: &str) {
    if v.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

/// Where a cursor's task sends the rows of one download.
pub type Rows<T, E> = mpsc::Sender<Result<T, E>>;
/// What [`respond`] streams them from.
pub type Received<T, E> = mpsc::Receiver<Result<T, E>>;

/// A channel for the rows of one download ([`BUFFER`] rows): the cursor's
/// task sends into the first half, [`respond`] takes the second.
pub fn channel<T, E>() -> (Rows<T, E>, Received<T, E>) {
    mpsc::channel(BUFFER)
}

/// The `200` answer streaming every row `rx` yields; a row error ends the
/// body with an error (the client sees a cut transfer, never a short file
/// that looks whole).
pub fn respond<T, E>(rx: Received<T, E>, d: Download<T>) -> Response
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let csv = d.format == Format::Csv;
    let (content_type, ext) = if csv {
        ("text/csv; charset=utf-8", "csv")
    } else {
        ("application/json", "json")
    };
    let disposition = format!("attachment; filename=\"{}.{ext}\"", d.name);
    let name = d.name;
    // (receiver, rows sent so far, finished)
    let body = futures::stream::unfold((rx, 0u64, false), move |(mut rx, n, done)| {
        let header = d.csv_header.clone();
        async move {
            if done {
                return None;
            }
            let first = n == 0;
            match rx.recv().await {
                Some(Ok(row)) => {
                    let chunk = if csv {
                        let line = (d.csv_row)(&row);
                        if first {
                            format!("{header}{line}")
                        } else {
                            line
                        }
                    } else {
                        format!("{}{}", if first { "[" } else { "," }, (d.json_item)(&row))
                    };
                    Some((Ok(Bytes::from(chunk)), (rx, n + 1, false)))
                }
                Some(Err(e)) => {
                    tracing::error!(error = %e, export = name, "export stopped");
                    Some((
                        Err(std::io::Error::other(format!("{name} export failed"))),
                        (rx, n, true),
                    ))
                }
                None => {
                    let tail = match (csv, first) {
                        (true, true) => header,
                        (true, false) => String::new(),
                        (false, true) => "[]".to_string(),
                        (false, false) => "]".to_string(),
                    };
                    Some((Ok(Bytes::from(tail)), (rx, n, true)))
                }
            }
        }
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from_stream(body),
    )
        .into_response()
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
    fn formats() {
        assert_eq!(Format::parse(None), Some(Format::Csv));
        assert_eq!(Format::parse(Some("json")), Some(Format::Json));
        assert_eq!(Format::parse(Some("xml")), None);
    }
}
