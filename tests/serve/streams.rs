//! ScoreStream and RerankStream through a real server.

use crate::common;

use std::collections::HashSet;

use std::time::Duration;

use common::server::{model, TestServer};
use crossrank::api::pb;
use crossrank::api::ServerOptions;
use pb::rerank_stream_request::Kind as In;
use pb::rerank_stream_response::Kind as Out;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

fn pair(a: &str, b: &str) -> pb::Pair {
    pb::Pair {
        text_a: a.into(),
        text_b: b.into(),
    }
}

fn header(top_n: u32) -> pb::RerankStreamRequest {
    pb::RerankStreamRequest {
        kind: Some(In::Header(pb::RerankStreamHeader {
            query: "what is a cross encoder".into(),
            top_n,
            request_id: "s-1".into(),
            ..Default::default()
        })),
    }
}

fn batch(first: usize, texts: &[&str]) -> pb::RerankStreamRequest {
    let documents = texts
        .iter()
        .enumerate()
        .map(|(i, t)| pb::Document {
            id: format!("d{}", first + i),
            text: t.to_string(),
        })
        .collect();
    pb::RerankStreamRequest {
        kind: Some(In::Documents(pb::DocumentBatch { documents })),
    }
}

/// Interleaved requests on one stream are each answered with their request id; a bad request in
/// the middle gets an error response and the stream carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn score_stream_answers_each_request() {
    let server = TestServer::simple(&["ce=bert"]).await;
    let mut client = server.client();
    let reqs: Vec<pb::ScoreRequest> = (0..6)
        .map(|i| pb::ScoreRequest {
            model: if i == 3 {
                "missing".into()
            } else {
                "ce".into()
            },
            pairs: vec![pair(&format!("query {i}"), "a document"); i + 1],
            request_id: format!("req-{i}"),
            ..Default::default()
        })
        .collect();
    let expected_single = client.score(pb::ScoreRequest {
        model: "ce".into(),
        pairs: vec![pair("query 4", "a document")],
        ..Default::default()
    });
    let single = expected_single.await.unwrap().into_inner().results[0].scores[0];
    let mut responses = client
        .score_stream(tokio_stream::iter(reqs))
        .await
        .unwrap()
        .into_inner();
    let mut seen = HashSet::new();
    while let Some(r) = responses.message().await.unwrap() {
        let i: usize = r.request_id.strip_prefix("req-").unwrap().parse().unwrap();
        assert!(seen.insert(i), "answered twice: {i}");
        if i == 3 {
            let e = r.error.expect("an error for the bad request");
            assert_eq!(e.code, Code::NotFound as i32);
            assert!(r.results.is_empty());
        } else {
            assert!(r.error.is_none(), "{r:?}");
            assert_eq!(r.results.len(), i + 1);
        }
        if i == 4 {
            // Batch company changes the last bits only (see tests/models/parity.rs).
            assert!((r.results[0].scores[0] - single).abs() <= 1e-5);
        }
    }
    assert_eq!(seen.len(), 6);
    server.stop().await;
}

/// Documents arrive in batches; partial scores cover every document exactly once; the final
/// ranking after the half-close equals a unary Rerank of the same documents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerank_stream_partials_then_final() {
    let server = TestServer::simple(&["ce=bert"]).await;
    let mut client = server.client();
    let texts = [
        "A cross-encoder reads both texts.",
        "Paris is in France.",
        "",
        "rerankers score pairs",
        "cats and dogs",
        "x",
    ];
    let (tx, rx) = mpsc::channel(8);
    let mut responses = client
        .rerank_stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(header(3)).await.unwrap();
    tx.send(batch(0, &texts[..2])).await.unwrap();
    // Scores of the first batch come back before the stream is closed.
    let first = responses.message().await.unwrap().unwrap();
    let Some(Out::Partial(p)) = first.kind else {
        panic!("expected partial scores first: {first:?}")
    };
    assert!(p.scores.iter().all(|s| s.index < 2));
    let mut partial: Vec<(u32, f32)> = p.scores.iter().map(|s| (s.index, s.score)).collect();
    tx.send(batch(2, &texts[2..5])).await.unwrap();
    tx.send(batch(5, &texts[5..])).await.unwrap();
    drop(tx);
    let mut last = None;
    while let Some(m) = responses.message().await.unwrap() {
        match m.kind.unwrap() {
            Out::Partial(p) => partial.extend(p.scores.iter().map(|s| {
                assert_eq!(s.id, format!("d{}", s.index));
                (s.index, s.score)
            })),
            Out::Final(f) => last = Some(f),
        }
    }
    partial.sort_by_key(|p| p.0);
    assert_eq!(
        partial.iter().map(|p| p.0).collect::<Vec<_>>(),
        (0..6).collect::<Vec<u32>>()
    );
    let fin = last.expect("a final ranking");
    assert_eq!(fin.request_id, "s-1");
    assert_eq!(fin.usage.unwrap().pairs, 6);
    let docs = texts
        .iter()
        .enumerate()
        .map(|(i, t)| pb::Document {
            id: format!("d{i}"),
            text: t.to_string(),
        })
        .collect();
    let unary = client
        .rerank(pb::RerankRequest {
            query: "what is a cross encoder".into(),
            documents: docs,
            top_n: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let key = |r: &pb::RankedDocument| (r.index, r.id.clone());
    assert_eq!(
        fin.results.iter().map(key).collect::<Vec<_>>(),
        unary.results.iter().map(key).collect::<Vec<_>>()
    );
    for (f, u) in fin.results.iter().zip(&unary.results) {
        assert!((f.score - u.score).abs() <= 1e-5, "{f:?} vs {u:?}");
        assert_eq!(
            f.score, partial[f.index as usize].1,
            "the final ranking uses the partial scores"
        );
    }
    server.stop().await;
}

async fn stream_error(server: &TestServer, msgs: Vec<pb::RerankStreamRequest>) -> tonic::Status {
    let mut responses = server
        .client()
        .rerank_stream(tokio_stream::iter(msgs))
        .await
        .unwrap()
        .into_inner();
    loop {
        match responses.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("stream ended without an error"),
            Err(s) => return s,
        }
    }
}

/// Protocol errors end the call with INVALID_ARGUMENT; a header with no documents gets an empty
/// final ranking; a cancelled stream leaves the server serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerank_stream_protocol_errors_and_cancel() {
    let server = TestServer::simple(&["ce=bert"]).await;
    for (msgs, needle) in [
        (vec![], "ended before its header"),
        (vec![batch(0, &["d"])], "first message must be a header"),
        (
            vec![header(0), batch(0, &["d"]), header(0)],
            "second header",
        ),
        (
            vec![header(0), pb::RerankStreamRequest { kind: None }],
            "neither header nor documents",
        ),
    ] {
        let s = stream_error(&server, msgs).await;
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        assert!(
            s.message().contains(needle),
            "{:?} lacks {needle:?}",
            s.message()
        );
    }
    // Early half-close: header only.
    let mut r = server
        .client()
        .rerank_stream(tokio_stream::iter(vec![header(0)]))
        .await
        .unwrap()
        .into_inner();
    let m = r.message().await.unwrap().unwrap();
    let Some(Out::Final(f)) = m.kind else {
        panic!("{m:?}")
    };
    assert!(f.results.is_empty());
    // Cancel mid-stream: drop the call with documents in flight.
    let (tx, rx) = mpsc::channel(4);
    let mut client = server.client();
    let call = client.rerank_stream(ReceiverStream::new(rx)).await.unwrap();
    tx.send(header(0)).await.unwrap();
    tx.send(batch(0, &["a document"; 50])).await.unwrap();
    drop(call);
    drop(tx);
    let ok = server
        .client()
        .score(pb::ScoreRequest {
            pairs: vec![pair("still", "serving")],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ok.into_inner().results.len(), 1);
    server.stop().await;
}

/// Shutdown ends open streams once what they sent is answered, with UNAVAILABLE, instead of
/// holding the drain until the grace period (600 s here) for clients that never half-close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_streams() {
    let opts = ServerOptions {
        grace_period: Duration::from_secs(600),
        ..Default::default()
    };
    let mut server = TestServer::start(vec![model("ce=bert")], opts, Default::default()).await;
    let mut client = server.client();
    let (rerank_tx, rx) = mpsc::channel(8);
    let mut reranked = client
        .rerank_stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    rerank_tx.send(header(3)).await.unwrap();
    rerank_tx.send(batch(0, &["a", "b"])).await.unwrap();
    let mut scored = 0;
    while scored < 2 {
        match reranked.message().await.unwrap().unwrap().kind {
            Some(Out::Partial(p)) => scored += p.scores.len(),
            other => panic!("expected partial scores, got {other:?}"),
        }
    }
    let (score_tx, rx) = mpsc::channel(8);
    let mut scores = client
        .score_stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let request = pb::ScoreRequest {
        pairs: vec![pair("q", "d")],
        request_id: "r1".into(),
        ..Default::default()
    };
    score_tx.send(request).await.unwrap();
    let answered = scores.message().await.unwrap().unwrap();
    assert_eq!(answered.request_id, "r1");

    server.trigger_shutdown();
    // Both clients still hold their request streams open.
    let ends = async {
        let rerank_end = reranked.message().await.unwrap_err();
        let score_end = scores.message().await.unwrap_err();
        (&mut server.handle).await.unwrap().unwrap();
        (rerank_end, score_end)
    };
    let (rerank_end, score_end) = tokio::time::timeout(Duration::from_secs(60), ends)
        .await
        .expect("the streams end and serve returns long before the grace period");
    assert_eq!(rerank_end.code(), Code::Unavailable, "{rerank_end:?}");
    assert!(
        rerank_end.message().contains("after the 2 documents"),
        "{rerank_end:?}"
    );
    assert_eq!(score_end.code(), Code::Unavailable, "{score_end:?}");
    drop((rerank_tx, score_tx));
}
