//! The OpenAPI 3.1 document of the REST port, generated from the request and response types by
//! utoipa (served at `GET /openapi.json`).

use std::sync::OnceLock;

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::{cohere, info, meta, tei};

/// The error body of Cohere and Jina routes (`detail` is what Jina's clients read).
#[derive(Serialize, ToSchema)]
pub struct CohereError {
    pub message: String,
    pub detail: String,
}

/// The error body of TEI routes.
#[derive(Serialize, ToSchema)]
pub struct TeiError {
    pub error: String,
    /// validation, empty, overloaded, backend, unhealthy, timeout or unauthorized.
    pub error_type: String,
}

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

/// The document, as JSON bytes (built once).
pub fn document() -> &'static [u8] {
    static DOC: OnceLock<Vec<u8>> = OnceLock::new();
    DOC.get_or_init(|| Api::openapi().to_json().unwrap_or_default().into_bytes())
}
