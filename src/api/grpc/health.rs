//! grpc.health.v1 driven by model state: "" is SERVING once every configured model is ready;
//! each model name is its own service; [`LIVENESS`] is SERVING for as long as the process
//! answers, whatever the models do (for liveness probes that must not restart a loading pod).

use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
}

/// Service name of the liveness check.
pub const LIVENESS: &str = "crossrank.liveness";

impl Health {
    pub fn new(reporter: HealthReporter) -> Self {
        Self { reporter }
    }

    pub async fn live(&self) {
        self.reporter
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
    }

    pub async fn overall(&self, serving: bool) {
        self.reporter.set_service_status("", status(serving)).await;
    }

    pub async fn model_serving(&self, name: &str, serving: bool) {
        self.reporter
            .set_service_status(name, status(serving))
            .await;
    }
}

impl Health {
    /// An unloaded model's service is no longer known (SERVICE_UNKNOWN).
    pub async fn forget(&self, name: &str) {
        self.reporter.clone().clear_service_status(name).await;
    }
}

fn status(serving: bool) -> ServingStatus {
    if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}
