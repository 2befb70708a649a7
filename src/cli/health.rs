//! `crossrank health`: asks a server's grpc.health.v1 for a service's status; exits 0 only when
//! it is SERVING. For `helm test`, container health checks and scripts.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
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
    let channel = tonic::transport::Endpoint::from_shared(args.addr.clone())
        .with_context(|| format!("--addr {:?} is not a URI", args.addr))?
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
