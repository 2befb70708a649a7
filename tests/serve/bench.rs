//! `crossrank bench` against a real server on 127.0.0.1:0.

use crate::common;

use std::process::Output;

use common::server::{model, TestServer};
use crossrank::api::pb;
use crossrank::api::ServerOptions;
use crossrank::config::{ModelConfig, RequestLimits};
use serde_json::Value;

async fn bench(server: &TestServer, args: &[&str]) -> Output {
    let addr = format!("http://{}", server.addr);
    run_bench(&[&["--addr", addr.as_str()], args].concat()).await
}

async fn run_bench(args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_crossrank"));
    cmd.arg("bench").args(args);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

async fn report(server: &TestServer, args: &[&str]) -> Value {
    let out = bench(server, &[args, &["--json", "-"]].concat()).await;
    parse_report(out)
}

fn parse_report(out: Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A server with the REST port beside gRPC, and the REST port's URL.
async fn http_server(models: Vec<ModelConfig>) -> (TestServer, String) {
    let server =
        TestServer::start_http(models, ServerOptions::default(), RequestLimits::default()).await;
    let url = format!("http://{}", server.http_addr.unwrap());
    (server, url)
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
    assert!(err.contains("NOT_FOUND") && err.contains("nope"), "{err}");
}

/// The HTTP mode posts Cohere v2 Rerank bodies to a real REST port and reports them like gRPC's:
/// every request and pair counted, the server's CPU time read from its process (this one), the
/// machine's CPU named; as JSON and as text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_mode_reranks_through_the_rest_port() {
    let (_server, url) = http_server(vec![model("bert=bert")]).await;
    let pid = std::process::id().to_string();
    let args = [
        "--protocol",
        "http",
        "--http-url",
        url.as_str(),
        "--shape",
        "rerank",
        "--size",
        "7",
        "--concurrency",
        "3",
        "--requests",
        "8",
        "--server-pid",
        pid.as_str(),
    ];
    let r = parse_report(run_bench(&[&args[..], &["--json", "-"]].concat()).await);
    assert_eq!(
        (r["protocol"].as_str(), r["shape"].as_str()),
        (Some("http"), Some("rerank"))
    );
    assert_eq!(r["requests_ok"], 8, "{r}");
    assert_eq!(r["requests_failed"], 0, "{r}");
    assert_eq!(r["pairs"], 8 * 7, "{r}");
    assert!(r["cpu"]["server_s"].as_f64().unwrap() >= 0.0, "{r}");
    assert!(r["cpu"]["server_us_per_pair"].is_number(), "{r}");
    assert!(r["cpu"]["client_us_per_pair"].is_number(), "{r}");
    assert!(!r["host"]["cpu"].as_str().unwrap().is_empty(), "{r}");
    assert!(r["host"]["cores"].as_u64().unwrap() >= 1, "{r}");

    let out = run_bench(&args).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for part in [
        "rerank x7 over http",
        "8 ok  0 failed",
        "cpu         server ",
        "us/pair",
        "host ",
    ] {
        assert!(text.contains(part), "no {part:?} in\n{text}");
    }
}

/// Over HTTP, refusals are counted by status with the server's message, a failing warm-up stops
/// the run naming the status, and shapes /v2/rerank cannot carry are refused before sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_mode_reports_failures_by_status() {
    let (_server, url) = http_server(vec![model("small=bert,max_queue_pairs=4")]).await;
    let http = [
        "--protocol",
        "http",
        "--http-url",
        url.as_str(),
        "--shape",
        "rerank",
    ];
    let args = [
        "--size",
        "6",
        "--requests",
        "5",
        "--warmup",
        "0",
        "--json",
        "-",
    ];
    let r = parse_report(run_bench(&[&http[..], &args].concat()).await);
    assert_eq!(r["requests_ok"], 0, "{r}");
    let refused = &r["errors"]["HTTP 429"];
    assert_eq!(refused["count"], 5, "{r}");
    let example = refused["example"].as_str().unwrap();
    assert!(example.contains("max_queue_pairs 4"), "{r}");

    let out = run_bench(&[&http[..], &["--model", "nope", "--requests", "3"]].concat()).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HTTP 404") && err.contains("nope"), "{err}");

    let out = run_bench(&["--protocol", "http", "--shape", "score"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--shape rerank"),
        "{err}"
    );
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A mixed run's JSON report: the groups as given, in order, with their settings; each group's
/// requests all counted (ok + evicted + refused + errors), pairs = ok x docs, and the totals the
/// sums of the groups'.
fn check_mixed(r: &Value, names: &[&str]) {
    assert_eq!(r["mode"], "mixed", "{r}");
    let groups = r["groups"].as_array().unwrap();
    let got: Vec<&str> = groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(got, names, "{r}");
    let n = |g: &Value, key: &str| g[key].as_u64().unwrap_or_else(|| panic!("no {key} in {g}"));
    for g in groups {
        let counted = n(g, "ok") + n(g, "evicted") + n(g, "refused") + n(g, "errors");
        assert_eq!(n(g, "requests"), counted, "{g}");
        assert_eq!(n(g, "pairs"), n(g, "ok") * n(g, "docs"), "{g}");
        let failed: u64 = g["failures"]
            .as_object()
            .unwrap()
            .values()
            .map(|f| f["count"].as_u64().unwrap())
            .sum();
        assert_eq!(failed, n(g, "requests") - n(g, "ok"), "{g}");
        if let Some(lat) = g["latency_ms"].as_object() {
            assert!(lat["p50"].as_f64() <= lat["p99"].as_f64(), "{g}");
            assert!(lat["p99"].as_f64() <= lat["max"].as_f64(), "{g}");
        }
    }
    let sum = |key: &str| groups.iter().map(|g| n(g, key)).sum::<u64>();
    assert_eq!(n(r, "requests"), sum("requests"), "{r}");
    assert_eq!(n(r, "pairs"), sum("pairs"), "{r}");
}

/// The mixed mode runs a closed-loop group and an open-loop (rate) group together: with request
/// counts each group sends exactly its count; with --duration a rate group sends one request per
/// due time before the end (20/s for 1 s: 20), and the text report names every group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_mode_reports_every_group() {
    let server = TestServer::simple(&["bert=bert"]).await;
    let bulk = "name=bulk,priority=5,tenant=batch,docs=8,concurrency=2,requests=6";
    let interactive = "name=interactive,priority=0,tenant=search,docs=3,rate=50";
    let args = ["--group", bulk, "--group", interactive, "--requests", "5"];
    let r = report(&server, &args).await;
    check_mixed(&r, &["bulk", "interactive"]);
    let (b, i) = (&r["groups"][0], &r["groups"][1]);
    assert_eq!(
        (b["requests"].as_u64(), b["ok"].as_u64()),
        (Some(6), Some(6)),
        "{r}"
    );
    assert_eq!(
        (i["requests"].as_u64(), i["ok"].as_u64()),
        (Some(5), Some(5)),
        "{r}"
    );
    assert_eq!(
        (b["priority"].as_u64(), b["tenant"].as_str()),
        (Some(5), Some("batch"))
    );
    assert_eq!(
        (b["concurrency"].as_u64(), b["rate"].as_f64()),
        (Some(2), None)
    );
    assert_eq!(
        (i["rate"].as_f64(), i["concurrency"].as_u64()),
        (Some(50.0), None)
    );
    assert_eq!(
        (i["shape"].as_str(), i["docs"].as_u64()),
        (Some("rerank"), Some(3))
    );

    let timed = [
        "--group",
        "name=flood,docs=8,concurrency=2",
        "--group",
        "name=light,docs=3,rate=20",
        "--duration",
        "1",
    ];
    let r = report(&server, &timed).await;
    check_mixed(&r, &["flood", "light"]);
    assert_eq!(r["groups"][1]["requests"], 20, "{r}");
    let out = bench(&server, &timed).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for part in [
        "mixed load over grpc",
        "evicted",
        "refused",
        "flood ",
        "light ",
        "total: ",
    ] {
        assert!(text.contains(part), "no {part:?} in\n{text}");
    }
}

/// A group whose requests exceed the model's queue bound has each one counted as refused
/// (RESOURCE_EXHAUSTED, not displaced), beside a group that fits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_mode_counts_refusals_apart_from_evictions() {
    let server = TestServer::start(
        vec![model("small=bert,max_queue_pairs=4")],
        ServerOptions::default(),
        RequestLimits::default(),
    )
    .await;
    let args = [
        "--group",
        "name=big,docs=6,concurrency=1,requests=3",
        "--group",
        "name=fits,docs=2,rate=100,requests=4",
        "--warmup",
        "0",
    ];
    let r = report(&server, &args).await;
    check_mixed(&r, &["big", "fits"]);
    let (big, fits) = (&r["groups"][0], &r["groups"][1]);
    assert_eq!(
        (big["refused"].as_u64(), big["evicted"].as_u64()),
        (Some(3), Some(0)),
        "{r}"
    );
    let example = big["failures"]["RESOURCE_EXHAUSTED"]["example"]
        .as_str()
        .unwrap();
    assert!(example.contains("max_queue_pairs 4"), "{r}");
    assert_eq!(fits["requests"], 4, "{r}");
}

/// What a user may ask is bounded, and the error names the setting, the limit and the value;
/// nothing is sent.
#[tokio::test]
async fn mixed_mode_refuses_what_is_out_of_bounds() {
    let groups: Vec<String> = (0..17).map(|i| format!("name=g{i},rate=1")).collect();
    let mut args = vec!["--addr", "http://127.0.0.1:1"];
    for g in &groups {
        args.extend(["--group", g.as_str()]);
    }
    let cases: [(Vec<&str>, &str); 4] = [
        (args, "17 --group flags; the limit is 16"),
        (
            vec!["--group", "name=a,rate=5000"],
            "`rate` is \"5000\"; give requests per second from 0.01 to 1000",
        ),
        (
            vec!["--group", "name=a,concurrency=0"],
            "`concurrency` is \"0\"; give an integer from 1 to 1000",
        ),
        (
            vec!["--group", "name=a,rate=1", "--size", "3"],
            "cannot be used with '--size",
        ),
    ];
    for (args, want) in cases {
        let out = run_bench(&args).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "{args:?}: {err}"
        );
    }
}
