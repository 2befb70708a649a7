//! Shared helpers: where the generated fixtures are and what sentence-transformers said about them.
#![allow(dead_code)]

pub mod collector;
pub mod fake_hub;
pub mod fake_model;
pub mod process;
pub mod raw;
pub mod rest;
pub mod server;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// Reference outputs of `CrossEncoder.predict` for one model (see tests/fixtures/make_fixtures.py).
#[derive(Deserialize)]
pub struct Reference {
    pub default: Vec<Vec<f32>>,
    pub none: Vec<Vec<f32>>,
    pub softmax: Vec<Vec<f32>>,
    pub truncated: Vec<bool>,
    pub max_length: usize,
}

#[derive(Deserialize)]
pub struct Expected {
    pub pairs: Vec<(String, String)>,
    pub models: BTreeMap<String, Reference>,
}

#[derive(Deserialize)]
pub struct MiniLm {
    pub pairs: Vec<(String, String)>,
    #[serde(flatten)]
    pub reference: Reference,
}

/// The repository's root (scripts/, .venv/, helm/ are found from it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `cmd`, which must succeed (else its stderr is shown).
pub fn run_ok(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed:\n{stderr}");
    out
}

/// Runs `command` with `stdin` as its standard input (written whole, then closed) and collects
/// its standard output and error; fails only when it cannot be started.
pub fn run_with_input(
    command: &mut std::process::Command,
    stdin: &str,
) -> std::io::Result<std::process::Output> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes())?;
    }
    child.wait_with_output()
}

/// The fixtures directory that `scripts/test.sh` generates before running the tests.
/// Copies the directory tree `from` to `to` (which must not exist yet).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        match entry.file_type().unwrap().is_dir() {
            true => copy_dir(&entry.path(), &target),
            false => drop(std::fs::copy(entry.path(), target).unwrap()),
        }
    }
}

/// A model directory's chat template (chat_template.jinja, else tokenizer_config.json's).
pub fn chat_template(dir: &std::path::Path) -> String {
    if let Ok(text) = std::fs::read_to_string(dir.join("chat_template.jinja")) {
        return text;
    }
    let config = std::fs::read_to_string(dir.join("tokenizer_config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    config["chat_template"].as_str().unwrap().to_owned()
}

pub fn fixtures() -> PathBuf {
    let dir = std::env::var_os("CROSSRANK_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/generated")
        });
    assert!(
        dir.join("expected.json").is_file(),
        "no fixtures in {}: run scripts/test.sh, which generates them",
        dir.display()
    );
    dir
}

pub fn expected() -> Expected {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn minilm() -> MiniLm {
    let text =
        std::fs::read_to_string(fixtures().join("minilm.json")).expect("minilm.json fixture");
    serde_json::from_str(&text).unwrap()
}

/// The demo model directory built by scripts/setup.sh.
pub fn minilm_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/minilm-ce")
}

/// Largest absolute difference between two score tables of the same shape.
pub fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len(), "row counts differ");
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len(), "label counts differ");
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

/// Waits on the health Watch stream of `channel` until `service` reports `status`
/// (1 SERVING, 2 NOT_SERVING), for at most 30 s.
pub async fn wait_health(channel: tonic::transport::Channel, service: &str, status: i32) {
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let req = tonic_health::pb::HealthCheckRequest {
        service: service.into(),
    };
    let mut stream = health.watch(req).await.unwrap().into_inner();
    let watch = async {
        while let Some(msg) = stream.message().await.unwrap() {
            if msg.status == status {
                return;
            }
        }
        panic!("health watch for {service:?} ended");
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), watch)
        .await
        .unwrap_or_else(|_| panic!("{service:?} never reported status {status}"));
}
