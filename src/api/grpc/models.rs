//! `crossrank.v1.Models`: list and inspect models; load and unload them with the admin token.

use std::sync::Arc;

use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::health::Health;
use super::pb;
use std::path::{Path, PathBuf};

use crate::config::{ModelConfig, ModelOptions};
use crate::engine::request::check_model_name;
use crate::engine::{Engine, ServeError};
use crate::hub::ModelSource;
use crate::registry::{Entry, State};

pub struct Models {
    pub engine: Arc<Engine>,
    pub health: Health,
    /// Required as `authorization: Bearer …` for LoadModel / UnloadModel, and to see model paths
    /// and load errors; None disables model management.
    pub admin_token: Option<String>,
    /// LoadModel loads only directories under this one; None disables LoadModel by path.
    pub model_root: Option<PathBuf>,
    /// LoadModel may fetch Hugging Face ids.
    pub hub_load: bool,
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

impl Models {
    /// What LoadModel's `path` names, by [`ModelSource::resolve`] against the model root: a
    /// directory, which must lie under the root ([`under_root`]), or a Hugging Face id, when
    /// hub loads are allowed.
    fn source(&self, path: &str) -> Result<ModelSource, ServeError> {
        let root = self.model_root.as_deref();
        match ModelSource::resolve(Path::new(path), root) {
            ModelSource::Local { shadows_id, .. } => Ok(ModelSource::Local {
                dir: under_root(root, path)?,
                shadows_id,
            }),
            id @ ModelSource::Hub(_) if self.hub_load => Ok(id),
            ModelSource::Hub(_) => {
                let local = under_root(root, path).err();
                let why = local.map_or_else(String::new, |e| format!("{e}; and "));
                Err(ServeError::PermissionDenied(format!(
                    "{why}loading Hugging Face ids such as {path:?} is disabled: start the \
                     server with --allow-hub-load"
                )))
            }
        }
    }
}

/// Equal tokens, in a time that depends only on the secret's length: every byte of `secret` is
/// compared whatever `given` is, so neither the position of the first difference nor the
/// length of the guess shows in the timing.
fn constant_time_eq(given: &[u8], secret: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != secret.len());
    for (i, s) in secret.iter().enumerate() {
        diff |= given.get(i).copied().unwrap_or(!s) ^ s;
    }
    std::hint::black_box(diff) == 0
}

/// The model directory a LoadModel `path` names: relative paths are taken from the root, and the
/// directory (symbolic links resolved) must lie inside it.
fn under_root(root: Option<&Path>, path: &str) -> Result<PathBuf, ServeError> {
    let Some(root) = root else {
        return Err(ServeError::PermissionDenied(
            "LoadModel by path is disabled: start the server with --model-root DIR to allow \
             loading model directories under DIR"
                .into(),
        ));
    };
    if path.is_empty() {
        return Err(ServeError::Invalid(
            "`path` is empty; give a model directory under the model root".into(),
        ));
    }
    let root = root.canonicalize().map_err(|e| {
        ServeError::Conflict(format!(
            "the model root {} is unusable: {e}",
            root.display()
        ))
    })?;
    let dir = root
        .join(path)
        .canonicalize()
        .map_err(|e| ServeError::Invalid(format!("`path` {path:?} under the model root: {e}")))?;
    if !dir.starts_with(&root) {
        return Err(ServeError::PermissionDenied(format!(
            "`path` {path:?} resolves outside the model root {}",
            root.display()
        )));
    }
    Ok(dir)
}

#[tonic::async_trait]
impl pb::models_server::Models for Models {
    async fn list_models(
        &self,
        req: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let full = self.authorize(req.metadata()).is_ok();
        let models = self
            .engine
            .registry
            .entries()
            .iter()
            .map(|e| info(e, full))
            .collect();
        Ok(Response::new(pb::ListModelsResponse { models }))
    }

    async fn get_model(
        &self,
        req: Request<pb::GetModelRequest>,
    ) -> Result<Response<pb::ModelInfo>, Status> {
        let full = self.authorize(req.metadata()).is_ok();
        let name = req.into_inner().name;
        check_model_name(&name)?;
        let entry = self
            .engine
            .registry
            .entry(&name)
            .map_err(ServeError::from)?;
        Ok(Response::new(info(&entry, full)))
    }

    async fn load_model(
        &self,
        req: Request<pb::LoadModelRequest>,
    ) -> Result<Response<pb::ModelInfo>, Status> {
        self.authorize(req.metadata())?;
        let req = req.into_inner();
        let source = self.source(&req.path)?;
        let config = model_config(req, source)?;
        let name = config.name.clone();
        let registry = &self.engine.registry;
        let entry = registry.begin(config).map_err(ServeError::from)?;
        self.finish_load(entry).await?;
        self.health.model_serving(&name, true).await;
        let entry = registry.entry(&name).map_err(ServeError::from)?;
        Ok(Response::new(info(&entry, true)))
    }

    async fn unload_model(
        &self,
        req: Request<pb::UnloadModelRequest>,
    ) -> Result<Response<pb::UnloadModelResponse>, Status> {
        self.authorize(req.metadata())?;
        let name = req.into_inner().name;
        check_model_name(&name)?;
        let entry = self
            .engine
            .registry
            .entry(&name)
            .map_err(ServeError::from)?;
        self.health.model_serving(&entry.config.name, false).await;
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || engine.registry.unload(&entry.config.name))
            .await
            .map_err(|e| Status::internal(format!("unload task failed: {e}")))?
            .map_err(ServeError::from)?;
        Ok(Response::new(pb::UnloadModelResponse {}))
    }
}

impl Models {
    /// Runs a begun load on a blocking thread; answers as soon as the load is abandoned
    /// (UnloadModel of the name, or shutdown, which abandons it here), without waiting for
    /// the thread to notice.
    async fn finish_load(&self, entry: Arc<Entry>) -> Result<(), Status> {
        let registry = &self.engine.registry;
        let abandoned = || {
            ServeError::Conflict(format!(
                "model {:?} was unloaded while it loaded; the load was abandoned",
                entry.config.name
            ))
        };
        let engine = self.engine.clone();
        let loading = entry.clone();
        let load = tokio::task::spawn_blocking(move || engine.registry.finish(&loading));
        tokio::select! {
            done = load => {
                done.map_err(|e| Status::internal(format!("load task failed: {e}")))?
                    .map_err(ServeError::from)?;
            }
            () = registry.cancelled(&entry) => return Err(abandoned().into()),
            () = self.engine.draining() => {
                registry.cancel_load(&entry);
                return Err(ServeError::ShuttingDown(format!(
                    "the server is shutting down; the load of {:?} was abandoned",
                    entry.config.name
                ))
                .into());
            }
        }
        Ok(())
    }
}

/// LoadModel's options, through the same defaults and bounds as `--model` and the TOML file
/// (0 or empty means unset).
fn model_config(r: pb::LoadModelRequest, source: ModelSource) -> Result<ModelConfig, ServeError> {
    let o = r.options.unwrap_or_default();
    let b = o.batching.unwrap_or_default();
    let set = |v: u32| (v > 0).then_some(v as usize);
    let options = ModelOptions {
        name: r.name,
        path: r.path.into(),
        devices: (!o.devices.is_empty()).then_some(o.devices),
        dtype: (!o.dtype.is_empty()).then_some(o.dtype),
        max_length: set(o.max_length),
        max_batch_tokens: set(b.max_batch_tokens),
        max_batch_pairs: set(b.max_batch_pairs),
        max_wait_ms: (b.max_wait_ms > 0).then_some(b.max_wait_ms.into()),
        max_queue_pairs: set(b.max_queue_pairs),
        ..Default::default()
    };
    options
        .into_config_from(source)
        .map_err(|e| ServeError::Invalid(e.to_string()))
}

/// A model's description; its path and load error only for `full` (admin token holders): they
/// would tell anyone what the server's file system holds.
pub fn info(e: &Entry, full: bool) -> pb::ModelInfo {
    let c = &e.config;
    let b = &c.batching;
    let devices = e.devices();
    let mut info = pb::ModelInfo {
        name: c.name.clone(),
        path: if full {
            c.source.to_string()
        } else {
            String::new()
        },
        replicas: devices.len() as u32,
        devices,
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
        State::Loading | State::Pending => pb::ModelState::Loading,
        State::Unloading => pb::ModelState::Unloading,
        State::Failed(failure) => {
            info.reason = if full {
                failure.to_string()
            } else {
                "failed; the reason is shown to admin token holders and in the server's log".into()
            };
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

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        for wrong in [
            &b""[..],
            b"s3cre",
            b"s3cret!",
            b"S3cret",
            b"s3cres",
            b"\xff3cret",
        ] {
            assert!(!constant_time_eq(wrong, b"s3cret"), "{wrong:?}");
        }
    }
}
