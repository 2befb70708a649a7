//! The caller check of `crossrank.v1.CrossEncoder` (every scoring RPC), as a tonic interceptor:
//! it runs on the request's headers, before any message is read. It checks the data-plane key
//! and settles the call's tenant (the key's name, or `x-crossrank-tenant` when keys are off);
//! the key (its position and name) and the [`Tenant`] go into the request's extensions, where
//! the handler and the call's span find them.

use std::sync::Arc;

use tonic::{Request, Status};

use crate::api::keys::ApiKeys;
use crate::api::tenant::{Tenant, TENANT_HEADER};

/// Lets a call through with a valid key in its `authorization` metadata (every call when no
/// keys are configured) and a valid tenant header.
#[derive(Clone)]
pub struct KeyCheck(pub Option<Arc<ApiKeys>>);

impl tonic::service::Interceptor for KeyCheck {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let key = match &self.0 {
            None => None,
            Some(keys) => {
                let given = req.metadata().get("authorization").map(|v| v.as_bytes());
                let checked = keys.check(given).inspect_err(|e| {
                    tracing::debug!(error = %e, "gRPC call refused");
                });
                Some(checked?)
            }
        };
        let header = req.metadata().get(TENANT_HEADER).map(|v| v.as_bytes());
        let tenant = Tenant::of_call(key.as_ref(), header)?;
        if let Some(key) = key {
            req.extensions_mut().insert(key);
        }
        req.extensions_mut().insert(tenant);
        Ok(req)
    }
}
