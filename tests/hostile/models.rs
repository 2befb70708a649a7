//! Hostile model directories: config bombs (five families and TorchScript), aliased, over-long
//! and gapped safetensors, 1 GiB small JSON files and a parameter stored as I8, each built from a small generated fixture. Each is
//! refused with one clear line naming the file and the field, fast, and with bounded memory:
//! by `crossrank score` (its peak RSS from `wait4`) and by a running server's LoadModel (its
//! peak RSS from /proc), which keeps serving its other model.

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::process::ServerProcess;
use crossrank::api::pb;
use crossrank::api::pb::cross_encoder_client::CrossEncoderClient;
use crossrank::api::pb::models_client::ModelsClient;
use tonic::Code;

const TOKEN: &str = "hostile-models-token";
/// Peak RSS a hostile model may add over a normal load (the issue's bound).
const MEMORY_BOUND_MIB: f64 = 600.0;
const TIME_BOUND: Duration = Duration::from_secs(30);

/// One hostile directory under the root and what its error must name.
struct Case {
    name: &'static str,
    needles: &'static [&'static str],
}

/// Copies fixture `from` to `root/name`.
fn copy_of(root: &Path, from: &str, name: &str) -> PathBuf {
    let dir = root.join(name);
    common::copy_dir(&common::fixtures().join(from), &dir);
    dir
}

/// A copy of `from` whose file `file` is a sparse 1 GiB (no disk use).
fn huge_file(root: &Path, from: &str, name: &str, file: &str) {
    let dir = copy_of(root, from, name);
    let file = std::fs::File::create(dir.join(file)).unwrap();
    file.set_len(1 << 30).unwrap();
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(config.as_object_mut().unwrap());
    std::fs::write(path, config.to_string()).unwrap();
}

/// A copy of `from` whose config sets `field` to `value`.
fn config_bomb(root: &Path, from: &str, name: &str, field: &str, value: serde_json::Value) {
    let dir = copy_of(root, from, name);
    edit_config(&dir, |c| {
        if field == "num_labels" {
            c.remove("id2label");
            c.remove("label2id");
        }
        c.insert(field.into(), value);
    });
}

/// Replaces the weights of `dir` by a safetensors file of header `header` and `data_len` bytes
/// of data (a sparse hole: no disk use), the header length prefix `declared` or the real one.
fn write_weights(dir: &Path, header: &[u8], declared: Option<u64>, data_len: u64) {
    let path = dir.join("model.safetensors");
    let mut file = std::fs::File::create(&path).unwrap();
    let len = declared.unwrap_or(header.len() as u64);
    file.write_all(&len.to_le_bytes()).unwrap();
    file.write_all(header).unwrap();
    file.set_len(8 + header.len() as u64 + data_len).unwrap();
}

/// `n` F32 tensors that all name the same 16 MiB.
fn aliased(root: &Path, name: &str, n: usize) {
    let dir = copy_of(root, "bert", name);
    let size = 16u64 << 20;
    let entries: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#""bert.t{i}": {{"dtype": "F32", "shape": [{}], "data_offsets": [0, {size}]}}"#,
                size / 4
            )
        })
        .collect();
    write_weights(
        &dir,
        format!("{{{}}}", entries.join(",")).as_bytes(),
        None,
        size,
    );
}

/// The BERT fixture with `classifier.weight` stored as I8.
fn int8_classifier(root: &Path) {
    let dir = copy_of(root, "bert", "int8_classifier");
    let path = dir.join("model.safetensors");
    let tensors: Vec<(String, tch::Tensor)> = tch::Tensor::read_safetensors(&path)
        .unwrap()
        .into_iter()
        .map(|(n, t)| match n.as_str() {
            "classifier.weight" => (n, t.to_kind(tch::Kind::Int8)),
            _ => (n, t),
        })
        .collect();
    let refs: Vec<(&str, &tch::Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    tch::Tensor::write_safetensors(&refs, &path).unwrap();
}

/// Builds every hostile directory under `root`.
fn build(root: &Path) -> Vec<Case> {
    use serde_json::json;
    let big = 1_000_000_000_000i64;
    config_bomb(root, "bert", "labels", "num_labels", json!(big));
    config_bomb(
        root,
        "modernbert",
        "layers",
        "num_hidden_layers",
        json!(big),
    );
    config_bomb(root, "bert", "hidden", "hidden_size", json!(1i64 << 40));
    config_bomb(root, "bert", "vocab", "vocab_size", json!(1i64 << 40));
    config_bomb(
        root,
        "qwen3",
        "positions",
        "max_position_embeddings",
        json!(1i64 << 40),
    );
    config_bomb(root, "distilbert", "distil_layers", "n_layers", json!(big));
    aliased(root, "aliased_100", 100);
    aliased(root, "aliased_1000", 1000);
    // A header of (nearly) 100 MiB that is one JSON array.
    let mut array = vec![b'0'; (100 << 20) - 1024];
    array[0] = b'[';
    for i in (2..array.len() - 1).step_by(2) {
        array[i] = b',';
    }
    *array.last_mut().unwrap() = b']';
    write_weights(&copy_of(root, "bert", "array_header"), &array, None, 0);
    drop(array);
    write_weights(
        &copy_of(root, "bert", "long_header"),
        b"{}",
        Some(1 << 40),
        0,
    );
    let gap = r#"{"bert.a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                  "bert.b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}"#;
    write_weights(&copy_of(root, "bert", "gap"), gap.as_bytes(), None, 16);
    huge_file(root, "bert", "huge_config", "config.json");
    huge_file(
        root,
        "bert",
        "huge_st_config",
        "config_sentence_transformers.json",
    );
    huge_file(
        root,
        "bert_sharded",
        "huge_index",
        "model.safetensors.index.json",
    );
    huge_file(root, "causal", "huge_modules", "modules.json");
    let script = copy_of(root, "bert_torchscript", "script_labels");
    std::fs::write(
        script.join("crossrank.json"),
        json!({"num_labels": big, "max_length": 512}).to_string(),
    )
    .unwrap();
    int8_classifier(root);
    vec![
        Case {
            name: "labels",
            needles: &["config.json", "num_labels", "1000000000000", "65536"],
        },
        Case {
            name: "layers",
            needles: &["config.json", "num_hidden_layers", "1000000000000"],
        },
        Case {
            name: "hidden",
            needles: &["config.json", "hidden_size", "1099511627776"],
        },
        Case {
            name: "vocab",
            needles: &["config.json", "vocab_size", "1099511627776"],
        },
        Case {
            name: "positions",
            needles: &["config.json", "max_position_embeddings", "1099511627776"],
        },
        Case {
            name: "distil_layers",
            needles: &["config.json", "n_layers", "1000000000000"],
        },
        Case {
            name: "aliased_100",
            needles: &["model.safetensors", "overlap"],
        },
        Case {
            name: "aliased_1000",
            needles: &["model.safetensors", "overlap"],
        },
        Case {
            name: "array_header",
            needles: &["model.safetensors", "expected a map"],
        },
        Case {
            name: "long_header",
            needles: &["model.safetensors", "1099511627776", "does not fit"],
        },
        Case {
            name: "gap",
            needles: &["model.safetensors", "bert.b", "gap"],
        },
        Case {
            name: "huge_config",
            needles: &["config.json", "1073741824", "4194304"],
        },
        Case {
            name: "huge_st_config",
            needles: &["config_sentence_transformers.json", "1073741824", "4194304"],
        },
        Case {
            name: "huge_index",
            needles: &["model.safetensors.index.json", "1073741824", "4194304"],
        },
        Case {
            name: "huge_modules",
            needles: &["modules.json", "1073741824", "4194304"],
        },
        Case {
            name: "script_labels",
            needles: &["crossrank.json", "num_labels", "1000000000000", "65536"],
        },
        Case {
            name: "int8_classifier",
            needles: &["classifier.weight", "I8"],
        },
    ]
}

/// What `crossrank score --model DIR` printed on stderr, its exit code (None if killed by a
/// signal), its wall time and its peak RSS in MiB: the kernel's high-water mark (VmHWM, which
/// only grows) sampled every millisecond until it exits. (wait4's maxrss would not do: a child
/// inherits the high-water mark of the test process that spawned it.)
fn cli_score(dir: &Path) -> (String, Option<i32>, Duration, f64) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_crossrank"))
        .args(["score", "--model"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The child may exit before reading its input; a broken pipe is fine.
    let _ = stdin.write_all(b"a query\ta document\n");
    drop(stdin);
    let mut err = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut err, &mut text).unwrap();
        text
    });
    let status = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let exit = loop {
        // Sampled before each exit check: the last sample is at most ~1 ms before the exit.
        peak_kib = peak_kib.max(vm_hwm_kib(&status).unwrap_or(0));
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let took = start.elapsed();
    (
        stderr.join().unwrap(),
        exit.code(),
        took,
        peak_kib as f64 / 1024.0,
    )
}

/// VmHWM of /proc/PID/status, in KiB (None once the process is gone or a zombie).
fn vm_hwm_kib(status: &str) -> Option<u64> {
    let text = std::fs::read_to_string(status).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    line.trim().trim_end_matches("kB").trim().parse().ok()
}

fn assert_clear(case: &Case, message: &str) {
    for needle in case.needles {
        assert!(
            message.contains(needle),
            "{}: {needle:?} not in {message}",
            case.name
        );
    }
    assert!(
        !message.contains("Exception raised from") && !message.trim_end().contains('\n'),
        "{}: not one clean line: {message}",
        case.name
    );
}

/// Every hostile directory: `crossrank score` exits 1 (never a signal) with one `error:` line
/// naming the file and the field, in under 30 s, its peak RSS under 600 MiB above that of
/// scoring one pair with the good BERT fixture.
#[test]
fn the_cli_refuses_hostile_models_cleanly() {
    let root = tempfile::tempdir().unwrap();
    let cases = build(root.path());
    let (_, code, _, normal) = cli_score(&common::fixtures().join("bert"));
    assert_eq!(code, Some(0), "the good model must score");
    for case in &cases {
        let (stderr, code, took, peak) = cli_score(&root.path().join(case.name));
        eprintln!(
            "cli {}: {took:.2?}, peak {peak:.0} MiB (normal {normal:.0}): {stderr}",
            case.name
        );
        assert_eq!(code, Some(1), "{}: {stderr}", case.name);
        assert!(stderr.starts_with("error: "), "{}: {stderr}", case.name);
        assert_clear(case, &stderr);
        assert!(took < TIME_BOUND, "{}: {took:?}", case.name);
        assert!(
            peak - normal < MEMORY_BOUND_MIB,
            "{}: {peak} MiB",
            case.name
        );
    }
}

fn authorized<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    r
}

async fn score_ce(server: &ServerProcess) -> Result<pb::ScoreResponse, tonic::Status> {
    let req = pb::ScoreRequest {
        model: "ce".into(),
        pairs: vec![pb::Pair {
            text_a: "a query".into(),
            text_b: "a document".into(),
        }],
        ..Default::default()
    };
    let mut client = CrossEncoderClient::new(server.channel.clone());
    client.score(req).await.map(|r| r.into_inner())
}

/// A server with the good BERT as `ce`: LoadModel of each hostile directory under its model
/// root is FAILED_PRECONDITION naming the file and the field, in under 30 s, with the server's
/// peak RSS under 600 MiB above its RSS before the call; the server keeps scoring with `ce`
/// after each, and the failed entry unloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refuses_hostile_models_and_keeps_serving() {
    let root = tempfile::tempdir().unwrap();
    let cases = build(root.path());
    let bert = format!("ce={}", common::fixtures().join("bert").display());
    let root_arg = root.path().display().to_string();
    let args = [
        "--model",
        &bert,
        "--model-root",
        &root_arg,
        "--admin-token",
        TOKEN,
    ];
    let server = ServerProcess::start(&args).await;
    let mut models = ModelsClient::new(server.channel.clone());
    score_ce(&server).await.unwrap();
    for case in &cases {
        let load = pb::LoadModelRequest {
            name: case.name.into(),
            path: case.name.into(),
            options: None,
        };
        let before = server.rss_mib();
        server.reset_peak();
        let start = Instant::now();
        let err = models.load_model(authorized(load)).await.unwrap_err();
        let took = start.elapsed();
        let grew = server.peak_mib() - before;
        eprintln!(
            "server {}: {took:.2?}, +{grew:.0} MiB: {}",
            case.name,
            err.message()
        );
        assert_eq!(
            err.code(),
            Code::FailedPrecondition,
            "{}: {err:?}",
            case.name
        );
        assert_clear(case, err.message());
        assert!(took < TIME_BOUND, "{}: {took:?}", case.name);
        assert!(grew < MEMORY_BOUND_MIB, "{}: +{grew} MiB", case.name);
        let unload = pb::UnloadModelRequest {
            name: case.name.into(),
        };
        models.unload_model(authorized(unload)).await.unwrap();
        score_ce(&server).await.unwrap();
    }
}
