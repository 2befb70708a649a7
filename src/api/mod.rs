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
/// stops every model.
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
    tokio::spawn(async move {
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
    tokio::select! {
        r = both => r?,
        _ = grace_over => tracing::warn!(?grace, "grace period over; closing remaining calls"),
    }
    let _ = tokio::task::spawn_blocking(move || engine.registry.unload_all()).await;
    Ok(())
}
