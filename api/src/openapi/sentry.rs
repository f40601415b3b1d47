//! OpenAPI description of the Sentry-protocol ingest paths (served by the
//! ingest tier).

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi()]
pub struct Doc;
