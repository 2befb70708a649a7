//! gRPC transport: the only module that knows tonic. Handlers convert proto messages to core
//! requests, call the [`Engine`] and convert back; errors become statuses in one place
//! (`status`).

mod body;
pub(crate) mod codec;
mod convert;
mod health;
mod keys;
mod models;
mod rerank_stream;
mod scoring;
mod status;

use std::collections::HashSet;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::ServerOptions;
use crate::config::ModelConfig;
use crate::engine::Engine;
use crate::registry::State;
pub use body::Budget;
use health::Health;
pub use status::{log_value, record_tenant, record_trace_id};

/// The largest response message (gRPC's encoding limit of every service).
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// Generated protobuf and gRPC code for `crossrank.v1`.
pub mod pb {
    tonic::include_proto!("crossrank.v1");
    /// Descriptor set for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("crossrank_descriptor");
}

/// Serves gRPC on `listener` (and grpc.health.v1 alone in plaintext on `health_listener`) until
/// the engine drains: loads `models` in the background (health "" turns SERVING when all are
/// ready), then at shutdown turns health NOT_SERVING and lets in-flight calls finish (open
/// streams end with UNAVAILABLE once what they sent is answered).
pub(super) async fn serve(
    listener: TcpListener,
    health_listener: Option<TcpListener>,
    engine: Arc<Engine>,
    models: Vec<ModelConfig>,
    opts: ServerOptions,
    budget: Arc<Budget>,
) -> Result<(), tonic::transport::Error> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    // Stops the health port when this function returns or is dropped.
    let (_health_stop, health_stopped) = tokio::sync::oneshot::channel::<()>();
    // Request bodies on every port are held to a deadline and one byte budget.
    let receive = body::ReceiveLayer {
        budget,
        default_timeout: opts.transport.default_timeout,
    };
    if let Some(h) = health_listener {
        let plain = tonic::transport::Server::builder()
            .layer(receive.clone())
            .add_service(health_service.clone())
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(h).with_nodelay(Some(true)),
                async {
                    let _ = health_stopped.await;
                },
            );
        tokio::spawn(plain);
    }
    let health = Health::new(reporter);
    health.overall(false).await;
    health.live().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the descriptor sets are generated at build time and valid. This is a bug.");
    codec::allow_entries(engine.limits.max_pairs_per_request);
    let n = opts
        .max_message_bytes
        .unwrap_or_else(|| engine.limits.max_request_bytes().min(64 << 20));
    let scoring = pb::cross_encoder_server::CrossEncoderServer::new(scoring::Scoring {
        engine: engine.clone(),
        default_timeout: opts.transport.default_timeout,
    })
    .max_decoding_message_size(n)
    .max_encoding_message_size(MAX_RESPONSE_BYTES);
    // Scoring needs a data-plane key (--api-keys-file); health, reflection and Models do not.
    let scoring = tonic::service::interceptor::InterceptedService::new(
        scoring,
        keys::KeyCheck(opts.api_keys.clone()),
    );
    let models_service = pb::models_server::ModelsServer::new(models::Models {
        engine: engine.clone(),
        health: health.clone(),
        admin_token: opts.admin_token.clone(),
        model_root: opts.model_root.clone(),
        hub_load: opts.hub_load,
    })
    .max_decoding_message_size(1 << 20)
    .max_encoding_message_size(MAX_RESPONSE_BYTES);

    for m in &models {
        health.model_serving(&m.name, false).await; // known, NOT_SERVING, until loaded
    }
    tokio::spawn(load_all(engine.clone(), health.clone(), models));

    let (drain_engine, drain_health) = (engine.clone(), health.clone());
    let on_shutdown = async move {
        drain_engine.draining().await;
        drain_health.overall(false).await;
        for name in drain_engine.registry.names() {
            drain_health.model_serving(&name, false).await;
        }
    };
    // TCP_NODELAY: without it a small response can wait ~40 ms for a delayed ACK (Nagle).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut builder = opts.transport.builder();
    if let Some(tls) = opts.tls.clone() {
        builder = builder.tls_config(tls)?;
    }
    builder
        .layer(receive)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(scoring)
        .add_service(models_service)
        .serve_with_incoming_shutdown(incoming, on_shutdown)
        .await
}

/// Loads every configured model at once, each on a blocking thread of its own (a slow one,
/// say a Hub id, keeps no other waiting), while health follows the registry: each model turns
/// SERVING as it becomes ready, "" once all are.
async fn load_all(engine: Arc<Engine>, health: Health, models: Vec<ModelConfig>) {
    for config in models {
        let e = engine.clone();
        tokio::task::spawn_blocking(move || e.registry.load_announced(&config.name));
    }
    follow(engine, health).await;
}

/// Keeps health in step with the registry: loads, UnloadModel and replicas that die change each
/// model's status and "" (SERVING while every model is ready); unloaded models are forgotten.
/// At shutdown everything turns NOT_SERVING, and that is the last word.
async fn follow(engine: Arc<Engine>, health: Health) {
    let mut changes = engine.registry.subscribe();
    let mut known: HashSet<String> = engine.registry.names().into_iter().collect();
    let mut serving = false;
    loop {
        let draining = engine.is_draining();
        let entries = engine.registry.entries();
        let mut all = !entries.is_empty() && !draining;
        let mut now = HashSet::new();
        for e in &entries {
            let ready = !draining && matches!(e.state(), State::Ready(_));
            all &= ready;
            health.model_serving(&e.config.name, ready).await;
            now.insert(e.config.name.clone());
        }
        for gone in known.difference(&now) {
            health.forget(gone).await;
        }
        known = now;
        if all && !serving {
            tracing::info!("all models ready: SERVING");
        }
        serving = all;
        health.overall(all).await;
        if draining {
            return;
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            () = engine.draining() => {}
        }
    }
}
