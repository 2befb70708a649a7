//! The models this process serves, by name, each with its state, tokenizer, queue and replica
//! threads. Loading and unloading block (they start and join threads): call them off async threads.

use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use dashmap::DashMap;
use tokio::sync::watch;

use crate::config::ModelConfig;
use crate::device::{parse_device, DType};
use crate::engine::ServeError;
use crate::hub::{self, HubConfig, Progress};
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
    /// Configured at start-up, waiting for its turn to load (reported as loading).
    Pending,
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
    /// The state; a ready model whose replica died is Failed with the reason.
    pub fn state(&self) -> State {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner()).clone();
        match state {
            State::Ready(m) => match m.queue.failure() {
                Some(reason) => State::Failed(reason),
                None => State::Ready(m),
            },
            other => other,
        }
    }

    fn set(&self, state: State) {
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = state;
    }
}

pub struct Registry {
    models: DashMap<String, Arc<Entry>>,
    /// Bumped on every change of a model's state (load, unload, a replica's death).
    changes: watch::Sender<u64>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            models: DashMap::new(),
            changes: watch::Sender::new(0),
        }
    }
}

impl Registry {
    /// Sees every change of any model's state (for health).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// Makes the models configured at start-up known at once (as loading), before each one's
    /// turn to load comes.
    pub fn announce(&self, config: &ModelConfig) {
        self.models.entry(config.name.clone()).or_insert_with(|| {
            Arc::new(Entry {
                config: config.clone(),
                state: RwLock::new(State::Pending),
            })
        });
    }

    /// Registers `config` as loading, starts its replicas and marks it ready (or failed, with
    /// the reason). A name already present is refused unless its earlier load failed.
    pub fn load(&self, config: ModelConfig) -> Result<Arc<LoadedModel>, ServeError> {
        let entry = Arc::new(Entry {
            config: config.clone(),
            state: RwLock::new(State::Loading),
        });
        match self.models.entry(config.name.clone()) {
            dashmap::Entry::Occupied(mut o)
                if matches!(o.get().state(), State::Failed(_) | State::Pending) =>
            {
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
        self.changed();
        let changes = self.changes.clone();
        let on_failure = Arc::new(move || changes.send_modify(|n| *n += 1));
        let started = start(&config, on_failure);
        let result = self.loaded(&entry, &config, started);
        self.changed();
        result
    }

    fn loaded(
        &self,
        entry: &Entry,
        config: &ModelConfig,
        started: Result<LoadedModel, String>,
    ) -> Result<Arc<LoadedModel>, ServeError> {
        match started {
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
            State::Loading | State::Pending => Err(ServeError::Unavailable(format!(
                "model {:?} is still loading",
                entry.config.name
            ))),
            State::Unloading => Err(ServeError::Unavailable(format!(
                "model {:?} is unloading",
                entry.config.name
            ))),
            State::Failed(_) => Err(ServeError::Unavailable(format!(
                "model {:?} is FAILED: it failed to load or a replica died (the reason is in the \
                 server's log, and in GetModel for admin token holders)",
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
        // Remove this very entry: a load that replaced it meanwhile keeps its own.
        self.models
            .remove_if(&entry.config.name, |_, e| Arc::ptr_eq(e, &entry));
        self.changed();
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
fn start(
    config: &ModelConfig,
    on_failure: Arc<dyn Fn() + Send + Sync>,
) -> Result<LoadedModel, String> {
    let dir = match &config.hub {
        Some(repo) => hub::fetch_model(&config.name, repo, &HubConfig::from_env(), Progress::Log)?,
        None => config.path.clone(),
    };
    if config.shadows_id {
        tracing::info!(model = %config.name, dir = %dir.display(),
            "using the local directory, not the Hugging Face id of the same name");
    }
    let queue = Queue::new(config.batching);
    let mut workers = Vec::new();
    let mut first: Option<(ModelSpec, DType, PairTokenizer)> = None;
    for (index, device) in config.devices.iter().enumerate() {
        let replica = ReplicaConfig {
            name: config.name.clone(),
            dir: dir.clone(),
            device: parse_device(device).map_err(|e| stop_all(&queue, &mut workers, e))?,
            dtype: config.dtype,
            max_length: config.max_length,
            index,
            on_failure: on_failure.clone(),
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
