//! `crossrank serve`: the gRPC server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use crossrank::api::{serve, ServerOptions};
use crossrank::config::{ModelConfig, ServeConfig};
use crossrank::engine::Engine;
use crossrank::telemetry::tracing::TraceOptions;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CROSSRANK_HOST", default_value = "0.0.0.0")]
    host: String,
    /// gRPC port (0 picks a free one; the chosen address is printed).
    #[arg(long, env = "CROSSRANK_PORT", default_value_t = 50051)]
    port: u16,
    /// Port of the Prometheus endpoint (GET /metrics) on --host; 0 picks a free one.
    #[arg(long, env = "CROSSRANK_METRICS_PORT", default_value_t = 9464)]
    metrics_port: u16,
    /// TOML config file with [[models]] and [limits] (see README).
    #[arg(long, env = "CROSSRANK_CONFIG")]
    config: Option<PathBuf>,
    /// A model to serve: NAME=DIR[,device=cuda:0][,dtype=f16][,replicas=2][,max_batch_tokens=N]
    /// [,max_batch_pairs=N][,max_wait_ms=N][,max_queue_pairs=N][,max_length=N]. Repeatable;
    /// in the environment, separate several with ';'.
    #[arg(long = "model", env = "CROSSRANK_MODELS", value_delimiter = ';')]
    models: Vec<ModelConfig>,
    /// Token required (as `authorization: Bearer …`) for LoadModel / UnloadModel; unset disables them.
    #[arg(long, env = "CROSSRANK_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Pairs or documents per request [default: 2048, or the config file's].
    #[arg(long, env = "CROSSRANK_MAX_PAIRS_PER_REQUEST")]
    max_pairs_per_request: Option<usize>,
    /// Bytes per text (query, document, text_a, text_b) [default: 65536, or the config file's].
    #[arg(long, env = "CROSSRANK_MAX_TEXT_BYTES")]
    max_text_bytes: Option<usize>,
    /// Largest gRPC message in bytes.
    #[arg(long, env = "CROSSRANK_MAX_MESSAGE_BYTES", default_value_t = 64 << 20)]
    max_message_bytes: usize,
    /// Seconds in-flight calls may take to finish after SIGTERM / ctrl-c.
    #[arg(long, env = "CROSSRANK_GRACE_PERIOD_SECS", default_value_t = 30)]
    grace_period_secs: u64,
    /// Intra-op threads for libtorch (default: one per core).
    #[arg(long, env = "CROSSRANK_THREADS")]
    threads: Option<u16>,
    /// Log line format on stderr: text or json.
    #[arg(long, env = "CROSSRANK_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Log filter (tracing EnvFilter directives).
    #[arg(long, env = "CROSSRANK_LOG", default_value = "info")]
    log_filter: String,
    /// OTLP/gRPC endpoint to export traces to, e.g. http://otel-collector:4317 (unset: no export).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// service.name of the exported spans.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "crossrank")]
    otlp_service_name: String,
    /// Share of root traces sampled (0..1); callers' sampling decisions are followed.
    #[arg(long, env = "CROSSRANK_TRACE_SAMPLING_RATIO", default_value_t = 1.0)]
    trace_sampling_ratio: f64,
    /// Validate the configuration, print it and exit without loading models.
    #[arg(long)]
    check_config: bool,
}

impl ServeArgs {
    fn config(&self) -> anyhow::Result<ServeConfig> {
        let mut config = match &self.config {
            Some(path) => ServeConfig::from_file(path).map_err(anyhow::Error::msg)?,
            None => ServeConfig::default(),
        };
        config.models.extend(self.models.iter().cloned());
        if let Some(n) = self.max_pairs_per_request {
            config.limits.max_pairs_per_request = n;
        }
        if let Some(n) = self.max_text_bytes {
            config.limits.max_text_bytes = n;
        }
        config.check().map_err(anyhow::Error::msg)?;
        if config.models.is_empty() {
            bail!("no models configured: give --model NAME=DIR or --config FILE");
        }
        Ok(config)
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    if args.check_config {
        for m in &config.models {
            println!(
                "model {}: {} on {:?}, dtype {:?}, {:?}",
                m.name,
                m.path.display(),
                m.devices,
                m.dtype,
                m.batching
            );
        }
        println!("limits: {:?}", config.limits);
        return Ok(());
    }
    if let Some(n) = args.threads {
        tch::set_num_threads(i32::from(n.max(1)));
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let trace = TraceOptions {
            filter: args.log_filter.clone(),
            json_logs: args.log_format == "json",
            otlp_endpoint: args.otlp_endpoint.clone(),
            service_name: args.otlp_service_name.clone(),
            sampling_ratio: args.trace_sampling_ratio,
        };
        let _tracing = crossrank::telemetry::tracing::init(&trace).map_err(anyhow::Error::msg)?;
        let listener = bind(&args.host, args.port, "--port").await?;
        println!("crossrank listening on {}", listener.local_addr()?);
        let engine = Engine::new(config.limits);
        let metrics = bind(&args.host, args.metrics_port, "--metrics-port").await?;
        println!(
            "crossrank metrics on http://{}/metrics",
            metrics.local_addr()?
        );
        tokio::spawn(crossrank::telemetry::serve_metrics(metrics, engine.clone()));
        let opts = ServerOptions {
            admin_token: args.admin_token.clone(),
            max_message_bytes: args.max_message_bytes,
            grace_period: Duration::from_secs(args.grace_period_secs),
        };
        serve(listener, engine, config.models, opts, shutdown_signal()).await?;
        println!("crossrank stopped");
        Ok(())
    })
}

/// Listens on `host:port`; errors name the flag that set the port.
async fn bind(host: &str, port: u16, flag: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .with_context(|| format!("--host {host:?} with {flag} {port} is not an address"))?;
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({flag})"))
}

/// SIGTERM or ctrl-c.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
