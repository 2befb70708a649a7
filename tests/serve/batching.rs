//! Micro-batching, admission and deadlines through a real server.

use crate::common;

use std::time::{Duration, Instant};

use common::server::{model, TestServer};
use crossrank::api::pb;
use crossrank::api::ServerOptions;
use crossrank::config::RequestLimits;
use tonic::Code;

fn req(model: &str, n: usize) -> pb::ScoreRequest {
    let pairs = (0..n)
        .map(|i| pb::Pair {
            text_a: format!("query {i}"),
            text_b: "some document".into(),
        })
        .collect();
    pb::ScoreRequest {
        model: model.into(),
        pairs,
        ..Default::default()
    }
}

async fn start(spec: &str) -> TestServer {
    TestServer::start(
        vec![model(spec)],
        ServerOptions::default(),
        RequestLimits::default(),
    )
    .await
}

/// Concurrent single-pair requests share batches: with a 300 ms window, 8 requests sent together
/// run in fewer than 8 batches, and every one gets its own correct answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_batches() {
    let server = start("ce=bert,max_wait_ms=300,max_batch_pairs=64").await;
    let reference = server
        .client()
        .score(req("ce", 8))
        .await
        .unwrap()
        .into_inner();
    let before = server.engine.registry.get("ce").unwrap().queue.stats();
    let calls = (0..8).map(|i| {
        let mut c = server.client();
        async move {
            let mut r = req("ce", 8);
            r.pairs = vec![r.pairs[i].clone()];
            c.score(r).await.unwrap().into_inner().results[0].scores[0]
        }
    });
    let scores = futures::future::join_all(calls).await;
    let after = server.engine.registry.get("ce").unwrap().queue.stats();
    let batches = after.batches - before.batches;
    assert_eq!(after.batched_pairs - before.batched_pairs, 8);
    assert!(
        batches < 8,
        "8 single-pair requests ran in {batches} batches"
    );
    for (i, s) in scores.iter().enumerate() {
        assert!((s - reference.results[i].scores[0]).abs() <= 1e-5);
    }
    server.stop().await;
}

/// Admission is whole-request: a request larger than the queue bound, or one arriving while the
/// queue is full, is refused at once with RESOURCE_EXHAUSTED; the queued request still succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_at_once() {
    let server = start("ce=bert,max_wait_ms=400,max_queue_pairs=4").await;
    let mut c = server.client();
    let err = c.score(req("ce", 5)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message().contains("exceeds max_queue_pairs 4"),
        "{}",
        err.message()
    );
    let mut first = server.client();
    let queued = tokio::spawn(async move { first.score(req("ce", 3)).await });
    server.wait_queued("ce", 3).await;
    let t = Instant::now();
    let err = c.score(req("ce", 2)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "refusal took {:?}",
        t.elapsed()
    );
    assert_eq!(queued.await.unwrap().unwrap().into_inner().results.len(), 3);
    assert_eq!(
        server.engine.registry.get("ce").unwrap().queue.depth(),
        0,
        "nothing half-queued"
    );
    server.stop().await;
}

/// A deadline shorter than the batching window ends the call DEADLINE_EXCEEDED before the window
/// closes, and its pairs never reach the model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_exceeded_drops_pairs() {
    let server = start("ce=bert,max_wait_ms=1500").await;
    let queue = server.engine.registry.get("ce").unwrap().queue.clone();
    let before = queue.stats();
    let mut r = tonic::Request::new(req("ce", 4));
    r.set_timeout(Duration::from_millis(150));
    let t = Instant::now();
    let err = server.client().score(r).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "answered after {:?}",
        t.elapsed()
    );
    // The next request flushes the window; the abandoned pairs are dropped, not run.
    let mut quick = tonic::Request::new(req("ce", 1));
    quick.set_timeout(Duration::from_secs(20));
    server.client().score(quick).await.unwrap();
    let after = queue.stats();
    assert_eq!(
        after.batched_pairs - before.batched_pairs,
        1,
        "expired pairs were run: {after:?}"
    );
    server.stop().await;
}

/// Two replicas of one model serve concurrent requests; GetModel reports them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_serve_together() {
    let server = start("ce=bert,replicas=2,max_batch_pairs=2,max_wait_ms=0").await;
    let info = server
        .models()
        .get_model(pb::GetModelRequest { name: "ce".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (info.replicas, info.devices.clone()),
        (2, vec!["cpu".to_string(), "cpu".to_string()])
    );
    assert_eq!(info.state, pb::ModelState::Ready as i32);
    assert_eq!(
        (info.num_labels, info.max_length, info.architecture.as_str()),
        (1, 40, "BertForSequenceClassification")
    );
    let calls = (0..6).map(|_| {
        let mut c = server.client();
        async move {
            c.score(req("ce", 5))
                .await
                .unwrap()
                .into_inner()
                .results
                .len()
        }
    });
    assert!(futures::future::join_all(calls)
        .await
        .iter()
        .all(|&n| n == 5));
    server.stop().await;
}
