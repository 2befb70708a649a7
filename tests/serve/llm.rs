//! An LLM reranker (sentence-transformers' causal form, tests/fixtures/make_causal_reranker.py)
//! served over gRPC: Score, Rerank and RerankStream give sentence-transformers' numbers with the
//! model's default prompt, with no system message (`instruction: ""`) and with a per-request
//! instruction; instructions on a model without a chat template are refused.

use crate::common;

use common::fixtures;
use common::server::TestServer;
use crossrank::api::pb;
use crossrank::api::pb::rerank_stream_request::Kind as In;
use crossrank::api::pb::rerank_stream_response::Kind as Out;
use serde::Deserialize;
use tonic::Code;

#[derive(Deserialize)]
struct Reference {
    pairs: Vec<(String, String)>,
    custom_prompt: String,
    scores: Scores,
}

#[derive(Deserialize)]
struct Scores {
    default: Vec<f32>,
    no_prompt_identity: Vec<f32>,
    custom_prompt_identity: Vec<f32>,
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(fixtures().join("causal/expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn score_req(exp: &Reference, instruction: Option<&str>, raw: bool) -> pb::ScoreRequest {
    pb::ScoreRequest {
        model: "rr".into(),
        pairs: exp
            .pairs
            .iter()
            .map(|(a, b)| pb::Pair {
                text_a: a.clone(),
                text_b: b.clone(),
            })
            .collect(),
        activation: if raw { pb::Activation::None as i32 } else { 0 },
        instruction: instruction.map(str::to_owned),
        ..Default::default()
    }
}

/// A ranked document's score is sentence-transformers' score of that document (within 4e-5).
fn assert_close(d: &pb::RankedDocument, want: &[f32], what: &str) {
    let w = want[d.index as usize];
    assert!(
        (d.score - w).abs() <= 1e-5 * 4.0,
        "{what} {}: {} vs {w}",
        d.index,
        d.score
    );
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_reranker_over_grpc_with_instructions() {
    let exp = reference();
    let server = TestServer::simple(&["rr=causal", "bert=bert"]).await;
    let mut client = server.client();
    let cases = [
        (None, false, &exp.scores.default),
        (Some(""), true, &exp.scores.no_prompt_identity),
        (
            Some(exp.custom_prompt.as_str()),
            true,
            &exp.scores.custom_prompt_identity,
        ),
    ];
    for (instruction, raw, want) in cases {
        let r = client
            .score(score_req(&exp, instruction, raw))
            .await
            .unwrap()
            .into_inner();
        let got: Vec<f32> = r.results.iter().map(|p| p.scores[0]).collect();
        let scale = want.iter().fold(1f32, |m, x| m.max(x.abs()));
        let d = max_diff(&got, want);
        assert!(
            d <= 1e-5 * scale,
            "instruction {instruction:?}: differs by {d}"
        );
    }

    // Pairs 0 and 1 share their query: Rerank and RerankStream score the same numbers.
    let (query, docs) = (&exp.pairs[0].0, [&exp.pairs[0].1, &exp.pairs[1].1]);
    let documents: Vec<pb::Document> = docs
        .iter()
        .enumerate()
        .map(|(i, t)| pb::Document {
            id: format!("d{i}"),
            text: (*t).clone(),
        })
        .collect();
    let want = &exp.scores.custom_prompt_identity[..2];
    let r = client
        .rerank(pb::RerankRequest {
            model: "rr".into(),
            query: query.clone(),
            documents: documents.clone(),
            activation: pb::Activation::None as i32,
            instruction: Some(exp.custom_prompt.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for d in &r.results {
        assert_close(d, want, "rerank");
    }
    let header = pb::RerankStreamRequest {
        kind: Some(In::Header(pb::RerankStreamHeader {
            model: "rr".into(),
            query: query.clone(),
            activation: pb::Activation::None as i32,
            instruction: Some(exp.custom_prompt.clone()),
            ..Default::default()
        })),
    };
    let batch = pb::RerankStreamRequest {
        kind: Some(In::Documents(pb::DocumentBatch { documents })),
    };
    let mut stream = client
        .rerank_stream(tokio_stream::iter(vec![header, batch]))
        .await
        .unwrap()
        .into_inner();
    let mut ranked = None;
    while let Some(m) = stream.message().await.unwrap() {
        if let Some(Out::Final(f)) = m.kind {
            ranked = Some(f);
        }
    }
    for d in ranked.expect("a final ranking").results {
        assert_close(&d, want, "stream");
    }

    // A model without a chat template takes no instruction (an empty one is no instruction).
    let plain = |instruction: &str| pb::ScoreRequest {
        model: "bert".into(),
        pairs: vec![pb::Pair {
            text_a: "a".into(),
            text_b: "b".into(),
        }],
        instruction: Some(instruction.into()),
        ..Default::default()
    };
    let err = client.score(plain("judge it")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("instruction") && err.message().contains("bert"),
        "{}",
        err.message()
    );
    assert!(client.score(plain("")).await.is_ok());
    // Bounded like any text.
    let long = "x".repeat(crossrank::config::RequestLimits::default().max_text_bytes + 1);
    let mut req = score_req(&exp, Some(&long), false);
    req.pairs.truncate(1);
    let err = client.score(req).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("instruction"), "{}", err.message());
    server.stop().await;
}
