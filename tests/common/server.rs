//! A real crossrank server on 127.0.0.1:0 for tests, with generated clients.

use std::net::SocketAddr;
use std::path::Path;

use crossrank::api::pb::cross_encoder_client::CrossEncoderClient;
use crossrank::api::pb::models_client::ModelsClient;
use crossrank::api::{serve_on, Listeners, ServeFailed, ServerOptions};
use crossrank::config::{ModelConfig, RequestLimits};
use crossrank::engine::Engine;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

pub struct TestServer {
    pub addr: SocketAddr,
    /// The REST port, when started with [`TestServer::start_http`].
    pub http_addr: Option<SocketAddr>,
    /// The server's core, for observing queues from tests.
    pub engine: std::sync::Arc<Engine>,
    pub channel: Channel,
    shutdown: Option<oneshot::Sender<()>>,
    pub handle: tokio::task::JoinHandle<Result<(), ServeFailed>>,
}

/// `NAME=DIR,...` with DIR a fixture model name.
pub fn model(spec: &str) -> ModelConfig {
    let (name, rest) = spec.split_once('=').unwrap();
    let (dir, opts) = rest.split_once(',').map_or((rest, ""), |(d, o)| (d, o));
    let path = super::fixtures().join(dir);
    let flag = if opts.is_empty() {
        format!("{name}={}", path.display())
    } else {
        format!("{name}={},{opts}", path.display())
    };
    flag.parse().unwrap()
}

/// `NAME[,OPTIONS]` on the weightless fake model (no fixture), written into a directory that
/// lives as long as the returned guard.
pub fn fake(spec: &str) -> (ModelConfig, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    super::fake_model::write(dir.path(), 0);
    let (name, opts) = spec.split_once(',').map_or((spec, ""), |(n, o)| (n, o));
    let sep = if opts.is_empty() { "" } else { "," };
    let config = format!("{name}={}{sep}{opts}", dir.path().display());
    (config.parse().unwrap(), dir)
}

pub fn model_at(name: &str, dir: &Path) -> ModelConfig {
    format!("{name}={}", dir.display()).parse().unwrap()
}

impl TestServer {
    /// Starts a server and returns once health "" is SERVING (every model loaded and warmed up).
    pub async fn start(
        models: Vec<ModelConfig>,
        opts: ServerOptions,
        limits: RequestLimits,
    ) -> Self {
        let server = Self::start_unready(models, opts, limits).await;
        server.wait_serving("").await;
        server
    }

    /// [`start`](Self::start) with the REST port on 127.0.0.1:0 too.
    pub async fn start_http(
        models: Vec<ModelConfig>,
        opts: ServerOptions,
        limits: RequestLimits,
    ) -> Self {
        let server = Self::start_on(models, opts, limits, true).await;
        server.wait_serving("").await;
        server
    }

    pub async fn start_unready(
        models: Vec<ModelConfig>,
        opts: ServerOptions,
        limits: RequestLimits,
    ) -> Self {
        Self::start_on(models, opts, limits, false).await
    }

    async fn start_on(
        models: Vec<ModelConfig>,
        opts: ServerOptions,
        limits: RequestLimits,
        http: bool,
    ) -> Self {
        let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
        let listener = bind().await.unwrap();
        let addr = listener.local_addr().unwrap();
        let http = if http {
            Some(bind().await.unwrap())
        } else {
            None
        };
        let http_addr = http.as_ref().map(|l| l.local_addr().unwrap());
        let (tx, rx) = oneshot::channel();
        let engine = Engine::new(limits);
        let listeners = Listeners {
            grpc: listener,
            health: None,
            http,
        };
        let handle = tokio::spawn(serve_on(listeners, engine.clone(), models, opts, async {
            let _ = rx.await;
        }));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self {
            addr,
            http_addr,
            engine,
            channel,
            shutdown: Some(tx),
            handle,
        }
    }

    pub async fn simple(models: &[&str]) -> Self {
        Self::start(
            models.iter().map(|m| model(m)).collect(),
            ServerOptions::default(),
            RequestLimits::default(),
        )
        .await
    }

    pub fn client(&self) -> CrossEncoderClient<Channel> {
        CrossEncoderClient::new(self.channel.clone())
    }

    pub fn models(&self) -> ModelsClient<Channel> {
        ModelsClient::new(self.channel.clone())
    }

    /// Waits on the health Watch stream until `service` is SERVING.
    pub async fn wait_serving(&self, service: &str) {
        let mut health = HealthClient::new(self.channel.clone());
        let req = HealthCheckRequest {
            service: service.into(),
        };
        let mut stream = health.watch(req).await.unwrap().into_inner();
        while let Some(msg) = stream.message().await.unwrap() {
            if msg.status == 1 {
                return;
            }
        }
        panic!("health watch for {service:?} ended before SERVING");
    }

    /// Waits until `service` reports `status` (1 SERVING, 2 NOT_SERVING).
    pub async fn wait_health(&self, service: &str, status: i32) {
        super::wait_health(self.channel.clone(), service, status).await;
    }

    pub async fn health(&self, service: &str) -> i32 {
        let mut health = HealthClient::new(self.channel.clone());
        match health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
        {
            Ok(r) => r.into_inner().status,
            Err(s) => -(s.code() as i32),
        }
    }

    /// Waits (polling the queue) until model `name` has at least `n` pairs queued.
    pub async fn wait_queued(&self, name: &str, n: usize) {
        let queue = self.engine.registry.get(name).unwrap().queue.clone();
        tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while queue.depth() < n {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("pairs never reached the queue");
    }

    /// Triggers graceful shutdown and waits for `serve` to return.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.handle.await.unwrap().unwrap();
    }

    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
