//! Logs and traces: a `tracing` subscriber writing text (default) or JSON logs to stderr and,
//! when an OTLP endpoint is configured, exporting spans over OTLP/gRPC with parent-based ratio
//! sampling. Export runs on the SDK's own batch thread: a slow or dead collector never blocks a
//! request; spans are flushed when the returned guard drops.

use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How to log and trace.
#[derive(Debug, Clone)]
pub struct TraceOptions {
    /// `EnvFilter` directives, e.g. "info" or "crossrank=debug".
    pub filter: String,
    pub json_logs: bool,
    /// OTLP/gRPC collector, e.g. "http://otel-collector:4317"; None disables export.
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
    /// Share of root traces sampled; a caller's sampling decision is followed (parent-based).
    pub sampling_ratio: f64,
}

/// Flushes and stops span export when dropped.
pub struct TracingGuard {
    provider: Option<SdkTracerProvider>,
}

impl TracingGuard {
    /// Exports every finished span now (blocks until the collector answered or timed out).
    pub fn flush(&self) {
        (self.flush_handle())()
    }

    /// A function that flushes, usable from another thread.
    pub fn flush_handle(&self) -> impl Fn() + Send + 'static {
        let provider = self.provider.clone();
        move || {
            if let Some(p) = &provider {
                let _ = p.force_flush();
            }
        }
    }
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("crossrank: flushing spans at shutdown failed: {e}");
            }
        }
    }
}

/// Installs the global subscriber. Call once, inside a tokio runtime when exporting.
pub fn init(opts: &TraceOptions) -> Result<TracingGuard, String> {
    let filter = EnvFilter::try_new(&opts.filter)
        .map_err(|e| format!("log filter {:?}: {e}", opts.filter))?;
    let fmt = if opts.json_logs {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed()
    };
    // Without an endpoint spans still get trace ids (for log lines), they are just not exported.
    let provider = provider(opts)?;
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("crossrank"));
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| format!("cannot install the log subscriber: {e}"))?;
    Ok(TracingGuard {
        provider: Some(provider),
    })
}

fn provider(opts: &TraceOptions) -> Result<SdkTracerProvider, String> {
    if !(0.0..=1.0).contains(&opts.sampling_ratio) {
        return Err(format!(
            "sampling ratio {} is not between 0 and 1",
            opts.sampling_ratio
        ));
    }
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(opts.sampling_ratio)));
    let resource = Resource::builder()
        .with_service_name(opts.service_name.clone())
        .build();
    let mut builder = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_resource(resource);
    if let Some(endpoint) = &opts.otlp_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| format!("OTLP exporter for {endpoint}: {e}"))?;
        builder = builder.with_batch_exporter(exporter);
    }
    Ok(builder.build())
}

/// Reads W3C `traceparent` / `tracestate` from a header map (gRPC metadata).
pub struct HeaderExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The caller's trace context from its headers (empty when it sent none).
pub fn remote_context(headers: &http::HeaderMap) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)))
}
