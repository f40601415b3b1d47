//! Shared OpenAPI components of the health_monitor routes.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi()]
pub struct Doc;
