//! TEI's `GET /info`: the model the TEI routes serve (`--default-model`, or the only model), in
//! TEI's shape as far as it applies, and with several models every ready one in `models`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::TeiError;
use super::error::{ApiError, Dialect};
use super::Http;
use crate::device::DType;
use crate::engine::ServeError;
use crate::registry::{Entry, State as ModelState};

/// What `/info` says.
#[derive(Serialize, ToSchema)]
pub struct Info {
    /// The model `/rerank` and `/predict` serve.
    #[serde(flatten)]
    pub model: ModelInfo,
    /// Texts (or pairs) one request may hold (`max_pairs_per_request`).
    pub max_client_batch_size: usize,
    /// Pairs longer than the model's max length are truncated unless a request says `truncate:
    /// false`.
    pub auto_truncate: bool,
    /// crossrank's version.
    pub version: &'static str,
    /// Every ready model, when more than one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<ModelInfo>>,
}

/// One model, in TEI's terms.
#[derive(Serialize, ToSchema)]
pub struct ModelInfo {
    /// The model's name on this server (what `model` fields take).
    pub model_id: String,
    /// float32, float16, bfloat16 or int8.
    pub model_dtype: &'static str,
    pub model_type: ModelType,
    /// Tokens of a pair, special tokens included, before truncation.
    pub max_input_length: usize,
    /// Padded tokens in one batch.
    pub max_batch_tokens: usize,
    /// Pairs in one batch.
    pub max_batch_requests: usize,
}

/// A one-label model is a reranker, any other a classifier.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelType {
    Reranker(Labels),
    Classifier(Labels),
}

/// The model's labels by id, and their ids by label.
#[derive(Serialize, ToSchema)]
pub struct Labels {
    pub id2label: BTreeMap<String, String>,
    pub label2id: BTreeMap<String, usize>,
}

/// The model the TEI routes serve; 503 while it loads.
#[utoipa::path(get, path = "/info",
    responses((status = 200, body = Info), (status = "4XX", body = TeiError),
              (status = "5XX", body = TeiError)))]
pub async fn info(State(h): State<Arc<Http>>) -> Response {
    match describe(&h) {
        Ok(info) => axum::Json(info).into_response(),
        Err(e) => e.into_response(),
    }
}

fn describe(h: &Http) -> Result<Info, ApiError> {
    let name = h.resolve_model(None, Dialect::Tei)?;
    let fail = |e: ServeError| ApiError::serve(&e, Dialect::Tei);
    let entry = h.engine.registry.entry(&name).map_err(|e| fail(e.into()))?;
    let Some(model) = model_info(&entry) else {
        let why = h.engine.registry.get(&name).err().map(ServeError::from);
        let why = why.unwrap_or_else(|| {
            ServeError::NotReady(format!("model {name:?} became ready just now; ask again"))
        });
        return Err(fail(why));
    };
    let entries = h.engine.registry.entries();
    let models = (entries.len() > 1).then(|| entries.iter().filter_map(model_info).collect());
    Ok(Info {
        model,
        max_client_batch_size: h.engine.limits.max_pairs_per_request,
        auto_truncate: true,
        version: env!("CARGO_PKG_VERSION"),
        models,
    })
}

/// A ready model's info; `None` while it is not ready.
fn model_info(entry: &Arc<Entry>) -> Option<ModelInfo> {
    let ModelState::Ready(model) = entry.state() else {
        return None;
    };
    let labels = Labels {
        id2label: (0..)
            .map(|i: usize| i.to_string())
            .zip(model.spec.labels.iter().cloned())
            .collect(),
        label2id: model.spec.labels.iter().cloned().zip(0..).collect(),
    };
    Some(ModelInfo {
        model_id: model.name.clone(),
        model_dtype: match model.dtype {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::Bf16 => "bfloat16",
            DType::Int8 => "int8",
        },
        model_type: match model.spec.labels.len() {
            1 => ModelType::Reranker(labels),
            _ => ModelType::Classifier(labels),
        },
        max_input_length: model.tokenizer.max_length(),
        max_batch_tokens: entry.config.batching.max_batch_tokens,
        max_batch_requests: entry.config.batching.max_batch_pairs,
    })
}
