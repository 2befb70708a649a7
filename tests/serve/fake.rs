//! The weightless fake model serves through the whole request path, with scores a test
//! predicts from the text alone (tokens / 100 through a sigmoid), and a simulated cost per pair.

use std::time::{Duration, Instant};

use crate::common;
use common::fake_model;
use common::server::{model_at, TestServer};
use crossrank::api::pb;
use crossrank::api::ServerOptions;
use crossrank::config::RequestLimits;

fn documents() -> Vec<pb::Document> {
    ["one", "one two three four", "one two"]
        .iter()
        .map(|t| pb::Document {
            text: t.to_string(),
            ..Default::default()
        })
        .collect()
}

/// Rerank on the fake model orders by length with the predicted scores; a cost of 40 ms per
/// pair makes a three-pair call take at least 120 ms of replica time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_model_serves_predictable_scores() {
    let dir = tempfile::tempdir().unwrap();
    fake_model::write(dir.path(), 40);
    let server = TestServer::start(
        vec![model_at("fake", dir.path())],
        ServerOptions::default(),
        RequestLimits::default(),
    )
    .await;
    let mut client = server.client();
    let started = Instant::now();
    let got = client
        .rerank(pb::RerankRequest {
            model: "fake".into(),
            query: "a b".into(),
            documents: documents(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(started.elapsed() >= Duration::from_millis(120));
    let order: Vec<u32> = got.iter().map(|r| r.index).collect();
    assert_eq!(order, [1, 2, 0]);
    for (r, words) in got.iter().zip([4, 2, 1]) {
        let want = fake_model::score(2, words);
        assert!((r.score - want).abs() < 1e-6, "{} vs {want}", r.score);
    }
}
