//! The data-plane key check of `crossrank.v1.CrossEncoder` (every scoring RPC), as a tonic
//! interceptor: it runs on the request's headers, before any message is read. The key's
//! position goes into the request's extensions, where the call's span finds it.

use std::sync::Arc;

use tonic::{Request, Status};

use crate::api::keys::ApiKeys;

/// Lets a call through with a valid key in its `authorization` metadata; every call when no
/// keys are configured.
#[derive(Clone)]
pub struct KeyCheck(pub Option<Arc<ApiKeys>>);

impl tonic::service::Interceptor for KeyCheck {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let Some(keys) = &self.0 else {
            return Ok(req);
        };
        let given = req.metadata().get("authorization").map(|v| v.as_bytes());
        match keys.check(given) {
            Ok(index) => {
                req.extensions_mut().insert(index);
                Ok(req)
            }
            Err(e) => {
                tracing::debug!(error = %e, "gRPC call refused");
                Err(e.into())
            }
        }
    }
}
