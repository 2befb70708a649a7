//! The container image itself, run by podman or docker (scripts/engine.sh): opt-in with
//! `CROSSRANK_IMAGE_TEST=1`, since it needs an engine and the image that `scripts/image.sh`
//! builds (minutes, gigabytes); `scripts/image.sh --test` builds it and runs these. They run as
//! root with a rootful engine on this host (a volume is handed to user 10001).
//! `CROSSRANK_IMAGE` names another image to test.
//!
//! As the Helm chart runs it: user 10001, read-only root filesystem, models mounted read-only;
//! ports chosen by the server (host network, port 0) and read off its first lines.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::fake_hub::{model_files, FakeHub};
use common::rest;
use common::{expected, fixtures, max_diff, minilm_dir, root, run_ok};
use crossrank::api::pb;

fn engine() -> Command {
    Command::new(root().join("scripts/engine.sh"))
}

/// The standard output of `cmd`, which must succeed.
fn ok(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run_ok(cmd).stdout).into_owned()
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

/// A container run in the foreground by `engine run --name NAME`: removed, and the engine's
/// client reaped, on drop, whatever happened since it was started.
struct Running {
    name: String,
    child: Option<Child>,
}

impl Running {
    /// `engine run --rm --name NAME --network=host --read-only --user 10001:10001 ARGS...`.
    fn start(args: &[String], stdout: Stdio, stderr: Stdio) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("crossrank-test-{}-{n}", std::process::id());
        let child = engine()
            .args([
                "run",
                "--rm",
                "--name",
                &name,
                "--network=host",
                "--read-only",
            ])
            .args(["--user", "10001:10001"])
            .args(args)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap();
        Self {
            name,
            child: Some(child),
        }
    }

    /// Waits for the container to end, at most `limit`.
    async fn wait(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("waited for once");
        let waited = tokio::task::spawn_blocking(move || child.wait().unwrap());
        tokio::time::timeout(limit, waited)
            .await
            .unwrap_or_else(|_| panic!("{} still running after {limit:?}", self.name))
            .unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = engine().args(["rm", "-f", &self.name]).output();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How long a container may take to print its addresses, to become ready, or to run `fetch`.
const START_LIMIT: Duration = Duration::from_secs(300);

/// A `serve` container, ready.
struct Container {
    run: Running,
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
        let logs = tempfile::tempdir().unwrap();
        let log = logs.path().join("stderr.log");
        let mut all: Vec<String> = options.to_vec();
        all.push(image.into());
        all.extend(
            ["--host", "127.0.0.1", "--port", "0", "--metrics-port", "0"]
                .into_iter()
                .chain(["--http-port", "0", "--grace-period-secs", "10"])
                .chain(args.iter().copied())
                .map(String::from),
        );
        let stderr = Stdio::from(std::fs::File::create(&log).unwrap());
        let mut run = Running::start(&all, Stdio::piped(), stderr);
        let stdout = run.child.as_mut().unwrap().stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let next = |prefix: &str| {
            let line = lines.recv_timeout(START_LIMIT).unwrap_or_else(|e| {
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("no address line from the container ({e}):\n{said}")
            });
            line.strip_prefix(prefix)
                .unwrap_or_else(|| panic!("unexpected: {line}"))
                .trim_end_matches("/metrics")
                .to_owned()
        };
        let addr = next("crossrank listening on ");
        let metrics_addr = next("crossrank metrics on http://");
        let http_addr = next("crossrank http on http://");
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        tokio::time::timeout(START_LIMIT, common::wait_health(channel.clone(), "", 1))
            .await
            .expect("not SERVING within the start limit");
        Self {
            run,
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
            .args(["exec", &self.run.name, "/bin/sh", "-c", script])
            .output()
            .unwrap()
    }

    /// The user id of the container's first process (the server), as the container sees it.
    fn uid(&self) -> String {
        let status = self.exec("cat /proc/1/status");
        let status = String::from_utf8_lossy(&status.stdout);
        let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"));
        let uid = uid.unwrap_or_else(|| panic!("no Uid in {status}"));
        uid.split_whitespace().next().unwrap().to_owned()
    }
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
    rows.iter()
        .map(|r| {
            let score = r["relevance_score"].as_f64().or(r["score"].as_f64());
            (r["index"].as_u64().unwrap(), score.unwrap())
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
/// the Python client's Rerank equals this machine's CLI, the HTTP routes the same, metrics
/// count the calls, the CPU image holds no CUDA backend (libtorch_cuda, cuBLAS, cuDNN, NCCL; the
/// CUDA wheel's cudart and cupti stay, as libtorch_cpu names them), and SIGTERM ends it within
/// the grace period.
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
    ok(engine().args(["kill", "--signal", "TERM", &c.run.name]));
    let status = c.run.wait(Duration::from_secs(20)).await;
    let log = std::fs::read_to_string(&c.log).unwrap();
    assert!(status.success(), "exit {status} after SIGTERM:\n{log}");
    println!(
        "SIGTERM: exited 0 after {:.1} s (grace period 10 s)",
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
    // The container's user must write the volume (as the chart's fsGroup arranges): the test
    // runs as root, as a rootful engine does.
    std::os::unix::fs::chown(volume.path(), Some(10001), Some(10001))
        .expect("chown of the volume to 10001: the image tests run as root");

    let logs = tempfile::tempdir().unwrap();
    let (out, err) = (logs.path().join("stdout"), logs.path().join("stderr"));
    let mut args = mount(volume.path(), "/models", "rw");
    args.extend(
        [
            "-e",
            "HF_HOME=/models/huggingface",
            "-e",
            &format!("HF_ENDPOINT={}", hub.url),
            "--entrypoint",
            "/usr/local/bin/crossrank",
            &image,
            "fetch",
            "org/tiny",
        ]
        .map(String::from),
    );
    let file = |p: &Path| Stdio::from(std::fs::File::create(p).unwrap());
    let mut fetch = Running::start(&args, file(&out), file(&err));
    let status = fetch.wait(START_LIMIT).await;
    let said = std::fs::read_to_string(&err).unwrap();
    assert!(status.success(), "fetch failed:\n{said}");
    println!("fetch: {}", std::fs::read_to_string(&out).unwrap().trim());
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
