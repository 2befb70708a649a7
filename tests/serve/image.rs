//! The container image itself, run by podman or docker (scripts/engine.sh): opt-in with
//! `CROSSRANK_IMAGE_TEST=1`, since it needs an engine and the image that `scripts/image.sh`
//! builds (minutes, gigabytes); `scripts/image.sh --test` builds it and runs these.
//! `CROSSRANK_IMAGE` names another image to test.
//!
//! As the Helm chart runs it: user 10001, read-only root filesystem, models mounted read-only;
//! ports chosen by the server (host network, port 0) and read off its first lines.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::fake_hub::{model_files, FakeHub};
use common::rest;
use common::{expected, fixtures, max_diff, minilm_dir};
use crossrank::api::pb;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn engine() -> Command {
    Command::new(root().join("scripts/engine.sh"))
}

fn ok(cmd: &mut Command) -> String {
    let out: Output = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The image to test, or None (the test is skipped) without CROSSRANK_IMAGE_TEST=1.
fn image() -> Option<String> {
    if std::env::var("CROSSRANK_IMAGE_TEST").as_deref() != Ok("1") {
        eprintln!(
            "skipped: set CROSSRANK_IMAGE_TEST=1 (scripts/image.sh --test) to run the image tests"
        );
        return None;
    }
    let name = std::env::var("CROSSRANK_IMAGE").unwrap_or_else(|_| {
        let script = root().join("scripts/image.sh");
        ok(Command::new(script).arg("--print-name"))
            .trim()
            .to_owned()
    });
    let found = engine().args(["image", "inspect", &name]).output().unwrap();
    assert!(
        found.status.success(),
        "no image {name}: build it with scripts/image.sh"
    );
    Some(name)
}

/// A `serve` container, removed on drop.
struct Container {
    name: String,
    /// `engine run` in the foreground; taken by [`Container::stop`].
    child: Option<Child>,
    addr: String,
    metrics_addr: String,
    http_addr: String,
    channel: tonic::transport::Channel,
    log: PathBuf,
    _logs: tempfile::TempDir,
}

impl Container {
    /// Runs the image's entrypoint (`crossrank serve`) with `options` for the engine and `args`
    /// for serve, as user 10001 on a read-only root filesystem; returns once health "" is SERVING.
    async fn serve(image: &str, options: &[String], args: &[&str]) -> Self {
        let name = format!("crossrank-test-{}-{}", std::process::id(), rand_suffix());
        let logs = tempfile::tempdir().unwrap();
        let log = logs.path().join("stderr.log");
        let mut child = engine()
            .args([
                "run",
                "--rm",
                "--name",
                &name,
                "--network=host",
                "--read-only",
            ])
            .args(["--user", "10001:10001"])
            .args(options)
            .arg(image)
            .args(["--host", "127.0.0.1", "--port", "0", "--metrics-port", "0"])
            .args(["--http-port", "0", "--grace-period-secs", "10"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next = |prefix: &str| {
            let line = lines.next().and_then(Result::ok).unwrap_or_else(|| {
                panic!(
                    "the container ended early:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
            line.strip_prefix(prefix)
                .unwrap_or_else(|| panic!("unexpected: {line}"))
                .trim_end_matches("/metrics")
                .to_owned()
        };
        let addr = next("crossrank listening on ");
        let metrics_addr = next("crossrank metrics on http://");
        let http_addr = next("crossrank http on http://");
        std::thread::spawn(move || lines.for_each(drop));
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        common::wait_health(channel.clone(), "", 1).await;
        Self {
            name,
            child: Some(child),
            addr,
            metrics_addr,
            http_addr,
            channel,
            log,
            _logs: logs,
        }
    }

    /// `sh -c SCRIPT` inside the running container.
    fn exec(&self, script: &str) -> Output {
        engine()
            .args(["exec", &self.name, "/bin/sh", "-c", script])
            .output()
            .unwrap()
    }

    /// The server's user id, as the host kernel sees the container's first process.
    fn uid(&self) -> String {
        let pid = ok(engine().args(["inspect", "--format", "{{.State.Pid}}", &self.name]));
        let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
        let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap();
        uid.split_whitespace().next().unwrap().to_owned()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = engine().args(["rm", "-f", &self.name]).output();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn rand_suffix() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn mount(host: &Path, at: &str, mode: &str) -> Vec<String> {
    vec!["-v".into(), format!("{}:{at}:{mode}", host.display())]
}

const QUERY: &str = "how do container images keep their size down";
const DOCUMENTS: [&str; 4] = [
    "Multi-stage builds copy only the final artifacts into a slim runtime base image.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Shared libraries the binary does not load can be left out of the image.",
    "Ferries leave the harbour every hour during the summer season.",
];

/// (index, score) best first, from one JSON array or from JSON lines.
fn ranked(json: &str) -> Vec<(u64, f64)> {
    let rows: Vec<serde_json::Value> = match serde_json::from_str(json) {
        Ok(serde_json::Value::Array(rows)) => rows,
        _ => json
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    };
    let field = |r: &serde_json::Value, k: &str| r[k].clone();
    rows.iter()
        .map(|r| {
            let index = field(r, "index").as_u64().unwrap();
            let score = field(r, "relevance_score")
                .as_f64()
                .or_else(|| field(r, "score").as_f64())
                .unwrap();
            (index, score)
        })
        .collect()
}

fn assert_same_ranking(what: &str, got: &[(u64, f64)], want: &[(u64, f64)]) {
    let order = |r: &[(u64, f64)]| r.iter().map(|p| p.0).collect::<Vec<_>>();
    assert_eq!(order(got), order(want), "{what}: order differs");
    let dev = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g.1 - w.1).abs())
        .fold(0.0, f64::max);
    assert!(dev <= 1e-5, "{what}: scores differ by {dev}");
    println!("{what}: same order, max |delta| {dev:.1e}");
}

/// The CLI on this machine (not the image) ranks the documents with the same model.
fn cli_ranking(docs: &Path) -> Vec<(u64, f64)> {
    let model = minilm_dir();
    ranked(&ok(Command::new(env!("CARGO_BIN_EXE_crossrank"))
        .args(["rerank", "--json", "--query", QUERY, "--documents"])
        .arg(docs)
        .arg("--model")
        .arg(&model)))
}

/// Python grpcio's Rerank against the container.
fn python_ranking(addr: &str, docs: &Path) -> Vec<(u64, f64)> {
    ranked(&ok(Command::new(root().join(".venv/bin/python"))
        .env("PYTHONPATH", root().join("python"))
        .args(["-W", "ignore"])
        .arg(root().join("tests/python/rerank_json.py"))
        .args([addr, "minilm", QUERY])
        .arg(docs)))
}

/// A REST route of the container's HTTP port: Cohere's `/v2/rerank` or TEI's `/rerank`.
async fn http_ranking(http: &str, path: &str) -> Vec<(u64, f64)> {
    let body = match path {
        "/rerank" => serde_json::json!({ "query": QUERY, "texts": DOCUMENTS }),
        _ => serde_json::json!({ "model": "minilm", "query": QUERY, "documents": DOCUMENTS }),
    };
    let resp = rest::call(http, &rest::post_json(path, &[], &body)).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let json = resp.json();
    ranked(&json.get("results").unwrap_or(&json).to_string())
}

/// The image serves models/ mounted read-only as user 10001 on a read-only root filesystem:
/// the Python client's Rerank equals this machine's CLI, the HTTP route the same, metrics
/// count the calls, the image holds no CUDA library, and SIGTERM ends it within the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_serves_read_only_as_10001_and_stops_on_sigterm() {
    let Some(image) = image() else { return };
    let models = minilm_dir();
    let options = mount(&models, "/models/minilm-ce", "ro");
    let c = Container::serve(&image, &options, &["--model", "minilm=/models/minilm-ce"]).await;

    assert_eq!(c.uid(), "10001");
    for path in ["/usr/local/bin/probe", "/models/minilm-ce/probe"] {
        let out = c.exec(&format!("touch {path}"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("Read-only file system"),
            "{path} writable: {err}"
        );
    }
    let libs = String::from_utf8_lossy(&c.exec("ls /opt/crossrank/lib").stdout).into_owned();
    println!(
        "image libraries: {}",
        libs.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    assert!(libs.contains("libtorch_cpu.so"), "{libs}");
    if !image.ends_with("-cuda") {
        for absent in ["libtorch_cuda", "libcublas", "libcudnn", "libnccl"] {
            assert!(
                !libs.contains(absent),
                "the CPU image holds {absent}: {libs}"
            );
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("documents.txt");
    std::fs::write(&docs, DOCUMENTS.join("\n") + "\n").unwrap();
    let addr = c.addr.clone();
    let (cli, python) =
        tokio::task::spawn_blocking(move || (cli_ranking(&docs), python_ranking(&addr, &docs)))
            .await
            .unwrap();
    assert_same_ranking("python client (image) vs CLI (host)", &python, &cli);
    for path in ["/v2/rerank", "/rerank"] {
        let http = http_ranking(&c.http_addr, path).await;
        assert_same_ranking(&format!("HTTP {path} vs python client"), &http, &python);
    }

    let metrics = rest::call(
        &c.metrics_addr,
        &rest::request("GET", "/metrics", &[], None),
    )
    .await;
    let text = String::from_utf8_lossy(&metrics.body);
    for want in [
        "crossrank_requests_total{model=\"minilm\",method=\"Rerank\",code=\"OK\"}",
        "crossrank_http_requests_total{",
        // four documents from the Python client, four on each HTTP route
        "crossrank_pairs_total{model=\"minilm\"} 12\n",
    ] {
        assert!(text.contains(want), "metrics lack {want}:\n{text}");
    }

    let mut c = c;
    let start = Instant::now();
    ok(engine().args(["kill", "--signal", "TERM", &c.name]));
    let mut child = c.child.take().unwrap();
    let status = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::task::spawn_blocking(move || child.wait().unwrap()),
    )
    .await
    .expect("still running 20 s after SIGTERM (grace period 10 s)")
    .unwrap();
    let log = std::fs::read_to_string(&c.log).unwrap();
    assert!(status.success(), "exit {status} after SIGTERM:\n{log}");
    println!(
        "SIGTERM: exited 0 after {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

/// The chart's init-container flow: `crossrank fetch` in one container fills a cache volume from
/// a hub (a fake one on 127.0.0.1); `serve` in another reads it offline, mounted read-only,
/// with the hub gone, and scores as sentence-transformers does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_fetches_into_a_volume_and_serves_it_offline() {
    let Some(image) = image() else { return };
    let mut hub = FakeHub::start().await;
    hub.publish("org/tiny", &["main"], model_files(&fixtures().join("bert")));
    let volume = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(volume.path(), Some(10001), Some(10001)).unwrap();

    let (url, image_name) = (hub.url.clone(), image.clone());
    let rw = mount(volume.path(), "/models", "rw");
    let out = tokio::task::spawn_blocking(move || {
        engine()
            .args([
                "run",
                "--rm",
                "--network=host",
                "--read-only",
                "--user",
                "10001:10001",
            ])
            .args(&rw)
            .args([
                "-e",
                "HF_HOME=/models/huggingface",
                "-e",
                &format!("HF_ENDPOINT={url}"),
            ])
            .args(["--entrypoint", "/usr/local/bin/crossrank", &image_name])
            .args(["fetch", "org/tiny"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "fetch failed:\n{said}");
    println!("fetch: {}", String::from_utf8_lossy(&out.stdout).trim());
    hub.stop();

    let mut options = mount(volume.path(), "/models", "ro");
    options.extend(
        [
            "-e",
            "HF_HOME=/models/huggingface",
            "-e",
            "HF_HUB_OFFLINE=1",
        ]
        .map(String::from),
    );
    let c = Container::serve(&image, &options, &["--model", "tiny=org/tiny"]).await;
    let exp = expected();
    let pairs = exp.pairs.iter().map(|(a, b)| pb::Pair {
        text_a: a.clone(),
        text_b: b.clone(),
    });
    let req = pb::ScoreRequest {
        model: "tiny".into(),
        pairs: pairs.collect(),
        ..Default::default()
    };
    let mut client = pb::cross_encoder_client::CrossEncoderClient::new(c.channel.clone());
    let r = client.score(req).await.unwrap().into_inner();
    let got: Vec<Vec<f32>> = r.results.iter().map(|p| p.scores.clone()).collect();
    let d = max_diff(&got, &exp.models["bert"].default);
    assert!(d <= 1e-5, "differs from sentence-transformers by {d}");
    println!(
        "served offline from the volume: {} pairs, max |delta| {d:.1e} vs sentence-transformers",
        got.len()
    );
}
