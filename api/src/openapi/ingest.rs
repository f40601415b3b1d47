//! Shared OpenAPI components of the ingest routes.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi()]
pub struct Doc;
