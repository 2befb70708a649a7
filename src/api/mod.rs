//! The transports: gRPC ([`grpc`], the only module that knows tonic) and the REST dialects
//! ([`http`]), both over one [`Engine`]; [`serve`] runs them together and shuts them down
//! together.

pub mod deadline;
pub mod grpc;
pub mod http;
pub mod keys;
mod options;
pub mod tenant;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::ModelConfig;
use crate::engine::Engine;
pub use grpc::{pb, MAX_RESPONSE_BYTES};
pub use options::{http_tls_config, tls_config, HttpOptions, ServerOptions, Transport};

/// Why a server stopped before its shutdown.
pub type ServeFailed = Box<dyn std::error::Error + Send + Sync>;

/// The ports a server listens on.
pub struct Listeners {
    pub grpc: TcpListener,
    /// grpc.health.v1 alone, in plaintext: with TLS on the gRPC port, Kubernetes gRPC probes
    /// (which cannot speak TLS) use this port.
    pub health: Option<TcpListener>,
    /// The REST dialects (`--http-port`).
    pub http: Option<TcpListener>,
}

/// Serves on `listener` until `shutdown` completes ([`serve_on`] with gRPC alone).
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    models: Vec<ModelConfig>,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeFailed> {
    let listeners = Listeners {
        grpc: listener,
        health: None,
        http: None,
    };
    serve_on(listeners, engine, models, opts, shutdown).await
}

/// Serves every port of `listeners` until `shutdown` completes, then refuses new calls
/// (UNAVAILABLE, HTTP 503), lets in-flight calls finish within the grace period, and drains and
/// stops every model. On every return, a transport error included, every model's replica
/// threads have been joined ([`stop_models`]).
pub async fn serve_on(
    listeners: Listeners,
    engine: Arc<Engine>,
    models: Vec<ModelConfig>,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeFailed> {
    // Announced before `shutdown` is first polled: it may wait on their loads.
    for m in &models {
        engine.registry.announce(m);
    }
    let drain = engine.clone();
    let trigger = tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: refusing new calls, finishing in-flight ones");
        drain.start_draining();
    });
    // Request bodies on every port share one byte budget.
    let budget = Arc::new(grpc::Budget::new(opts.transport.max_receiving_bytes));
    let http = listeners
        .http
        .map(|l| http::serve(l, engine.clone(), opts.clone(), budget.clone()));
    let grpc = grpc::serve(
        listeners.grpc,
        listeners.health,
        engine.clone(),
        models,
        opts.clone(),
        budget,
    );
    let both = async move {
        let http = async move {
            match http {
                Some(h) => h.await.map_err(ServeFailed::from),
                None => Ok(()),
            }
        };
        let grpc = async move { grpc.await.map_err(ServeFailed::from) };
        tokio::try_join!(grpc, http).map(|_| ())
    };
    let grace = opts.grace_period;
    let grace_engine = engine.clone();
    let grace_over = async move {
        grace_engine.draining().await;
        tokio::time::sleep(grace).await;
    };
    let outcome = tokio::select! {
        r = both => r,
        _ = grace_over => {
            tracing::warn!(?grace, "grace period over; closing remaining calls");
            Ok(())
        }
    };
    trigger.abort();
    stop_models(engine).await;
    outcome
}

/// How long [`serve_on`] waits, once every model is stopped, for abandoned loads to end.
const LOAD_WIND_DOWN: Duration = Duration::from_secs(5);

/// The end of every [`serve_on`]: refuses new calls and loads, drains every model's queue and
/// joins its replicas (off the async threads: a join waits for the batch in flight), abandons
/// loads still running and waits up to [`LOAD_WIND_DOWN`] for them to stop what they started.
/// A load inside libtorch cannot be interrupted: one still running after that stops and joins
/// its replicas itself when it ends.
async fn stop_models(engine: Arc<Engine>) {
    engine.start_draining();
    let unloading = engine.clone();
    let _ = tokio::task::spawn_blocking(move || unloading.registry.unload_all()).await;
    let loads = engine.registry.abandoned_loads_ended();
    if tokio::time::timeout(LOAD_WIND_DOWN, loads).await.is_err() {
        tracing::warn!(
            bound = ?LOAD_WIND_DOWN,
            "abandoned loads are still running; each joins its replicas when it ends"
        );
    }
}
