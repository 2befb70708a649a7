//! `crossrank serve`: the gRPC server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use crossrank::api::keys::ApiKeys;
use crossrank::api::{
    http_tls_config, serve_on, tls_config, HttpOptions, Listeners, ServerOptions, Transport,
};
use crossrank::config::{ModelConfig, ServeConfig};
use crossrank::engine::Engine;
use crossrank::hub::HubConfig;
use crossrank::load_error::LoadFailure;
use crossrank::telemetry::tracing::TraceOptions;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CROSSRANK_HOST", default_value = "0.0.0.0")]
    host: String,
    /// gRPC port (0 picks a free one; the chosen address is printed).
    #[arg(long, env = "CROSSRANK_PORT", default_value_t = 50051)]
    port: u16,
    /// PEM certificate chain for TLS on the gRPC port (with --tls-key).
    #[arg(long, env = "CROSSRANK_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "CROSSRANK_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM roots for client certificates: mutual TLS, clients without a valid one are refused.
    #[arg(long, env = "CROSSRANK_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Serve the REST dialects (Cohere v1/v2, Jina, TEI; see README, "HTTP API") on this port on
    /// --host, with TLS when --tls-cert is given; 0 picks a free one. Off when unset.
    #[arg(long, env = "CROSSRANK_HTTP_PORT")]
    http_port: Option<u16>,
    /// The model of REST calls that name none (TEI's /rerank and /predict) when several are
    /// loaded [default: the config file's `default_model`].
    #[arg(long, env = "CROSSRANK_DEFAULT_MODEL")]
    default_model: Option<String>,
    /// REST connections served at once; further ones wait in the listen backlog.
    #[arg(long, env = "CROSSRANK_HTTP_MAX_CONNECTIONS", default_value_t = 1024)]
    http_max_connections: usize,
    /// Seconds a REST connection may take to send a request's headers (also while idle between
    /// requests, and for the TLS handshake) before it is closed.
    #[arg(long, env = "CROSSRANK_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    http_header_timeout_secs: u64,
    /// Also serve grpc.health.v1 alone, in plaintext, on this port on --host (for Kubernetes
    /// gRPC probes, which cannot speak TLS); 0 picks a free one.
    #[arg(long, env = "CROSSRANK_HEALTH_PORT")]
    health_port: Option<u16>,
    /// Address of the Prometheus endpoint [default: --host].
    #[arg(long, env = "CROSSRANK_METRICS_HOST")]
    metrics_host: Option<String>,
    /// Port of the Prometheus endpoint (GET /metrics); 0 picks a free one.
    #[arg(long, env = "CROSSRANK_METRICS_PORT", default_value_t = 9464)]
    metrics_port: u16,
    /// TOML config file with [[models]] and [limits] (see README).
    #[arg(long, env = "CROSSRANK_CONFIG")]
    config: Option<PathBuf>,
    /// A model to serve: NAME=DIR[,device=cuda:0][,dtype=f16][,replicas=2][,max_batch_tokens=N]
    /// [,max_batch_pairs=N][,max_wait_ms=N][,max_queue_pairs=N][,max_length=N]
    /// [,priority_aging_ms=N][,tenant_max_queue_pairs=N]; DIR may be a Hugging Face id,
    /// org/name[@revision]. priority_aging_ms (default 100; 0: none): a waiting pair's
    /// priority improves one level per this many ms; tenant_max_queue_pairs (default: none):
    /// pairs one tenant may have queued on the model, beyond which its requests are refused.
    /// Repeatable; in the environment, separate several with ';'.
    #[arg(long = "model", env = "CROSSRANK_MODELS", value_delimiter = ';')]
    models: Vec<ModelConfig>,
    /// Keys file for the data plane: every Score/Rerank call on both ports (gRPC and REST) must
    /// send `authorization: Bearer <key>` (or the bare key) with one of its keys. One key per
    /// line, `KEY` or `NAME KEY`: NAME (A-Z a-z 0-9 - _ ., at most 128) is the tenant of the
    /// key's calls, `key-<N>` when not given (N its position from 0); blank lines and `#`
    /// comments skipped; reread on SIGHUP. Unset: no key needed, and a call's tenant is its
    /// `x-crossrank-tenant` header.
    #[arg(long, env = "CROSSRANK_API_KEYS_FILE", value_name = "FILE")]
    api_keys_file: Option<PathBuf>,
    /// Token required (as `authorization: Bearer …`) for LoadModel / UnloadModel; unset disables them.
    #[arg(long, env = "CROSSRANK_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// LoadModel loads only model directories under DIR (relative paths are taken from it);
    /// unset disables LoadModel.
    #[arg(long, env = "CROSSRANK_MODEL_ROOT", value_name = "DIR")]
    model_root: Option<PathBuf>,
    /// LoadModel may also fetch Hugging Face ids (org/name[@revision]) into the Hugging Face
    /// cache (HF_HOME / HF_HUB_CACHE); needs --admin-token.
    #[arg(long, env = "CROSSRANK_ALLOW_HUB_LOAD")]
    allow_hub_load: bool,
    /// Pairs or documents per request [default: 2048, or the config file's].
    #[arg(long, env = "CROSSRANK_MAX_PAIRS_PER_REQUEST")]
    max_pairs_per_request: Option<usize>,
    /// Bytes per text (query, document, text_a, text_b) [default: 65536, or the config file's].
    #[arg(long, env = "CROSSRANK_MAX_TEXT_BYTES")]
    max_text_bytes: Option<usize>,
    /// Bytes per `request_id` or `Document.id` [default: 256, or the config file's].
    #[arg(long, env = "CROSSRANK_MAX_ID_BYTES")]
    max_id_bytes: Option<usize>,
    /// Bytes of text tokenized at once over all requests [default: 64 MiB, or the config file's].
    #[arg(long, env = "CROSSRANK_MAX_TOKENIZING_BYTES")]
    max_tokenizing_bytes: Option<usize>,
    /// ScoreStream requests scored at once per stream [default: 8, or the config file's].
    #[arg(long, env = "CROSSRANK_MAX_STREAM_IN_FLIGHT")]
    max_stream_in_flight: Option<usize>,
    /// Seconds a stream may send nothing while nothing is scored [default: 300, or the config file's].
    #[arg(long, env = "CROSSRANK_STREAM_IDLE_TIMEOUT_SECS")]
    stream_idle_timeout_secs: Option<u64>,
    /// The largest (least urgent) `priority` a request may give, 0 being the highest; beyond
    /// is INVALID_ARGUMENT (HTTP 400/422) [default: 9, or the config file's; at most 1000].
    #[arg(long, env = "CROSSRANK_MAX_PRIORITY")]
    max_priority: Option<u32>,
    /// A tenant counted under its own name in the per-tenant metrics (tenant_pairs_total,
    /// tenant_rejected_total); others count as `(other)`, calls without one as `(none)`.
    /// Repeatable, added to the config file's `metric_tenants`; at most 64. In the environment,
    /// separate several with ','.
    #[arg(
        long = "metric-tenant",
        env = "CROSSRANK_METRIC_TENANTS",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    metric_tenants: Vec<String>,
    /// Largest request message in bytes [default: what the request limits allow, at most 64 MiB].
    #[arg(long, env = "CROSSRANK_MAX_MESSAGE_BYTES")]
    max_message_bytes: Option<usize>,
    /// HTTP/2 streams (concurrent calls) per connection.
    #[arg(long, env = "CROSSRANK_MAX_CONCURRENT_STREAMS", default_value_t = 256)]
    max_concurrent_streams: u32,
    /// Calls served at once per connection; further calls wait.
    #[arg(
        long,
        env = "CROSSRANK_CONCURRENCY_PER_CONNECTION",
        default_value_t = 256
    )]
    concurrency_per_connection: usize,
    /// Seconds between HTTP/2 keepalive PINGs (0: none).
    #[arg(long, env = "CROSSRANK_HTTP2_KEEPALIVE_SECS", default_value_t = 60)]
    http2_keepalive_secs: u64,
    /// Seconds to wait for a PING's answer before closing the connection.
    #[arg(
        long,
        env = "CROSSRANK_HTTP2_KEEPALIVE_TIMEOUT_SECS",
        default_value_t = 20
    )]
    http2_keepalive_timeout_secs: u64,
    /// TCP keepalive idle time in seconds (0: off).
    #[arg(long, env = "CROSSRANK_TCP_KEEPALIVE_SECS", default_value_t = 60)]
    tcp_keepalive_secs: u64,
    /// Streams reset because of client errors before the connection is closed (reset floods).
    #[arg(
        long,
        env = "CROSSRANK_MAX_LOCAL_RESET_STREAMS",
        default_value_t = 1024
    )]
    max_local_reset_streams: usize,
    /// Client stream resets pending acceptance before the connection is closed.
    #[arg(
        long,
        env = "CROSSRANK_MAX_PENDING_RESET_STREAMS",
        default_value_t = 64
    )]
    max_pending_reset_streams: usize,
    /// Deadline in seconds of Score and Rerank calls that send no grpc-timeout.
    #[arg(long, env = "CROSSRANK_DEFAULT_TIMEOUT_SECS", default_value_t = 300)]
    default_timeout_secs: u64,
    /// MiB of request messages being received at once over all calls (each counts its declared
    /// length from its header until it is whole; see README, "Limits"); a call that would pass it
    /// is refused with RESOURCE_EXHAUSTED. Below --max-message-bytes, the largest messages are
    /// always refused.
    #[arg(long, env = "CROSSRANK_MAX_RECEIVING_MIB", default_value_t = 256)]
    max_receiving_mib: usize,
    /// Close connections gracefully after this many seconds (0: never); spreads long-lived gRPC
    /// connections over new pods.
    #[arg(long, env = "CROSSRANK_MAX_CONNECTION_AGE_SECS", default_value_t = 0)]
    max_connection_age_secs: u64,
    /// Seconds in-flight calls may take to finish after SIGTERM / ctrl-c.
    #[arg(long, env = "CROSSRANK_GRACE_PERIOD_SECS", default_value_t = 30)]
    grace_period_secs: u64,
    /// Intra-op threads for libtorch (default: one per core).
    #[arg(long, env = "CROSSRANK_THREADS")]
    threads: Option<u16>,
    /// Seconds between returns of freed heap memory to the system (jemalloc's purge; 0: never).
    /// Between them the allocator keeps freed pages for the next batches, so a burst of large
    /// requests raises the RSS until the next release.
    #[arg(long, env = "CROSSRANK_MALLOC_TRIM_SECS", default_value_t = 10)]
    malloc_trim_secs: u64,
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
    #[command(flatten)]
    hub: super::fetch::HubArgs,
    /// When a model configured at start-up fails to load, log it and serve the others (health
    /// "" stays NOT_SERVING). Without it the server stops and exits with status 1, naming the
    /// model.
    #[arg(long, env = "CROSSRANK_KEEP_SERVING_ON_LOAD_FAILURE")]
    keep_serving_on_load_failure: bool,
}

impl ServeArgs {
    fn config(&self) -> anyhow::Result<ServeConfig> {
        let mut config = match &self.config {
            Some(path) => ServeConfig::from_file(path)?,
            None => ServeConfig::default(),
        };
        config.models.extend(self.models.iter().cloned());
        if let Some(n) = self.max_pairs_per_request {
            config.limits.max_pairs_per_request = n;
        }
        let l = &mut config.limits;
        let set = |v: Option<usize>, field: &mut usize| *field = v.unwrap_or(*field);
        set(self.max_text_bytes, &mut l.max_text_bytes);
        set(self.max_id_bytes, &mut l.max_id_bytes);
        set(self.max_tokenizing_bytes, &mut l.max_tokenizing_bytes);
        set(self.max_stream_in_flight, &mut l.max_stream_in_flight);
        l.stream_idle_timeout_secs = self
            .stream_idle_timeout_secs
            .unwrap_or(l.stream_idle_timeout_secs);
        l.max_priority = self.max_priority.unwrap_or(l.max_priority);
        for t in &self.metric_tenants {
            if !config.metric_tenants.contains(t) {
                config.metric_tenants.push(t.clone());
            }
        }
        config.check()?;
        if config.models.is_empty() {
            bail!(
                "no models configured: give --model NAME=DIR (or NAME=org/name) or --config FILE"
            );
        }
        Ok(config)
    }
}

impl ServeArgs {
    fn transport(&self) -> anyhow::Result<Transport> {
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        if self.max_concurrent_streams == 0 || self.concurrency_per_connection == 0 {
            bail!("--max-concurrent-streams and --concurrency-per-connection must be positive");
        }
        if self.http_max_connections == 0 || self.http_header_timeout_secs == 0 {
            bail!("--http-max-connections and --http-header-timeout-secs must be positive");
        }
        if self.default_timeout_secs == 0 || self.http2_keepalive_timeout_secs == 0 {
            bail!("--default-timeout-secs and --http2-keepalive-timeout-secs must be positive");
        }
        if self
            .max_message_bytes
            .is_some_and(|n| !(1024..=1 << 30).contains(&n))
        {
            bail!("--max-message-bytes must be between 1 KiB and 1 GiB");
        }
        if !(1..=1 << 20).contains(&self.max_receiving_mib) {
            bail!(
                "--max-receiving-mib must be between 1 and 1048576; got {}",
                self.max_receiving_mib
            );
        }
        Ok(Transport {
            max_concurrent_streams: self.max_concurrent_streams,
            concurrency_limit_per_connection: self.concurrency_per_connection,
            http2_keepalive_interval: secs(self.http2_keepalive_secs),
            http2_keepalive_timeout: Duration::from_secs(self.http2_keepalive_timeout_secs),
            tcp_keepalive: secs(self.tcp_keepalive_secs),
            max_local_reset_streams: self.max_local_reset_streams,
            max_pending_accept_reset_streams: self.max_pending_reset_streams,
            default_timeout: Duration::from_secs(self.default_timeout_secs),
            max_receiving_bytes: self.max_receiving_mib.saturating_mul(1 << 20),
            max_connection_age: secs(self.max_connection_age_secs),
        })
    }
}

/// How long shutdown waits for blocking work after the grace period (README).
const SHUTDOWN_BOUND: Duration = Duration::from_secs(5);

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let transport = args.transport()?;
    let (tls, http_tls) = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let ca = args.tls_client_ca.as_deref();
            let grpc = tls_config(cert, key, ca).map_err(anyhow::Error::msg)?;
            let http = http_tls_config(cert, key, ca).map_err(anyhow::Error::msg)?;
            (Some(grpc), Some(http))
        }
        _ => (None, None),
    };
    let keys_file = args
        .api_keys_file
        .as_ref()
        .or(config.api_keys_file.as_ref());
    let api_keys = match keys_file {
        Some(path) => Some(Arc::new(ApiKeys::load(path).map_err(anyhow::Error::msg)?)),
        None => None,
    };
    if args.check_config {
        for m in &config.models {
            println!(
                "model {}: {} on {:?}, dtype {:?}, {:?}",
                m.name, m.source, m.placement, m.dtype, m.batching
            );
        }
        println!("limits: {:?}", config.limits);
        println!("metric tenants: {:?}", config.metric_tenants);
        if let Some(keys) = &api_keys {
            println!("api keys: {} from {}", keys.len(), keys.path().display());
        }
        return Ok(());
    }
    environment_defaults();
    if let Some(n) = args.threads {
        tch::set_num_threads(i32::from(n.max(1)));
    }
    if args.malloc_trim_secs > 0 {
        trim_periodically(Duration::from_secs(args.malloc_trim_secs));
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = runtime.block_on(async move {
        let trace = TraceOptions {
            filter: args.log_filter.clone(),
            json_logs: args.log_format == "json",
            otlp_endpoint: args.otlp_endpoint.clone(),
            service_name: args.otlp_service_name.clone(),
            sampling_ratio: args.trace_sampling_ratio,
        };
        let _tracing = crossrank::telemetry::tracing::init(&trace).map_err(anyhow::Error::msg)?;
        if let Some(keys) = &api_keys {
            crossrank::api::keys::reload_on_hangup(keys.clone()).context("handling SIGHUP")?;
            tracing::info!(keys = keys.len(), file = %keys.path().display(), "API keys required");
        }
        let listener = bind(&args.host, args.port, "--port").await?;
        println!("crossrank listening on {}", listener.local_addr()?);
        crossrank::telemetry::metrics::metrics().set_metric_tenants(&config.metric_tenants);
        // the Hub's settings, read once: the environment's, with the flags' transfer bounds
        let hub = HubConfig {
            transfer: args.hub.transfer(),
            ..HubConfig::from_env()
        };
        let engine = Engine::with_hub(config.limits, hub);
        let metrics_host = args.metrics_host.as_deref().unwrap_or(&args.host);
        let metrics = bind(metrics_host, args.metrics_port, "--metrics-port").await?;
        println!(
            "crossrank metrics on http://{}/metrics",
            metrics.local_addr()?
        );
        tokio::spawn(crossrank::telemetry::serve_metrics(metrics, engine.clone()));
        let opts = ServerOptions {
            admin_token: args.admin_token.clone(),
            model_root: args.model_root.clone(),
            hub_load: args.allow_hub_load,
            max_message_bytes: args.max_message_bytes,
            grace_period: Duration::from_secs(args.grace_period_secs),
            transport,
            tls,
            http: HttpOptions {
                default_model: args.default_model.clone().or(config.default_model.clone()),
                max_connections: args.http_max_connections,
                header_timeout: Duration::from_secs(args.http_header_timeout_secs),
            },
            http_tls,
            api_keys,
        };
        let health = match args.health_port {
            Some(port) => {
                let l = bind(&args.host, port, "--health-port").await?;
                println!("crossrank health on {}", l.local_addr()?);
                Some(l)
            }
            None => None,
        };
        let http_port = args.http_port.or(config.http_port);
        let http = match http_port {
            Some(port) => {
                let l = bind(&args.host, port, "--http-port").await?;
                let scheme = if opts.tls.is_some() { "https" } else { "http" };
                println!("crossrank http on {scheme}://{}", l.local_addr()?);
                Some(l)
            }
            None => None,
        };
        let listeners = Listeners {
            grpc: listener,
            health,
            http,
        };
        let failed = Arc::new(Mutex::new(None));
        let names: Vec<String> = config.models.iter().map(|m| m.name.clone()).collect();
        let keep = args.keep_serving_on_load_failure;
        let stop = stop_when(engine.clone(), names, keep, failed.clone());
        serve_on(listeners, engine, config.models, opts, stop)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        println!("crossrank stopped");
        let failure = failed.lock().unwrap_or_else(|e| e.into_inner()).take();
        match failure {
            Some(failure) => {
                let message = format!(
                    "{failure}; so the server stopped (--keep-serving-on-load-failure serves \
                     the other models instead)"
                );
                bail!(
                    "{}",
                    message.split_whitespace().collect::<Vec<_>>().join(" ")
                )
            }
            None => Ok(()),
        }
    });
    // Blocking work still running (a model load inside libtorch, a pair being tokenized) gets this long
    // after the grace period; the process then exits regardless.
    runtime.shutdown_timeout(SHUTDOWN_BOUND);
    result
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

/// Returns freed heap memory to the system every `period`, from a thread of its own (the
/// allocator keeps freed pages for reuse; see [`super::allocator`]).
fn trim_periodically(period: Duration) {
    let _ = std::thread::Builder::new()
        .name("memory-release".into())
        .spawn(move || loop {
            std::thread::sleep(period);
            super::allocator::release_free_memory();
        });
}

/// Environment settings the server runs with unless the operator set them (or the listed
/// alternatives): name, value, alternatives.
/// - `GOMP_SPINCOUNT`: how long an idle OpenMP thread spins before it sleeps. libgomp's default
///   (300,000 iterations when cores are not oversubscribed) kept the idle inference threads
///   spinning after every small operator, taking the cores the tokenizer and gRPC needed: 39%
///   of a null model's server CPU in perf.
/// - `TORCH_CUDNN_SDPA_DEPRIORITIZED`: libtorch (2.11 and later) on Hopper sends masked f16/bf16
///   attention to cuDNN first, which builds an execution plan for every new (batch, length)
///   shape, and every padded batch is a new shape: MiniLM f16 on an H200 served 1,274 pairs/s
///   with cuDNN first and 11,086 without (README, GPU). No effect on the CPU.
const ENV_DEFAULTS: [(&str, &str, &[&str]); 2] = [
    ("GOMP_SPINCOUNT", "10000", &["OMP_WAIT_POLICY"]),
    ("TORCH_CUDNN_SDPA_DEPRIORITIZED", "1", &[]),
];

/// libgomp and libtorch read [`ENV_DEFAULTS`] when they are loaded or once per process, before
/// `main` can set them: the server re-executes itself once with the missing ones set (same
/// pid, same arguments). If that fails it goes on without them and says so.
fn environment_defaults() {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let set = |name: &str| std::env::var_os(name).is_some();
        let missing: Vec<(&str, &str)> = ENV_DEFAULTS
            .iter()
            .filter(|(name, _, alternatives)| !set(name) && !alternatives.iter().any(|a| set(a)))
            .map(|&(name, value, _)| (name, value))
            .collect();
        if missing.is_empty() {
            return;
        }
        let err = std::process::Command::new("/proc/self/exe")
            .args(std::env::args_os().skip(1))
            .envs(missing.iter().copied())
            .exec();
        eprintln!(
            "warning: could not re-execute with {missing:?} set ({err}); going on without them"
        );
    }
}

/// The first start-up model that failed to load.
type Failure = Arc<Mutex<Option<LoadFailure>>>;

/// SIGTERM or ctrl-c; or, unless `keep_serving`, the first of the start-up models `names` to
/// fail its load, recorded in `failed`.
async fn stop_when(engine: Arc<Engine>, names: Vec<String>, keep_serving: bool, failed: Failure) {
    let load_failure = async {
        if !keep_serving {
            if let Some(failure) = engine.registry.first_load_failure(&names).await {
                tracing::error!(model = %failure.model, "a start-up model failed to load: stopping");
                *failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(failure);
                return;
            }
        }
        std::future::pending().await
    };
    tokio::select! {
        () = shutdown_signal() => {}
        () = load_failure => {}
    }
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
