//! TEI's REST routes (`/rerank`, `/predict`, `/info`) through a real server on 127.0.0.1:0 and a
//! plain HTTP client: the numbers equal the gRPC API's on the same server and the Python
//! reference, the shapes and error bodies are TEI's, and a Jina body on `/rerank` is answered
//! in Jina's shape.

use crate::common;

use common::fixtures;
use common::server::{model, TestServer};
use crossrank::api::pb;
use crossrank::api::ServerOptions;
use crossrank::config::RequestLimits;
use serde::Deserialize;
use serde_json::{json, Value};

const QUERY: &str = "what does the fox do";
const TEXTS: [&str; 4] = [
    "The quick brown fox jumps over the lazy dog.",
    "Foxes are small omnivorous mammals.",
    "A cross-encoder reads the query and the document together.",
    "",
];

/// POSTs `body` as JSON to `path`; the status and the JSON answer (`Value::Null` if none).
async fn post(server: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", url(server)))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await
        .unwrap();
    answer(response).await
}

async fn get(server: &TestServer, path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", url(server)))
        .send()
        .await
        .unwrap();
    answer(response).await
}

fn url(server: &TestServer) -> String {
    format!(
        "http://{}",
        server.http_addr.expect("started with the REST port")
    )
}

async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn start(models: &[&str], opts: ServerOptions) -> TestServer {
    let models = models.iter().map(|m| model(m)).collect();
    TestServer::start_http(models, opts, RequestLimits::default()).await
}

/// A TEI error body with this status and error_type, whose message holds every `needle`.
fn assert_tei_error(got: &(u16, Value), status: u16, kind: &str, needles: &[&str]) {
    let (code, body) = got;
    assert_eq!(*code, status, "{body}");
    assert_eq!(body["error_type"], kind, "{body}");
    let message = body["error"].as_str().unwrap_or_else(|| panic!("{body}"));
    for needle in needles {
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    }
}

/// index -> score of a TEI rerank answer, checking it is sorted best first.
fn scores_by_index(ranks: &Value) -> Vec<f32> {
    let ranks = ranks.as_array().unwrap_or_else(|| panic!("{ranks}"));
    let scores: Vec<f32> = ranks
        .iter()
        .map(|r| r["score"].as_f64().unwrap() as f32)
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "not sorted: {scores:?}"
    );
    let mut by_index = vec![f32::NAN; ranks.len()];
    for r in ranks {
        by_index[r["index"].as_u64().unwrap() as usize] = r["score"].as_f64().unwrap() as f32;
    }
    by_index
}

fn assert_close(got: &[f32], want: &[f32], tolerance: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tolerance, "{what}[{i}]: {g} vs {w}");
    }
}

async fn grpc_rerank(server: &TestServer, activation: pb::Activation) -> Vec<f32> {
    let documents = TEXTS
        .iter()
        .map(|t| pb::Document {
            id: String::new(),
            text: t.to_string(),
        })
        .collect();
    let request = pb::RerankRequest {
        query: QUERY.into(),
        documents,
        activation: activation as i32,
        ..Default::default()
    };
    let out = server.client().rerank(request).await.unwrap().into_inner();
    let mut by_index = vec![f32::NAN; TEXTS.len()];
    for r in out.results {
        by_index[r.index as usize] = r.score;
    }
    by_index
}

async fn grpc_score(
    server: &TestServer,
    pairs: &[(String, String)],
    activation: pb::Activation,
) -> Vec<Vec<f32>> {
    let request = pb::ScoreRequest {
        pairs: pairs
            .iter()
            .map(|(a, b)| pb::Pair {
                text_a: a.clone(),
                text_b: b.clone(),
            })
            .collect(),
        activation: activation as i32,
        ..Default::default()
    };
    let out = server.client().score(request).await.unwrap().into_inner();
    out.results.into_iter().map(|r| r.scores).collect()
}

/// `/rerank` with raw_scores false gives the gRPC Rerank's sigmoid scores, with raw_scores true
/// the gRPC Score's logits, sorted best first; texts come back only with return_text.
/// (Batches differ between the calls, so scores agree to the parity tolerance, not bitwise.)
#[tokio::test]
async fn rerank_scores_equal_grpc_rerank_and_score_logits() {
    let server = start(&["bert=bert"], ServerOptions::default()).await;
    let body = json!({"query": QUERY, "texts": TEXTS});
    let (status, ranks) = post(&server, "/rerank", &body).await;
    assert_eq!(status, 200, "{ranks}");
    let want = grpc_rerank(&server, pb::Activation::Sigmoid).await;
    assert_close(&scores_by_index(&ranks), &want, 1e-6, "sigmoid");
    assert!(ranks[0].get("text").is_none(), "{ranks}");

    let body = json!({"query": QUERY, "texts": TEXTS, "raw_scores": true, "return_text": true,
                      "truncate": null, "truncation_direction": "right"});
    let (status, ranks) = post(&server, "/rerank", &body).await;
    assert_eq!(status, 200, "{ranks}");
    let pairs: Vec<(String, String)> = TEXTS
        .iter()
        .map(|t| (QUERY.into(), t.to_string()))
        .collect();
    let logits: Vec<f32> = grpc_score(&server, &pairs, pb::Activation::None)
        .await
        .into_iter()
        .map(|s| s[0])
        .collect();
    assert_close(&scores_by_index(&ranks), &logits, 1e-5, "logits");
    for r in ranks.as_array().unwrap() {
        assert_eq!(
            r["text"],
            TEXTS[r["index"].as_u64().unwrap() as usize],
            "{r}"
        );
    }
    server.stop().await;
}

/// The Python reference for left and right truncation (tests/fixtures/make_truncation.py).
#[derive(Deserialize)]
struct Sided {
    pairs: Vec<(String, String)>,
    right: Logits,
    left: Logits,
}

#[derive(Deserialize)]
struct Logits {
    none: Vec<Vec<f32>>,
}

fn sided() -> Sided {
    let text = std::fs::read_to_string(fixtures().join("truncation.json")).unwrap();
    let mut all: Value = serde_json::from_str(&text).unwrap();
    serde_json::from_value(all["scores"].take()).unwrap()
}

/// Long documents whose start and end differ score differently cut from the left and from the
/// right, and each matches sentence-transformers with the tokenizer's truncation_side set so
/// (through `/predict` for the batch and `/rerank` for one pair); `truncate: false` refuses
/// them with TEI's 422.
#[tokio::test]
async fn left_and_right_truncation_match_the_python_reference() {
    let reference = sided();
    let server = start(&["bert=bert"], ServerOptions::default()).await;
    let inputs: Vec<[&str; 2]> = reference
        .pairs
        .iter()
        .map(|(a, b)| [a.as_str(), b.as_str()])
        .collect();
    for (direction, want) in [("Left", &reference.left), ("RIGHT", &reference.right)] {
        let body = json!({"inputs": inputs, "raw_scores": true, "truncation_direction": direction});
        let (status, rows) = post(&server, "/predict", &body).await;
        assert_eq!(status, 200, "{rows}");
        let got: Vec<f32> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[0]["score"].as_f64().unwrap() as f32)
            .collect();
        let want: Vec<f32> = want.none.iter().map(|s| s[0]).collect();
        assert_close(&got, &want, 1e-4, direction);
        let (query, doc) = &reference.pairs[0];
        let body = json!({"query": query, "texts": [doc], "raw_scores": true,
                          "truncation_direction": direction.to_lowercase()});
        let (status, ranks) = post(&server, "/rerank", &body).await;
        assert_eq!(status, 200, "{ranks}");
        assert_close(&scores_by_index(&ranks), &want[..1], 1e-4, direction);
    }
    assert!((reference.left.none[0][0] - reference.right.none[0][0]).abs() > 1e-3);

    let (query, doc) = &reference.pairs[0];
    let body = json!({"query": query, "texts": ["short", doc], "truncate": false});
    let got = post(&server, "/rerank", &body).await;
    assert_tei_error(
        &got,
        422,
        "validation",
        &["pair 1", "max length of 40 tokens"],
    );
    let body = json!({"inputs": [query, doc], "truncate": false});
    let got = post(&server, "/predict", &body).await;
    assert_tei_error(&got, 422, "validation", &["pair 0", "40 tokens"]);
    server.stop().await;
}

/// `/predict` on a three-label model: every label of `id2label`, best first, with softmax
/// scores equal to gRPC Score's (logits with raw_scores); one pair gives one list, a batch a
/// list of lists; single texts are refused naming why, an empty batch is TEI's 400.
#[tokio::test]
async fn predict_gives_every_label_as_grpc_score_does() {
    let server = start(&["nli=bert_3labels"], ServerOptions::default()).await;
    let pairs: Vec<(String, String)> = TEXTS
        .iter()
        .map(|t| (QUERY.into(), t.to_string()))
        .collect();
    let inputs: Vec<[&str; 2]> = pairs
        .iter()
        .map(|(a, b)| [a.as_str(), b.as_str()])
        .collect();
    let labels = ["contradiction", "entailment", "neutral"];
    for (raw, activation) in [
        (false, pb::Activation::Softmax),
        (true, pb::Activation::None),
    ] {
        let want = grpc_score(&server, &pairs, activation).await;
        let (status, rows) = post(
            &server,
            "/predict",
            &json!({"inputs": inputs, "raw_scores": raw}),
        )
        .await;
        assert_eq!(status, 200, "{rows}");
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), pairs.len());
        for (row, want) in rows.iter().zip(&want) {
            let row = row.as_array().unwrap();
            let scores: Vec<f32> = row
                .iter()
                .map(|p| p["score"].as_f64().unwrap() as f32)
                .collect();
            assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{row:?}");
            let mut by_label = vec![f32::NAN; labels.len()];
            for p in row {
                let at = labels.iter().position(|l| p["label"] == *l).unwrap();
                by_label[at] = p["score"].as_f64().unwrap() as f32;
            }
            assert_close(&by_label, want, 1e-5, "labels");
        }
    }
    let (status, one) = post(&server, "/predict", &json!({"inputs": inputs[0]})).await;
    assert_eq!(status, 200, "{one}");
    let one = one.as_array().unwrap();
    assert_eq!(one.len(), 3);
    assert!(
        one[0].get("label").is_some(),
        "a single pair gives one flat list: {one:?}"
    );

    let got = post(&server, "/predict", &json!({"inputs": "just one text"})).await;
    assert_tei_error(&got, 422, "validation", &["`inputs` is a single text"]);
    let got = post(&server, "/predict", &json!({"inputs": [["a", "b"], ["c"]]})).await;
    assert_tei_error(&got, 422, "validation", &["`inputs[1]` is a single text"]);
    let got = post(&server, "/predict", &json!({"inputs": []})).await;
    assert_tei_error(&got, 400, "empty", &["`inputs` cannot be empty"]);
    for bad in [json!(5), json!(["a", "b", "c"]), json!([["a", "b"], "c"])] {
        let got = post(&server, "/predict", &json!({ "inputs": bad })).await;
        assert_tei_error(&got, 422, "validation", &["line 1 column"]);
    }
    server.stop().await;
}

/// A Jina body (`documents`) on `/rerank` is answered in Jina's shape with the model's default
/// scores, as `/v1/rerank` answers it, and its errors are Jina's (`detail`).
#[tokio::test]
async fn a_jina_body_on_rerank_is_answered_in_jina_shape() {
    let server = start(&["bert=bert"], ServerOptions::default()).await;
    let body = json!({"model": "bert", "query": QUERY, "documents": TEXTS, "top_n": 2});
    let (status, jina) = post(&server, "/rerank", &body).await;
    assert_eq!(status, 200, "{jina}");
    assert_eq!(jina["model"], "bert", "{jina}");
    assert!(
        jina["usage"]["total_tokens"].as_u64().unwrap() > 0,
        "{jina}"
    );
    let results = jina["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    let want = grpc_rerank(&server, pb::Activation::ModelDefault).await;
    for r in results {
        let i = r["index"].as_u64().unwrap() as usize;
        let score = r["relevance_score"].as_f64().unwrap() as f32;
        assert!((score - want[i]).abs() <= 1e-6, "{r}");
        assert_eq!(r["document"]["text"], TEXTS[i], "{r}");
    }
    let (status, error) = post(&server, "/rerank", &json!({"query": "q", "documents": []})).await;
    assert_eq!(status, 400, "{error}");
    assert!(
        error["detail"].as_str().unwrap().contains("documents"),
        "{error}"
    );
    assert!(error.get("error_type").is_none(), "{error}");
    server.stop().await;
}

/// TEI's errors for what a client can fix: an empty `texts` is 400 `empty`; a wrong
/// truncation_direction, too many texts or too long a text are 422 naming the field, the
/// limit and the value; a body that is not the route's shape is 422 with the parser's position.
#[tokio::test]
async fn rerank_refusals_are_tei_errors_naming_the_field() {
    let limits = RequestLimits {
        max_pairs_per_request: 3,
        max_text_bytes: 100,
        ..RequestLimits::default()
    };
    let server =
        TestServer::start_http(vec![model("bert=bert")], ServerOptions::default(), limits).await;
    let got = post(&server, "/rerank", &json!({"query": "q", "texts": []})).await;
    assert_tei_error(&got, 400, "empty", &["`texts` cannot be empty"]);
    let got = post(
        &server,
        "/rerank",
        &json!({"query": "q", "texts": ["a"], "truncation_direction": "Middle"}),
    )
    .await;
    assert_tei_error(&got, 422, "validation", &["truncation_direction", "Middle"]);
    let got = post(
        &server,
        "/rerank",
        &json!({"query": "q", "texts": ["a", "b", "c", "d"]}),
    )
    .await;
    assert_tei_error(
        &got,
        422,
        "validation",
        &["`texts` has 4 entries", "limit is 3"],
    );
    let long = "x".repeat(101);
    let got = post(
        &server,
        "/rerank",
        &json!({"query": "q", "texts": ["a", long]}),
    )
    .await;
    assert_tei_error(
        &got,
        422,
        "validation",
        &["`texts[1]` is 101 bytes", "limit is 100"],
    );
    let got = post(&server, "/rerank", &json!({"query": "q", "texts": "a"})).await;
    assert_tei_error(&got, 422, "validation", &["line 1 column"]);
    let got = post(&server, "/predict", &json!({"inputs": ["a", long]})).await;
    assert_tei_error(&got, 422, "validation", &["`inputs[0][1]` is 101 bytes"]);
    server.stop().await;
}

/// `/info` describes the model the TEI routes serve in TEI's terms (a one-label model is a
/// reranker with its id2label, a three-label one a classifier) with the request and batch
/// limits; with several models, `--default-model` picks it and `models` lists them all;
/// without a default it is refused naming the models.
#[tokio::test]
async fn info_describes_the_served_model() {
    let server = start(&["bert=bert"], ServerOptions::default()).await;
    let (status, info) = get(&server, "/info").await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["model_id"], "bert");
    assert_eq!(info["model_dtype"], "float32");
    assert_eq!(
        info["model_type"]["reranker"]["id2label"],
        json!({"0": "LABEL_0"})
    );
    assert_eq!(info["max_input_length"], 40);
    assert_eq!(
        info["max_client_batch_size"],
        RequestLimits::default().max_pairs_per_request
    );
    assert_eq!(info["max_batch_tokens"], 16_384);
    assert_eq!(info["auto_truncate"], true);
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert!(info.get("models").is_none(), "{info}");
    server.stop().await;

    let mut opts = ServerOptions::default();
    opts.http.default_model = Some("nli".into());
    let server = start(&["bert=bert", "nli=bert_3labels"], opts).await;
    let (status, info) = get(&server, "/info").await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["model_id"], "nli");
    let classes = &info["model_type"]["classifier"];
    assert_eq!(classes["id2label"]["1"], "entailment", "{info}");
    assert_eq!(classes["label2id"]["neutral"], 2, "{info}");
    let ids: Vec<&str> = info["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["bert", "nli"]);
    server.stop().await;

    let server = start(&["bert=bert", "nli=bert_3labels"], ServerOptions::default()).await;
    let (status, info) = get(&server, "/info").await;
    assert!((400..500).contains(&status), "{status} {info}");
    let message = info["error"].as_str().unwrap();
    assert!(
        message.contains("bert") && message.contains("nli"),
        "{message}"
    );
    server.stop().await;
}

/// The OpenAPI document lists the TEI routes with their request, answer and error schemas.
#[tokio::test]
async fn openapi_lists_the_tei_routes() {
    let server = start(&["bert=bert"], ServerOptions::default()).await;
    let (status, doc) = get(&server, "/openapi.json").await;
    assert_eq!(status, 200, "{doc}");
    if let Ok(path) = std::env::var("CROSSRANK_DUMP_OPENAPI") {
        std::fs::write(path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    }
    assert!(
        doc["paths"]["/rerank"]["post"]["requestBody"].is_object(),
        "{doc}"
    );
    assert!(
        doc["paths"]["/predict"]["post"]["requestBody"].is_object(),
        "{doc}"
    );
    assert!(
        doc["paths"]["/info"]["get"]["responses"]["200"].is_object(),
        "{doc}"
    );
    let schemas = &doc["components"]["schemas"];
    for name in [
        "RerankRequest",
        "PredictRequest",
        "InputsSchema",
        "Info",
        "TeiError",
    ] {
        assert!(schemas[name].is_object(), "no schema {name}");
    }
    server.stop().await;
}

/// The document cap reaches the tokenizer through the engine: with `max_tokens_per_doc: 1`
/// documents that share their first token score the same, without it they differ; an LLM
/// reranker (chat template) refuses a cap naming why, and takes left truncation.
#[tokio::test]
async fn the_document_cap_and_left_truncation_reach_the_engine() {
    let server = start(&["bert=bert", "llm=causal"], ServerOptions::default()).await;
    let docs = ["the cat sat on the mat", "the dog ran in the park"];
    let scores = |body: &Value| {
        let results = body["results"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"));
        let mut by_index = [f32::NAN; 2];
        for r in results {
            by_index[r["index"].as_u64().unwrap() as usize] =
                r["relevance_score"].as_f64().unwrap() as f32;
        }
        by_index
    };
    let body = json!({"model": "bert", "query": QUERY, "documents": docs, "max_tokens_per_doc": 1});
    let (status, capped) = post(&server, "/v2/rerank", &body).await;
    assert_eq!(status, 200, "{capped}");
    let capped = scores(&capped);
    assert!((capped[0] - capped[1]).abs() <= 1e-6, "{capped:?}");
    let body =
        json!({"model": "bert", "query": QUERY, "documents": docs, "max_tokens_per_doc": null});
    let (status, whole) = post(&server, "/v2/rerank", &body).await;
    assert_eq!(status, 200, "{whole}");
    let whole = scores(&whole);
    assert!((whole[0] - whole[1]).abs() > 1e-4, "{whole:?}");

    let body = json!({"model": "llm", "query": QUERY, "documents": docs, "max_tokens_per_doc": 5});
    let (status, error) = post(&server, "/v2/rerank", &body).await;
    assert_eq!(status, 400, "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("max_tokens_per_doc") && message.contains("chat template"),
        "{message}"
    );
    let body =
        json!({"model": "llm", "query": QUERY, "texts": docs, "truncation_direction": "left"});
    let (status, ranks) = post(&server, "/rerank", &body).await;
    assert_eq!(status, 200, "{ranks}");
    server.stop().await;
}
