//! Shared OpenAPI components of the backup routes.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi()]
pub struct Doc;
