//! Data-plane API keys (`--api-keys-file`) against a real `crossrank serve` child: scoring on
//! both ports needs a key and everything else stays open, SIGHUP reloads the file (a bad file
//! keeps the old keys), a bad file stops the server at start naming the line, and no key ever
//! reaches the server's log, even at debug level.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use std::sync::Arc;

use common::collector::Collector;
use common::process::ServerProcess;
use common::server::{model, TestServer};
use crossrank::api::keys::ApiKeys;
use crossrank::api::pb;
use crossrank::api::pb::cross_encoder_client::CrossEncoderClient;
use crossrank::api::pb::models_client::ModelsClient;
use crossrank::api::ServerOptions;
use crossrank::telemetry::tracing::{init, TraceOptions};
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::json;
use tonic::Code;

/// A keys file in a directory of its own (the directory is removed with it).
struct KeysFile {
    dir: tempfile::TempDir,
}

impl KeysFile {
    fn new(text: &str) -> Self {
        let f = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        f.replace(text);
        f
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("keys.txt")
    }

    /// Replaces the file whole, as the kubelet updates a mounted Secret (write, then rename).
    fn replace(&self, text: &str) {
        let tmp = self.dir.path().join("keys.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.path()).unwrap();
    }
}

fn model_flag() -> String {
    format!("ce={}", common::fixtures().join("bert").display())
}

/// `crossrank serve` with the REST port, `keys` and debug logging of every crate.
async fn start(keys: &KeysFile) -> ServerProcess {
    let (model, file) = (model_flag(), keys.path().display().to_string());
    let args = [
        "--model",
        &model,
        "--http-port",
        "0",
        "--api-keys-file",
        &file,
        "--log-filter",
        "debug",
    ];
    ServerProcess::start(&args).await
}

fn keyed<T>(msg: T, authorization: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(a) = authorization {
        req.metadata_mut()
            .insert("authorization", a.parse().unwrap());
    }
    req
}

fn score_request() -> pb::ScoreRequest {
    pb::ScoreRequest {
        model: "ce".into(),
        pairs: vec![pb::Pair {
            text_a: "what is a reranker".into(),
            text_b: "a model that scores query-document pairs".into(),
        }],
        ..Default::default()
    }
}

fn rerank_request() -> pb::RerankRequest {
    pb::RerankRequest {
        model: "ce".into(),
        query: "what is a reranker".into(),
        documents: vec![pb::Document {
            id: "d".into(),
            text: "a model that scores pairs".into(),
        }],
        ..Default::default()
    }
}

/// The status code of a gRPC Score with `authorization`.
async fn grpc_score(server: &ServerProcess, authorization: Option<&str>) -> Code {
    let mut c = CrossEncoderClient::new(server.channel.clone());
    match c.score(keyed(score_request(), authorization)).await {
        Ok(r) => {
            assert_eq!(r.into_inner().results.len(), 1);
            Code::Ok
        }
        Err(s) => s.code(),
    }
}

/// An answer of the REST port.
struct Reply {
    status: u16,
    www_authenticate: Option<String>,
    body: String,
}

/// One REST call to the server's REST port.
async fn http(
    server: &ServerProcess,
    path: &str,
    body: Option<serde_json::Value>,
    authorization: Option<&str>,
) -> Reply {
    let addr = server.http_addr.clone().unwrap();
    http_at(addr, path, body, authorization).await
}

/// One REST call to `addr` (reqwest's blocking client, off the async runtime).
async fn http_at(
    addr: String,
    path: &str,
    body: Option<serde_json::Value>,
    authorization: Option<&str>,
) -> Reply {
    let url = format!("http://{addr}{path}");
    let authorization = authorization.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let client = reqwest::blocking::Client::new();
        let mut req = match body {
            Some(b) => client
                .post(&url)
                .header("content-type", "application/json")
                .body(b.to_string()),
            None => client.get(&url),
        };
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        let r = req.timeout(Duration::from_secs(30)).send().unwrap();
        Reply {
            status: r.status().as_u16(),
            www_authenticate: r
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned()),
            body: r.text().unwrap(),
        }
    })
    .await
    .unwrap()
}

fn v2_body() -> serde_json::Value {
    json!({"model": "ce", "query": "what is a reranker", "documents": ["a model that scores pairs"]})
}

/// Two keys, the second named `search` (the first is `key-0`).
const KEYS: &str =
    "# team a\nkey-alpha-0001\n\n  search  key-bravo-0002  \n# revoked: key-old-0000\n";
const WRONG: &str = "key-wrong-9999";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoring_needs_a_key_on_both_ports_and_the_rest_stays_open() {
    let keys = KeysFile::new(KEYS);
    let server = start(&keys).await;

    // gRPC: every CrossEncoder method, as Bearer or bare key.
    assert_eq!(grpc_score(&server, None).await, Code::Unauthenticated);
    let wrong = format!("Bearer {WRONG}");
    assert_eq!(
        grpc_score(&server, Some(&wrong)).await,
        Code::Unauthenticated
    );
    let revoked = "Bearer key-old-0000";
    assert_eq!(
        grpc_score(&server, Some(revoked)).await,
        Code::Unauthenticated
    );
    assert_eq!(
        grpc_score(&server, Some("Bearer key-bravo-0002")).await,
        Code::Ok
    );
    assert_eq!(grpc_score(&server, Some("key-alpha-0001")).await, Code::Ok);
    let mut c = CrossEncoderClient::new(server.channel.clone());
    let err = c.rerank(keyed(rerank_request(), None)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(
        err.message().contains("authorization: Bearer <key>"),
        "{err:?}"
    );
    let ok = c.rerank(keyed(rerank_request(), Some("Bearer key-alpha-0001")));
    assert_eq!(ok.await.unwrap().into_inner().results.len(), 1);
    let stream = tokio_stream::iter(vec![score_request()]);
    let err = c.score_stream(keyed(stream, None)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let header = pb::RerankStreamRequest {
        kind: Some(pb::rerank_stream_request::Kind::Header(Default::default())),
    };
    let stream = tokio_stream::iter(vec![header]);
    let err = c
        .rerank_stream(keyed(stream, Some(&wrong)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // gRPC without a key: health (start() waited on it), reflection and Models.
    let models = ModelsClient::new(server.channel.clone())
        .list_models(pb::ListModelsRequest {})
        .await
        .unwrap();
    assert_eq!(models.into_inner().models.len(), 1);
    assert!(reflection_lists_services(&server).await);

    // REST: 401 with `WWW-Authenticate: Bearer`, in each route's dialect.
    for auth in [
        None,
        Some(wrong.as_str()),
        Some(WRONG),
        Some("Basic a2V5LWFscGhhLTAwMDE="),
    ] {
        let r = http(&server, "/v2/rerank", Some(v2_body()), auth).await;
        assert_eq!(r.status, 401, "{auth:?}: {}", r.body);
        assert_eq!(r.www_authenticate.as_deref(), Some("Bearer"));
        let message: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert!(
            message["message"]
                .as_str()
                .unwrap()
                .contains("authorization"),
            "{}",
            r.body
        );
    }
    for auth in [
        "Bearer key-alpha-0001",
        "bearer key-bravo-0002",
        "key-bravo-0002",
    ] {
        let r = http(&server, "/v2/rerank", Some(v2_body()), Some(auth)).await;
        assert_eq!(r.status, 200, "{auth}: {}", r.body);
        let r = http(&server, "/v1/rerank", Some(v2_body()), Some(auth)).await;
        assert_eq!(r.status, 200, "{auth}: {}", r.body);
    }
    let r = http(&server, "/v1/rerank", Some(v2_body()), None).await;
    assert_eq!(r.status, 401, "{}", r.body);
    // REST without a key: health, the model list and the API document.
    for path in ["/health", "/v1/models", "/openapi.json"] {
        let r = http(&server, path, None, None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    let metrics = server.metrics().await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");

    assert_no_key_in(&server.stderr(), "the server's log");
    assert_no_key_in(&metrics, "the metrics");
    // Refusals were logged (debug level is on), without the keys.
    assert!(
        server.stderr().contains("call refused"),
        "no refusal logged"
    );
}

/// grpc.reflection.v1 lists the services without a key.
async fn reflection_lists_services(server: &ServerProcess) -> bool {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut client = ServerReflectionClient::new(server.channel.clone());
    let mut answers = client
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    format!("{answer:?}").contains("crossrank.v1.CrossEncoder")
}

fn assert_no_key_in(text: &str, what: &str) {
    for key in [
        "key-alpha-0001",
        "key-bravo-0002",
        "key-old-0000",
        WRONG,
        "a2V5LWFscGhh",
    ] {
        assert!(!text.contains(key), "{key} appears in {what}");
    }
}

/// Sends SIGHUP to the server.
fn hang_up(server: &ServerProcess) {
    // SAFETY: kill(2) on the child's pid, which this test owns and has not reaped.
    let r = unsafe { libc::kill(server.child.id() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(r, 0, "kill: {}", std::io::Error::last_os_error());
}

/// Polls `done` (each poll a real call to the server) until it holds, for at most 30 s.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let end = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < end, "{what} never happened");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_keys_and_a_bad_file_keeps_the_old_ones() {
    let keys = KeysFile::new("key-first-1\n");
    let server = start(&keys).await;
    assert_eq!(
        grpc_score(&server, Some("Bearer key-first-1")).await,
        Code::Ok
    );

    keys.replace("# rotated\nkey-second-2\n");
    hang_up(&server);
    until("the new key working", || async {
        http(
            &server,
            "/v2/rerank",
            Some(v2_body()),
            Some("Bearer key-second-2"),
        )
        .await
        .status
            == 200
    })
    .await;
    assert_eq!(
        grpc_score(&server, Some("Bearer key-second-2")).await,
        Code::Ok
    );
    assert_eq!(
        grpc_score(&server, Some("Bearer key-first-1")).await,
        Code::Unauthenticated
    );
    let r = http(&server, "/v2/rerank", Some(v2_body()), Some("key-first-1")).await;
    assert_eq!(r.status, 401);

    // A file with a bad line: the reload fails, says where, and the keys stay as they were.
    keys.replace("key-third-3\nkey fourth 4\n");
    hang_up(&server);
    until("the failed reload in the log", || async {
        server.stderr().contains("reloading the API keys failed")
    })
    .await;
    let log = server.stderr();
    assert!(
        log.contains("line 2: 3 fields separated by whitespace"),
        "{log}"
    );
    assert_eq!(
        grpc_score(&server, Some("Bearer key-second-2")).await,
        Code::Ok
    );
    assert_eq!(
        grpc_score(&server, Some("Bearer key-third-3")).await,
        Code::Unauthenticated
    );
    for key in ["key-first-1", "key-second-2", "key-third-3", "fourth"] {
        assert!(!log.contains(key), "{key} appears in the log");
    }
    // Still serving after both signals (SIGHUP's default action would have ended it).
    assert_eq!(grpc_score(&server, None).await, Code::Unauthenticated);
}

/// `crossrank serve ARGS` (with the bert fixture) that must exit; its status and stderr.
fn serve_once(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_crossrank"))
        .args([
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--metrics-port",
            "0",
        ])
        .args(["--model", &model_flag()])
        .args(args)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

fn keys_flag(path: &Path) -> [String; 2] {
    ["--api-keys-file".into(), path.display().to_string()]
}

#[test]
fn bad_key_files_stop_the_server_at_start_naming_the_line() {
    let long = format!("ok-key\n#\n{}\n", "x".repeat(257));
    let many: String = (0..10_001).map(|i| format!("key-{i}\n")).collect();
    let huge = format!("only-key\n{}", "#".repeat(4 << 20));
    let cases: [(&str, &str); 5] = [
        (&long, "line 3: the key is 257 bytes; the limit is 256"),
        (
            &many,
            "line 10001: more than 10000 keys; the limit is 10000",
        ),
        (&huge, "larger than 4194304 bytes"),
        ("a-key\n\nb-key\na-key\n", "line 4: the same key as line 1"),
        ("# no keys yet\n", "holds no keys"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let f = KeysFile::new(text);
        let flag = keys_flag(&f.path());
        // The first case starts the server for real; the others only check the config.
        let mut args: Vec<&str> = flag.iter().map(String::as_str).collect();
        if i > 0 {
            args.push("--check-config");
        }
        let (ok, _, err) = serve_once(&args);
        assert!(!ok, "served with a bad keys file: {want}");
        assert!(
            err.contains("--api-keys-file") && err.contains(want),
            "{want}: {err}"
        );
        assert!(
            !err.contains("xxxxxxxx") && !err.contains("a-key"),
            "a key in {err}"
        );
    }
    let missing = serve_once(&["--api-keys-file", "/nonexistent/keys", "--check-config"]);
    assert!(
        !missing.0 && missing.2.contains("/nonexistent/keys"),
        "{}",
        missing.2
    );

    // A good file; and the config file's `api_keys_file`, relative to the config's directory.
    let f = KeysFile::new(KEYS);
    let flag = keys_flag(&f.path());
    let (ok, out, err) = serve_once(&[&flag[0], &flag[1], "--check-config"]);
    assert!(ok, "{err}");
    assert!(out.contains("api keys: 2 from "), "{out}");
    let config = f.dir.path().join("serve.toml");
    std::fs::write(&config, "api_keys_file = \"keys.txt\"\n").unwrap();
    let config = config.display().to_string();
    let (ok, out, err) = serve_once(&["--config", &config, "--check-config"]);
    assert!(ok && out.contains("api keys: 2 from "), "{out}{err}");
    assert!(!out.contains("key-alpha") && !err.contains("key-alpha"));
}

/// The span's integer attribute `key`, if it has one.
fn int_attribute(span: &Span, key: &str) -> Option<i64> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    let a = span.attributes.iter().find(|a| a.key == key)?;
    match a.value.as_ref()?.value.as_ref()? {
        Value::IntValue(i) => Some(*i),
        other => panic!("{key} is {other:?}"),
    }
}

/// The span's `key_index` attribute, if it has one.
fn key_index(span: &Span) -> Option<i64> {
    int_attribute(span, "key_index")
}

/// The span's `tenant` attribute, if it has one.
fn tenant(span: &Span) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    let a = span.attributes.iter().find(|a| a.key == "tenant")?;
    match a.value.as_ref()?.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        other => panic!("tenant is {other:?}"),
    }
}

/// The spans of both ports carry the key's position and its name as the tenant (not what
/// `x-crossrank-tenant` says), and the request's priority; never the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_carry_the_key_index_and_never_the_key() {
    let (collector, endpoint) = Collector::start().await;
    let trace = TraceOptions {
        filter: "info".into(),
        json_logs: false,
        otlp_endpoint: Some(endpoint),
        service_name: "crossrank-test".into(),
        sampling_ratio: 1.0,
    };
    let tracing = init(&trace).unwrap();
    let keys = KeysFile::new(KEYS);
    let opts = ServerOptions {
        api_keys: Some(Arc::new(ApiKeys::load(&keys.path()).unwrap())),
        ..Default::default()
    };
    let server = TestServer::start_http(vec![model("ce=bert")], opts, Default::default()).await;

    let mut c = server.client();
    let score = pb::ScoreRequest {
        priority: 2,
        ..score_request()
    };
    let mut req = keyed(score, Some("Bearer key-alpha-0001"));
    // Ignored: with keys, the tenant is the key's name.
    let header = "x-crossrank-tenant";
    req.metadata_mut().insert(header, "search".parse().unwrap());
    c.score(req).await.unwrap();
    let addr = server.http_addr.unwrap().to_string();
    let mut body = v2_body();
    body["priority"] = json!(1);
    let r = http_at(addr, "/v2/rerank", Some(body), Some("key-bravo-0002")).await;
    assert_eq!(r.status, 200, "{}", r.body);

    let rpc = "crossrank.v1.CrossEncoder/Score";
    let spans = collector
        .wait_for(
            || tracing.flush(),
            |s| s.name == "POST /v2/rerank" && key_index(s).is_some(),
        )
        .await;
    let spans = match spans.iter().any(|s| s.name == rpc) {
        true => spans,
        false => {
            collector
                .wait_for(|| tracing.flush(), |s| s.name == rpc)
                .await
        }
    };
    let find = |name: &str| spans.iter().find(|s| s.name == name).unwrap();
    assert_eq!(key_index(find(rpc)), Some(0), "the first key is index 0");
    assert_eq!(key_index(find("POST /v2/rerank")), Some(1));
    assert_eq!(
        tenant(find(rpc)).as_deref(),
        Some("key-0"),
        "unnamed: key-<N>"
    );
    assert_eq!(tenant(find("POST /v2/rerank")).as_deref(), Some("search"));
    assert_eq!(int_attribute(find(rpc), "priority"), Some(2));
    assert_eq!(int_attribute(find("POST /v2/rerank"), "priority"), Some(1));
    let everything = format!("{spans:?}");
    assert_no_key_in(&everything, "the exported spans");
}
