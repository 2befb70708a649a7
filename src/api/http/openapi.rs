//! The OpenAPI 3.1 document of the REST port, generated from the request and response types by
//! utoipa (served at `GET /openapi.json`), with the server's own bounds where they are
//! configured (`priority`'s maximum is `--max-priority`, `max_chunks_per_doc`'s is
//! `--max-pairs-per-request`).

use utoipa::OpenApi;

use super::error::{CohereError, TeiError};
use super::{cohere, info, meta, tei};
use crate::config::RequestLimits;

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

/// The document, as JSON bytes, for a server with these limits.
pub fn document(limits: &RequestLimits) -> Vec<u8> {
    let mut doc = serde_json::to_value(Api::openapi()).unwrap_or_default();
    let fields = &mut doc["components"]["schemas"]["CohereRequest"]["properties"];
    let maxima = [
        ("priority", limits.max_priority as usize),
        ("max_chunks_per_doc", limits.max_pairs_per_request),
    ];
    for (field, maximum) in maxima {
        if let Some(schema) = fields[field].as_object_mut() {
            schema.insert("maximum".into(), maximum.into());
        }
    }
    serde_json::to_vec(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use crate::config::RequestLimits;

    /// `priority` and `max_chunks_per_doc` are bounded by the configured limits; the rest is
    /// utoipa's.
    #[test]
    fn the_configured_maxima_are_the_servers() {
        let limits = RequestLimits {
            max_priority: 4,
            max_pairs_per_request: 100,
            ..RequestLimits::default()
        };
        let doc: serde_json::Value = serde_json::from_slice(&super::document(&limits)).unwrap();
        let fields = &doc["components"]["schemas"]["CohereRequest"]["properties"];
        let p = &fields["priority"];
        assert_eq!(
            (&p["minimum"], &p["maximum"]),
            (&0.into(), &4.into()),
            "{p}"
        );
        let c = &fields["max_chunks_per_doc"];
        assert_eq!(
            (&c["minimum"], &c["maximum"]),
            (&1.into(), &100.into()),
            "{c}"
        );
        assert!(doc["paths"]["/v2/rerank"].is_object());
    }
}
