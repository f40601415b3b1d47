//! Shared OpenAPI components of the tracking routes.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi()]
pub struct Doc;
