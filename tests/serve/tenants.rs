//! Tenants against a real `crossrank serve` child: every scoring path (four RPCs, four REST
//! routes) puts its call's tenant on the pairs it queues, as the per-tenant metrics show
//! (listed tenants by name, `--metric-tenant`; others as `(other)`, none as `(none)`); with
//! `--api-keys-file` the tenant is the key's name and the header is ignored; and the new flags
//! and TOML keys reach the configuration.

use crate::common;

use std::process::Command;

use common::process::ServerProcess;
use crossrank::api::pb;
use pb::rerank_stream_request::Kind as In;
use serde_json::{json, Value};
use tonic::metadata::MetadataValue;

fn model_flag(opts: &str) -> String {
    format!("ce={}{opts}", common::fixtures().join("bert").display())
}

fn pairs(n: usize) -> Vec<pb::Pair> {
    (0..n)
        .map(|i| pb::Pair {
            text_a: format!("query {i}"),
            text_b: "a document".into(),
        })
        .collect()
}

fn documents(n: usize) -> Vec<pb::Document> {
    (0..n)
        .map(|i| pb::Document {
            id: format!("d{i}"),
            text: format!("document {i}"),
        })
        .collect()
}

/// `msg` with `name: value` metadata for each given header.
fn with<T>(msg: T, headers: &[(&'static str, &str)]) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    for (name, value) in headers {
        let value: MetadataValue<_> = value.parse().unwrap();
        req.metadata_mut().insert(*name, value);
    }
    req
}

/// One REST call; its status and JSON answer.
async fn post(addr: &str, path: &str, body: Value, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null),
    )
}

/// Every gRPC method, each with the given headers; `n` + k pairs for the k-th method (Score,
/// Rerank, ScoreStream, RerankStream), so that each path's count is its own.
async fn every_rpc(server: &ServerProcess, model: &str, headers: [&[(&'static str, &str)]; 4]) {
    let mut c = pb::cross_encoder_client::CrossEncoderClient::new(server.channel.clone());
    let score = |n| pb::ScoreRequest {
        model: model.into(),
        pairs: pairs(n),
        ..Default::default()
    };
    c.score(with(score(1), headers[0])).await.unwrap();
    let rerank = pb::RerankRequest {
        model: model.into(),
        query: "q".into(),
        documents: documents(2),
        ..Default::default()
    };
    c.rerank(with(rerank, headers[1])).await.unwrap();
    let stream = tokio_stream::iter([score(1), score(2)]);
    let mut answers = c
        .score_stream(with(stream, headers[2]))
        .await
        .unwrap()
        .into_inner();
    while let Some(a) = answers.message().await.unwrap() {
        assert_eq!(a.error, None);
    }
    let header = In::Header(pb::RerankStreamHeader {
        model: model.into(),
        query: "q".into(),
        ..Default::default()
    });
    let batches = [
        header,
        In::Documents(pb::DocumentBatch {
            documents: documents(1),
        }),
    ];
    let mut msgs: Vec<_> = batches
        .into_iter()
        .map(|k| pb::RerankStreamRequest { kind: Some(k) })
        .collect();
    msgs.push(pb::RerankStreamRequest {
        kind: Some(In::Documents(pb::DocumentBatch {
            documents: documents(3),
        })),
    });
    let stream = tokio_stream::iter(msgs);
    let mut answers = c
        .rerank_stream(with(stream, headers[3]))
        .await
        .unwrap()
        .into_inner();
    while answers.message().await.unwrap().is_some() {}
}

/// The value of the sample `series` (labels in the order the encoder writes them).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

fn tenant_pairs(text: &str, model: &str, tenant: &str) -> Option<f64> {
    let series = format!("crossrank_tenant_pairs_total{{model=\"{model}\",tenant=\"{tenant}\"}}");
    sample(text, &series)
}

/// Without keys, `x-crossrank-tenant` names the tenant on every path: each listed tenant's
/// pairs are counted under its name, exactly; unlisted tenants together as `(other)`; calls
/// without the header as `(none)`. A tenant over its model's quota is counted as a
/// `tenant_quota` rejection of that tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_queues_pairs_for_the_header_tenant() {
    let (ce, quota) = (model_flag(""), model_flag(",tenant_max_queue_pairs=2"));
    let quota = quota.replacen("ce=", "q=", 1);
    let listed = [
        "score", "rerank", "sstream", "rstream", "v2", "v1", "tei", "predict",
    ];
    let mut args = vec!["--model", &ce, "--model", &quota, "--http-port", "0"];
    for t in &listed {
        args.extend(["--metric-tenant", t]);
    }
    let server = ServerProcess::start(&args).await;
    let h = |t| [("x-crossrank-tenant", t)];
    let (s, r, ss, rs) = (h("score"), h("rerank"), h("sstream"), h("rstream"));
    every_rpc(&server, "ce", [&s, &r, &ss, &rs]).await;
    let (other, nobody): (_, [(&str, &str); 0]) = (h("unlisted-1"), []);
    every_rpc(&server, "ce", [&other, &h("unlisted-2"), &nobody, &nobody]).await;

    let addr = server.http();
    let docs = |n: usize| (0..n).map(|i| format!("document {i}")).collect::<Vec<_>>();
    let cohere = |n| json!({"model": "ce", "query": "q", "documents": docs(n)});
    for (path, body, tenant) in [
        ("/v2/rerank", cohere(5), "v2"),
        ("/v1/rerank", cohere(6), "v1"),
        (
            "/rerank",
            json!({"model": "ce", "query": "q", "texts": docs(7)}),
            "tei",
        ),
        (
            "/predict",
            json!({"model": "ce", "inputs": vec![["a", "b"]; 8]}),
            "predict",
        ),
        ("/v2/rerank", cohere(2), "unlisted-3"),
        (
            "/rerank",
            json!({"model": "ce", "query": "q", "texts": docs(3)}),
            "",
        ),
    ] {
        let headers: &[(&str, &str)] = match tenant {
            "" => &[],
            t => &[("x-crossrank-tenant", t)],
        };
        let (status, v) = post(addr, path, body, headers).await;
        assert_eq!(status, 200, "{path}: {v}");
    }

    let mut c = pb::cross_encoder_client::CrossEncoderClient::new(server.channel.clone());
    let over = pb::ScoreRequest {
        model: "q".into(),
        pairs: pairs(3),
        ..Default::default()
    };
    let s = c.score(with(over, &h("score"))).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::ResourceExhausted);
    assert!(s.message().contains("tenant_max_queue_pairs 2"), "{s:?}");

    let text = server.metrics().await;
    for (tenant, pairs) in listed.iter().zip([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]) {
        assert_eq!(
            tenant_pairs(&text, "ce", tenant),
            Some(pairs),
            "{tenant}: {text}"
        );
    }
    // unlisted-1's Score (1 pair), unlisted-2's Rerank (2) and unlisted-3's REST call (2).
    assert_eq!(tenant_pairs(&text, "ce", "(other)"), Some(5.0), "{text}");
    assert_eq!(
        tenant_pairs(&text, "ce", "(none)"),
        Some(3.0 + 4.0 + 3.0),
        "{text}"
    );
    assert!(
        !text.contains("unlisted"),
        "an unlisted tenant has a label: {text}"
    );
    let quota =
        "crossrank_tenant_rejected_total{model=\"q\",tenant=\"score\",reason=\"tenant_quota\"}";
    assert_eq!(sample(&text, quota), Some(1.0), "{text}");
    let reason = "crossrank_rejections_total{model=\"q\",reason=\"tenant_quota\"}";
    assert_eq!(sample(&text, reason), Some(1.0), "{text}");
}

/// With keys, the tenant is the key's name (`NAME KEY`, or `key-<N>` for a key alone) on both
/// ports, and `x-crossrank-tenant` is ignored, even when it would be refused without keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_keys_the_tenant_is_the_keys_name() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ["team-a sk-aaaa-1", "sk-bbbb-2", "team-a\tsk-aaaa-3"];
    let ce = model_flag("");
    let extra = ["--metric-tenant", "team-a", "--metric-tenant", "key-1"];
    let server = ServerProcess::start_with_keys(&ce, &keys, dir.path(), &extra).await;
    let (a1, b2, a3) = ("Bearer sk-aaaa-1", "Bearer sk-bbbb-2", "sk-aaaa-3");
    let long = "x".repeat(300);
    let auth = |key| [("authorization", key), ("x-crossrank-tenant", "key-1")];
    let b2h = [("authorization", b2), ("x-crossrank-tenant", long.as_str())];
    let (a1h, a3h) = (auth(a1), auth(a3));
    // team-a: 1 + 2 + 3 + 4 pairs, whatever the header says; key-1: 10.
    every_rpc(&server, "ce", [&a1h, &a3h, &a1h, &a3h]).await;
    every_rpc(&server, "ce", [&b2h, &b2h, &b2h, &b2h]).await;
    let addr = server.http();
    let body = json!({"model": "ce", "query": "q", "documents": ["a", "b", "c"]});
    let (status, v) = post(addr, "/v2/rerank", body.clone(), &a3h).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = post(addr, "/v1/rerank", body, &b2h).await;
    assert_eq!(status, 200, "{v}");

    let text = server.metrics().await;
    assert_eq!(tenant_pairs(&text, "ce", "team-a"), Some(13.0), "{text}");
    assert_eq!(tenant_pairs(&text, "ce", "key-1"), Some(13.0), "{text}");
    assert_eq!(tenant_pairs(&text, "ce", "(none)"), None, "{text}");
    assert_eq!(tenant_pairs(&text, "ce", "(other)"), None, "{text}");
}

/// `crossrank serve ARGS --check-config`: its status, stdout and stderr.
fn check_config(args: &[&str]) -> (bool, String, String) {
    let model = model_flag("");
    let out = Command::new(env!("CARGO_BIN_EXE_crossrank"))
        .args(["serve", "--model", &model, "--check-config"])
        .args(args)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// `--max-priority` and `[limits] max_priority`, `--metric-tenant` and `metric_tenants` reach
/// the configuration (the flag wins; tenants add up); their bounds are checked at start.
#[test]
fn priority_and_tenant_flags_and_toml_keys_reach_the_config() {
    let (ok, out, err) = check_config(&["--max-priority", "4", "--metric-tenant", "a,b"]);
    assert!(ok, "{err}");
    assert!(out.contains("max_priority: 4"), "{out}");
    assert!(out.contains("metric tenants: [\"a\", \"b\"]"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("serve.toml");
    let text = "metric_tenants = [\"x\", \"a\"]\n[limits]\nmax_priority = 20\n";
    std::fs::write(&toml, text).unwrap();
    let toml = toml.display().to_string();
    let (ok, out, err) = check_config(&["--config", &toml, "--metric-tenant", "a"]);
    assert!(ok, "{err}");
    assert!(out.contains("max_priority: 20"), "{out}");
    assert!(out.contains("metric tenants: [\"x\", \"a\"]"), "{out}");
    let (ok, out, _) = check_config(&["--config", &toml, "--max-priority", "2"]);
    assert!(ok && out.contains("max_priority: 2"), "{out}");

    let (ok, _, err) = check_config(&["--max-priority", "1001"]);
    assert!(
        !ok && err.contains("max_priority is 1001; at most 1000"),
        "{err}"
    );
    let many: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
    let many = many.join(",");
    let (ok, _, err) = check_config(&["--metric-tenant", &many]);
    assert!(
        !ok && err.contains("metric_tenants has 65 names; the limit is 64"),
        "{err}"
    );
    let (ok, _, err) = check_config(&["--metric-tenant", "team a"]);
    assert!(
        !ok && err.contains("\"team a\" must be 1-128 characters"),
        "{err}"
    );
}
