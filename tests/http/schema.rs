//! The REST port's own description, checked by outside tools from .venv-clients (made by
//! scripts/setup.sh): GET /openapi.json is a valid OpenAPI 3.1 document naming every scoring
//! route (openapi-spec-validator), and the server keeps it: schemathesis sends generated valid
//! and invalid requests to every operation and applies all of its checks.

use crate::common;

use std::path::PathBuf;
use std::process::Command;

use common::process::ServerProcess;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "schema-test-key";

/// A server on the demo model with the REST port and one data-plane key.
async fn start(dir: &tempfile::TempDir) -> (ServerProcess, String) {
    let spec = format!("minilm={}", common::minilm_dir().display());
    let server = ServerProcess::start_with_keys(&spec, &[KEY], dir.path(), &[]).await;
    let addr = server.http_addr.clone().expect("no http line");
    (server, addr)
}

/// `GET path` over HTTP/1.0 (whole body, no chunking): status and body.
async fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("no end of headers");
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok());
    (
        status.unwrap_or_else(|| panic!("no status in {head}")),
        body.into(),
    )
}

/// `.venv-clients/bin/TOOL`, which scripts/setup.sh installs.
fn tool(name: &str) -> Command {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".venv-clients/bin")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup.sh",
        path.display()
    );
    Command::new(path)
}

/// Runs `cmd` off the async threads; panics with its output unless it exits 0.
async fn succeeds(mut cmd: Command, what: &str) -> String {
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The document is OpenAPI 3.1, passes openapi-spec-validator, and has a POST operation for
/// each scoring route of the four dialects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start(&dir).await;
    let (status, body) = get(&addr, "/openapi.json").await;
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1."), "openapi: {version:?}");
    for route in ["/v2/rerank", "/v1/rerank", "/rerank", "/predict"] {
        assert!(doc["paths"][route]["post"].is_object(), "no POST {route}");
    }
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &body).unwrap();
    let mut validator = tool("openapi-spec-validator");
    validator.arg(&file);
    let out = succeeds(validator, "openapi-spec-validator").await;
    println!("{out}");
}

/// schemathesis (every operation, every check, 100 examples each, deterministic) finds no server
/// error, no undocumented status or body, no valid request refused and no invalid one accepted.
/// About 10 s on two cores; on a failure its output names each case with a curl line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start(&dir).await;
    let mut run = tool("schemathesis");
    run.current_dir(dir.path()).args([
        "run",
        &format!("http://{addr}/openapi.json"),
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "100",
        "--seed",
        "20260101",
        "--generation-deterministic",
        "--continue-on-failure",
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--no-color",
        // Its sanitizer hides any field named like a secret, `max_tokens_per_doc` included.
        "--output-sanitize",
        "false",
        "--header",
        &format!("Authorization: Bearer {KEY}"),
    ]);
    let out = succeeds(run, "schemathesis").await;
    println!("{out}");
}
