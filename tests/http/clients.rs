//! The real Python REST SDKs against `crossrank serve --http-port 0` with data-plane keys:
//! cohere's ClientV2 and v1 Client, LangChain's CohereRerank, LlamaIndex's TEI and Cohere
//! postprocessors rank like sentence-transformers (within 1e-5) and exactly like our gRPC
//! Rerank, and raise the typed errors the SDKs map 400, 401, 404 and 429 to; the TEI routes'
//! 400 and 422 bodies are read with httpx (tests/python/http_clients.py). The SDKs live in
//! .venv-clients, made by scripts/setup.sh.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::process::ServerProcess;
use common::root;
use crossrank::api::pb;
use serde_json::{json, Value};

/// The second of two keys in the keys file: any listed key opens the API.
const KEY: &str = "ck-second-key";
/// The model's max_queue_pairs: a request with more documents is refused with 429 at once.
const QUEUE_PAIRS: usize = 16;
const TOP_N: usize = 3;
const QUERY: &str = "how does a cross-encoder score a query and a document";
const DOCS: &[&str] = &[
    "Bi-encoders embed the query and the document separately and compare the two vectors.",
    "The Eiffel Tower was finished in 1889 for the World's Fair in Paris.",
    "A cross-encoder reads the query and the document together and outputs one relevance score.",
    "Cats sleep for most of the day and hunt at dusk.",
    "東京都の人口は約1400万人です。",
    "Rerankers reorder the passages a retriever found, the most relevant first.",
    "We celebrated 🎉 with cake 🍰 and a long walk by the river.",
    "Attention lets every token of the pair look at every other token.",
];

/// Runs `venv`'s python on `script` with `args` and `stdin`; returns stdout, or panics with
/// stderr when it fails.
fn python(venv: &str, script: &str, args: &[String], stdin: &str) -> String {
    let interpreter = root().join(venv).join("bin/python");
    assert!(
        interpreter.is_file(),
        "{} is missing: run scripts/setup.sh",
        interpreter.display()
    );
    let mut command = Command::new(interpreter);
    command
        .args(["-W", "ignore"])
        .arg(root().join(script))
        .args(args);
    let out = common::run_with_input(&mut command, stdin).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// sentence-transformers' `CrossEncoder.rank` on the model, from the main .venv:
/// (index, score), best first.
fn reference(model: &Path) -> Vec<(u32, f32)> {
    let request = json!({"query": QUERY, "documents": DOCS}).to_string();
    let out = python(
        ".venv",
        "tests/python/st_rank.py",
        &[model.display().to_string()],
        &request,
    );
    let ranked: Vec<Value> = serde_json::from_str(&out).unwrap();
    ranked
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap() as u32,
                r["score"].as_f64().unwrap() as f32,
            )
        })
        .collect()
}

/// Our gRPC Rerank on the same input: (index, score), best first.
async fn grpc_rerank(server: &ServerProcess) -> Vec<(u32, f32)> {
    let documents = DOCS
        .iter()
        .map(|t| pb::Document {
            text: t.to_string(),
            ..Default::default()
        })
        .collect();
    let mut req = tonic::Request::new(pb::RerankRequest {
        model: "minilm".into(),
        query: QUERY.into(),
        documents,
        ..Default::default()
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {KEY}").parse().unwrap());
    let mut client = pb::cross_encoder_client::CrossEncoderClient::new(server.channel.clone());
    let resp = client.rerank(req).await.unwrap().into_inner();
    resp.results.iter().map(|r| (r.index, r.score)).collect()
}

fn ranked_json(ranked: &[(u32, f32)]) -> Value {
    ranked
        .iter()
        .map(|&(index, score)| json!({"index": index, "score": score}))
        .collect()
}

/// Every SDK reranks as sentence-transformers and as gRPC Rerank, sending the key its own way
/// (`Bearer KEY`, or LlamaIndex TEI's bare key); wrong keys, unknown models, empty inputs and a
/// request over the queue raise the SDKs' typed errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdks_rank_like_sentence_transformers_and_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::minilm_dir();
    let spec = format!("minilm={},max_queue_pairs={QUEUE_PAIRS}", model.display());
    let keys = ["ck-first-key", KEY];
    let server = ServerProcess::start_with_keys(&spec, &keys, dir.path(), &[]).await;
    let base = format!(
        "http://{}",
        server.http_addr.as_ref().expect("no http line")
    );

    let want = tokio::task::spawn_blocking(move || reference(&model))
        .await
        .unwrap();
    let got = grpc_rerank(&server).await;
    // The fixture only means something when its scores are apart: order is then comparable.
    assert!(want.windows(2).all(|w| w[0].1 - w[1].1 > 1e-4), "{want:?}");
    let order = |r: &[(u32, f32)]| r.iter().map(|x| x.0).collect::<Vec<_>>();
    assert_eq!(
        order(&got),
        order(&want),
        "gRPC order vs sentence-transformers"
    );
    for ((_, g), (_, w)) in got.iter().zip(&want) {
        assert!(
            (g - w).abs() <= 1e-5,
            "gRPC {g} vs sentence-transformers {w}"
        );
    }

    let expected = dir.path().join("expected.json");
    let body = json!({
        "query": QUERY, "documents": DOCS, "top_n": TOP_N,
        "reference": ranked_json(&want), "grpc": ranked_json(&got),
        "api_key": KEY, "queue_limit": QUEUE_PAIRS,
    });
    std::fs::write(&expected, body.to_string()).unwrap();
    let args = [base, "minilm".into(), expected.display().to_string()];
    let out = tokio::task::spawn_blocking(move || {
        python(".venv-clients", "tests/python/http_clients.py", &args, "")
    })
    .await
    .unwrap();
    println!("{out}");
}
