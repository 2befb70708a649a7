//! The REST dialects RAG stacks call (Cohere v2 and v1, Jina, TEI) on the same [`Engine`] as
//! gRPC: HTTP/1.1 and h2c (HTTP/2 without TLS) on one port, TLS when the server has a
//! certificate. Requests are read by [`body`], answered by the dialect modules, and fail in
//! each dialect's own format ([`error`]).

mod body;
mod call;
mod cohere;
mod error;
mod info;
mod meta;
pub mod openapi;
mod opening;
mod tei;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use super::grpc::Budget;
use super::ServerOptions;
use crate::engine::Engine;
use body::BodyLimits;
pub use error::Dialect;
use opening::Opening;

/// What every REST handler shares.
pub struct Http {
    pub engine: Arc<Engine>,
    pub opts: ServerOptions,
    pub budget: Arc<Budget>,
    pub body: BodyLimits,
    /// `GET /openapi.json`, with this server's bounds.
    pub openapi: bytes::Bytes,
}

impl Http {
    fn new(engine: Arc<Engine>, opts: ServerOptions, budget: Arc<Budget>) -> Self {
        let max_bytes = opts
            .max_message_bytes
            .unwrap_or_else(|| engine.limits.max_request_bytes().min(64 << 20));
        let body = BodyLimits {
            max_bytes,
            max_entries: engine.limits.max_pairs_per_request,
        };
        let openapi = openapi::document(&engine.limits).into();
        Self {
            engine,
            opts,
            budget,
            body,
            openapi,
        }
    }
}

/// Every route of the REST port.
pub fn router(state: Arc<Http>) -> axum::Router {
    axum::Router::new()
        .route("/v2/rerank", post(cohere::v2_rerank))
        .route("/v1/rerank", post(cohere::v1_rerank))
        .route("/rerank", post(tei::rerank))
        .route("/predict", post(tei::predict::predict))
        .route("/info", get(info::info))
        .route("/health", get(meta::health))
        .route("/v1/models", get(meta::models))
        .route("/openapi.json", get(meta::openapi))
        .fallback(meta::no_route)
        .method_not_allowed_fallback(meta::wrong_method)
        .with_state(state)
}

/// Serves the REST routes on `listener` until the engine drains, then lets open calls finish
/// (the caller bounds that by the grace period). At most `max_connections` connections are
/// served at once; a connection that does not send a request's headers within
/// `header_timeout` is closed (before its first bytes by [`Opening`], after them by hyper).
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    opts: ServerOptions,
    budget: Arc<Budget>,
) -> std::io::Result<()> {
    let http = &opts.http;
    let slots = Arc::new(tokio::sync::Semaphore::new(http.max_connections));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(http.header_timeout)
        .max_buf_size(64 << 10);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(opts.transport.max_concurrent_streams)
        .max_pending_accept_reset_streams(opts.transport.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(opts.transport.max_local_reset_streams)
        .max_header_list_size(64 << 10)
        .keep_alive_interval(opts.transport.http2_keepalive_interval)
        .keep_alive_timeout(opts.transport.http2_keepalive_timeout);
    let app = router(Arc::new(Http::new(engine.clone(), opts.clone(), budget)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let tls = opts.http_tls.clone().map(tokio_rustls::TlsAcceptor::from);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = engine.draining() => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = engine.draining() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let handshake_timeout = http.header_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => {
                    let stream = Opening::new(stream, handshake_timeout);
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
                Some(acceptor) => {
                    let handshake = acceptor.accept(stream);
                    let stream = match tokio::time::timeout(handshake_timeout, handshake).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake on the HTTP port failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake on the HTTP port timed out");
                            return;
                        }
                    };
                    let stream = Opening::new(stream, handshake_timeout);
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
