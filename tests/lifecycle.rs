//! Replica threads end with their model: UnloadModel, a dropped registry and every way `serve`
//! returns (graceful shutdown, a transport that fails, a start-up model that fails) join them
//! before the call returns. Threads are counted by name in /proc/self/task right after the call,
//! with no waiting: a thread still there was not joined. Each test uses model names of its own,
//! so tests running side by side in this process do not see each other's replicas.
#![cfg(target_os = "linux")]

mod common;

use std::future::Future;
use std::pin::Pin;

use common::server::{model, model_at, TestServer};
use crossrank::api::pb;
use crossrank::api::{serve_on, Listeners, ServeFailed, ServerOptions};
use crossrank::config::{ModelConfig, RequestLimits};
use crossrank::engine::Engine;
use crossrank::registry::Registry;
use tonic::transport::{Identity, ServerTlsConfig};

/// Threads of this process named as replicas of `model` (`{model}-replica-{index}`; Linux keeps
/// the first 15 bytes of a thread's name). A thread takes the name of the thread that starts it,
/// so libtorch's intra-op threads would count too: [`one_intra_op_thread`] keeps them out.
fn replica_threads(model: &str) -> usize {
    let name = format!("{model}-replica-");
    let prefix = &name[..name.len().min(15)];
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|task| task.ok().map(|t| t.path()))
        .filter(|task| {
            let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
            comm.starts_with(prefix) && !exiting(task)
        })
        .count()
}

/// Whether the task has begun to exit (PF_EXITING in the flags of its `stat`). A joined thread
/// always has: join returns once the thread released its memory, which is after PF_EXITING is
/// set and a moment before its /proc entry goes.
fn exiting(task: &std::path::Path) -> bool {
    const PF_EXITING: u64 = 0x4;
    let stat = std::fs::read_to_string(task.join("stat")).unwrap_or_default();
    // Fields after the `(comm)` one, which may hold spaces: state is the first, flags the seventh.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let flags: u64 = after
        .split_whitespace()
        .nth(6)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0);
    // A task whose stat is gone has ended.
    stat.is_empty() || flags & PF_EXITING != 0
}

/// libtorch runs on the calling thread alone (no OpenMP team per replica), so a thread named
/// as a replica is the replica itself.
fn one_intra_op_thread() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| tch::set_num_threads(1));
}

fn admin<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", "Bearer adm".parse().unwrap());
    r
}

/// Options whose TLS identity is not PEM: the gRPC transport fails as it starts.
fn broken_tls() -> ServerOptions {
    ServerOptions {
        tls: Some(ServerTlsConfig::new().identity(Identity::from_pem("not a cert", "not a key"))),
        ..Default::default()
    }
}

/// Runs `serve_on` on a fresh port of 127.0.0.1 until `shutdown`, and returns what it returned.
async fn serve(
    engine: std::sync::Arc<Engine>,
    models: Vec<ModelConfig>,
    opts: ServerOptions,
    shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
) -> Result<(), ServeFailed> {
    let listeners = Listeners {
        grpc: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        health: None,
        http: None,
    };
    serve_on(listeners, engine, models, opts, shutdown).await
}

/// A transport that fails (a TLS identity that does not parse) makes `serve` return an error,
/// and by then the replicas of a model loaded before it started are joined and the model gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transport_error_joins_every_replica() {
    one_intra_op_thread();
    let engine = Engine::new(RequestLimits::default());
    let loading = engine.clone();
    tokio::task::spawn_blocking(move || loading.registry.load(model("lct=bert,replicas=2")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(replica_threads("lct"), 2, "the replicas run before serve");
    let pending = Box::pin(std::future::pending());
    let failed = serve(engine.clone(), Vec::new(), broken_tls(), pending).await;
    assert!(
        failed.is_err(),
        "serve with a broken TLS identity returned Ok"
    );
    assert_eq!(
        replica_threads("lct"),
        0,
        "a replica survived the failed serve"
    );
    assert!(engine.registry.names().is_empty());
}

/// A start-up model whose load is under way (or done, or not begun) when the transport fails:
/// its load is abandoned and `serve` returns only once whatever it started is joined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_serve_leaves_no_replica_of_a_start_up_model() {
    one_intra_op_thread();
    let engine = Engine::new(RequestLimits::default());
    let models = vec![model("lcs=bert,replicas=2")];
    let pending = Box::pin(std::future::pending());
    let failed = serve(engine.clone(), models, broken_tls(), pending).await;
    assert!(
        failed.is_err(),
        "serve with a broken TLS identity returned Ok"
    );
    assert_eq!(
        replica_threads("lcs"),
        0,
        "a replica survived the failed serve"
    );
    assert!(engine.registry.names().is_empty());
}

/// A start-up model that fails to load stops `serve` (as the CLI stops it): the replicas of the
/// other start-up model, loaded or loading by then, are joined when `serve` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_up_model_leaves_no_replica_behind() {
    one_intra_op_thread();
    let empty = tempfile::tempdir().unwrap();
    let models = vec![model("lcg=bert,replicas=2"), model_at("lcb", empty.path())];
    let names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
    let engine = Engine::new(RequestLimits::default());
    let watch = engine.clone();
    let stop = Box::pin(async move {
        let failure = watch.registry.first_load_failure(&names).await;
        assert_eq!(failure.map(|f| f.model).as_deref(), Some("lcb"));
    });
    serve(engine.clone(), models, ServerOptions::default(), stop)
        .await
        .unwrap();
    assert_eq!(
        replica_threads("lcg"),
        0,
        "a replica survived the stopped serve"
    );
    assert!(engine.registry.names().is_empty());
}

/// Graceful shutdown joins the replicas of a serving model before `serve` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_joins_every_replica() {
    one_intra_op_thread();
    let server = TestServer::simple(&["lcq=bert,replicas=2"]).await;
    assert_eq!(replica_threads("lcq"), 2);
    server.stop().await;
    assert_eq!(replica_threads("lcq"), 0, "a replica survived the shutdown");
}

/// UnloadModel answers once the model's replicas are joined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unload_model_joins_its_replicas() {
    one_intra_op_thread();
    let opts = ServerOptions {
        admin_token: Some("adm".into()),
        model_root: Some(common::fixtures()),
        ..Default::default()
    };
    let server = TestServer::start_unready(Vec::new(), opts, RequestLimits::default()).await;
    let mut models = server.models();
    let load = pb::LoadModelRequest {
        name: "lcu".into(),
        path: "bert".into(),
        options: Some(pb::LoadModelOptions {
            devices: vec!["cpu".into(), "cpu".into()],
            ..Default::default()
        }),
    };
    models.load_model(admin(load)).await.unwrap();
    assert_eq!(replica_threads("lcu"), 2);
    let unload = pb::UnloadModelRequest { name: "lcu".into() };
    models.unload_model(admin(unload)).await.unwrap();
    assert_eq!(replica_threads("lcu"), 0, "a replica survived UnloadModel");
    server.stop().await;
}

/// A registry dropped with a model still loaded joins its replicas.
#[test]
fn dropping_a_registry_joins_its_replicas() {
    one_intra_op_thread();
    let registry = Registry::new(crossrank::hub::HubConfig::from_vars(|_| None));
    registry.load(model("lcd=bert,replicas=2")).unwrap();
    assert_eq!(replica_threads("lcd"), 2);
    drop(registry);
    assert_eq!(replica_threads("lcd"), 0, "a replica survived its registry");
}
