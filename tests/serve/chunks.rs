//! Long documents through a real server (truncation CHUNK): Rerank, Score and RerankStream give
//! the Python reference's pooled scores and best windows (tests/fixtures/make_chunks.py), usage
//! counts windows, and every limit is a precise INVALID_ARGUMENT.

use crate::common;

use common::fixtures;
use common::server::{model, TestServer};
use crossrank::api::pb;
use crossrank::api::ServerOptions;
use crossrank::config::RequestLimits;
use serde::Deserialize;
use tonic::Code;

#[derive(Deserialize)]
struct Case {
    model: String,
    query: String,
    doc: String,
    overlap: u32,
    pooling: String,
    max_query_tokens: Option<u32>,
    max_tokens_per_doc: Option<u32>,
    windows: u32,
    truncated: bool,
    scores: Vec<f32>,
    best: (u32, u32, u32),
}

/// The reference cases of BERT with the default query cap and no document cap, by query.
fn bert_cases(overlap: u32, pooling: &str) -> Vec<Case> {
    #[derive(Deserialize)]
    struct File {
        cases: Vec<Case>,
    }
    let text = std::fs::read_to_string(fixtures().join("chunks.json")).unwrap();
    let all = serde_json::from_str::<File>(&text).unwrap().cases;
    all.into_iter()
        .filter(|c| c.model == "bert" && c.overlap == overlap && c.pooling == pooling)
        .filter(|c| c.max_query_tokens.is_none() && c.max_tokens_per_doc.is_none())
        .collect()
}

fn chunking(overlap: u32, pooling: pb::ChunkPooling) -> Option<pb::ChunkOptions> {
    Some(pb::ChunkOptions {
        overlap_tokens: overlap,
        max_chunks_per_doc: 0,
        pooling: pooling as i32,
    })
}

fn chunk_of(c: &Case) -> Option<pb::Chunk> {
    Some(pb::Chunk {
        index: c.best.0,
        start: c.best.1,
        end: c.best.2,
    })
}

fn rerank(query: &str, docs: &[&str]) -> pb::RerankRequest {
    pb::RerankRequest {
        model: "bert".into(),
        query: query.into(),
        documents: docs
            .iter()
            .enumerate()
            .map(|(i, t)| pb::Document {
                id: format!("d{i}"),
                text: t.to_string(),
            })
            .collect(),
        activation: pb::Activation::None as i32,
        truncation: pb::Truncation::Chunk as i32,
        ..Default::default()
    }
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() < 1e-5
}

/// Rerank and Score of the same documents give the reference's pooled logits and best windows;
/// usage counts documents as pairs and windows as chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerank_and_score_pool_windows_like_the_reference() {
    let server = TestServer::simple(&["bert=bert"]).await;
    let mut client = server.client();
    for (overlap, pooling, name) in [
        (0, pb::ChunkPooling::Max, "max"),
        (3, pb::ChunkPooling::Mean, "mean"),
    ] {
        let cases = bert_cases(overlap, name);
        let query = "what does the fox do";
        let cases: Vec<&Case> = cases.iter().filter(|c| c.query == query).collect();
        assert!(cases.len() >= 3, "too few reference cases");
        let docs: Vec<&str> = cases.iter().map(|c| c.doc.as_str()).collect();
        let mut req = rerank(query, &docs);
        req.chunking = chunking(overlap, pooling);
        let r = client.rerank(req).await.unwrap().into_inner();
        for got in &r.results {
            let case = cases[got.index as usize];
            assert!(
                close(got.score, case.scores[0]),
                "{name}: {got:?} vs {:?}",
                case.scores
            );
            assert_eq!(got.best_chunk, chunk_of(case), "{name}: doc {}", got.index);
        }
        let usage = r.usage.unwrap();
        assert_eq!(usage.pairs as usize, cases.len());
        assert_eq!(usage.chunks, cases.iter().map(|c| c.windows).sum::<u32>());

        let pairs = cases
            .iter()
            .map(|c| pb::Pair {
                text_a: c.query.clone(),
                text_b: c.doc.clone(),
            })
            .collect();
        let req = pb::ScoreRequest {
            model: "bert".into(),
            pairs,
            activation: pb::Activation::None as i32,
            truncation: pb::Truncation::Chunk as i32,
            chunking: chunking(overlap, pooling),
            ..Default::default()
        };
        let r = client.score(req).await.unwrap().into_inner();
        for (got, case) in r.results.iter().zip(&cases) {
            assert!(
                close(got.scores[0], case.scores[0]),
                "{name}: score {got:?}"
            );
            assert_eq!(got.best_chunk, chunk_of(case));
            assert_eq!(got.truncated, case.truncated);
        }
    }
}

/// A query longer than its cap is cut and reported truncated; the default activation is
/// applied to the pooled logit (sigmoid for one label).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_query_is_cut_and_the_activation_follows_the_pool() {
    let server = TestServer::simple(&["bert=bert"]).await;
    let mut client = server.client();
    let cases = bert_cases(0, "mean");
    let case = cases.iter().find(|c| c.truncated).expect("a cut query");
    let pairs = vec![pb::Pair {
        text_a: case.query.clone(),
        text_b: case.doc.clone(),
    }];
    let req = pb::ScoreRequest {
        model: "bert".into(),
        pairs,
        truncation: pb::Truncation::Chunk as i32,
        chunking: chunking(0, pb::ChunkPooling::Mean),
        ..Default::default()
    };
    let r = client.score(req).await.unwrap().into_inner();
    let sigmoid = 1.0 / (1.0 + (-case.scores[0]).exp());
    assert!(close(r.results[0].scores[0], sigmoid), "{:?}", r.results[0]);
    assert!(r.results[0].truncated);
    assert_eq!(r.usage.unwrap().truncated_pairs, 1);
}

/// RerankStream: each document's partial score comes once all its windows are scored, with its
/// best window; the final ranking carries them too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerank_stream_partials_carry_the_best_window() {
    let server = TestServer::simple(&["bert=bert"]).await;
    let mut client = server.client();
    let cases = bert_cases(0, "max");
    let query = "what does the fox do";
    let cases: Vec<&Case> = cases.iter().filter(|c| c.query == query).collect();
    let header = pb::RerankStreamHeader {
        model: "bert".into(),
        query: query.into(),
        activation: pb::Activation::None as i32,
        truncation: pb::Truncation::Chunk as i32,
        ..Default::default()
    };
    let mut messages = vec![pb::RerankStreamRequest {
        kind: Some(pb::rerank_stream_request::Kind::Header(header)),
    }];
    for c in &cases {
        messages.push(pb::RerankStreamRequest {
            kind: Some(pb::rerank_stream_request::Kind::Documents(
                pb::DocumentBatch {
                    documents: vec![pb::Document {
                        id: String::new(),
                        text: c.doc.clone(),
                    }],
                },
            )),
        });
    }
    let mut stream = client
        .rerank_stream(futures::stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    let mut partials = 0;
    let mut finals = None;
    while let Some(m) = stream.message().await.unwrap() {
        match m.kind.unwrap() {
            pb::rerank_stream_response::Kind::Partial(p) => {
                for s in p.scores {
                    let case = cases[s.index as usize];
                    assert!(close(s.score, case.scores[0]));
                    assert_eq!(s.best_chunk, chunk_of(case));
                    partials += 1;
                }
            }
            pb::rerank_stream_response::Kind::Final(f) => finals = Some(f),
        }
    }
    assert_eq!(partials, cases.len());
    let f = finals.expect("a final ranking");
    assert!(f.results.iter().all(|r| r.best_chunk.is_some()));
    assert_eq!(
        f.usage.unwrap().chunks,
        cases.iter().map(|c| c.windows).sum::<u32>()
    );
}

async fn refused(
    client: &mut pb::cross_encoder_client::CrossEncoderClient<tonic::transport::Channel>,
    req: pb::RerankRequest,
) -> String {
    let status = client.rerank(req).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status.message().to_string()
}

/// Every limit of chunking refuses the request with a message naming the field, the value and
/// the limit; nothing is queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunking_limits_are_invalid_argument() {
    let limits = RequestLimits {
        max_pairs_per_request: 50,
        ..RequestLimits::default()
    };
    let server =
        TestServer::start(vec![model("bert=bert")], ServerOptions::default(), limits).await;
    let mut client = server.client();
    let long = "the quick brown fox jumps over the lazy dog ".repeat(60); // ~ 600 tokens
    let short = "a short document";

    // A document over the default 64 windows: named by its index, with its count.
    let huge = long.repeat(8);
    let m = refused(&mut client, rerank("q", &[short, &huge])).await;
    assert!(
        m.contains("documents[1]") && m.contains("the limit is 64"),
        "{m}"
    );

    // A request's windows in all count against max_pairs_per_request.
    let docs: Vec<&str> = std::iter::repeat_n(long.as_str(), 5).collect();
    let m = refused(&mut client, rerank("q", &docs)).await;
    assert!(
        m.contains("windows in all") && m.contains("the limit is 50"),
        "{m}"
    );

    // A document's window limit may be raised up to max_pairs_per_request, no further.
    let mut req = rerank("q", &[short]);
    req.chunking = Some(pb::ChunkOptions {
        max_chunks_per_doc: 51,
        ..Default::default()
    });
    let m = refused(&mut client, req).await;
    assert!(
        m.contains("max_chunks_per_doc` is 51") && m.contains("the limit is 50"),
        "{m}"
    );

    // An overlap that leaves no progress.
    let mut req = rerank("q", &[short]);
    req.chunking = Some(pb::ChunkOptions {
        overlap_tokens: 1000,
        ..Default::default()
    });
    let m = refused(&mut client, req).await;
    assert!(
        m.contains("overlap_tokens` is 1000") && m.contains("documents[0]"),
        "{m}"
    );

    // A query cap that leaves no room for a window.
    let mut req = rerank(&long, &[short]);
    req.max_query_tokens = 1000;
    let m = refused(&mut client, req).await;
    assert!(
        m.contains("no room") && m.contains("max_query_tokens"),
        "{m}"
    );

    // Chunk options without truncation CHUNK.
    let mut req = rerank("q", &[short]);
    req.truncation = pb::Truncation::LongestFirst as i32;
    req.chunking = chunking(2, pb::ChunkPooling::Max);
    let m = refused(&mut client, req).await;
    assert!(m.contains("`chunking` is set"), "{m}");

    assert_eq!(server.engine.registry.get("bert").unwrap().queue.depth(), 0);
}

/// An LLM reranker (chat template) refuses CHUNK, saying why, rather than scoring windows it
/// cannot place in its prompt exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_template_model_refuses_chunking() {
    let server = TestServer::simple(&["llm=causal"]).await;
    let mut req = rerank("q", &["a document"]);
    req.model = "llm".into();
    let status = server.client().rerank(req).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("chat template"),
        "{}",
        status.message()
    );
}
