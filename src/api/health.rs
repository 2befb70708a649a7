//! grpc.health.v1 driven by model state: "" is SERVING once every configured model is ready;
//! each model name is its own service.

use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
}

impl Health {
    pub fn new(reporter: HealthReporter) -> Self {
        Self { reporter }
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

fn status(serving: bool) -> ServingStatus {
    if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}
