//! Shared OpenAPI components of the orchestrator routes.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi()]
pub struct Doc;
