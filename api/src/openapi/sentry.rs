//! OpenAPI description of the Sentry-protocol ingest paths (served by the
//! ingest tier on raw hyper, so described here by doc-only functions).
//!
//! The key is a Sluice API key with the write permission, given the ways
//! Sentry SDKs give it: `X-Sentry-Auth: Sentry sentry_key=<key>, …`, the
//! `sentry_key` query parameter, the `dsn` of the envelope header, or
//! Sluice's own `X-API-Key`. The project id is any decimal number; the key
//! alone chooses the tenant. Both paths also answer without the trailing
//! slash.

use serde::Serialize;
use utoipa::{IntoResponses, OpenApi, ToSchema};

/// The answer to an accepted request: the event's id (the first event's
/// of an envelope, else the envelope header's, else a new one).
#[derive(Serialize, ToSchema)]
#[schema(as = SentryAccepted)]
pub struct Accepted {
    /// 32 hex digits, as Sentry writes event ids.
    #[schema(example = "9ec79c33ec9942ab8353589fcb2e04dc")]
    pub id: String,
}

/// A refusal, in the shape Sentry's SDKs read.
#[derive(Serialize, ToSchema)]
#[schema(as = SentryError)]
pub struct Refused {
    /// What was wrong, for the person reading the SDK's debug log.
    #[schema(example = "malformed envelope header: expected value at line 1 column 1")]
    pub detail: String,
}

/// The answers of both paths.
#[derive(IntoResponses)]
#[allow(dead_code)]
enum Answers {
    #[response(status = 200, description = "Accepted")]
    Ok(Accepted),
    #[response(status = 400, description = "Malformed envelope, item or event")]
    BadRequest(Refused),
    #[response(
        status = 401,
        description = "No key, or an unknown, revoked or expired one"
    )]
    Unauthorized(Refused),
    #[response(status = 403, description = "The key may not write")]
    Forbidden(Refused),
    #[response(status = 404, description = "The project id is not a number")]
    NotFound,
    #[response(status = 408, description = "The body did not arrive in time")]
    Timeout,
    #[response(
        status = 413,
        description = "Body, decompressed body or an event over its cap (the event cap for store and for each event item, the batch cap for an envelope)"
    )]
    TooLarge(Refused),
    #[response(status = 415, description = "Unsupported Content-Encoding")]
    Encoding(Refused),
    #[response(
        status = 429,
        description = "Over the key's rate limit, or the backlog is full: `Retry-After` and `X-Sentry-Rate-Limits` say for how long",
        headers(
            ("Retry-After" = u64, description = "Seconds to wait"),
            ("X-Sentry-Rate-Limits" = String, description = "`<seconds>::organization`: every category, for this long"),
        )
    )]
    TooMany(Refused),
    #[response(
        status = 503,
        description = "Ingest is overloaded or its store unavailable; retry after `Retry-After`"
    )]
    Unavailable(Refused),
}

/// Sends SDK items: events are stored as Sluice errors (validated, scrubbed
/// and grouped as `POST /api/errors` does); sessions, transactions, client
/// reports, attachments, check-ins and other items are counted in
/// `/metrics` (`sluice_sentry_items_total{type}`) and not stored. An
/// envelope with a malformed item or event is refused whole (nothing of it
/// is stored).
#[utoipa::path(
    post,
    path = "/api/{project_id}/envelope/",
    tag = "ingest",
    operation_id = "sentry_envelope",
    params(
        ("project_id" = u64, Path, description = "Any decimal number (Sluice's DSNs show 1); the key chooses the tenant"),
        ("sentry_key" = Option<String>, Query, description = "The API key, as browser SDKs send it"),
        ("X-Sentry-Auth" = Option<String>, Header, description = "`Sentry sentry_key=<API key>, sentry_version=7, …`"),
        ("Content-Encoding" = Option<String>, Header, description = "gzip, deflate, br, zstd or none"),
    ),
    request_body(
        content(
            (String = "application/x-sentry-envelope"),
            (Vec<u8> = "application/octet-stream"),
        ),
        description = "A Sentry envelope: a JSON header line (`event_id`, `dsn`), then items, each a JSON header line (`type`, optional `length`) and its payload. The Content-Type is not checked (SDKs send application/x-sentry-envelope)"
    ),
    responses(Answers),
    security((), ("apiKey" = []))
)]
#[allow(dead_code)]
fn envelope() {}

/// Sends one event as JSON (the older protocol); stored as
/// `POST /api/{project_id}/envelope/` stores an `event` item.
#[utoipa::path(
    post,
    path = "/api/{project_id}/store/",
    tag = "ingest",
    operation_id = "sentry_store",
    params(
        ("project_id" = u64, Path, description = "Any decimal number (Sluice's DSNs show 1); the key chooses the tenant"),
        ("sentry_key" = Option<String>, Query, description = "The API key, as browser SDKs send it"),
        ("X-Sentry-Auth" = Option<String>, Header, description = "`Sentry sentry_key=<API key>, sentry_version=7, …`"),
        ("Content-Encoding" = Option<String>, Header, description = "gzip, deflate, br, zstd or none"),
    ),
    request_body(
        content = Object,
        content_type = "application/json",
        description = "A Sentry event: `event_id`, `level`, `message`/`logentry`, `exception`, `platform`, `environment`, `release`, `server_name`, `request`, `user`, `tags`, `extra`, `contexts`, `fingerprint`, …"
    ),
    responses(Answers),
    security((), ("apiKey" = []))
)]
#[allow(dead_code)]
fn store() {}

#[derive(OpenApi)]
#[openapi(paths(envelope, store), components(schemas(Accepted, Refused)))]
pub struct Doc;
