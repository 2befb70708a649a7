//! The routes around scoring: `GET /health`, `GET /v1/models`, `GET /openapi.json`, and the
//! answers to unknown routes and wrong methods.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::call::refuse;
use super::error::{Dialect, HttpFailure};
use super::Http;
use crate::api::grpc::log_value;
use crate::registry::State as ModelState;

#[derive(Serialize, ToSchema)]
pub struct ModelStatus {
    pub name: String,
    /// loading, ready, failed or unloading.
    pub state: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct HealthResponse {
    /// "ok" when every model is ready and the server is not shutting down, else "unavailable".
    pub status: &'static str,
    pub models: Vec<ModelStatus>,
}

fn states(h: &Http) -> Vec<ModelStatus> {
    h.engine
        .registry
        .entries()
        .iter()
        .map(|e| ModelStatus {
            name: e.config.name.clone(),
            state: match e.state() {
                ModelState::Loading | ModelState::Pending => "loading",
                ModelState::Ready(_) => "ready",
                ModelState::Failed(_) => "failed",
                ModelState::Unloading => "unloading",
            },
        })
        .collect()
}

/// 200 when every model is ready, else 503 (loading, failed, shutting down).
#[utoipa::path(get, path = "/health",
    responses((status = 200, body = HealthResponse), (status = 503, body = HealthResponse)))]
pub async fn health(State(h): State<Arc<Http>>) -> Response {
    let models = states(&h);
    let ready =
        !h.engine.is_draining() && !models.is_empty() && models.iter().all(|m| m.state == "ready");
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = HealthResponse {
        status: if ready { "ok" } else { "unavailable" },
        models,
    };
    (status, axum::Json(body)).into_response()
}

#[derive(Serialize, ToSchema)]
pub struct ModelCard {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
    /// loading, ready, failed or unloading.
    pub state: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelCard>,
}

/// The models this server knows, in OpenAI's list shape.
#[utoipa::path(get, path = "/v1/models", responses((status = 200, body = ModelList)))]
pub async fn models(State(h): State<Arc<Http>>) -> Response {
    let data = states(&h)
        .into_iter()
        .map(|m| ModelCard {
            id: m.name,
            object: "model",
            created: 0,
            owned_by: "crossrank",
            state: m.state,
        })
        .collect();
    axum::Json(ModelList {
        object: "list",
        data,
    })
    .into_response()
}

/// This API as an OpenAPI 3.1 document, generated from the Rust types.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi(State(h): State<Arc<Http>>) -> Response {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        h.openapi.clone(),
    )
        .into_response()
}

pub async fn no_route(req: Request) -> Response {
    let path = log_value(req.uri().path());
    refuse(
        HttpFailure::NoRoute(format!(
            "no route {path}; the routes are POST /v2/rerank, /v1/rerank, /rerank, /predict and \
             GET /health, /info, /v1/models, /openapi.json"
        )),
        dialect_of(req.uri().path()),
    )
}

pub async fn wrong_method(req: Request) -> Response {
    let path = req.uri().path().to_owned();
    refuse(
        HttpFailure::MethodNotAllowed(format!(
            "{} is not allowed on {}",
            req.method(),
            log_value(&path)
        )),
        dialect_of(&path),
    )
}

fn dialect_of(path: &str) -> Dialect {
    if path == "/rerank" || path == "/predict" || path == "/info" {
        Dialect::Tei
    } else {
        Dialect::Cohere
    }
}
