//! Cohere's rerank routes: `POST /v2/rerank`, and `POST /v1/rerank`, which Cohere's v1 API and
//! Jina's share. Scores are the gRPC Rerank's (the model's default activation, as
//! sentence-transformers' `CrossEncoder.rank`), ranked best first.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::call::{Answer, Call, NamesModel};
use super::error::{ApiError, Dialect};
use super::Http;
use crate::engine::request::{ChunkOptions, Options, RerankFields, Truncation, ValidRerank};
use crate::engine::{RerankOutput, ServeError};

/// A document: its text, or an object with `text` (other keys are echoed back with it).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Document {
    Text(String),
    Object(DocumentObject),
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct DocumentObject {
    pub text: String,
    /// Any other keys, returned unchanged with the document.
    #[serde(flatten)]
    #[schema(additional_properties)]
    pub extra: Map<String, Value>,
}

impl Document {
    fn into_parts(self) -> (String, Map<String, Value>) {
        match self {
            Self::Text(t) => (t, Map::new()),
            Self::Object(o) => (o.text, o.extra),
        }
    }
}

/// `POST /v2/rerank` (Cohere v2) and `POST /v1/rerank` (Cohere v1 and Jina): one body, whose
/// fields each dialect uses or ignores. Unknown keys are ignored; `null` is the same as absent.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CohereRequest {
    /// Required by Cohere's v2 API; here it may be left out when one model is loaded.
    pub model: Option<String>,
    pub query: String,
    #[schema(min_items = 1)]
    pub documents: Vec<Document>,
    /// The best `top_n` results (absent or null: all).
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "whole")]
    pub top_n: Option<i64>,
    /// Each document is cut to this many tokens before it is scored in windows (absent or
    /// null: 4096, as Cohere). Models with a chat template take no cap and truncate instead.
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "whole")]
    pub max_tokens_per_doc: Option<i64>,
    /// Scheduling priority: 0 (the default) is the highest, served first and displaced last
    /// when the model's queue is full; at most the server's --max-priority (default 9).
    #[schema(minimum = 0)]
    #[serde(default, deserialize_with = "whole")]
    pub priority: Option<i64>,
    /// Return each result's document (default: false on /v2/rerank; true on /v1/rerank, as
    /// Jina and vLLM).
    pub return_documents: Option<bool>,
    /// Windows a long document may be scored in (absent or null: 64; at most the server's
    /// max_pairs_per_request); a document needing more is refused. Ignored for models with a
    /// chat template, which truncate.
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "whole")]
    pub max_chunks_per_doc: Option<i64>,
    /// Accepted and ignored (Cohere v1: which object keys to rank by); `text` is used.
    #[allow(dead_code)]
    pub rank_fields: Option<Vec<String>>,
}

impl NamesModel for CohereRequest {
    fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct V2Result {
    pub index: usize,
    pub relevance_score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<DocumentObject>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiVersion {
    pub version: &'static str,
    pub is_experimental: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BilledUnits {
    pub search_units: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Tokens {
    pub input_tokens: usize,
    pub output_tokens: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Meta {
    pub api_version: ApiVersion,
    pub billed_units: BilledUnits,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Tokens>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct V2Response {
    pub id: String,
    pub results: Vec<V2Result>,
    pub meta: Meta,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Usage {
    pub total_tokens: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct V1Response {
    pub id: String,
    pub model: String,
    pub results: Vec<V2Result>,
    pub usage: Usage,
    pub meta: Meta,
}

#[utoipa::path(post, path = "/v2/rerank", request_body = CohereRequest,
    security((), ("bearer" = [])),
    responses((status = 200, body = V2Response), (status = "4XX", body = super::error::CohereError),
              (status = "5XX", body = super::error::CohereError)))]
pub async fn v2_rerank(State(h): State<Arc<Http>>, req: Request) -> Response {
    h.handle(
        "/v2/rerank",
        Dialect::Cohere,
        req,
        |h, call, r: CohereRequest| async move {
            let (out, extras) = run(&h, &call, r, false).await?;
            let meta = meta("2", Some(out.usage.tokens));
            let response = V2Response {
                id: response_id(),
                results: results(&out, extras),
                meta,
            };
            Answer::json(&response, Some(out.timing))
        },
    )
    .await
}

#[utoipa::path(post, path = "/v1/rerank", request_body = CohereRequest,
    security((), ("bearer" = [])),
    responses((status = 200, body = V1Response), (status = "4XX", body = super::error::CohereError),
              (status = "5XX", body = super::error::CohereError)))]
pub async fn v1_rerank(State(h): State<Arc<Http>>, req: Request) -> Response {
    h.handle("/v1/rerank", Dialect::Cohere, req, v1_answer)
        .await
}

/// A Cohere v1 or Jina rerank (also what `/rerank` does with a Jina body).
pub async fn v1_answer(h: Arc<Http>, call: Call, r: CohereRequest) -> Result<Answer, ApiError> {
    let (out, extras) = run(&h, &call, r, true).await?;
    let response = V1Response {
        id: response_id(),
        model: out.model.clone(),
        usage: Usage {
            total_tokens: out.usage.tokens,
        },
        results: results(&out, extras),
        meta: meta("1", None),
    };
    Answer::json(&response, Some(out.timing))
}

/// Validates and runs a rerank (documents returned by default when `return_documents`); with
/// the extra keys of each document when they are returned.
async fn run(
    h: &Http,
    call: &Call,
    r: CohereRequest,
    return_documents: bool,
) -> Result<(RerankOutput, Option<Vec<Map<String, Value>>>), ApiError> {
    let return_documents = r.return_documents.unwrap_or(return_documents);
    let fail = |e: ServeError| ApiError::serve(&e, call.dialect);
    let priority = priority(r.priority, h.engine.limits.max_priority).map_err(fail)?;
    let max_tokens_per_doc = positive("max_tokens_per_doc", r.max_tokens_per_doc).map_err(fail)?;
    let max_chunks_per_doc = positive("max_chunks_per_doc", r.max_chunks_per_doc).map_err(fail)?;
    // Long documents are scored in windows, as Cohere does, where that is exact; models with a
    // chat template truncate (an unknown model is refused by the rerank itself).
    let chat = h
        .engine
        .model(&call.model)
        .is_ok_and(|m| m.tokenizer.uses_chat_template());
    let options = match chat {
        true => Options {
            max_tokens_per_doc,
            ..call.options(priority)
        },
        false => Options {
            truncation: Truncation::Chunk,
            max_tokens_per_doc: max_tokens_per_doc.or(Some(COHERE_MAX_TOKENS_PER_DOC)),
            chunking: ChunkOptions {
                max_chunks_per_doc,
                ..ChunkOptions::default()
            },
            ..call.options(priority)
        },
    };
    let top_n = positive("top_n", r.top_n).map_err(fail)?.unwrap_or(0);
    let mut extras = return_documents.then(Vec::new);
    let documents = r
        .documents
        .into_iter()
        .map(|d| {
            let (text, extra) = d.into_parts();
            if let Some(e) = extras.as_mut() {
                e.push(extra);
            }
            (String::new(), text)
        })
        .collect();
    let fields = RerankFields {
        query: r.query,
        documents,
        top_n,
        return_documents,
        min_score: None,
    };
    let valid = ValidRerank::new(options, fields, &h.engine.limits).map_err(fail)?;
    let out = h
        .engine
        .rerank(valid, Some(call.deadline))
        .await
        .map_err(fail)?;
    Ok((out, extras))
}

/// Cohere's default cap on a document's tokens.
pub const COHERE_MAX_TOKENS_PER_DOC: usize = 4096;

/// An optional integer; a number with no fraction (`3.0`) is that integer, as JSON Schema
/// counts it.
fn whole<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let float = || {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
            .map(|f| f as i64)
    };
    n.as_i64()
        .or_else(float)
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("{n} is not an integer (within 64 bits)")))
}

/// `priority`: absent or null is 0, the highest; beyond `max` is refused here when it does
/// not fit the engine's `u32` (`ValidRerank::new` refuses the rest, with the same message).
fn priority(p: Option<i64>, max: u32) -> Result<u32, ServeError> {
    match p {
        None => Ok(0),
        Some(p) if p < 0 => Err(ServeError::Invalid(format!(
            "`priority` is {p}; give 0 (the highest) to {max}"
        ))),
        Some(p) => u32::try_from(p).map_err(|_| {
            ServeError::Invalid(format!(
                "`priority` is {p}; the limit is {max} (max_priority; 0 is the highest)"
            ))
        }),
    }
}

/// An optional count that must be at least 1 when given.
fn positive(field: &str, n: Option<i64>) -> Result<Option<usize>, ServeError> {
    match n {
        Some(n) if n < 1 => Err(ServeError::Invalid(format!(
            "`{field}` is {n}; give at least 1, or leave it out (or null) for no limit"
        ))),
        Some(n) => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
        None => Ok(None),
    }
}

fn results(out: &RerankOutput, mut extras: Option<Vec<Map<String, Value>>>) -> Vec<V2Result> {
    out.results
        .iter()
        .map(|r| V2Result {
            index: r.index,
            relevance_score: r.score,
            document: r.text.clone().map(|text| DocumentObject {
                text,
                extra: extras
                    .as_mut()
                    .map(|e| std::mem::take(&mut e[r.index]))
                    .unwrap_or_default(),
            }),
        })
        .collect()
}

fn meta(version: &'static str, input_tokens: Option<usize>) -> Meta {
    Meta {
        api_version: ApiVersion {
            version,
            is_experimental: false,
        },
        billed_units: BilledUnits { search_units: 1 },
        tokens: input_tokens.map(|input_tokens| Tokens {
            input_tokens,
            output_tokens: 0,
        }),
    }
}

/// A response id: random, 128 bits, as hex.
fn response_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}
