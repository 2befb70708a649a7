//! Observability: Prometheus metrics ([`metrics`]) and their HTTP endpoint; logs and
//! OpenTelemetry traces ([`tracing`]).

pub mod labels;
mod levels;
pub mod metrics;
pub mod scheduling;

use std::sync::Arc;

use axum::routing::get;
use tokio::net::TcpListener;

use crate::engine::Engine;
use crate::registry::State;
use labels::{ModelLabel, StateLabels};
use metrics::metrics;

/// Serves `GET /metrics` (Prometheus text format) on `listener` until the process ends.
pub async fn serve_metrics(listener: TcpListener, engine: Arc<Engine>) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let engine = engine.clone();
            async move {
                refresh(&engine);
                (
                    [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                    metrics().encode(),
                )
            }
        }),
    );
    axum::serve(listener, app).await
}

/// Gauges read from the registry at scrape time: queue depth (also by priority, with the
/// evictions), model state, replicas.
fn refresh(engine: &Engine) {
    let m = metrics();
    let mut levels = Vec::new();
    for entry in engine.registry.entries() {
        let model = entry.config.name.clone();
        let state = entry.state();
        let current = match &state {
            State::Loading | State::Pending => "loading",
            State::Ready(_) => "ready",
            State::Failed(_) => "failed",
            State::Unloading => "unloading",
        };
        for s in ["loading", "ready", "failed", "unloading"] {
            m.model_state
                .get_or_create(&StateLabels {
                    model: model.clone(),
                    state: s.into(),
                })
                .set(i64::from(s == current));
        }
        let l = ModelLabel { model };
        m.replicas
            .get_or_create(&l)
            .set(entry.devices().len() as i64);
        let depth = if let State::Ready(loaded) = state {
            let stats = loaded.queue.stats();
            let model = &l.model;
            levels.extend(stats.by_priority.into_iter().map(|s| (model.clone(), s)));
            stats.depth
        } else {
            0
        };
        m.queue_depth.get_or_create(&l).set(depth as i64);
    }
    m.set_queue_levels(levels);
}
pub mod tracing;
