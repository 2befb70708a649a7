//! Models by Hugging Face id, against a fake hub on 127.0.0.1 (tests/common/fake_hub.rs) that
//! serves the generated tiny models: fetch and serve, revision pinning, the cache reused offline
//! and with the hub down (also by and from Python's huggingface_hub), a gated model without and
//! with a token, 404s, and a broken download resumed.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::fake_hub::{hex, model_files, FakeHub};
use common::process::ServerProcess;
use common::{expected, fixtures, max_diff, run_ok};
use crossrank::api::pb;
use crossrank::hub::{HubConfig, HubError, Progress, RepoRef, Transfer};
use sha2::Digest;

fn config(hub: &FakeHub, cache: &Path) -> HubConfig {
    HubConfig {
        endpoint: hub.url.clone(),
        cache_dir: cache.to_owned(),
        token: None,
        offline: false,
        max_bytes: 1 << 30,
        transfer: Transfer::default(),
    }
}

/// The snapshot of `id`, off the async threads (the client blocks).
async fn fetch(id: &str, config: &HubConfig) -> Result<PathBuf, HubError> {
    let (id, config) = (id.to_owned(), config.clone());
    tokio::task::spawn_blocking(move || {
        let repo = RepoRef::parse(&id).expect("an id");
        crossrank::hub::snapshot(&repo, &config, Progress::Log)
    })
    .await
    .unwrap()
}

/// LoadModel of `path` as `name`, with the admin token "adm".
fn load_request(name: &str, path: &str) -> tonic::Request<pb::LoadModelRequest> {
    let mut load = tonic::Request::new(pb::LoadModelRequest {
        name: name.into(),
        path: path.into(),
        ..Default::default()
    });
    load.metadata_mut()
        .insert("authorization", "Bearer adm".parse().unwrap());
    load
}

/// The tiny BERT fixture with files crossrank must never fetch beside it.
fn tiny_with_extras() -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut files = model_files(&fixtures().join("bert"));
    files.insert("pytorch_model.bin".into(), b"not needed".to_vec());
    files.insert("README.md".into(), b"# tiny".to_vec());
    files
}

fn env<'a>(hub: &'a FakeHub, cache: &'a Path) -> Vec<(&'a str, &'a str)> {
    vec![
        ("HF_ENDPOINT", hub.url.as_str()),
        ("HF_HUB_CACHE", cache.to_str().unwrap()),
        ("HF_TOKEN", ""),
        ("HF_HUB_OFFLINE", "0"),
        ("TRANSFORMERS_OFFLINE", "0"),
        ("HOME", "/nonexistent"),
    ]
}

/// scripts/env.sh sets HF_HUB_OFFLINE=1 (no hub is reachable here); these tests talk to their
/// own hub, so they set every Hugging Face variable themselves.
/// `crossrank serve --model rr=org/tiny` fetches the model into the cache and serves
/// sentence-transformers' numbers; LoadModel takes an id with --allow-hub-load; only the
/// needed files are fetched; Python's huggingface_hub then reads the same cache offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_a_model_by_id() {
    let hub = FakeHub::start().await;
    let commit = hub.publish("org/tiny", &["main"], tiny_with_extras());
    let cache = tempfile::tempdir().unwrap();
    let args = [
        "--model",
        "rr=org/tiny",
        "--admin-token",
        "adm",
        "--allow-hub-load",
    ];
    let server = ServerProcess::start_with_env(&args, &env(&hub, cache.path())).await;

    let exp = expected();
    let pairs = exp
        .pairs
        .iter()
        .map(|(a, b)| pb::Pair {
            text_a: a.clone(),
            text_b: b.clone(),
        })
        .collect::<Vec<_>>();
    let req = pb::ScoreRequest {
        model: "rr".into(),
        pairs,
        ..Default::default()
    };
    let mut client = pb::cross_encoder_client::CrossEncoderClient::new(server.channel.clone());
    let r = client.score(req.clone()).await.unwrap().into_inner();
    let got: Vec<Vec<f32>> = r.results.iter().map(|p| p.scores.clone()).collect();
    let d = max_diff(&got, &exp.models["bert"].default);
    assert!(d <= 1e-5, "differs from sentence-transformers by {d}");

    let log = hub.log();
    let fetched: Vec<&str> = log.iter().map(|l| l.path.as_str()).collect();
    assert!(
        !fetched
            .iter()
            .any(|p| p.ends_with("pytorch_model.bin") || p.ends_with("README.md")),
        "{fetched:?}"
    );
    let repo = cache.path().join("models--org--tiny");
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        commit
    );
    let link = std::fs::read_link(
        repo.join("snapshots")
            .join(&commit)
            .join("model.safetensors"),
    )
    .unwrap();
    let weights = std::fs::read(fixtures().join("bert/model.safetensors")).unwrap();
    let sha = hex(&sha2::Sha256::digest(&weights));
    assert_eq!(link, PathBuf::from(format!("../../blobs/{sha}")));
    assert!(
        server.stderr().contains("using the Hugging Face model"),
        "{}",
        server.stderr()
    );

    // LoadModel by id; a second model from the same cache costs no download.
    let mut models = pb::models_client::ModelsClient::new(server.channel.clone());
    let load = load_request("again", "org/tiny@main");
    let before = hub.log().len();
    let info = models.load_model(load).await.unwrap().into_inner();
    assert_eq!(info.state, pb::ModelState::Ready as i32);
    let new: Vec<_> = hub.log()[before..]
        .iter()
        .map(|l| l.method.clone() + " " + &l.path)
        .collect();
    assert_eq!(new, ["GET /api/models/org/tiny/revision/main"]);

    // huggingface_hub finds crossrank's files offline, at the same paths.
    let out = run_ok(
        Command::new("python")
            .args(["-c", "import sys; from huggingface_hub import hf_hub_download as d; print(d('org/tiny', 'model.safetensors'))"])
            .env("HF_HUB_CACHE", cache.path())
            .env("HF_HUB_OFFLINE", "1"),
    );
    let path = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        PathBuf::from(path.trim()),
        repo.join("snapshots")
            .join(&commit)
            .join("model.safetensors")
    );
}

/// LoadModel refuses ids unless the server allows hub loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_model_by_id_needs_the_flag() {
    let hub = FakeHub::start().await;
    hub.publish("org/tiny", &["main"], tiny_with_extras());
    let cache = tempfile::tempdir().unwrap();
    let bert = fixtures().join("bert");
    let args = [
        "--model",
        &format!("local={}", bert.display()),
        "--admin-token",
        "adm",
    ];
    let server = ServerProcess::start_with_env(&args, &env(&hub, cache.path())).await;
    let mut models = pb::models_client::ModelsClient::new(server.channel.clone());
    let load = load_request("x", "org/tiny");
    let err = models.load_model(load).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(
        err.message().contains("--allow-hub-load"),
        "{}",
        err.message()
    );
    assert!(hub.log().is_empty());

    // With hub loads allowed: a directory under the root named like an id wins (no request);
    // an id without one is fetched, never looked up in the server's working directory, which
    // holds models/minilm-ce.
    let root = tempfile::tempdir().unwrap();
    let local = root.path().join("org/tiny");
    std::fs::create_dir_all(&local).unwrap();
    for (name, data) in model_files(&bert) {
        std::fs::write(local.join(name), data).unwrap();
    }
    let args = [
        "--model",
        &format!("local={}", bert.display()),
        "--admin-token",
        "adm",
        "--allow-hub-load",
        "--model-root",
        root.path().to_str().unwrap(),
    ];
    let server = ServerProcess::start_with_env(&args, &env(&hub, cache.path())).await;
    let mut models = pb::models_client::ModelsClient::new(server.channel.clone());
    let info = models
        .load_model(load_request("x", "org/tiny"))
        .await
        .unwrap();
    assert_eq!(
        info.into_inner().path,
        local.canonicalize().unwrap().display().to_string()
    );
    assert!(hub.log().is_empty(), "{:?}", hub.log());
    let log = server.stderr();
    assert!(
        log.contains("using the local directory, not the Hugging Face id"),
        "{log}"
    );
    assert!(std::path::Path::new("models/minilm-ce/config.json").is_file());
    let err = models
        .load_model(load_request("y", "models/minilm-ce"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message().contains("models/minilm-ce@main") && err.message().contains("HTTP 401"),
        "{}",
        err.message()
    );
}

/// A branch, a tag and a commit each give their own snapshot (a cached commit without a
/// request); refs/<tag> holds the commit without a newline; a sharded model brings its index and every shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_are_pinned() {
    let hub = FakeHub::start().await;
    let mut v1 = model_files(&fixtures().join("bert"));
    let c1 = hub.publish("org/m", &["v1"], v1.clone());
    v1.insert(
        "config_sentence_transformers.json".into(),
        br#"{"activation_fn": "torch.nn.modules.linear.Identity"}"#.to_vec(),
    );
    let c2 = hub.publish("org/m", &["main"], v1);
    let cache = tempfile::tempdir().unwrap();
    let cfg = config(&hub, cache.path());
    let root = cache.path().join("models--org--m");
    assert_eq!(
        fetch("org/m@v1", &cfg).await.unwrap(),
        root.join("snapshots").join(&c1)
    );
    let requests = hub.log().len();
    let upper = format!("org/m@{}", c1.to_ascii_uppercase());
    assert_eq!(
        fetch(&upper, &cfg).await.unwrap(),
        root.join("snapshots").join(&c1)
    );
    assert_eq!(
        hub.log().len(),
        requests,
        "a cached commit needs no request"
    );
    let main = fetch("org/m", &cfg).await.unwrap();
    assert_eq!(main, root.join("snapshots").join(&c2));
    assert!(main.join("config_sentence_transformers.json").is_file());
    assert!(!root
        .join("snapshots")
        .join(&c1)
        .join("config_sentence_transformers.json")
        .exists());
    assert_eq!(std::fs::read_to_string(root.join("refs/v1")).unwrap(), c1);
    assert!(
        !root.join("refs").join(&c1).exists(),
        "a commit revision writes no ref"
    );
    // the same blobs are shared between the two snapshots: the weights were fetched once
    let weight_gets = hub
        .log()
        .iter()
        .filter(|l| l.method == "GET" && l.path.starts_with("/cdn/"))
        .count();
    assert_eq!(weight_gets, 1);

    let sharded = model_files(&fixtures().join("bert_sharded"));
    let shards: Vec<String> = sharded
        .keys()
        .filter(|k| k.starts_with("model-"))
        .cloned()
        .collect();
    assert!(shards.len() >= 2, "{shards:?}");
    hub.publish("org/sharded", &["main"], sharded);
    let dir = fetch("org/sharded", &cfg).await.unwrap();
    for s in &shards {
        assert!(dir.join(s).is_file(), "{s}");
    }
    // offline, a snapshot missing a shard is not taken for complete
    std::fs::remove_file(dir.join(&shards[1])).unwrap();
    let offline = HubConfig {
        offline: true,
        ..cfg.clone()
    };
    let err = fetch("org/sharded", &offline)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("the shard {}", shards[1])), "{err}");
}

/// Offline: the cache serves without a single request; with the hub down the fetch falls back
/// to the cache; a cache filled by huggingface_hub (Python) is used by `crossrank score`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_serves_offline_and_with_the_hub_down() {
    let mut hub = FakeHub::start().await;
    hub.publish("org/tiny", &["main"], tiny_with_extras());
    let cache = tempfile::tempdir().unwrap();
    let cfg = config(&hub, cache.path());
    let dir = fetch("org/tiny", &cfg).await.unwrap();
    let requests = hub.log().len();
    let offline = HubConfig {
        offline: true,
        ..cfg.clone()
    };
    assert_eq!(fetch("org/tiny", &offline).await.unwrap(), dir);
    assert_eq!(hub.log().len(), requests, "offline mode sent requests");
    let err = fetch("org/other", &offline).await.unwrap_err().to_string();
    assert!(
        err.contains("org/other@main") && err.contains("offline"),
        "{err}"
    );

    // Python fills a second cache from the hub; crossrank reads it offline.
    let py_cache = tempfile::tempdir().unwrap();
    let script = "from huggingface_hub import hf_hub_download as d\n\
                  for f in ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'model.safetensors']:\n    d('org/tiny', f)\n";
    run_ok(
        Command::new("python")
            .args(["-c", script])
            .envs(env(&hub, py_cache.path())),
    );

    hub.stop();
    let down = fetch("org/tiny", &cfg).await.unwrap();
    assert_eq!(down, dir, "fallback to the cache with the hub down");

    let pairs = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        pairs.path(),
        "what is a cross encoder\tA cross-encoder reads the query and the document together.\n",
    )
    .unwrap();
    let out = run_ok(
        Command::new(env!("CARGO_BIN_EXE_crossrank"))
            .args(["score", "--model", "org/tiny", "--input"])
            .arg(pairs.path())
            .env("HF_HUB_CACHE", py_cache.path())
            .env("HF_HUB_OFFLINE", "1"),
    );
    let score: f32 = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let want = expected().models["bert"].default[0][0];
    assert!((score - want).abs() <= 1e-5, "{score} vs {want}");
}

/// A gated model: 401 without a token, 403 with a wrong one, each error naming the id, the
/// revision and the status but never the token; the right token gets in, and goes only to
/// the hub's own host (not to the storage host of the LFS redirect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gated_model_needs_a_token() {
    let hub = FakeHub::start().await;
    hub.publish("org/gated", &["main"], tiny_with_extras());
    hub.gate("org/gated", "hf_right");
    let cache = tempfile::tempdir().unwrap();
    let cfg = config(&hub, cache.path());

    let err = fetch("org/gated", &cfg).await.unwrap_err().to_string();
    for part in [
        "org/gated@main",
        "config.json",
        "HTTP 401",
        "GatedRepo",
        "HF_TOKEN",
    ] {
        assert!(err.contains(part), "{part}: {err}");
    }
    let wrong = HubConfig {
        token: Some("hf_wrong".into()),
        ..cfg.clone()
    };
    let err = fetch("org/gated", &wrong).await.unwrap_err().to_string();
    assert!(
        err.contains("HTTP 403") && !err.contains("hf_wrong"),
        "{err}"
    );

    let right = HubConfig {
        token: Some("hf_right".into()),
        ..cfg.clone()
    };
    let before = hub.log().len();
    let dir = fetch("org/gated", &right).await.unwrap();
    assert!(dir.join("model.safetensors").is_file());
    let log = &hub.log()[before..];
    let storage: Vec<_> = log.iter().filter(|l| l.path.starts_with("/cdn/")).collect();
    assert!(!storage.is_empty());
    assert!(storage
        .iter()
        .all(|l| !l.authorized && l.host.starts_with("localhost")));
    assert!(log
        .iter()
        .filter(|l| !l.path.starts_with("/cdn/"))
        .all(|l| l.authorized));

    // The command line reports it the same way, and exits non-zero.
    let docs = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(docs.path(), "a document\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_crossrank"))
        .args([
            "rerank",
            "--model",
            "org/gated@main",
            "--query",
            "q",
            "--documents",
        ])
        .arg(docs.path())
        .envs(env(&hub, tempfile::tempdir().unwrap().path()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("org/gated@main") && stderr.contains("HTTP 401"),
        "{stderr}"
    );
}

/// 404s: an unknown revision, and a listed file the hub cannot serve; each error names the
/// id, the revision, the file and the status. A repository without safetensors is refused
/// before any download, naming what it has; a model beyond the download bound is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_errors_are_precise() {
    let hub = FakeHub::start().await;
    hub.publish("org/tiny", &["main"], tiny_with_extras());
    let mut bin_only = model_files(&fixtures().join("bert"));
    bin_only.remove("model.safetensors");
    bin_only.insert("pytorch_model.bin".into(), b"weights".to_vec());
    hub.publish("org/old", &["main"], bin_only);
    let cache = tempfile::tempdir().unwrap();
    let cfg = config(&hub, cache.path());

    let err = fetch("org/tiny@nope", &cfg).await.unwrap_err().to_string();
    for part in [
        "org/tiny@nope",
        "the revision",
        "HTTP 404",
        "RevisionNotFound",
    ] {
        assert!(err.contains(part), "{part}: {err}");
    }
    let err = fetch("org/old", &cfg).await.unwrap_err().to_string();
    assert!(
        err.contains("org/old@main")
            && err.contains("pytorch_model.bin")
            && err.contains("safetensors"),
        "{err}"
    );
    assert!(!hub
        .log()
        .iter()
        .any(|l| l.path.contains("/org/old/resolve/")));

    let small = HubConfig {
        max_bytes: 1000,
        ..cfg.clone()
    };
    let err = fetch("org/tiny", &small).await.unwrap_err().to_string();
    assert!(err.contains("beyond the bound of 1000"), "{err}");

    hub.hide("tokenizer.json");
    let err = fetch("org/tiny", &cfg).await.unwrap_err().to_string();
    for part in [
        "org/tiny@main",
        "tokenizer.json",
        "HTTP 404",
        "EntryNotFound",
    ] {
        assert!(err.contains(part), "{part}: {err}");
    }
}

/// A download that breaks off halfway is resumed with a Range request, and the blob matches
/// its ETag (sha256); a partial file left by an earlier process is resumed too, and a corrupt
/// one is caught by the checksum, removed, and fetched again on the next try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_downloads_resume() {
    let hub = FakeHub::start().await;
    hub.publish("org/tiny", &["main"], tiny_with_extras());
    let weights = std::fs::read(fixtures().join("bert/model.safetensors")).unwrap();
    let sha = hex(&sha2::Sha256::digest(&weights));
    let half = weights.len() / 2;

    hub.cut_next_download("model.safetensors");
    let cache = tempfile::tempdir().unwrap();
    let dir = fetch("org/tiny", &config(&hub, cache.path()))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(dir.join("model.safetensors")).unwrap(),
        weights
    );
    let ranges: Vec<Option<String>> = hub
        .log()
        .iter()
        .filter(|l| l.path.starts_with("/cdn/"))
        .map(|l| l.range.clone())
        .collect();
    assert_eq!(ranges, [None, Some(format!("bytes={half}-"))]);

    // a partial file from an earlier run
    let cache = tempfile::tempdir().unwrap();
    let blobs = cache.path().join("models--org--tiny/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(blobs.join(format!("{sha}.incomplete")), &weights[..100]).unwrap();
    let before = hub.log().len();
    fetch("org/tiny", &config(&hub, cache.path()))
        .await
        .unwrap();
    assert!(hub.log()[before..]
        .iter()
        .any(|l| l.range.as_deref() == Some("bytes=100-")));
    assert_eq!(std::fs::read(blobs.join(&sha)).unwrap(), weights);

    // a corrupt partial file
    let cache = tempfile::tempdir().unwrap();
    let blobs = cache.path().join("models--org--tiny/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(blobs.join(format!("{sha}.incomplete")), vec![0u8; 100]).unwrap();
    let cfg = config(&hub, cache.path());
    let err = fetch("org/tiny", &cfg).await.unwrap_err().to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("does not match the ETag"),
        "{err}"
    );
    assert!(!blobs.join(format!("{sha}.incomplete")).exists());
    fetch("org/tiny", &cfg).await.unwrap();

    // a storage host that ignores Range: the partial file is dropped and the whole file taken
    hub.ignore_range();
    let cache = tempfile::tempdir().unwrap();
    let blobs = cache.path().join("models--org--tiny/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(blobs.join(format!("{sha}.incomplete")), &weights[..100]).unwrap();
    fetch("org/tiny", &config(&hub, cache.path()))
        .await
        .unwrap();
    assert_eq!(std::fs::read(blobs.join(&sha)).unwrap(), weights);
}

/// The init-container flow of the Helm chart: `crossrank fetch` fills the cache and prints
/// the snapshot, then a server with HF_HUB_OFFLINE=1 serves the id without one request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_then_serve_offline() {
    let hub = FakeHub::start().await;
    let commit = hub.publish("org/tiny", &["v1"], tiny_with_extras());
    let cache = tempfile::tempdir().unwrap();
    let out = run_ok(
        Command::new(env!("CARGO_BIN_EXE_crossrank"))
            .args(["fetch", "org/tiny@v1"])
            .envs(env(&hub, cache.path())),
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    let snapshot = cache
        .path()
        .join("models--org--tiny/snapshots")
        .join(&commit);
    assert_eq!(PathBuf::from(printed.trim()), snapshot);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("downloading") && stderr.contains("model.safetensors"),
        "{stderr}"
    );

    let requests = hub.log().len();
    let mut vars = env(&hub, cache.path());
    vars.retain(|(k, _)| *k != "HF_HUB_OFFLINE");
    vars.push(("HF_HUB_OFFLINE", "1"));
    let server = ServerProcess::start_with_env(&["--model", "rr=org/tiny@v1"], &vars).await;
    let mut client = pb::cross_encoder_client::CrossEncoderClient::new(server.channel.clone());
    let req = pb::ScoreRequest {
        model: "rr".into(),
        pairs: vec![pb::Pair {
            text_a: "q".into(),
            text_b: "d".into(),
        }],
        ..Default::default()
    };
    client.score(req).await.unwrap();
    assert_eq!(
        hub.log().len(),
        requests,
        "the offline server sent requests"
    );
}

/// An LLM reranker in sentence-transformers' causal form by id: the module config that
/// modules.json names (one folder down) and the chat template are fetched, nothing else, and
/// `crossrank score` on the snapshot gives sentence-transformers' scores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_reranker_by_id_brings_its_module_config() {
    let hub = FakeHub::start().await;
    let dir = fixtures().join("causal");
    let mut files = model_files(&dir);
    let module = std::fs::read(dir.join("1_LogitScore/config.json")).unwrap();
    files.insert("1_LogitScore/config.json".into(), module);
    hub.publish("org/llm", &["main"], files);
    let cache = tempfile::tempdir().unwrap();
    let snapshot = fetch("org/llm", &config(&hub, cache.path())).await.unwrap();
    for wanted in [
        "1_LogitScore/config.json",
        "chat_template.jinja",
        "modules.json",
    ] {
        assert!(snapshot.join(wanted).is_file(), "{wanted} missing");
    }
    for unwanted in ["README.md", "expected.json", "generation_config.json"] {
        assert!(!snapshot.join(unwanted).exists(), "{unwanted} fetched");
    }

    #[derive(serde::Deserialize)]
    struct Reference {
        pairs: Vec<(String, String)>,
        scores: Scores,
    }
    #[derive(serde::Deserialize)]
    struct Scores {
        default: Vec<f32>,
    }
    let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
    let reference: Reference = serde_json::from_str(&text).unwrap();
    let input: String = reference
        .pairs
        .iter()
        .map(|(a, b)| serde_json::json!({ "text_a": a, "text_b": b }).to_string() + "\n")
        .collect();
    let pairs = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(pairs.path(), input).unwrap();
    let mut vars = env(&hub, cache.path());
    vars.retain(|(k, _)| *k != "HF_HUB_OFFLINE");
    vars.push(("HF_HUB_OFFLINE", "1"));
    let out = run_ok(
        Command::new(env!("CARGO_BIN_EXE_crossrank"))
            .args(["score", "--model", "org/llm", "--input"])
            .arg(pairs.path())
            .envs(vars),
    );
    let got: Vec<f32> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(got.len(), reference.scores.default.len());
    for (g, w) in got.iter().zip(&reference.scores.default) {
        assert!((g - w).abs() <= 1e-4, "{g} vs {w}");
    }
}
