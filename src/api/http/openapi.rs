//! The OpenAPI 3.1 document of the REST port, generated from the request and response types by
//! utoipa (served at `GET /openapi.json`), with the server's own bounds where they are
//! configured (`priority`'s maximum is `--max-priority`).

use utoipa::OpenApi;

use super::error::{CohereError, TeiError};
use super::{cohere, info, meta, tei};

#[derive(OpenApi)]
#[openapi(
    info(title = "crossrank REST API", description = "Cohere v2/v1, Jina and TEI rerank routes over crossrank's engine"),
    paths(cohere::v2_rerank, cohere::v1_rerank, tei::rerank, tei::predict::predict, info::info,
          meta::health, meta::models, meta::openapi),
    components(schemas(CohereError, TeiError)),
    modifiers(&Bearer)
)]
struct Api;

/// The data-plane key (`--api-keys-file`): `Authorization: Bearer <key>` on scoring routes.
struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
        api.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The document, as JSON bytes, for a server whose `priority` goes up to `max_priority`.
pub fn document(max_priority: u32) -> Vec<u8> {
    let mut doc = serde_json::to_value(Api::openapi()).unwrap_or_default();
    let priority = &mut doc["components"]["schemas"]["CohereRequest"]["properties"]["priority"];
    if let Some(schema) = priority.as_object_mut() {
        schema.insert("maximum".into(), max_priority.into());
    }
    serde_json::to_vec(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    /// `priority` is bounded by the configured maximum; the rest is utoipa's.
    #[test]
    fn the_priority_maximum_is_the_servers() {
        let doc: serde_json::Value = serde_json::from_slice(&super::document(4)).unwrap();
        let p = &doc["components"]["schemas"]["CohereRequest"]["properties"]["priority"];
        assert_eq!(
            (&p["minimum"], &p["maximum"]),
            (&0.into(), &4.into()),
            "{p}"
        );
        assert!(doc["paths"]["/v2/rerank"].is_object());
    }
}
