//! Hostile model files against a real `crossrank serve` process: chat templates that loop, that
//! print 100 MB strings or that run past a request's deadline, always or only for some documents,
//! and a WordPiece tokenizer.json whose word limit makes one long word cost ~n^3. Each fails that
//! load or that request with a precise error, in bounded time and memory, while the process keeps
//! serving its other models and its CPU goes back to idle (/proc). The hostile directories are
//! the generated causal reranker and BERT fixtures with one file replaced.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::process::ServerProcess;
use crossrank::api::pb;
use crossrank::api::pb::cross_encoder_client::CrossEncoderClient;
use crossrank::api::pb::models_client::ModelsClient;
use tonic::transport::Channel;
use tonic::Code;

const TOKEN: &str = "s3cret";

/// Always: two nested loops of 100,000 steps (10^10 steps without fuel).
const LOOP: &str =
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";

/// Always: prints a 100 MB string 1,000 times.
const BOMB: &str = r#"{% for i in range(1000) %}{{ "x" * 100000000 }}{% endfor %}"#;

/// Only for a document starting with "boom" (three nested loops of 100,000), "bomb" (100 MB
/// strings printed), "slow" (100,000 steps of 10 MB each, few template steps apiece) or "heavy"
/// (a loop of 80,000: within the fuel, but ~400x what a real template takes).
const TRIGGERED: &str = concat!(
    r#"{% for m in messages %}{% if m.role == "document" %}"#,
    r#"{% if m.content[:4] == "boom" %}{% for i in range(100000) %}{% for j in range(100000) %}"#,
    r#"{% for k in range(100000) %}{% endfor %}{% endfor %}{% endfor %}{% endif %}"#,
    r#"{% if m.content[:4] == "bomb" %}{% for i in range(1000) %}{{ "x" * 100000000 }}"#,
    r#"{% endfor %}{% endif %}"#,
    r#"{% if m.content[:4] == "slow" %}{% for i in range(100000) %}"#,
    r#"{% set x = "y" * (10000000 + i) %}{% endfor %}{% endif %}"#,
    r#"{% if m.content[:5] == "heavy" %}{% for i in range(80000) %}{% endfor %}{% endif %}"#,
    r#"{% endif %}{% endfor %}"#,
);

/// A copy of the causal reranker fixture under `root/name` whose chat template is `prefix`
/// followed by the fixture's own template.
fn hostile_causal(root: &Path, name: &str, prefix: &str) -> PathBuf {
    let fixture = common::fixtures().join("causal");
    let dir = root.join(name);
    common::copy_dir(&fixture, &dir);
    let template = format!("{prefix}{}", common::chat_template(&fixture));
    std::fs::write(dir.join("chat_template.jinja"), template).unwrap();
    dir
}

fn arg(name: &str, dir: &Path) -> String {
    format!("{name}={}", dir.display())
}

fn bert() -> String {
    arg("good", &common::fixtures().join("bert"))
}

fn score(model: &str, pairs: &[(&str, &str)]) -> pb::ScoreRequest {
    pb::ScoreRequest {
        model: model.into(),
        pairs: pairs
            .iter()
            .map(|(a, b)| pb::Pair {
                text_a: (*a).into(),
                text_b: (*b).into(),
            })
            .collect(),
        ..Default::default()
    }
}

fn client(server: &ServerProcess) -> CrossEncoderClient<Channel> {
    CrossEncoderClient::new(server.channel.clone())
}

/// User + system CPU seconds the server process has used (/proc/PID/stat, 100 ticks a second).
fn cpu_secs(server: &ServerProcess) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.child.id())).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// CPU seconds the server uses over one second of wall time, once its answers are in: a render
/// still running somewhere would show as ~1 (a core) or more.
async fn cpu_over_a_second(server: &ServerProcess) -> f64 {
    let before = cpu_secs(server);
    tokio::time::sleep(Duration::from_secs(1)).await;
    cpu_secs(server) - before
}

/// The good model answers.
async fn good_still_serves(server: &ServerProcess) {
    let r = client(server).score(score("good", &[("q", "d")])).await;
    assert_eq!(r.unwrap().into_inner().results.len(), 1);
}

fn with_token<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    r
}

/// A chat template that always loops fails its LoadModel at its fuel, and one that prints 100 MB
/// strings at its output bound, each in bounded time and memory with an error that names the
/// template file and what ran out; the server keeps serving its other model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_that_loop_or_explode_fail_their_load_at_their_bound() {
    let root = tempfile::tempdir().unwrap();
    hostile_causal(root.path(), "loop", LOOP);
    hostile_causal(root.path(), "bomb", BOMB);
    let root_arg = root.path().display().to_string();
    let server = ServerProcess::start(&[
        "--model",
        &bert(),
        "--admin-token",
        TOKEN,
        "--model-root",
        &root_arg,
    ])
    .await;
    let mut models = ModelsClient::new(server.channel.clone());
    for (name, want) in [
        ("loop", "ran out of fuel"),
        ("bomb", "the rendered prompt passed"),
    ] {
        let before = server.rss_mib();
        server.reset_peak();
        let start = Instant::now();
        let load = pb::LoadModelRequest {
            name: name.into(),
            path: name.into(),
            options: None,
        };
        let err = models.load_model(with_token(load)).await.unwrap_err();
        let took = start.elapsed();
        let peak = server.peak_mib() - before;
        let get = pb::GetModelRequest { name: name.into() };
        let info = models
            .get_model(with_token(get))
            .await
            .unwrap()
            .into_inner();
        println!(
            "{name}: {:?} in {took:?}, peak RSS +{peak:.0} MiB: {}",
            err.code(),
            info.reason
        );
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert_eq!(info.state, pb::ModelState::Failed as i32);
        assert!(info.reason.contains(want), "{}", info.reason);
        assert!(
            info.reason.contains("chat_template.jinja"),
            "{}",
            info.reason
        );
        assert!(took < Duration::from_secs(30), "{name} took {took:?}");
        assert!(peak < 600.0, "{name}: peak RSS grew by {peak:.0} MiB");
        good_still_serves(&server).await;
    }
    let idle = cpu_over_a_second(&server).await;
    println!("CPU over the next second: {idle:.2} s");
    assert!(idle < 0.3, "the server kept {idle:.2} CPU s/s busy");
}

/// Six concurrent requests whose document makes the template loop each fail at the template's
/// fuel with a clear INVALID_ARGUMENT, the model's other requests and the other model are fine,
/// and the process's CPU time stops growing once the errors are in (no render left behind).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_that_makes_the_template_loop_fails_at_its_fuel_and_the_cpu_goes_idle() {
    let root = tempfile::tempdir().unwrap();
    let rr = hostile_causal(root.path(), "rr", TRIGGERED);
    let server = ServerProcess::start(&["--model", &bert(), "--model", &arg("rr", &rr)]).await;
    let start = Instant::now();
    let calls = (0..6).map(|_| {
        let mut c = client(&server);
        async move {
            let pairs = [("q", "a fine document"), ("q", "boom goes the template")];
            c.score(score("rr", &pairs)).await
        }
    });
    let results = futures::future::join_all(calls).await;
    let took = start.elapsed();
    for r in results {
        let err = r.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("ran out of fuel"), "{err:?}");
        assert!(err.message().contains("chat_template.jinja"), "{err:?}");
    }
    println!("6 looping requests failed in {took:?}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let idle = cpu_over_a_second(&server).await;
    println!("CPU over the next second: {idle:.2} s");
    assert!(idle < 0.3, "the server kept {idle:.2} CPU s/s busy");
    let fine = client(&server)
        .score(score("rr", &[("q", "a fine document")]))
        .await;
    assert_eq!(fine.unwrap().into_inner().results.len(), 1);
    good_still_serves(&server).await;
}

/// 512 pairs whose renders each stay within the fuel but take ~400x a real template's steps fail
/// once they have used the request's step allowance together, after a few dozen pairs instead of
/// all 512.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_renders_fail_at_the_request_step_budget() {
    let root = tempfile::tempdir().unwrap();
    let rr = hostile_causal(root.path(), "rr", TRIGGERED);
    let server = ServerProcess::start(&["--model", &bert(), "--model", &arg("rr", &rr)]).await;
    let pairs = vec![("q", "heavy"); 512];
    let start = Instant::now();
    let err = client(&server)
        .score(score("rr", &pairs))
        .await
        .unwrap_err();
    let took = start.elapsed();
    println!(
        "512 heavy pairs: {:?} in {took:?}: {}",
        err.code(),
        err.message()
    );
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("template steps together"), "{err:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    good_still_serves(&server).await;
}

/// A document that makes the template print 100 MB strings fails at the pair's output bound, and
/// the server's peak RSS grows by at most the one string minijinja builds, not by what the loop
/// would print (100 GB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_that_makes_the_template_print_100_mb_strings_fails_at_the_output_bound() {
    let root = tempfile::tempdir().unwrap();
    let rr = hostile_causal(root.path(), "rr", TRIGGERED);
    let server = ServerProcess::start(&["--model", &bert(), "--model", &arg("rr", &rr)]).await;
    let before = server.rss_mib();
    server.reset_peak();
    let start = Instant::now();
    let r = client(&server)
        .score(score("rr", &[("q", "bomb"), ("q", "fine")]))
        .await;
    let (took, peak) = (start.elapsed(), server.peak_mib() - before);
    let err = r.unwrap_err();
    println!("output bomb: {err:?} in {took:?}, peak RSS +{peak:.0} MiB");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("the rendered prompt passed"),
        "{err:?}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(peak < 600.0, "peak RSS grew by {peak:.0} MiB");
    good_still_serves(&server).await;
}

/// A request whose render would take minutes (100,000 steps of 10 MB strings: few template steps,
/// so fuel alone would not stop it soon) stops at its 1 s deadline: the server's CPU is idle in
/// the second after the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_stops_a_render_in_the_middle_of_its_loop() {
    let root = tempfile::tempdir().unwrap();
    let rr = hostile_causal(root.path(), "rr", TRIGGERED);
    let server = ServerProcess::start(&["--model", &bert(), "--model", &arg("rr", &rr)]).await;
    let mut req = tonic::Request::new(score("rr", &[("q", "slow")]));
    req.set_timeout(Duration::from_secs(1));
    let start = Instant::now();
    let err = client(&server).score(req).await.unwrap_err();
    println!("slow render: {:?} after {:?}", err.code(), start.elapsed());
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    let idle = cpu_over_a_second(&server).await;
    println!("CPU over the next second: {idle:.2} s");
    assert!(idle < 0.3, "the server kept {idle:.2} CPU s/s busy");
    good_still_serves(&server).await;
}

/// `max_input_chars_per_word: 10^7` in a WordPiece tokenizer.json is clamped at load (with a
/// warning), so a 16,000-character word costs what it costs with BERT's own limit of 100, on the
/// ASCII fast path and through the `tokenizers` crate (non-ASCII), instead of ~n^3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_wordpiece_word_limit_is_clamped_at_load() {
    let root = tempfile::tempdir().unwrap();
    let wide = root.path().join("wide");
    common::copy_dir(&common::fixtures().join("bert"), &wide);
    let path = wide.join("tokenizer.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json["model"]["max_input_chars_per_word"] = serde_json::json!(10_000_000);
    std::fs::write(&path, json.to_string()).unwrap();
    let server = ServerProcess::start(&["--model", &bert(), "--model", &arg("wide", &wide)]).await;
    assert!(server.stderr().contains("clamped"), "{}", server.stderr());
    for (what, word) in [
        ("ASCII", "ab".repeat(8000)),
        ("non-ASCII", "aé".repeat(8000)),
    ] {
        let mut took = Vec::new();
        for model in ["good", "wide"] {
            let start = Instant::now();
            let r = client(&server).score(score(model, &[("q", &word)])).await;
            assert_eq!(r.unwrap().into_inner().results.len(), 1);
            took.push(start.elapsed());
        }
        println!(
            "16,000-char {what} word: control {:?}, max_input_chars_per_word 10^7 {:?}",
            took[0], took[1]
        );
        assert!(
            took[1] < took[0] * 10 + Duration::from_secs(1),
            "{what}: {:?} vs control {:?}",
            took[1],
            took[0]
        );
    }
}
