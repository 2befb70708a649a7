//! The models this process serves, by name, each with its state, tokenizer, queue and replica
//! threads. Loading and unloading block (they start and join threads): call them off async threads.

use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use dashmap::DashMap;

use crate::config::ModelConfig;
use crate::device::{parse_device, DType};
use crate::engine::ServeError;
use crate::models::ModelSpec;
use crate::runtime::worker::{self, ReplicaConfig};
use crate::scheduler::Queue;
use crate::tokenize::PairTokenizer;

/// A model whose replicas are running.
pub struct LoadedModel {
    pub name: String,
    pub spec: ModelSpec,
    pub dtype: DType,
    pub tokenizer: Arc<PairTokenizer>,
    /// The model's micro-batch queue; its replica threads pull from it.
    pub queue: Arc<Queue>,
    /// Replica threads, joined when the model is unloaded.
    workers: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Clone)]
pub enum State {
    Loading,
    Ready(Arc<LoadedModel>),
    Failed(String),
    Unloading,
}

pub struct Entry {
    pub config: ModelConfig,
    pub state: RwLock<State>,
}

impl Entry {
    pub fn state(&self) -> State {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, state: State) {
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = state;
    }
}

#[derive(Default)]
pub struct Registry {
    models: DashMap<String, Arc<Entry>>,
}

impl Registry {
    /// Registers `config` as loading, starts its replicas and marks it ready (or failed, with
    /// the reason). A name already present is refused unless its earlier load failed.
    pub fn load(&self, config: ModelConfig) -> Result<Arc<LoadedModel>, ServeError> {
        let entry = Arc::new(Entry {
            config: config.clone(),
            state: RwLock::new(State::Loading),
        });
        match self.models.entry(config.name.clone()) {
            dashmap::Entry::Occupied(mut o) if matches!(o.get().state(), State::Failed(_)) => {
                o.insert(entry.clone());
            }
            dashmap::Entry::Occupied(_) => {
                return Err(ServeError::AlreadyExists(format!(
                    "model {:?} is already loaded",
                    config.name
                )))
            }
            dashmap::Entry::Vacant(v) => {
                v.insert(entry.clone());
            }
        }
        match start(&config) {
            Ok(model) => {
                let model = Arc::new(model);
                entry.set(State::Ready(model.clone()));
                tracing::info!(model = %config.name, replicas = config.devices.len(), "model ready");
                Ok(model)
            }
            Err(reason) => {
                tracing::error!(model = %config.name, %reason, "model failed to load");
                entry.set(State::Failed(reason.clone()));
                Err(ServeError::FailedPrecondition(format!(
                    "model {:?} failed to load: {reason}",
                    config.name
                )))
            }
        }
    }

    /// The ready model called `name`; an empty name means the only model, when there is one.
    pub fn get(&self, name: &str) -> Result<Arc<LoadedModel>, ServeError> {
        let entry = self.entry(name)?;
        match entry.state() {
            State::Ready(model) => Ok(model),
            State::Loading => Err(ServeError::Unavailable(format!(
                "model {:?} is still loading",
                entry.config.name
            ))),
            State::Unloading => Err(ServeError::Unavailable(format!(
                "model {:?} is unloading",
                entry.config.name
            ))),
            State::Failed(reason) => Err(ServeError::Unavailable(format!(
                "model {:?} failed to load: {reason}",
                entry.config.name
            ))),
        }
    }

    pub fn entry(&self, name: &str) -> Result<Arc<Entry>, ServeError> {
        if name.is_empty() && self.models.len() == 1 {
            if let Some(only) = self.models.iter().next() {
                return Ok(only.value().clone());
            }
        }
        self.models
            .get(name)
            .map(|e| e.value().clone())
            .ok_or_else(|| ServeError::NotFound {
                model: name.to_owned(),
                loaded: self.names(),
            })
    }

    /// Sorted model names.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.models.iter().map(|e| e.key().clone()).collect();
        names.sort();
        names
    }

    pub fn entries(&self) -> Vec<Arc<Entry>> {
        let mut all: Vec<Arc<Entry>> = self.models.iter().map(|e| e.value().clone()).collect();
        all.sort_by(|a, b| a.config.name.cmp(&b.config.name));
        all
    }

    /// Stops admission to `name`, lets its replicas finish every queued pair, joins them and
    /// removes the model.
    pub fn unload(&self, name: &str) -> Result<(), ServeError> {
        let entry = self.entry(name)?;
        let previous = std::mem::replace(
            &mut *entry.state.write().unwrap_or_else(|e| e.into_inner()),
            State::Unloading,
        );
        match previous {
            State::Ready(model) => model.stop(),
            State::Failed(_) => {}
            other => {
                entry.set(other);
                return Err(ServeError::FailedPrecondition(format!(
                    "model {:?} is busy loading or unloading",
                    entry.config.name
                )));
            }
        }
        self.models.remove(&entry.config.name);
        tracing::info!(model = %entry.config.name, "model unloaded");
        Ok(())
    }

    /// Unloads everything (shutdown), draining each queue.
    pub fn unload_all(&self) {
        for name in self.names() {
            let _ = self.unload(&name);
        }
    }
}

impl LoadedModel {
    /// Closes the queue and joins the replicas once they have drained it.
    fn stop(&self) {
        self.queue.close();
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        for w in workers {
            let _ = w.join();
        }
    }
}

/// Starts every replica of `config`; all must load and warm up.
fn start(config: &ModelConfig) -> Result<LoadedModel, String> {
    let queue = Queue::new(config.batching);
    let mut workers = Vec::new();
    let mut first: Option<(ModelSpec, DType, PairTokenizer)> = None;
    for (index, device) in config.devices.iter().enumerate() {
        let replica = ReplicaConfig {
            name: config.name.clone(),
            dir: config.path.clone(),
            device: parse_device(device).map_err(|e| stop_all(&queue, &mut workers, e))?,
            dtype: config.dtype,
            max_length: config.max_length,
            index,
        };
        let started = worker::spawn(replica, queue.clone())
            .map_err(|e| stop_all(&queue, &mut workers, e.to_string()))?;
        workers.push(started.handle);
        first.get_or_insert((started.spec, started.dtype, started.tokenizer));
    }
    let (spec, dtype, tokenizer) = first.ok_or("no replica devices configured")?;
    Ok(LoadedModel {
        name: config.name.clone(),
        spec,
        dtype,
        tokenizer: Arc::new(tokenizer),
        queue,
        workers: Mutex::new(workers),
    })
}

fn stop_all(queue: &Queue, workers: &mut Vec<JoinHandle<()>>, reason: String) -> String {
    queue.close();
    for w in workers.drain(..) {
        let _ = w.join();
    }
    reason
}
