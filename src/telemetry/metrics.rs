//! Prometheus metrics, recorded in one place: the helpers here are called by the transport
//! (requests), the engine (pairs, rejections) and the replica threads (batches). Documented in
//! docs/metrics.md; served as Prometheus text by `telemetry::serve_metrics`.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub use super::labels::ModelLabel;
use super::labels::{
    CodeLabels, HttpLabels, ListedTenants, MethodLabels, PriorityLabels, ReasonLabels, RouteLabels,
    StateLabels, TenantLabels, TenantReasonLabels,
};
use super::levels::QueueLevels;

type Hist<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub requests: Family<CodeLabels, Counter>,
    pub request_duration: Hist<MethodLabels>,
    pub in_flight: Family<MethodLabels, Gauge>,
    pub queue_wait: Hist<ModelLabel>,
    pub tokenize_duration: Hist<ModelLabel>,
    pub inference_duration: Hist<ModelLabel>,
    pub batch_pairs: Hist<ModelLabel>,
    pub batch_tokens: Hist<ModelLabel>,
    pub padding_ratio: Hist<ModelLabel>,
    pub queue_depth: Family<ModelLabel, Gauge>,
    pub pairs: Family<ModelLabel, Counter>,
    pub truncated_pairs: Family<ModelLabel, Counter>,
    pub tokens: Family<ModelLabel, Counter>,
    pub rejections: Family<ReasonLabels, Counter>,
    pub model_state: Family<StateLabels, Gauge>,
    pub replicas: Family<ModelLabel, Gauge>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_request_duration: Hist<RouteLabels>,
    pub queue_wait_by_priority: Hist<PriorityLabels>,
    pub tenant_pairs: Family<TenantLabels, Counter>,
    pub tenant_rejections: Family<TenantReasonLabels, Counter>,
    /// Depth and evictions per priority, as read at the last scrape (a collector).
    pub(super) queue_levels: Arc<QueueLevels>,
    /// The tenants whose counts carry their name.
    pub(super) listed_tenants: ListedTenants,
}

fn h<L: Clone + std::hash::Hash + Eq>(buckets: fn() -> Histogram) -> Hist<L> {
    Family::new_with_constructor(buckets)
}

fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 18)) // 0.5 ms … ~65 s
}

fn sizes() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 17)) // 1 … 65536
}

fn ratios() -> Histogram {
    Histogram::new([0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
}

impl Metrics {
    fn new() -> Self {
        let mut r = Registry::with_prefix("crossrank");
        let m = Self {
            requests: Family::default(),
            request_duration: h(seconds),
            in_flight: Family::default(),
            queue_wait: h(seconds),
            tokenize_duration: h(seconds),
            inference_duration: h(seconds),
            batch_pairs: h(sizes),
            batch_tokens: h(sizes),
            padding_ratio: h(ratios),
            queue_depth: Family::default(),
            pairs: Family::default(),
            truncated_pairs: Family::default(),
            tokens: Family::default(),
            rejections: Family::default(),
            model_state: Family::default(),
            replicas: Family::default(),
            http_requests: Family::default(),
            http_request_duration: h(seconds),
            queue_wait_by_priority: h(seconds),
            tenant_pairs: Family::default(),
            tenant_rejections: Family::default(),
            queue_levels: Arc::default(),
            listed_tenants: ListedTenants::default(),
            registry: Registry::default(),
        };
        r.register(
            "requests",
            "RPCs finished, by model, method and gRPC code",
            m.requests.clone(),
        );
        r.register(
            "http_requests",
            "REST calls finished, by route, dialect, model and status class",
            m.http_requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "REST call duration, headers received to answer",
            m.http_request_duration.clone(),
        );
        r.register(
            "request_duration_seconds",
            "RPC duration, receipt to answer",
            m.request_duration.clone(),
        );
        r.register(
            "in_flight_requests",
            "RPCs being served now",
            m.in_flight.clone(),
        );
        r.register(
            "queue_wait_seconds",
            "Time a pair waited in its model's queue before its batch ran",
            m.queue_wait.clone(),
        );
        r.register(
            "tokenize_duration_seconds",
            "Tokenization time of one request (or stream batch)",
            m.tokenize_duration.clone(),
        );
        r.register(
            "inference_duration_seconds",
            "Forward-pass time of one batch",
            m.inference_duration.clone(),
        );
        r.register(
            "batch_pairs",
            "Pairs in one executed batch",
            m.batch_pairs.clone(),
        );
        r.register(
            "batch_tokens",
            "Padded tokens (longest pair x pairs) in one executed batch",
            m.batch_tokens.clone(),
        );
        r.register(
            "batch_padding_ratio",
            "Share of a batch's padded tokens that are padding",
            m.padding_ratio.clone(),
        );
        r.register(
            "queue_depth_pairs",
            "Pairs waiting in the model's queue",
            m.queue_depth.clone(),
        );
        r.register("pairs", "Pairs scored", m.pairs.clone());
        r.register(
            "truncated_pairs",
            "Pairs shortened by longest-first truncation",
            m.truncated_pairs.clone(),
        );
        r.register(
            "tokens",
            "Tokens scored (special tokens included, padding excluded)",
            m.tokens.clone(),
        );
        r.register(
            "rejections",
            "Requests or pairs refused or dropped, by reason (overload, tenant_quota, evicted, \
             deadline, cancelled)",
            m.rejections.clone(),
        );
        r.register(
            "model_state",
            "1 for the model's current state (loading, ready, failed, unloading)",
            m.model_state.clone(),
        );
        r.register(
            "model_replicas",
            "Replica threads of the model",
            m.replicas.clone(),
        );
        m.register_scheduling(&mut r);
        Self { registry: r, ..m }
    }

    /// The families by priority and tenant ([`super::scheduling`]).
    fn register_scheduling(&self, r: &mut Registry) {
        r.register(
            "queue_wait_by_priority_seconds",
            "Time a pair waited in its model's queue before its batch ran, by its priority",
            self.queue_wait_by_priority.clone(),
        );
        r.register(
            "tenant_pairs",
            "Pairs scored, by tenant (listed tenants by name, others as (other))",
            self.tenant_pairs.clone(),
        );
        r.register(
            "tenant_rejected",
            "Requests refused or displaced, by tenant and reason (overload, tenant_quota, evicted)",
            self.tenant_rejections.clone(),
        );
        r.register_collector(Box::new(self.queue_levels.clone()));
    }

    /// Prometheus text format, version 0.0.4.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    pub fn reject(&self, model: &str, reason: &str) {
        self.rejections
            .get_or_create(&ReasonLabels {
                model: model.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// One executed batch: its pairs, their real and padded tokens, its forward-pass time.
    pub fn batch(
        &self,
        model: &str,
        pairs: usize,
        tokens: usize,
        padded: usize,
        inference: Duration,
    ) {
        let l = ModelLabel {
            model: model.into(),
        };
        self.batch_pairs.get_or_create(&l).observe(pairs as f64);
        self.batch_tokens.get_or_create(&l).observe(padded as f64);
        self.padding_ratio
            .get_or_create(&l)
            .observe(1.0 - tokens as f64 / padded.max(1) as f64);
        self.inference_duration
            .get_or_create(&l)
            .observe(inference.as_secs_f64());
    }
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Counts one RPC: in flight while alive; finished with a code by [`RequestGuard::finish`], or
/// as CANCELLED (and a `cancelled` rejection) when dropped unfinished (the client went away).
pub struct RequestGuard {
    labels: MethodLabels,
    start: Instant,
    done: bool,
}

impl RequestGuard {
    pub fn start(method: &str, model: &str) -> Self {
        let labels = MethodLabels {
            model: model.into(),
            method: method.into(),
        };
        metrics().in_flight.get_or_create(&labels).inc();
        Self {
            labels,
            start: Instant::now(),
            done: false,
        }
    }

    /// `code` is the gRPC code name, e.g. "OK", "INVALID_ARGUMENT".
    pub fn finish(mut self, code: &str) {
        self.record(code);
    }

    fn record(&mut self, code: &str) {
        self.done = true;
        let m = metrics();
        m.in_flight.get_or_create(&self.labels).dec();
        m.request_duration
            .get_or_create(&self.labels)
            .observe(self.start.elapsed().as_secs_f64());
        let l = &self.labels;
        m.requests
            .get_or_create(&CodeLabels {
                model: l.model.clone(),
                method: l.method.clone(),
                code: code.into(),
            })
            .inc();
    }
}

/// One REST call in the metrics: counted as "cancelled" unless finished with its status.
pub struct HttpGuard {
    labels: HttpLabels,
    start: Instant,
    done: bool,
}

impl HttpGuard {
    pub fn start(route: &str, dialect: &str, model: &str) -> Self {
        Self {
            labels: HttpLabels {
                route: route.into(),
                dialect: dialect.into(),
                model: model.into(),
                status: String::new(),
            },
            start: Instant::now(),
            done: false,
        }
    }

    pub fn finish(mut self, status: u16) {
        self.record(format!("{}xx", status / 100));
    }

    fn record(&mut self, status: String) {
        self.done = true;
        let m = metrics();
        self.labels.status = status;
        m.http_requests.get_or_create(&self.labels).inc();
        m.http_request_duration
            .get_or_create(&RouteLabels {
                route: self.labels.route.clone(),
                dialect: self.labels.dialect.clone(),
            })
            .observe(self.start.elapsed().as_secs_f64());
    }
}

impl Drop for HttpGuard {
    fn drop(&mut self) {
        if !self.done {
            self.record("cancelled".into());
        }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if !self.done {
            self.record("CANCELLED");
            metrics().reject(&self.labels.model.clone(), "cancelled");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every family appears once it has a sample.
    #[test]
    fn rejections_are_encoded() {
        metrics().reject("unit-model", "overload");
        let text = metrics().encode();
        assert!(
            text.contains("crossrank_rejections_total{model=\"unit-model\",reason=\"overload\"} 1"),
            "{text}"
        );
    }
}
