//! `crossrank health`: asks a server's grpc.health.v1 for a service's status; exits 0 only when
//! it is SERVING. For `helm test`, container health checks and scripts; speaks TLS (and mutual
//! TLS) to an https:// address.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

#[derive(Args)]
pub struct HealthArgs {
    /// Server address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// Service to check: "" (every model ready), a model name, or crossrank.liveness.
    #[arg(long, default_value = "")]
    service: String,
    /// Give up after this many seconds (connecting included).
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
    /// PEM roots that the server's certificate must chain to (TLS; use an https:// --addr).
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// PEM client certificate and key, for servers that require mutual TLS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Name the server's certificate must carry [default: the --addr host].
    #[arg(long)]
    tls_domain: Option<String>,
}

impl HealthArgs {
    fn tls(&self) -> anyhow::Result<Option<ClientTlsConfig>> {
        if !self.addr.starts_with("https://") {
            return Ok(None);
        }
        let read =
            |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = &self.tls_ca {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        if let Some(domain) = &self.tls_domain {
            tls = tls.domain_name(domain.clone());
        }
        Ok(Some(tls))
    }
}

pub fn run(args: HealthArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let timeout = Duration::from_secs(args.timeout_secs);
    let status = runtime
        .block_on(async { tokio::time::timeout(timeout, check(&args)).await })
        .map_err(|_| anyhow::anyhow!("no answer from {} within {timeout:?}", args.addr))??;
    println!("{:?}: {}", args.service, status.as_str_name());
    if status != ServingStatus::Serving {
        bail!("service {:?} is {}", args.service, status.as_str_name());
    }
    Ok(())
}

async fn check(args: &HealthArgs) -> anyhow::Result<ServingStatus> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(args.addr.clone())
        .with_context(|| format!("--addr {:?} is not a URI", args.addr))?;
    if let Some(tls) = args.tls()? {
        endpoint = endpoint.tls_config(tls)?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("connecting to {}", args.addr))?;
    let request = HealthCheckRequest {
        service: args.service.clone(),
    };
    let response = HealthClient::new(channel)
        .check(request)
        .await
        .map_err(|s| anyhow::anyhow!("health check failed: {:?}: {}", s.code(), s.message()))?;
    Ok(response.into_inner().status())
}
