//! The OpenAPI 3.1 document of every route Sluice serves, and Swagger UI.
//!
//! Paths come from the handlers' `#[utoipa::path]` attributes, registered
//! together with the routes themselves ([`utoipa_axum::routes!`] in
//! [`crate::router`]), so a route cannot exist without its description.
//! The ingest tier's paths (raw hyper, not axum) are described in
//! [`ingest`]. Each contract's shared shapes (envelopes, error bodies)
//! live in the module named for it. The document is served at
//! `/openapi.json` and Swagger UI at `/docs`, its assets built into the
//! binary (utoipa-swagger-ui's `vendored` feature: nothing is downloaded).

pub mod backup;
pub mod health_monitor;
pub mod ingest;
pub mod orchestrator;
pub mod sentry;
pub mod tracking;

use axum::Router;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::ApiState;

/// Security scheme names the handlers' `security(...)` lists refer to.
pub const API_KEY: &str = "apiKey";
pub const BEARER: &str = "bearerAuth";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice",
        description = "Error tracking, database-operation tracking, the backup platform, \
                       the schema migration orchestrator and Sluice's own monitoring: the \
                       four API contracts of ../shared/spec, as Sluice serves them."
    ),
    modifiers(&Security),
    tags(
        (name = "health-monitor", description = "Health Monitor contract: errors, analytics, monitoring, alerts, settings"),
        (name = "tracking", description = "Database operation tracking contract"),
        (name = "backup", description = "Backup platform contract: identity, servers, backups, schedules, notifications, commands, audit, users"),
        (name = "orchestrator", description = "Schema migration orchestrator contract"),
        (name = "ingest", description = "The ingest tier: errors, tracked operations, Sentry SDK protocol"),
    )
)]
struct Base;

struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut Document) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            API_KEY,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "A Sluice API key (settings → API keys)",
            ))),
        );
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("An access token from a login route"))
                    .build(),
            ),
        );
    }
}

/// The document the router's paths are added to.
pub fn base() -> Document {
    Base::openapi()
}

/// The router's document plus what the router does not serve itself
/// (the ingest tier's paths) and each contract's shared components.
pub fn finish(mut doc: Document) -> Document {
    doc.merge(ingest::Doc::openapi());
    doc.merge(sentry::Doc::openapi());
    doc.merge(health_monitor::Doc::openapi());
    doc.merge(tracking::Doc::openapi());
    doc.merge(backup::Doc::openapi());
    doc.merge(orchestrator::Doc::openapi());
    doc
}

/// `/openapi.json` and Swagger UI at `/docs`.
pub fn docs(doc: Document) -> Router<ApiState> {
    SwaggerUi::new("/docs").url("/openapi.json", doc).into()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    /// The component name of every `ToSchema` type under `dir`: its
    /// `#[schema(as = ...)]` name, else its own.
    fn schema_names(dir: &Path, found: &mut HashMap<String, Vec<String>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                schema_names(&path, found);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let mut derives = false;
            let mut alias = None;
            for line in text.lines().map(str::trim) {
                if line.starts_with("#[derive(") && line.contains("ToSchema") {
                    derives = true;
                } else if derives && line.starts_with("#[schema(as = ") {
                    alias = line
                        .trim_start_matches("#[schema(as = ")
                        .split(')')
                        .next()
                        .map(str::to_string);
                } else if derives && !line.starts_with("#[") && !line.starts_with("///") {
                    let own = line
                        .split_whitespace()
                        .skip_while(|w| !matches!(*w, "struct" | "enum"))
                        .nth(1)
                        .map(|w| {
                            w.trim_end_matches(|c: char| !c.is_alphanumeric())
                                .to_string()
                        });
                    if let Some(name) = alias.take().or(own) {
                        found
                            .entry(name)
                            .or_default()
                            .push(path.display().to_string());
                    }
                    derives = false;
                }
            }
        }
    }

    /// Every route is registered with `routes!`, which takes it from its
    /// `#[utoipa::path]`: a plain `.route(` would serve a path the document
    /// does not describe.
    #[test]
    fn the_router_registers_only_described_routes() {
        let lib = include_str!("../lib.rs");
        let router = lib
            .split("pub fn router(")
            .nth(1)
            .expect("router() in lib.rs");
        assert!(router.contains(".routes(routes!("));
        assert!(
            !router.contains(".route("),
            "a route registered without its description in api/src/lib.rs"
        );
    }

    /// utoipa names components by type name alone: two schemas of one
    /// name would silently replace each other in the document.
    #[test]
    fn schema_names_are_unique() {
        let mut found = HashMap::new();
        schema_names(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        let twice: Vec<_> = found.iter().filter(|(_, at)| at.len() > 1).collect();
        assert!(found.len() > 50, "only {} schemas found", found.len());
        assert!(twice.is_empty(), "schema names used twice: {twice:?}");
    }
}
