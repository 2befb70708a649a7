//! `crossrank.v1.Models`: list and inspect models; load and unload them with the admin token.

use std::sync::Arc;

use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::health::Health;
use super::pb;
use crate::config::{check_model, ModelConfig};
use crate::device::DType;
use crate::engine::{Engine, ServeError};
use crate::registry::{Entry, State};
use crate::scheduler::BatchLimits;

pub struct Models {
    pub engine: Arc<Engine>,
    pub health: Health,
    /// Required as `authorization: Bearer …` for LoadModel / UnloadModel; None disables them.
    pub admin_token: Option<String>,
}

impl Models {
    fn authorize(&self, md: &MetadataMap) -> Result<(), ServeError> {
        let Some(token) = &self.admin_token else {
            return Err(ServeError::PermissionDenied(
                "model management is disabled: start the server with --admin-token (or CROSSRANK_ADMIN_TOKEN)".into(),
            ));
        };
        let given = md
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            None => Err(ServeError::Unauthenticated(
                "`authorization: Bearer <admin token>` metadata is missing".into(),
            )),
            Some(g) if !constant_time_eq(g.as_bytes(), token.as_bytes()) => Err(
                ServeError::Unauthenticated("the admin token does not match".into()),
            ),
            Some(_) => Ok(()),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[tonic::async_trait]
impl pb::models_server::Models for Models {
    async fn list_models(
        &self,
        _: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let models = self
            .engine
            .registry
            .entries()
            .iter()
            .map(|e| info(e))
            .collect();
        Ok(Response::new(pb::ListModelsResponse { models }))
    }

    async fn get_model(
        &self,
        req: Request<pb::GetModelRequest>,
    ) -> Result<Response<pb::ModelInfo>, Status> {
        let entry = self.engine.registry.entry(&req.into_inner().name)?;
        Ok(Response::new(info(&entry)))
    }

    async fn load_model(
        &self,
        req: Request<pb::LoadModelRequest>,
    ) -> Result<Response<pb::ModelInfo>, Status> {
        self.authorize(req.metadata())?;
        let config = model_config(req.into_inner())?;
        let name = config.name.clone();
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || engine.registry.load(config))
            .await
            .map_err(|e| Status::internal(format!("load task failed: {e}")))??;
        self.health.model_serving(&name, true).await;
        let entry = self.engine.registry.entry(&name)?;
        Ok(Response::new(info(&entry)))
    }

    async fn unload_model(
        &self,
        req: Request<pb::UnloadModelRequest>,
    ) -> Result<Response<pb::UnloadModelResponse>, Status> {
        self.authorize(req.metadata())?;
        let name = req.into_inner().name;
        let entry = self.engine.registry.entry(&name)?;
        self.health.model_serving(&entry.config.name, false).await;
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || engine.registry.unload(&entry.config.name))
            .await
            .map_err(|e| Status::internal(format!("unload task failed: {e}")))??;
        Ok(Response::new(pb::UnloadModelResponse {}))
    }
}

fn model_config(r: pb::LoadModelRequest) -> Result<ModelConfig, ServeError> {
    let invalid = ServeError::InvalidArgument;
    if r.path.is_empty() {
        return Err(invalid(
            "`path` is empty; give the model directory on the server".into(),
        ));
    }
    let o = r.options.unwrap_or_default();
    let d = BatchLimits::default();
    let b = o.batching.unwrap_or_default();
    let pick = |v: u32, default: usize| if v == 0 { default } else { v as usize };
    let config = ModelConfig {
        name: r.name,
        path: r.path.into(),
        devices: if o.devices.is_empty() {
            vec!["cpu".into()]
        } else {
            o.devices
        },
        dtype: if o.dtype.is_empty() {
            None
        } else {
            Some(
                o.dtype
                    .parse::<DType>()
                    .map_err(|e| invalid(format!("`options.dtype`: {e}")))?,
            )
        },
        max_length: (o.max_length > 0).then_some(o.max_length as usize),
        batching: BatchLimits {
            max_batch_tokens: pick(b.max_batch_tokens, d.max_batch_tokens),
            max_batch_pairs: pick(b.max_batch_pairs, d.max_batch_pairs),
            max_wait: if b.max_wait_ms == 0 {
                d.max_wait
            } else {
                std::time::Duration::from_millis(b.max_wait_ms.into())
            },
            max_queue_pairs: pick(b.max_queue_pairs, d.max_queue_pairs),
        },
    };
    check_model(&config).map_err(invalid)?;
    Ok(config)
}

pub fn info(e: &Entry) -> pb::ModelInfo {
    let c = &e.config;
    let b = &c.batching;
    let mut info = pb::ModelInfo {
        name: c.name.clone(),
        path: c.path.display().to_string(),
        devices: c.devices.clone(),
        replicas: c.devices.len() as u32,
        dtype: c.dtype.map(|d| d.to_string()).unwrap_or_default(),
        batching: Some(pb::BatchingLimits {
            max_batch_tokens: b.max_batch_tokens as u32,
            max_batch_pairs: b.max_batch_pairs as u32,
            max_wait_ms: b.max_wait.as_millis() as u32,
            max_queue_pairs: b.max_queue_pairs as u32,
        }),
        ..Default::default()
    };
    info.state = match e.state() {
        State::Loading => pb::ModelState::Loading,
        State::Unloading => pb::ModelState::Unloading,
        State::Failed(reason) => {
            info.reason = reason;
            pb::ModelState::Failed
        }
        State::Ready(m) => {
            info.architecture = m.spec.architecture.clone();
            info.num_labels = m.spec.labels.len() as u32;
            info.labels = m.spec.labels.clone();
            info.max_length = m.tokenizer.max_length() as u32;
            info.dtype = m.dtype.to_string();
            pb::ModelState::Ready
        }
    } as i32;
    info
}
