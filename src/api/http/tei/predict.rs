//! TEI's `POST /predict`: every label's score for one pair, or for each pair of a batch, sorted
//! best first, with the labels of the model's `id2label`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::{nonempty, options, valid_score};
use crate::activation::ActivationChoice;
use crate::api::http::call::{Answer, Call, NamesModel};
use crate::api::http::error::TeiError;
use crate::api::http::error::{ApiError, Dialect};
use crate::api::http::Http;
use crate::engine::ServeError;

/// `POST /predict` as TEI takes it. Unknown keys are ignored; `null` is the same as absent.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PredictRequest {
    #[schema(value_type = InputsSchema)]
    pub inputs: PredictInput,
    /// true: the logits; false (default): softmax over several labels, sigmoid for one (TEI's).
    pub raw_scores: Option<bool>,
    /// false: a pair longer than the model's max length is refused (422); else it is truncated.
    pub truncate: Option<bool>,
    /// `Right` (default) or `Left`, in any case.
    #[schema(pattern = "^([Ll][Ee][Ff][Tt]|[Rr][Ii][Gg][Hh][Tt])$")]
    pub truncation_direction: Option<String>,
    /// Not TEI's: picks a model when several are loaded.
    pub model: Option<String>,
}

impl NamesModel for PredictRequest {
    fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }
}

/// `inputs`, read as TEI reads it: a string is one text; a list of strings is one text or one
/// pair (three or more are refused); a list of lists is a batch, each entry one text or a pair.
#[derive(Debug, PartialEq)]
pub enum PredictInput {
    One(Sequence),
    Batch(Vec<Sequence>),
}

/// A single text or a pair of texts.
#[derive(Debug, PartialEq)]
pub enum Sequence {
    Text(String),
    Pair(String, String),
}

/// `inputs` as the OpenAPI document shows it (the parser is [`PredictInput`]'s).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum InputsSchema {
    /// One pair, `[text_a, text_b]` (a list of one string is one text).
    Pair(OneOrTwo),
    /// A batch of pairs.
    Batch(PairBatch),
}

/// A list of one or two strings (schema only).
#[derive(Serialize)]
pub struct OneOrTwo(Vec<String>);

impl utoipa::PartialSchema for OneOrTwo {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, Object, Type};
        ArrayBuilder::new()
            .items(Object::with_type(Type::String))
            .min_items(Some(2))
            .max_items(Some(2))
            .into()
    }
}

impl ToSchema for OneOrTwo {}

/// At least one pair (schema only).
#[derive(Serialize)]
pub struct PairBatch(Vec<OneOrTwo>);

impl utoipa::PartialSchema for PairBatch {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::ArrayBuilder;
        ArrayBuilder::new()
            .items(<OneOrTwo as utoipa::PartialSchema>::schema())
            .min_items(Some(1))
            .into()
    }
}

impl ToSchema for PairBatch {}

const EXPECTING: &str = "a text, a pair [\"a\", \"b\"], or a batch of pairs [[\"a\", \"b\"], ...]";

impl<'de> Deserialize<'de> for PredictInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(InputsVisitor)
    }
}

struct InputsVisitor;

/// The first entry of a list decides what the list is.
#[derive(Deserialize)]
#[serde(untagged)]
enum First {
    Text(String),
    List(Vec<String>),
}

impl<'de> Visitor<'de> for InputsVisitor {
    type Value = PredictInput;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(EXPECTING)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<PredictInput, E> {
        Ok(PredictInput::One(Sequence::Text(v.to_owned())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PredictInput, A::Error> {
        let first = match seq.next_element::<First>() {
            Ok(Some(first)) => first,
            Ok(None) => return Ok(PredictInput::Batch(Vec::new())),
            Err(_) => return Err(de::Error::invalid_type(de::Unexpected::Seq, &self)),
        };
        let text = match first {
            First::Text(text) => text,
            First::List(list) => {
                let mut batch = vec![sequence(list, &self)?];
                while let Some(list) = seq.next_element::<Vec<String>>()? {
                    batch.push(sequence(list, &self)?);
                }
                return Ok(PredictInput::Batch(batch));
            }
        };
        let Some(second) = seq.next_element::<String>()? else {
            return Ok(PredictInput::One(Sequence::Text(text)));
        };
        if seq.next_element::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(3, &self));
        }
        Ok(PredictInput::One(Sequence::Pair(text, second)))
    }
}

/// One entry of a batch: `[text]` or `[text_a, text_b]`.
fn sequence<E: de::Error>(list: Vec<String>, v: &InputsVisitor) -> Result<Sequence, E> {
    let n = list.len();
    let mut items = list.into_iter();
    match (items.next(), items.next(), n) {
        (Some(text), None, 1) => Ok(Sequence::Text(text)),
        (Some(a), Some(b), 2) => Ok(Sequence::Pair(a, b)),
        _ => Err(de::Error::invalid_length(n, v)),
    }
}

/// One label's score.
#[derive(Debug, PartialEq, Serialize, ToSchema)]
pub struct Prediction {
    pub score: f32,
    pub label: String,
}

/// Every label of one input, best first; a list of such lists for a batch.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum PredictResponse {
    One(Vec<Prediction>),
    Batch(Vec<Vec<Prediction>>),
}

/// Scores pairs with every label of the model (`id2label`), TEI's way.
#[utoipa::path(post, path = "/predict", request_body = PredictRequest,
    security((), ("bearer" = [])),
    responses((status = 200, body = PredictResponse), (status = "4XX", body = TeiError),
              (status = "5XX", body = TeiError)))]
pub async fn predict(State(h): State<Arc<Http>>, req: Request) -> Response {
    h.handle(
        "/predict",
        Dialect::Tei,
        req,
        |h, call, r: PredictRequest| async move { run(&h, &call, r).await },
    )
    .await
}

async fn run(h: &Http, call: &Call, r: PredictRequest) -> Result<Answer, ApiError> {
    let fail = |e: ServeError| ApiError::serve(&e, Dialect::Tei);
    let (pairs, batch) = pairs(r.inputs)?;
    let model = h.engine.model(&call.model).map_err(fail)?;
    let labels = model.spec.labels.clone();
    drop(model);
    let activation = match (r.raw_scores.unwrap_or(false), labels.len()) {
        (true, _) => ActivationChoice::None,
        (false, 1) => ActivationChoice::Sigmoid,
        (false, _) => ActivationChoice::Softmax,
    };
    let options = options(call, activation, r.truncate, r.truncation_direction).map_err(fail)?;
    let valid = valid_score(options, pairs, &h.engine.limits).map_err(fail)?;
    let out = h
        .engine
        .score(valid, Some(call.deadline))
        .await
        .map_err(fail)?;
    let mut rows = out.scores.iter().map(|s| predictions(s, &labels));
    let response = match batch {
        true => PredictResponse::Batch(rows.collect()),
        false => PredictResponse::One(rows.next().unwrap_or_default()),
    };
    Answer::json(&response, Some(out.timing))
}

/// The pairs of `inputs`, and whether they came as a batch. Single texts are refused: a
/// cross-encoder scores pairs.
pub fn pairs(inputs: PredictInput) -> Result<(Vec<(String, String)>, bool), ApiError> {
    let (sequences, batch) = match inputs {
        PredictInput::One(s) => (vec![s], false),
        PredictInput::Batch(v) => (v, true),
    };
    nonempty("inputs", sequences.len())?;
    let pairs = sequences
        .into_iter()
        .enumerate()
        .map(|(i, s)| match s {
            Sequence::Pair(a, b) => Ok((a, b)),
            Sequence::Text(_) => {
                let field = match batch {
                    true => format!("inputs[{i}]"),
                    false => "inputs".to_owned(),
                };
                let e = ServeError::Unsupported(format!(
                    "`{field}` is a single text; crossrank scores pairs of texts with a \
                     cross-encoder (as sentence-transformers' CrossEncoder.predict does): send \
                     [\"text_a\", \"text_b\"]"
                ));
                Err(ApiError::serve(&e, Dialect::Tei))
            }
        })
        .collect::<Result<_, _>>()?;
    Ok((pairs, batch))
}

/// One pair's scores with their labels, best first (equal scores keep label order).
fn predictions(scores: &[f32], labels: &[String]) -> Vec<Prediction> {
    let mut out: Vec<Prediction> = scores
        .iter()
        .zip(labels)
        .map(|(&score, label)| Prediction {
            score,
            label: label.clone(),
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: &str) -> Result<PredictInput, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    fn pair(a: &str, b: &str) -> Sequence {
        Sequence::Pair(a.into(), b.into())
    }

    fn text(a: &str) -> Sequence {
        Sequence::Text(a.into())
    }

    /// TEI's reading of every shape: a string or a list of one string is a text, a list of two
    /// strings a pair, a list of lists a batch of texts and pairs; anything else is refused with
    /// what is expected.
    #[test]
    fn inputs_shapes_read_as_tei_reads_them() {
        use PredictInput::{Batch, One};
        assert_eq!(input(r#""a""#), Ok(One(text("a"))));
        assert_eq!(input(r#"["a"]"#), Ok(One(text("a"))));
        assert_eq!(input(r#"["a", "b"]"#), Ok(One(pair("a", "b"))));
        assert_eq!(
            input(r#"[["a", "b"], ["c", "d"]]"#),
            Ok(Batch(vec![pair("a", "b"), pair("c", "d")]))
        );
        assert_eq!(input(r#"[["a", "b"]]"#), Ok(Batch(vec![pair("a", "b")])));
        assert_eq!(
            input(r#"[["a"], ["b", "c"]]"#),
            Ok(Batch(vec![text("a"), pair("b", "c")]))
        );
        assert_eq!(input("[]"), Ok(Batch(vec![])));
        for bad in [
            "1",
            "null",
            r#"{"a": "b"}"#,
            "[1]",
            r#"["a", "b", "c"]"#,
            r#"["a", 2]"#,
            r#"[["a", "b", "c"]]"#,
            r#"[[]]"#,
            r#"[["a", "b"], "c"]"#,
        ] {
            assert!(input(bad).is_err(), "{bad}");
        }
        for bad in ["1", "[1]", r#"["a", "b", "c"]"#, r#"[[]]"#] {
            let err = input(bad).unwrap_err();
            assert!(err.contains("expected a text, a pair"), "{bad}: {err}");
        }
    }

    /// Pairs come out in order; a single text is refused naming where it is, an empty list is
    /// TEI's 400 `empty`.
    #[test]
    fn inputs_become_pairs_or_a_named_refusal() {
        let (pairs, batch) = pairs(PredictInput::One(pair("a", "b"))).unwrap();
        assert_eq!((pairs, batch), (vec![("a".into(), "b".into())], false));
        let batch = PredictInput::Batch(vec![pair("a", "b"), pair("c", "d")]);
        let (pairs, is_batch) = super::pairs(batch).unwrap();
        assert_eq!(pairs.len(), 2);
        assert!(is_batch);
        let err = super::pairs(PredictInput::Batch(vec![pair("a", "b"), text("c")])).unwrap_err();
        assert_eq!(err.status, http::StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            err.message.contains("`inputs[1]` is a single text"),
            "{}",
            err.message
        );
        let err = super::pairs(PredictInput::One(text("c"))).unwrap_err();
        assert!(
            err.message.contains("`inputs` is a single text"),
            "{}",
            err.message
        );
        let err = super::pairs(PredictInput::Batch(vec![])).unwrap_err();
        assert_eq!((err.status.as_u16(), err.kind), (400, "empty"));
    }

    #[test]
    fn predictions_are_sorted_best_first_with_their_labels() {
        let labels = ["a", "b", "c"].map(String::from);
        let p = predictions(&[0.2, 0.5, 0.2], &labels);
        let order: Vec<&str> = p.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(order, ["b", "a", "c"]);
    }
}
