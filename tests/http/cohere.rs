//! Cohere's /v2/rerank and Cohere-v1/Jina's /v1/rerank through a real server: scores equal
//! sentence-transformers' (the generated fixtures) and the gRPC Rerank's; shapes, defaults,
//! explicit nulls and errors in Cohere's format.

use crate::common;

use std::collections::BTreeMap;

use common::server::{model, TestServer};
use crossrank::api::{pb, ServerOptions};
use crossrank::config::RequestLimits;
use serde_json::{json, Value};

async fn post(server: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    let url = format!("http://{}{path}", server.http_addr.unwrap());
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let bytes = r.bytes().await.unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{status}: not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, value)
}

async fn start(models: &[&str]) -> TestServer {
    let models = models.iter().map(|m| model(m)).collect();
    TestServer::start_http(models, ServerOptions::default(), RequestLimits::default()).await
}

fn expected() -> Value {
    let path = common::fixtures().join("expected.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every fixture pair, reranked per query through /v2/rerank (with the explicit nulls LangChain
/// sends): each relevance_score is exactly the gRPC Rerank's with truncation CHUNK and a cap of
/// 4096 document tokens (Cohere's defaults), and, for pairs that fit the model whole,
/// sentence-transformers' default-activation score within 1e-5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_scores_equal_sentence_transformers_and_grpc() {
    let server = start(&["ce=bert"]).await;
    let expected = expected();
    let pairs = expected["pairs"].as_array().unwrap();
    let reference = expected["models"]["bert"]["default"].as_array().unwrap();
    let truncated = expected["models"]["bert"]["truncated"].as_array().unwrap();
    let mut by_query: BTreeMap<&str, Vec<(usize, &str)>> = BTreeMap::new();
    for (i, p) in pairs.iter().enumerate() {
        let q = p[0].as_str().unwrap();
        by_query
            .entry(q)
            .or_default()
            .push((i, p[1].as_str().unwrap()));
    }
    let mut client = server.client();
    for (query, docs) in by_query {
        let texts: Vec<&str> = docs.iter().map(|d| d.1).collect();
        let body = json!({"model": "ce", "query": query, "documents": texts,
                          "top_n": null, "max_tokens_per_doc": null, "priority": 0});
        let (status, v) = post(&server, "/v2/rerank", &body).await;
        assert_eq!(status, 200, "{v}");
        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), texts.len());
        let grpc = client
            .rerank(pb::RerankRequest {
                model: "ce".into(),
                query: query.into(),
                documents: texts
                    .iter()
                    .map(|t| pb::Document {
                        text: t.to_string(),
                        ..Default::default()
                    })
                    .collect(),
                truncation: pb::Truncation::Chunk as i32,
                max_tokens_per_doc: 4096,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        for (r, g) in results.iter().zip(&grpc.results) {
            let index = r["index"].as_u64().unwrap() as usize;
            let score = r["relevance_score"].as_f64().unwrap();
            assert_eq!(index, g.index as usize, "same order as gRPC");
            assert_eq!(score as f32, g.score, "the gRPC Rerank's score");
            if truncated[docs[index].0].as_bool().unwrap() {
                continue; // scored in windows, not cut
            }
            let st = reference[docs[index].0][0].as_f64().unwrap();
            assert!(
                (score - st).abs() <= 1e-5,
                "{score} vs sentence-transformers {st}"
            );
        }
        let scores: Vec<f64> = results
            .iter()
            .map(|r| r["relevance_score"].as_f64().unwrap())
            .collect();
        assert!(
            scores.windows(2).all(|w| w[0] >= w[1]),
            "best first: {scores:?}"
        );
        assert_eq!(v["meta"]["api_version"]["version"], "2");
        assert_eq!(v["meta"]["billed_units"]["search_units"], 1);
        assert!(v["meta"]["tokens"]["input_tokens"].as_u64().unwrap() > 0);
        assert_eq!(v["id"].as_str().unwrap().len(), 32);
    }
}

/// /v1/rerank: strings or objects (other keys echoed back), documents returned by default (as
/// Jina and vLLM), top_n, usage, model optional with one model loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_objects_documents_and_top_n() {
    let server = start(&["ce=bert"]).await;
    let docs = json!(["Paris is in France.", {"text": "Cross-encoders read both texts.", "id": 7, "tag": ["a"]}, "cats"]);
    let body = json!({"query": "what is a cross encoder", "documents": docs, "top_n": 2});
    let (status, v) = post(&server, "/v1/rerank", &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["model"], "ce");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);
    for r in results {
        let i = r["index"].as_u64().unwrap() as usize;
        let sent = &docs[i];
        let text = sent.get("text").unwrap_or(sent);
        assert_eq!(r["document"]["text"], *text);
        if i == 1 {
            assert_eq!(r["document"]["id"], 7);
            assert_eq!(r["document"]["tag"], json!(["a"]));
        }
    }
    let body = json!({"query": "q", "documents": ["a", "b"], "return_documents": false});
    let (status, v) = post(&server, "/v1/rerank", &body).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r.get("document").is_none()));
}

/// Errors in Cohere's format (`message`, and Jina's `detail`), naming what is wrong; a
/// `priority` beyond --max-priority (default 9) among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_field() {
    let server = start(&["ce=bert", "three=bert_3labels"]).await;
    let cases = [
        (
            json!({"model": "nope", "query": "q", "documents": ["a"]}),
            404,
            "\"nope\" is not loaded",
        ),
        (
            json!({"query": "q", "documents": ["a"]}),
            400,
            "`model` is not given and 2 models are loaded",
        ),
        (
            json!({"model": "ce", "query": "q", "documents": []}),
            400,
            "`documents` is empty",
        ),
        (
            json!({"model": "ce", "query": "q", "documents": ["a"], "top_n": 0}),
            400,
            "`top_n` is 0",
        ),
        (
            json!({"model": "ce", "query": "q", "documents": ["a"], "top_n": -1}),
            400,
            "`top_n` is -1",
        ),
        (
            json!({"model": "ce", "query": "q", "documents": ["a"], "top_n": 1.5}),
            400,
            "1.5 is not an integer",
        ),
        (
            json!({"model": "ce", "query": 5, "documents": ["a"]}),
            400,
            "invalid type",
        ),
        (
            json!({"model": "three", "query": "q", "documents": ["a"]}),
            400,
            "3 labels",
        ),
        (
            json!({"model": "ce", "query": "q", "documents": ["a"], "priority": 11}),
            400,
            "`priority` is 11; the limit is 9 (max_priority",
        ),
        (
            json!({"model": "ce", "query": "q", "documents": ["a"], "priority": 5_000_000_000_i64}),
            400,
            "`priority` is 5000000000; the limit is 9",
        ),
        (
            json!({"model": "ce", "query": "q", "documents": ["a"], "priority": -1}),
            400,
            "`priority` is -1; give 0 (the highest) to 9",
        ),
    ];
    for (body, status, needle) in cases {
        for path in ["/v2/rerank", "/v1/rerank"] {
            let (got, v) = post(&server, path, &body).await;
            let message = v["message"].as_str().unwrap_or_else(|| panic!("{v}"));
            assert_eq!(got, status, "{path} {body}: {v}");
            assert!(message.contains(needle), "{path} {body}: {message}");
            assert_eq!(v["detail"], v["message"]);
        }
    }
    let most = json!({"model": "ce", "query": "q", "documents": ["a"], "priority": 9});
    let (got, v) = post(&server, "/v2/rerank", &most).await;
    assert_eq!(got, 200, "priority 9, the limit: {v}");
    let limit = RequestLimits::default().max_text_bytes;
    let long = "x".repeat(limit + 1);
    let body = json!({"model": "ce", "query": "q", "documents": ["a", long]});
    let (got, v) = post(&server, "/v2/rerank", &body).await;
    assert_eq!(got, 400);
    let m = v["message"].as_str().unwrap();
    assert!(
        m.contains("documents[1].text") && m.contains(&limit.to_string()),
        "{m}"
    );
}

/// Long documents on /v2/rerank are scored in windows by default (Cohere's behaviour): a
/// document longer than the model's max length scores as the gRPC Rerank with truncation CHUNK,
/// not as the truncated pair, and `max_chunks_per_doc` bounds its windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_scores_long_documents_in_windows() {
    let server = start(&["ce=bert"]).await;
    let query = "what does the fox do";
    let long = "the lazy dog sleeps all day. ".repeat(12) + "the quick brown fox jumps.";
    let body = json!({"model": "ce", "query": query, "documents": [long.clone()]});
    let (status, v) = post(&server, "/v2/rerank", &body).await;
    assert_eq!(status, 200, "{v}");
    let score = v["results"][0]["relevance_score"].as_f64().unwrap() as f32;
    let client = server.client();
    let grpc = |truncation: pb::Truncation| {
        let req = pb::RerankRequest {
            model: "ce".into(),
            query: query.into(),
            documents: vec![pb::Document {
                text: long.clone(),
                ..Default::default()
            }],
            truncation: truncation as i32,
            ..Default::default()
        };
        let mut client = client.clone();
        async move { client.rerank(req).await.unwrap().into_inner() }
    };
    let chunked = grpc(pb::Truncation::Chunk).await;
    assert_eq!(score, chunked.results[0].score);
    assert!(
        chunked.usage.unwrap().chunks > 1,
        "one window: the document is too short"
    );
    let cut = grpc(pb::Truncation::LongestFirst).await;
    assert_ne!(score, cut.results[0].score, "scored as the truncated pair");

    let body = json!({"model": "ce", "query": query, "documents": [long], "max_chunks_per_doc": 1});
    let (status, v) = post(&server, "/v2/rerank", &body).await;
    assert_eq!(status, 400, "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains("documents[0]") && message.contains("the limit is 1"),
        "{message}"
    );
}
