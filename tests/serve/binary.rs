//! `crossrank serve` as a process: prints its address, serves a Python grpcio client whose
//! Score and Rerank equal sentence-transformers on the real-size MiniLM model, exits 0 on SIGTERM.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_binary_with_python_client() {
    let model = common::minilm_dir();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("stderr.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_crossrank"))
        .args([
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--grace-period-secs",
            "25",
            "--metrics-port",
            "0",
            "--log-format",
            "json",
            "--model",
        ])
        .arg(format!("minilm={}", model.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first
        .strip_prefix("crossrank listening on ")
        .unwrap_or_else(|| panic!("unexpected: {first}"))
        .to_owned();
    let first_addr = addr.clone();
    let second = lines.next().unwrap().unwrap();
    assert!(
        second.starts_with("crossrank metrics on http://127.0.0.1:"),
        "{second}"
    );

    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    while watch.message().await.unwrap().unwrap().status != 1 {}

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    let script = root.join("tests/python/grpc_parity.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .env("PYTHONPATH", root.join("python"))
            .arg("-W")
            .arg("ignore")
            .arg(script)
            .args([addr.as_str(), "minilm"])
            .arg(&model)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "python client failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A failed request with a caller's traceparent: its log line carries the caller's trace id.
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let channel = tonic::transport::Channel::from_shared(format!("http://{first_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut req = tonic::Request::new(crossrank::api::pb::ScoreRequest {
        model: "minilm".into(),
        ..Default::default()
    });
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-b7ad6b7169203331-01")
            .parse()
            .unwrap(),
    );
    let err = crossrank::api::pb::cross_encoder_client::CrossEncoderClient::new(channel)
        .score(req)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // Long-lived streams would hold shutdown up to the grace period; this client is done.
    drop(watch);
    drop(health);
    let pid = child.id().to_string();
    let stopping = std::time::Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        stopping.elapsed() < std::time::Duration::from_secs(20),
        "shutdown took {:?}",
        stopping.elapsed()
    );
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l == "crossrank stopped"), "{rest:?}");
    let stderr = std::fs::read_to_string(&log).unwrap();
    let line = stderr
        .lines()
        .find(|l| l.contains("request failed") && l.contains("INVALID_ARGUMENT"))
        .unwrap_or_else(|| panic!("no failure logged:\n{stderr}"));
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(json["span"]["trace_id"], trace_id, "{line}");
}
