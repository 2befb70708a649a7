//! Score and Rerank through a real server and the generated client: numbers equal
//! sentence-transformers, routing by model name, and the bad-input matrix.

use crate::common;

use common::server::TestServer;
use common::{expected, max_diff};
use crossrank::api::pb;
use tonic::Code;

fn pairs(exp: &common::Expected) -> Vec<pb::Pair> {
    exp.pairs
        .iter()
        .map(|(a, b)| pb::Pair {
            text_a: a.clone(),
            text_b: b.clone(),
        })
        .collect()
}

fn score_req(model: &str, pairs: Vec<pb::Pair>) -> pb::ScoreRequest {
    pb::ScoreRequest {
        model: model.into(),
        pairs,
        request_id: "r-1".into(),
        ..Default::default()
    }
}

fn docs(texts: &[&str]) -> Vec<pb::Document> {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| pb::Document {
            id: format!("doc-{i}"),
            text: t.to_string(),
        })
        .collect()
}

/// Score returns sentence-transformers' numbers in input order, with usage, timing and the
/// request id; two models are routed by name; the empty name is refused when two are loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn score_two_models_match_reference() {
    let exp = expected();
    let server = TestServer::simple(&["one=bert", "three=bert_3labels"]).await;
    let mut client = server.client();
    for (name, fixture) in [("one", "bert"), ("three", "bert_3labels")] {
        let r = client
            .score(score_req(name, pairs(&exp)))
            .await
            .unwrap()
            .into_inner();
        let got: Vec<Vec<f32>> = r.results.iter().map(|p| p.scores.clone()).collect();
        let d = max_diff(&got, &exp.models[fixture].default);
        assert!(d <= 1e-5, "{name}: differs by {d}");
        let truncated: Vec<bool> = r.results.iter().map(|p| p.truncated).collect();
        assert_eq!(truncated, exp.models[fixture].truncated);
        assert_eq!((r.request_id.as_str(), r.model.as_str()), ("r-1", name));
        let usage = r.usage.unwrap();
        assert_eq!(usage.pairs as usize, exp.pairs.len());
        assert_eq!(
            usage.truncated_pairs as usize,
            truncated.iter().filter(|&&t| t).count()
        );
        assert!(usage.tokens > 0);
        let t = r.timing.unwrap();
        assert!(t.total_us >= t.inference_us && t.inference_us > 0, "{t:?}");
    }
    let err = client.score(score_req("", pairs(&exp))).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("one, three"), "{}", err.message());
    server.stop().await;
}

/// Rerank: best first, ties in input order, top_n, min_score, return_documents, ids echoed;
/// with one model loaded the model name may be empty; a 3-label model is FAILED_PRECONDITION.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerank_orders_and_filters() {
    let server = TestServer::simple(&["ce=bert"]).await;
    let mut client = server.client();
    let texts = [
        "Paris is in France.",
        "Cross-encoders read both texts.",
        "Paris is in France.",
        "",
        "cats",
    ];
    let full = client
        .rerank(pb::RerankRequest {
            query: "what is a cross encoder".into(),
            documents: docs(&texts),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(full.results.len(), texts.len());
    assert!(full.results.windows(2).all(|w| w[0].score >= w[1].score));
    let pos = |i: u32| full.results.iter().position(|r| r.index == i).unwrap();
    // Identical documents score alike up to float rounding: the packed matrix products see
    // their rows at different offsets. Exact ties keep input order (engine::rank's unit test).
    let (a, b) = (full.results[pos(0)].score, full.results[pos(2)].score);
    assert!((a - b).abs() <= 1e-6, "identical documents: {a} vs {b}");
    if a == b {
        assert!(pos(0) < pos(2), "equal scores keep input order");
    }
    assert!(full
        .results
        .iter()
        .all(|r| r.id == format!("doc-{}", r.index) && r.text.is_empty()));
    // Same scores as Score on the same pairs.
    let pairs = texts
        .iter()
        .map(|t| pb::Pair {
            text_a: "what is a cross encoder".into(),
            text_b: t.to_string(),
        })
        .collect();
    let scored = client
        .score(score_req("ce", pairs))
        .await
        .unwrap()
        .into_inner();
    for r in &full.results {
        assert!((r.score - scored.results[r.index as usize].scores[0]).abs() <= 1e-5);
    }
    let cut = full.results[2].score;
    let top = client
        .rerank(pb::RerankRequest {
            query: "what is a cross encoder".into(),
            documents: docs(&texts),
            top_n: 2,
            return_documents: true,
            min_score: Some(cut),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(top.results.len(), 2);
    assert_eq!(top.results[0].index, full.results[0].index);
    assert_eq!(top.results[0].text, texts[top.results[0].index as usize]);
    server.stop().await;

    let server = TestServer::simple(&["nli=bert_3labels"]).await;
    let err = server
        .client()
        .rerank(pb::RerankRequest {
            query: "q".into(),
            documents: docs(&["d"]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("3 labels"));
    server.stop().await;
}

/// Every bad input is INVALID_ARGUMENT (or the listed code) with a message naming the field,
/// the limit and the value; the server keeps serving afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_matrix() {
    let limits = crossrank::config::RequestLimits {
        max_pairs_per_request: 3,
        max_text_bytes: 100,
        ..Default::default()
    };
    let server = TestServer::start(
        vec![common::server::model("ce=bert")],
        Default::default(),
        limits,
    )
    .await;
    let mut c = server.client();
    let p = |a: &str, b: &str| pb::Pair {
        text_a: a.into(),
        text_b: b.into(),
    };
    let long = "x".repeat(101);
    let cases: Vec<(pb::ScoreRequest, Code, &str)> = vec![
        (
            score_req("ce", vec![]),
            Code::InvalidArgument,
            "`pairs` is empty",
        ),
        (
            score_req("ce", vec![p("a", "b"); 4]),
            Code::InvalidArgument,
            "`pairs` has 4 entries; the limit is 3",
        ),
        (
            score_req("ce", vec![p("a", "b"), p("a", &long)]),
            Code::InvalidArgument,
            "`pairs[1].text_b` is 101 bytes; the limit is 100",
        ),
        (
            pb::ScoreRequest {
                activation: 9,
                ..score_req("ce", vec![p("a", "b")])
            },
            Code::InvalidArgument,
            "`activation` is 9",
        ),
        (
            pb::ScoreRequest {
                truncation: 7,
                ..score_req("ce", vec![p("a", "b")])
            },
            Code::InvalidArgument,
            "`truncation` is 7",
        ),
        (
            pb::ScoreRequest {
                activation: 3,
                ..score_req("ce", vec![p("a", "b")])
            },
            Code::InvalidArgument,
            "at least 2 labels",
        ),
        (
            score_req("nope", vec![p("a", "b")]),
            Code::NotFound,
            "\"nope\" is not loaded; loaded models: ce",
        ),
        (
            pb::ScoreRequest {
                truncation: 1,
                ..score_req("ce", vec![p("a", "b"), p(&"a ".repeat(45), "z")])
            },
            Code::InvalidArgument,
            "pair 1 is longer than the model's max length of 40",
        ),
    ];
    for (req, code, needle) in cases {
        let err = c.score(req).await.unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
        assert!(
            err.message().contains(needle),
            "{:?} lacks {needle:?}",
            err.message()
        );
    }
    let nan = pb::RerankRequest {
        query: "q".into(),
        documents: docs(&["d"]),
        min_score: Some(f32::NAN),
        ..Default::default()
    };
    assert_eq!(
        c.rerank(nan).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let empty = pb::RerankRequest {
        query: "q".into(),
        ..Default::default()
    };
    assert!(c
        .rerank(empty)
        .await
        .unwrap_err()
        .message()
        .contains("`documents` is empty"));
    // Empty texts are valid input, and the server still answers.
    let ok = c
        .score(score_req("ce", vec![p("", ""), p("a", "")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.results.len(), 2);
    server.stop().await;
}

/// A model whose tokenizer does not match its weights fails at warm-up: it is FAILED with the
/// reason, its requests get UNAVAILABLE naming it, and the other model keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_model_does_not_stop_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("roberta-with-bert-tokenizer");
    std::fs::create_dir(&broken).unwrap();
    let fixtures = common::fixtures();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixtures.join("roberta").join(file), broken.join(file)).unwrap();
    }
    std::fs::copy(
        fixtures.join("bert/tokenizer.json"),
        broken.join("tokenizer.json"),
    )
    .unwrap();
    let models = vec![
        common::server::model("ok=bert"),
        common::server::model_at("broken", &broken),
    ];
    let opts = crossrank::api::ServerOptions {
        admin_token: Some("t".into()),
        ..Default::default()
    };
    let server = TestServer::start_unready(models, opts, Default::default()).await;
    server.wait_serving("ok").await;
    let mut m = server.models();
    let info = loop {
        let mut get = tonic::Request::new(pb::GetModelRequest {
            name: "broken".into(),
        });
        get.metadata_mut()
            .insert("authorization", "Bearer t".parse().unwrap());
        let info = m.get_model(get).await.unwrap().into_inner();
        if info.state != pb::ModelState::Loading as i32 {
            break info;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(info.state, pb::ModelState::Failed as i32);
    assert!(
        info.reason.contains("tokenizer.json does not match"),
        "{}",
        info.reason
    );
    assert_ne!(
        server.health("").await,
        1,
        "overall health must not be SERVING with a failed model"
    );
    let mut c = server.client();
    let p = vec![pb::Pair {
        text_a: "zebra quantum".into(),
        text_b: "xylophone".into(),
    }];
    let err = c.score(score_req("broken", p.clone())).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("\"broken\" is FAILED"),
        "{}",
        err.message()
    );
    assert_eq!(
        c.score(score_req("ok", p))
            .await
            .unwrap()
            .into_inner()
            .results
            .len(),
        1
    );
    server.stop().await;
}
