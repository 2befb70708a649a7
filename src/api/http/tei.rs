//! text-embeddings-inference's routes: `POST /rerank` and `POST /predict` (`GET /info` is in
//! [`super::info`]). TEI has no `model` field: these serve `--default-model` or the only model
//! (an optional `model` key may pick another). LlamaIndex's Jina client posts Jina bodies to
//! `/rerank` too: a body with `documents` and no `texts` is answered by the Cohere v1 / Jina
//! handler, in its shape.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use serde::de::{Error as _, IgnoredAny};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::call::{Answer, Call, NamesModel};
use super::cohere::{self, CohereRequest, V1Response};
use super::error::{ApiError, Dialect, HttpFailure};
use super::error::{CohereError, TeiError};
use super::Http;
use crate::activation::ActivationChoice;
use crate::config::RequestLimits;
use crate::engine::request::{
    check_count, check_text, Options, RerankFields, Truncation, ValidRerank, ValidScore,
};
use crate::engine::ServeError;

pub mod predict;

/// `POST /rerank` as TEI takes it. Unknown keys are ignored; `null` is the same as absent.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RerankRequest {
    pub query: String,
    #[schema(min_items = 1)]
    pub texts: Vec<String>,
    /// true: the model's logit; false (default): its sigmoid, as TEI scores rerankers.
    pub raw_scores: Option<bool>,
    /// Return each text with its score.
    pub return_text: Option<bool>,
    /// false: a pair longer than the model's max length is refused (422); absent, null or true:
    /// it is truncated.
    pub truncate: Option<bool>,
    /// `Right` (default) or `Left`, in any case: which end of a text truncation drops.
    #[schema(pattern = "^([Ll][Ee][Ff][Tt]|[Rr][Ii][Gg][Hh][Tt])$")]
    pub truncation_direction: Option<String>,
    /// Not TEI's: picks a model when several are loaded (read by [`RerankBody`]).
    #[allow(dead_code)]
    pub model: Option<String>,
}

/// One text's score, as TEI returns it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rank {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub score: f32,
}

/// The bodies `/rerank` takes: TEI's (with `texts`) or Jina's (with `documents`). For the
/// OpenAPI document only.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum RerankBodies {
    Tei(RerankRequest),
    Jina(CohereRequest),
}

/// The answers `/rerank` gives: TEI's bare array sorted by score, or Jina's object.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum RerankAnswers {
    Tei(Vec<Rank>),
    Jina(V1Response),
}

/// The error bodies of `/rerank`: TEI's, or Cohere's and Jina's for a Jina body.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum RerankErrors {
    Tei(TeiError),
    Jina(CohereError),
}

/// A `/rerank` body, kept as text until its dialect is known: a body with `documents` and
/// without `texts` is Jina's. Reading the keys skips every value without building it.
pub struct RerankBody {
    raw: Box<RawValue>,
    jina: bool,
    model: Option<String>,
}

#[derive(Deserialize)]
struct Keys {
    texts: Option<IgnoredAny>,
    documents: Option<IgnoredAny>,
    /// Anything: a `model` that is not a string is refused by the dialect's own parse.
    model: Option<serde_json::Value>,
}

impl<'de> Deserialize<'de> for RerankBody {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        let keys: Keys = serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
        Ok(Self {
            jina: keys.texts.is_none() && keys.documents.is_some(),
            model: keys.model.and_then(|m| m.as_str().map(str::to_owned)),
            raw,
        })
    }
}

impl NamesModel for RerankBody {
    fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }
}

/// TEI's rerank (`texts`), or Jina's (`documents`), each answered in its own shape.
#[utoipa::path(post, path = "/rerank", request_body = RerankBodies,
    security((), ("bearer" = [])),
    responses((status = 200, body = RerankAnswers), (status = "4XX", body = RerankErrors),
              (status = "5XX", body = RerankErrors)))]
pub async fn rerank(State(h): State<Arc<Http>>, req: Request) -> Response {
    h.handle(
        "/rerank",
        Dialect::Tei,
        req,
        |h, call, body: RerankBody| async move {
            if body.jina {
                let call = Call {
                    dialect: Dialect::Cohere,
                    ..call
                };
                let r: CohereRequest = parse_raw(&body.raw, Dialect::Cohere)?;
                return cohere::v1_answer(h, call, r).await;
            }
            let r: RerankRequest = parse_raw(&body.raw, Dialect::Tei)?;
            drop(body);
            tei_rerank(&h, &call, r).await
        },
    )
    .await
}

/// The typed body of one dialect; errors in that dialect's format.
fn parse_raw<T: serde::de::DeserializeOwned>(
    raw: &RawValue,
    dialect: Dialect,
) -> Result<T, ApiError> {
    serde_json::from_str(raw.get()).map_err(|e| {
        let f = HttpFailure::Malformed(format!("the body is not valid for this route: {e}"));
        ApiError::http(f, dialect)
    })
}

async fn tei_rerank(h: &Http, call: &Call, r: RerankRequest) -> Result<Answer, ApiError> {
    let fail = |e: ServeError| ApiError::serve(&e, Dialect::Tei);
    let limits = &h.engine.limits;
    nonempty("texts", r.texts.len())?;
    check_count("texts", r.texts.len(), limits).map_err(fail)?;
    check_text("query", &r.query, limits).map_err(fail)?;
    check_texts(
        r.texts.iter().enumerate().map(|(i, t)| (i, None, t)),
        limits,
    )
    .map_err(fail)?;
    let activation = match r.raw_scores.unwrap_or(false) {
        true => ActivationChoice::None,
        false => ActivationChoice::Sigmoid,
    };
    let options = options(call, activation, r.truncate, r.truncation_direction).map_err(fail)?;
    let return_text = r.return_text.unwrap_or(false);
    let fields = RerankFields {
        query: r.query,
        documents: r.texts.into_iter().map(|t| (String::new(), t)).collect(),
        top_n: 0,
        return_documents: return_text,
        min_score: None,
    };
    let valid = ValidRerank::new(options, fields, limits).map_err(fail)?;
    let out = h
        .engine
        .rerank(valid, Some(call.deadline))
        .await
        .map_err(fail)?;
    let ranks: Vec<Rank> = out
        .results
        .into_iter()
        .map(|r| Rank {
            index: r.index,
            text: r.text,
            score: r.score,
        })
        .collect();
    Answer::json(&ranks, Some(out.timing))
}

/// TEI's 400 `empty` for an empty list.
fn nonempty(field: &str, n: usize) -> Result<(), ApiError> {
    match n {
        0 => Err(ApiError::http(
            HttpFailure::Empty(format!("`{field}` cannot be empty")),
            Dialect::Tei,
        )),
        _ => Ok(()),
    }
}

/// Each text within the text limit, named as the TEI field holding it: `texts[i]`, or
/// `inputs[i][j]` for a pair's side `j`.
fn check_texts<'a>(
    texts: impl Iterator<Item = (usize, Option<usize>, &'a String)>,
    limits: &RequestLimits,
) -> Result<(), ServeError> {
    for (i, side, text) in texts {
        if text.len() > limits.max_text_bytes {
            let field = match side {
                None => format!("texts[{i}]"),
                Some(j) => format!("inputs[{i}][{j}]"),
            };
            check_text(&field, text, limits)?;
        }
    }
    Ok(())
}

/// The engine options of a TEI call.
fn options(
    call: &Call,
    activation: ActivationChoice,
    truncate: Option<bool>,
    direction: Option<String>,
) -> Result<Options, ServeError> {
    Ok(Options {
        activation,
        truncation: match truncate {
            Some(false) => Truncation::Reject,
            None | Some(true) => Truncation::LongestFirst,
        },
        truncate_left: truncate_left(direction.as_deref())?,
        // TEI has no priority field: its calls are of the highest.
        ..call.options(0)
    })
}

/// `truncation_direction`: `Right` or `Left` in any case; absent or null is `Right`.
pub fn truncate_left(direction: Option<&str>) -> Result<bool, ServeError> {
    match direction {
        None => Ok(false),
        Some(d) if d.eq_ignore_ascii_case("right") => Ok(false),
        Some(d) if d.eq_ignore_ascii_case("left") => Ok(true),
        Some(d) => Err(ServeError::Invalid(format!(
            "`truncation_direction` is {}; give \"Right\" or \"Left\"",
            crate::api::grpc::log_value(d)
        ))),
    }
}

/// Validated pairs for `/predict`, with TEI's field names in messages.
fn valid_score(
    options: Options,
    pairs: Vec<(String, String)>,
    limits: &RequestLimits,
) -> Result<ValidScore, ServeError> {
    check_count("inputs", pairs.len(), limits)?;
    let sides = pairs
        .iter()
        .enumerate()
        .flat_map(|(i, (a, b))| [(i, Some(0), a), (i, Some(1), b)]);
    check_texts(sides, limits)?;
    ValidScore::new(options, pairs, limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_direction_takes_any_case_and_names_a_wrong_value() {
        assert_eq!(truncate_left(None), Ok(false));
        assert_eq!(truncate_left(Some("Right")), Ok(false));
        assert_eq!(truncate_left(Some("LEFT")), Ok(true));
        assert_eq!(truncate_left(Some("left")), Ok(true));
        let err = truncate_left(Some("Middle")).unwrap_err().to_string();
        assert!(
            err.contains("truncation_direction") && err.contains("Middle"),
            "{err}"
        );
    }

    /// The key decides the dialect: `texts` is TEI's (even beside `documents`), `documents`
    /// alone Jina's; `model` is read when it is a string.
    #[test]
    fn a_rerank_body_is_told_apart_by_its_keys() {
        let body = |json: &str| serde_json::from_str::<RerankBody>(json).unwrap();
        let tei = body(r#"{"query": "q", "texts": ["a"], "model": "m"}"#);
        assert!(!tei.jina);
        assert_eq!(tei.model(), Some("m"));
        let jina = body(r#"{"query": "q", "documents": [{"text": "a"}], "model": 5}"#);
        assert!(jina.jina);
        assert_eq!(jina.model(), None);
        assert!(!body(r#"{"texts": ["a"], "documents": ["b"]}"#).jina);
        assert!(!body(r#"{"query": "q"}"#).jina);
        assert!(!body(r#"{"texts": null, "documents": null}"#).jina);
        assert!(serde_json::from_str::<RerankBody>("[1]").is_err());
    }
}
