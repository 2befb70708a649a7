//! `crossrank bench` against a real server on 127.0.0.1:0.

mod common;

use std::process::Output;

use common::server::{model, TestServer};
use crossrank::api::pb;
use crossrank::api::ServerOptions;
use crossrank::config::RequestLimits;
use serde_json::Value;

async fn bench(server: &TestServer, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_crossrank"));
    cmd.arg("bench")
        .arg("--addr")
        .arg(format!("http://{}", server.addr))
        .args(args);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

async fn report(server: &TestServer, args: &[&str]) -> Value {
    let out = bench(server, &[args, &["--json", "-"]].concat()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shape_is_counted() {
    let server = TestServer::simple(&["bert=bert"]).await;
    for (shape, size) in [("score", 5), ("rerank", 7), ("stream", 9)] {
        let size_arg = size.to_string();
        let r = report(
            &server,
            &[
                "--shape",
                shape,
                "--size",
                &size_arg,
                "--chunk",
                "2",
                "--concurrency",
                "3",
                "--requests",
                "8",
            ],
        )
        .await;
        assert_eq!(r["shape"], shape);
        assert_eq!(r["requests_ok"], 8, "{r}");
        assert_eq!(r["requests_failed"], 0, "{r}");
        assert_eq!(r["pairs"], 8 * size, "{r}");
        let lat = &r["latency_ms"];
        assert!(lat["p50"].as_f64().unwrap() <= lat["p99"].as_f64().unwrap());
        assert!(lat["p99"].as_f64().unwrap() <= lat["max"].as_f64().unwrap());
        assert!(r["pairs_per_s"].as_f64().unwrap() > 0.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_scores_are_the_servers_scores_of_the_written_corpus() {
    let server = TestServer::simple(&["bert=bert"]).await;
    let dir = tempfile::tempdir().unwrap();
    let (corpus, scores) = (dir.path().join("c.jsonl"), dir.path().join("s.jsonl"));
    let common = ["--seed", "3", "--corpus-size", "40"];
    let out = bench(
        &server,
        &[&common[..], &["--write-corpus", corpus.to_str().unwrap()]].concat(),
    )
    .await;
    assert!(out.status.success());
    let args = [
        "--size",
        "8",
        "--requests",
        "5",
        "--scores-out",
        scores.to_str().unwrap(),
    ];
    report(&server, &[&common[..], &args].concat()).await;

    let pairs: Vec<Value> = lines(&corpus);
    let saved: Vec<Value> = lines(&scores);
    assert_eq!(pairs.len(), 40);
    assert_eq!(
        saved.len(),
        40,
        "5 requests x 8 pairs cover the corpus once"
    );
    let request = pb::ScoreRequest {
        pairs: pairs
            .iter()
            .map(|p| pb::Pair {
                text_a: p["text_a"].as_str().unwrap().into(),
                text_b: p["text_b"].as_str().unwrap().into(),
            })
            .collect(),
        ..Default::default()
    };
    let direct = server.client().score(request).await.unwrap().into_inner();
    for (i, s) in saved.iter().enumerate() {
        assert_eq!(s["index"], i);
        let want = direct.results[i].scores[0];
        let got = s["score"].as_f64().unwrap() as f32;
        assert!((want - got).abs() < 1e-5, "pair {i}: {got} vs {want}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_reported_by_grpc_code() {
    let server = TestServer::start(
        vec![model("small=bert,max_queue_pairs=4")],
        ServerOptions::default(),
        RequestLimits::default(),
    )
    .await;
    let r = report(
        &server,
        &["--size", "6", "--requests", "5", "--warmup", "0"],
    )
    .await;
    assert_eq!(r["requests_ok"], 0);
    let refused = &r["errors"]["RESOURCE_EXHAUSTED"];
    assert_eq!(refused["count"], 5, "{r}");
    assert!(
        refused["example"]
            .as_str()
            .unwrap()
            .contains("max_queue_pairs 4"),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_warm_up_stops_the_run_with_the_status() {
    let server = TestServer::simple(&["bert=bert"]).await;
    let out = bench(&server, &["--model", "nope", "--requests", "3"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NotFound") && err.contains("nope"), "{err}");
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
