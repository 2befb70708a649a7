//! Server settings: limits of the transport (HTTP/2, TCP, TLS) and of model management.

use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;
use tonic::transport::ServerTlsConfig;

/// Transport settings.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub admin_token: Option<String>,
    /// LoadModel loads only model directories under this one; unset disables LoadModel.
    pub model_root: Option<std::path::PathBuf>,
    /// LoadModel may fetch Hugging Face ids (`org/name[@revision]`) from the Hub.
    pub hub_load: bool,
    /// Largest request message, in bytes; `None`: what the request limits allow
    /// ([`RequestLimits::max_request_bytes`](crate::config::RequestLimits::max_request_bytes)),
    /// at most 64 MiB.
    pub max_message_bytes: Option<usize>,
    /// How long in-flight calls may run after shutdown begins.
    pub grace_period: Duration,
    pub transport: Transport,
    /// TLS on the gRPC port (and mutual TLS when it names client roots).
    pub tls: Option<ServerTlsConfig>,
    /// The REST port's settings.
    pub http: HttpOptions,
    /// TLS on the REST port: the gRPC port's certificate and client roots, as rustls takes them.
    pub http_tls: Option<std::sync::Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Keys every scoring call on either port must present (`--api-keys-file`); None: open.
    pub api_keys: Option<std::sync::Arc<super::keys::ApiKeys>>,
}

/// Settings of the REST port (`--http-port`).
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// The model of calls that name none (TEI's routes) when several are loaded.
    pub default_model: Option<String>,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers (also while idle between
    /// requests), after which it is closed.
    pub header_timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            default_model: None,
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            admin_token: None,
            model_root: None,
            hub_load: false,
            max_message_bytes: None,
            grace_period: Duration::from_secs(30),
            transport: Transport::default(),
            tls: None,
            http: HttpOptions::default(),
            http_tls: None,
            api_keys: None,
        }
    }
}

/// HTTP/2 and TCP limits of the gRPC port (README, "Limits and security").
#[derive(Debug, Clone, PartialEq)]
pub struct Transport {
    /// Concurrent HTTP/2 streams (calls) per connection.
    pub max_concurrent_streams: u32,
    /// Calls served at once per connection; further calls wait.
    pub concurrency_limit_per_connection: usize,
    /// HTTP/2 PING interval, and how long to wait for its answer before closing the connection.
    pub http2_keepalive_interval: Option<Duration>,
    pub http2_keepalive_timeout: Duration,
    pub tcp_keepalive: Option<Duration>,
    /// Streams the server may reset because of the client's errors before it closes the
    /// connection (hyper's defence against reset floods), and pending client resets.
    pub max_local_reset_streams: usize,
    pub max_pending_accept_reset_streams: usize,
    /// Deadline of unary calls that carry no `grpc-timeout`; also how long any request message
    /// may take to arrive whole from its first byte, in calls without one.
    pub default_timeout: Duration,
    /// Bytes of request messages being received at once, over all calls (a message counts from
    /// its first byte until it is whole); beyond, the call that would pass it is refused.
    pub max_receiving_bytes: usize,
    /// Connections older than this are closed gracefully (lets Kubernetes spread load).
    pub max_connection_age: Option<Duration>,
}

impl Default for Transport {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 256,
            concurrency_limit_per_connection: 256,
            http2_keepalive_interval: Some(Duration::from_secs(60)),
            http2_keepalive_timeout: Duration::from_secs(20),
            tcp_keepalive: Some(Duration::from_secs(60)),
            max_local_reset_streams: 1024,
            max_pending_accept_reset_streams: 64,
            default_timeout: Duration::from_secs(300),
            max_receiving_bytes: 256 << 20,
            max_connection_age: None,
        }
    }
}

impl Transport {
    pub(super) fn builder(&self) -> tonic::transport::Server {
        let b = tonic::transport::Server::builder()
            .max_concurrent_streams(self.max_concurrent_streams)
            .concurrency_limit_per_connection(self.concurrency_limit_per_connection)
            .http2_keepalive_interval(self.http2_keepalive_interval)
            .http2_keepalive_timeout(Some(self.http2_keepalive_timeout))
            .tcp_keepalive(self.tcp_keepalive)
            .http2_max_local_error_reset_streams(Some(self.max_local_reset_streams))
            .http2_max_pending_accept_reset_streams(Some(self.max_pending_accept_reset_streams));
        match self.max_connection_age {
            Some(age) => b
                .max_connection_age(age)
                .max_connection_age_grace(Duration::from_secs(30)),
            None => b,
        }
    }
}

/// TLS from PEM files: the server's certificate chain and key, and optionally the roots that
/// client certificates must chain to (mutual TLS: clients without one are refused).
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
    client_ca: Option<&std::path::Path>,
) -> Result<ServerTlsConfig, String> {
    let read = |p: &std::path::Path, flag: &str| {
        std::fs::read(p).map_err(|e| format!("{flag} {}: {e}", p.display()))
    };
    let identity =
        tonic::transport::Identity::from_pem(read(cert, "--tls-cert")?, read(key, "--tls-key")?);
    let config = ServerTlsConfig::new().identity(identity);
    Ok(match client_ca {
        Some(ca) => config.client_ca_root(tonic::transport::Certificate::from_pem(read(
            ca,
            "--tls-client-ca",
        )?)),
        None => config,
    })
}

/// TLS of the REST port from the same PEM files as [`tls_config`], as rustls takes them (ring,
/// TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`); with `client_ca`, clients without a certificate
/// that chains to it are refused in the handshake.
pub fn http_tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
    client_ca: Option<&std::path::Path>,
) -> Result<std::sync::Arc<rustls::ServerConfig>, String> {
    use std::sync::Arc;
    let certs = read_certs(cert, "--tls-cert")?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: no PEM private key ({e})", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(ca, "--tls-client-ca")? {
                roots
                    .add(c)
                    .map_err(|e| format!("--tls-client-ca {}: {e}", ca.display()))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| format!("--tls-client-ca {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert {} with --tls-key: {e}", cert.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Every certificate of a PEM file (at least one).
fn read_certs(path: &std::path::Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bad = |e: &dyn std::fmt::Display| format!("{flag} {}: {e}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    if certs.is_empty() {
        return Err(bad(&"no PEM certificate in the file"));
    }
    Ok(certs)
}
