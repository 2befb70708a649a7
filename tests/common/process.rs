//! `crossrank serve` as a child process, for tests that watch the server's own memory (/proc).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use tonic::transport::Channel;

pub struct ServerProcess {
    pub child: Child,
    pub addr: String,
    pub metrics_addr: String,
    /// The plaintext health-only port, with --health-port.
    pub health_addr: Option<String>,
    /// The REST port (`host:port`), with --http-port.
    pub http_addr: Option<String>,
    pub channel: Channel,
    pub log: PathBuf,
    _logs: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts `crossrank serve` on 127.0.0.1:0 with `args`, and returns once health "" is SERVING.
    pub async fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[]).await
    }

    pub async fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_full(args, env, None).await
    }

    /// With `tls`, the client channel speaks TLS to https://localhost:PORT; readiness is then
    /// watched on the plaintext health port (give --health-port 0).
    pub async fn start_full(
        args: &[&str],
        env: &[(&str, &str)],
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Self {
        let server = Self::start_unready(args, env, tls).await;
        let mut health =
            tonic_health::pb::health_client::HealthClient::new(server.health_channel().await);
        let mut watch = health
            .watch(tonic_health::pb::HealthCheckRequest::default())
            .await
            .unwrap()
            .into_inner();
        while watch.message().await.unwrap().unwrap().status != 1 {}
        server
    }

    /// `crossrank serve --model SPEC --http-port 0 --api-keys-file DIR/keys` (`keys`, one per
    /// line), plus `extra` arguments.
    pub async fn start_with_keys(
        spec: &str,
        keys: &[&str],
        dir: &std::path::Path,
        extra: &[&str],
    ) -> Self {
        let file = dir.join("keys");
        std::fs::write(&file, keys.join("\n") + "\n").unwrap();
        let file = file.display().to_string();
        let mut args = vec![
            "--model",
            spec,
            "--http-port",
            "0",
            "--api-keys-file",
            &file,
        ];
        args.extend_from_slice(extra);
        Self::start(&args).await
    }

    /// [`start_full`](Self::start_full), returning once the server listens, before its models
    /// are loaded.
    pub async fn start_unready(
        args: &[&str],
        env: &[(&str, &str)],
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Self {
        let logs = tempfile::tempdir().unwrap();
        let log = logs.path().join("stderr.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_crossrank"))
            .args([
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--metrics-port",
                "0",
            ])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next = || lines.next().unwrap().unwrap();
        let first = next();
        let addr = first
            .strip_prefix("crossrank listening on ")
            .unwrap_or_else(|| panic!("unexpected: {first}"))
            .to_owned();
        let second = next();
        let metrics_addr = second
            .strip_prefix("crossrank metrics on http://")
            .and_then(|s| s.strip_suffix("/metrics"))
            .unwrap_or_else(|| panic!("unexpected: {second}"))
            .to_owned();
        let health_addr = args.contains(&"--health-port").then(|| {
            let line = next();
            line.strip_prefix("crossrank health on ")
                .unwrap_or_else(|| panic!("unexpected: {line}"))
                .to_owned()
        });
        let http_addr = args.contains(&"--http-port").then(|| {
            let line = next();
            line.strip_prefix("crossrank http on http://")
                .or_else(|| line.strip_prefix("crossrank http on https://"))
                .unwrap_or_else(|| panic!("unexpected: {line}"))
                .to_owned()
        });
        std::thread::spawn(move || lines.for_each(drop));
        let channel = match &tls {
            Some(tls) => {
                let port = addr.rsplit(':').next().unwrap();
                Channel::from_shared(format!("https://localhost:{port}"))
                    .unwrap()
                    .tls_config(tls.clone())
                    .unwrap()
                    .connect()
                    .await
                    .unwrap()
            }
            None => Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .unwrap(),
        };
        Self {
            child,
            addr,
            metrics_addr,
            health_addr,
            http_addr,
            channel,
            log,
            _logs: logs,
        }
    }

    fn status_kib(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in /proc/PID/status"))
    }

    /// The REST port's address; panics when the server was started without --http-port.
    pub fn http(&self) -> &str {
        self.http_addr
            .as_deref()
            .expect("started without --http-port")
    }

    /// File descriptors the server has open (sockets included).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, |d| d.count())
    }

    /// Resident memory now, in MiB.
    pub fn rss_mib(&self) -> f64 {
        self.status_kib("VmRSS:") as f64 / 1024.0
    }

    /// Peak resident memory since the last [`reset_peak`](Self::reset_peak), in MiB.
    pub fn peak_mib(&self) -> f64 {
        self.status_kib("VmHWM:") as f64 / 1024.0
    }

    /// Resets the kernel's peak-RSS mark to the current RSS (clear_refs 5).
    pub fn reset_peak(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5").unwrap();
    }

    /// The Prometheus text of the metrics endpoint.
    /// Runs `call` with the peak RSS reset first; returns its result, the time it took and the
    /// peak RSS above the RSS before it, in MiB.
    #[allow(dead_code)]
    pub async fn measured<T>(
        &self,
        call: impl std::future::Future<Output = T>,
    ) -> (T, std::time::Duration, f64) {
        let before = self.rss_mib();
        self.reset_peak();
        let start = std::time::Instant::now();
        let out = call.await;
        let took = start.elapsed();
        (out, took, self.peak_mib() - before)
    }

    pub async fn metrics(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(&self.metrics_addr)
            .await
            .unwrap();
        let req = format!(
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.metrics_addr
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// Waits until `service` reports `status` (1 SERVING, 2 NOT_SERVING).
    pub async fn wait_health(&self, service: &str, status: i32) {
        super::wait_health(self.channel.clone(), service, status).await;
    }

    /// The plaintext health port's channel when there is one, else the gRPC channel.
    async fn health_channel(&self) -> Channel {
        match &self.health_addr {
            Some(h) => Channel::from_shared(format!("http://{h}"))
                .unwrap()
                .connect()
                .await
                .unwrap(),
            None => self.channel.clone(),
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
