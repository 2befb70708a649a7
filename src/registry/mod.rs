//! The models this process serves, by name, each with its state, tokenizer, queue and replica
//! threads. Loading and unloading block (they start and join threads): call them off async threads.
//!
//! Loads run side by side and never wait for each other. A load can be abandoned while it runs
//! (UnloadModel, shutdown): its entry goes at once, so the name is free again; the load stops at
//! its next check (a Hub download between reads, the replicas between devices) and whatever it
//! had built is stopped and dropped.

use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use dashmap::DashMap;
use tokio::sync::watch;

use crate::config::ModelConfig;
use crate::device::DType;
use crate::hub::{Cancel, HubConfig};
use crate::load_error::{LoadError, LoadFailure};
use crate::models::ModelSpec;
use crate::scheduler::Queue;
use crate::tokenize::PairTokenizer;

mod start;
use start::start;

/// A model whose replicas are running.
pub struct LoadedModel {
    pub name: String,
    pub spec: ModelSpec,
    pub dtype: DType,
    pub tokenizer: Arc<PairTokenizer>,
    /// The model's micro-batch queue; its replica threads pull from it.
    pub queue: Arc<Queue>,
    /// The device of each replica (sized by the model for [`Placement::BySize`]).
    pub devices: Vec<String>,
    /// Replica threads, joined when the model is unloaded.
    workers: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Clone)]
pub enum State {
    /// Configured at start-up, waiting for its turn to load (reported as loading).
    Pending,
    Loading,
    Ready(Arc<LoadedModel>),
    Failed(Failure),
    Unloading,
}

/// Why a model is FAILED.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Its load failed.
    Load(LoadFailure),
    /// A replica died after loading (the queue's reason).
    Died(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Load(failure) => failure.fmt(f),
            Self::Died(reason) => f.write_str(reason),
        }
    }
}

/// Why the registry refused a call; the engine maps each kind to its own error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistryError {
    /// No model of that name.
    #[error("model {model:?} is not loaded")]
    UnknownModel { model: String, loaded: Vec<String> },
    /// Loading or unloading, or too many abandoned loads winding down.
    #[error("{0}")]
    NotReady(String),
    /// FAILED: it failed to load or a replica died.
    #[error("{0}")]
    Failed(String),
    /// A load of a name that is loaded or loading.
    #[error("{0}")]
    AlreadyLoaded(String),
    /// A call that conflicts with the model's state.
    #[error("{0}")]
    Conflict(String),
    /// The load failed, with its cause.
    #[error("{0}")]
    LoadFailed(LoadFailure),
}

pub struct Entry {
    pub config: ModelConfig,
    pub state: RwLock<State>,
    /// Set (under the state's write lock) when the entry is unloaded while it loads: the load
    /// stops at its next check and its result is discarded.
    cancel: Cancel,
    /// An abandoned load whose thread has not ended yet (counted in `Registry::abandoned`).
    winding_down: std::sync::atomic::AtomicBool,
}

impl Entry {
    /// The state; a ready model whose replica died is Failed with the reason.
    pub fn state(&self) -> State {
        let state = self.read().clone();
        match state {
            State::Ready(m) => match m.queue.failure() {
                Some(reason) => State::Failed(Failure::Died(reason)),
                None => State::Ready(m),
            },
            other => other,
        }
    }

    /// The replicas' devices: the loaded ones, else those configured.
    pub fn devices(&self) -> Vec<String> {
        match &*self.read() {
            State::Ready(m) => m.devices.clone(),
            _ => self.config.placement.configured().to_vec(),
        }
    }

    fn set(&self, state: State) {
        *self.write() = state;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn new(config: ModelConfig, state: State) -> Arc<Self> {
        Arc::new(Self {
            config,
            state: RwLock::new(state),
            cancel: Cancel::default(),
            winding_down: Default::default(),
        })
    }
}

pub struct Registry {
    models: DashMap<String, Arc<Entry>>,
    /// Bumped on every change of a model's state (load, unload, a replica's death).
    changes: watch::Sender<u64>,
    /// Where Hub ids are fetched from, read once at start-up.
    hub: HubConfig,
    /// Abandoned loads whose threads still run (a load busy in libtorch checks its cancel flag
    /// only between replicas): new loads wait until fewer than [`MAX_ABANDONED`] remain, so
    /// LoadModel / UnloadModel in a loop cannot stack loads without bound.
    abandoned: std::sync::atomic::AtomicUsize,
}

/// Abandoned loads that may still be winding down when a new load begins.
const MAX_ABANDONED: usize = 2;

impl Registry {
    /// An empty registry whose loads fetch Hub ids with `hub`.
    pub fn new(hub: HubConfig) -> Self {
        Self {
            models: DashMap::new(),
            changes: watch::Sender::new(0),
            hub,
            abandoned: Default::default(),
        }
    }

    /// Sees every change of any model's state (for health).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// Makes the models configured at start-up known at once (as loading), before each one's
    /// load starts ([`Registry::load_announced`]).
    pub fn announce(&self, config: &ModelConfig) {
        self.models
            .entry(config.name.clone())
            .or_insert_with(|| Entry::new(config.clone(), State::Pending));
    }

    /// Where Hub ids are fetched from.
    pub fn hub_config(&self) -> &HubConfig {
        &self.hub
    }

    /// [`begin`](Self::begin) and [`finish`](Self::finish).
    pub fn load(&self, config: ModelConfig) -> Result<Arc<LoadedModel>, RegistryError> {
        let entry = self.begin(config)?;
        self.finish(&entry)
    }

    /// Registers `config` as loading. A name already present is refused unless its earlier
    /// load failed.
    pub fn begin(&self, config: ModelConfig) -> Result<Arc<Entry>, RegistryError> {
        let abandoned = self.abandoned.load(std::sync::atomic::Ordering::Acquire);
        if abandoned >= MAX_ABANDONED {
            return Err(RegistryError::NotReady(format!(
                "{abandoned} abandoned loads (UnloadModel of a loading model) are still winding \
                 down, the most allowed; retry when they end"
            )));
        }
        let entry = Entry::new(config.clone(), State::Loading);
        match self.models.entry(config.name.clone()) {
            dashmap::Entry::Occupied(mut o) if matches!(o.get().state(), State::Failed(_)) => {
                o.insert(entry.clone());
            }
            dashmap::Entry::Occupied(_) => {
                return Err(RegistryError::AlreadyLoaded(format!(
                    "model {:?} is already loaded or loading; UnloadModel it first",
                    config.name
                )))
            }
            dashmap::Entry::Vacant(v) => {
                v.insert(entry.clone());
            }
        }
        self.changed();
        Ok(entry)
    }

    /// Loads the start-up model announced as `name`; None when it was unloaded before its load
    /// began.
    pub fn load_announced(&self, name: &str) -> Option<Result<Arc<LoadedModel>, RegistryError>> {
        let entry = self.models.get(name).map(|e| e.value().clone())?;
        {
            let mut state = entry.write();
            if !matches!(*state, State::Pending) || entry.cancel.is_cancelled() {
                return None;
            }
            *state = State::Loading;
        }
        Some(self.finish(&entry))
    }

    /// Starts the replicas of a loading `entry` and marks it ready (or failed, with the
    /// reason); an entry cancelled meanwhile gets nothing (what was built is stopped).
    pub fn finish(&self, entry: &Arc<Entry>) -> Result<Arc<LoadedModel>, RegistryError> {
        let changes = self.changes.clone();
        let on_failure = Arc::new(move || changes.send_modify(|n| *n += 1));
        let started = start(&entry.config, &self.hub, &entry.cancel, on_failure);
        let result = settle(entry, started);
        if entry
            .winding_down
            .swap(false, std::sync::atomic::Ordering::AcqRel)
        {
            self.abandoned
                .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
        self.changed();
        result
    }

    /// Completes once `entry`'s load is cancelled (UnloadModel, shutdown).
    pub async fn cancelled(&self, entry: &Entry) {
        let mut changes = self.changes.subscribe();
        while !entry.cancel.is_cancelled() {
            if changes.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Abandons `entry`'s load when it is still pending or loading: the entry goes and its
    /// name is free at once. False when it is not loading (nothing is done).
    pub fn cancel_load(&self, entry: &Arc<Entry>) -> bool {
        {
            let mut state = entry.write();
            if !matches!(*state, State::Pending | State::Loading) {
                return false;
            }
            if matches!(*state, State::Loading) {
                // Its thread runs on until its next check; `finish` counts it out.
                entry
                    .winding_down
                    .store(true, std::sync::atomic::Ordering::Release);
                self.abandoned
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            }
            entry.cancel.cancel();
            *state = State::Unloading;
        }
        self.models
            .remove_if(&entry.config.name, |_, e| Arc::ptr_eq(e, entry));
        self.changed();
        tracing::info!(model = %entry.config.name, "load cancelled; the name is free");
        true
    }

    /// Waits until every model of `names` (the start-up models) has loaded, failed or gone,
    /// and returns the first that failed to load; None when none did. A replica that dies
    /// later is not a load failure.
    pub async fn first_load_failure(&self, names: &[String]) -> Option<LoadFailure> {
        let mut changes = self.changes.subscribe();
        loop {
            let mut settled = true;
            for name in names {
                // the state as loaded: a replica's later death is no load failure
                let state = self.models.get(name).map(|e| e.read().clone());
                match state {
                    Some(State::Failed(Failure::Load(failure))) => return Some(failure),
                    Some(State::Pending | State::Loading) => settled = false,
                    _ => {}
                }
            }
            if settled || changes.changed().await.is_err() {
                return None;
            }
        }
    }

    /// The ready model called `name`; an empty name means the only model, when there is one.
    pub fn get(&self, name: &str) -> Result<Arc<LoadedModel>, RegistryError> {
        let entry = self.entry(name)?;
        match entry.state() {
            State::Ready(model) => Ok(model),
            State::Loading | State::Pending => Err(RegistryError::NotReady(format!(
                "model {:?} is still loading",
                entry.config.name
            ))),
            State::Unloading => Err(RegistryError::NotReady(format!(
                "model {:?} is unloading",
                entry.config.name
            ))),
            State::Failed(_) => Err(RegistryError::Failed(format!(
                "model {:?} is FAILED: it failed to load or a replica died (the reason is in the \
                 server's log, and in GetModel for admin token holders)",
                entry.config.name
            ))),
        }
    }

    pub fn entry(&self, name: &str) -> Result<Arc<Entry>, RegistryError> {
        if name.is_empty() && self.models.len() == 1 {
            if let Some(only) = self.models.iter().next() {
                return Ok(only.value().clone());
            }
        }
        self.models
            .get(name)
            .map(|e| e.value().clone())
            .ok_or_else(|| RegistryError::UnknownModel {
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
    /// removes the model. A model still loading is abandoned ([`Registry::cancel_load`]).
    pub fn unload(&self, name: &str) -> Result<(), RegistryError> {
        let entry = self.entry(name)?;
        if self.cancel_load(&entry) {
            return Ok(());
        }
        let previous = std::mem::replace(&mut *entry.write(), State::Unloading);
        match previous {
            State::Ready(model) => model.stop(),
            State::Failed(_) => {}
            other => {
                entry.set(other);
                return Err(RegistryError::Conflict(format!(
                    "model {:?} is already unloading",
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

    /// Unloads everything (shutdown), draining each queue and joining every replica; loads
    /// still running are abandoned ([`Registry::abandoned_loads_ended`] waits for them).
    pub fn unload_all(&self) {
        for name in self.names() {
            let _ = self.unload(&name);
        }
    }

    /// Completes once every abandoned load has ended. Each ends at its next check (between Hub
    /// reads, or between replicas) and stops and joins whatever it had started; a replica
    /// loading inside libtorch cannot be interrupted, so this may wait for its load and warm-up.
    pub async fn abandoned_loads_ended(&self) {
        // Subscribed before the count is read: `finish` counts a load out, then tells.
        let mut changes = self.changes.subscribe();
        while self.abandoned.load(std::sync::atomic::Ordering::Acquire) > 0 {
            if changes.changed().await.is_err() {
                return;
            }
        }
    }
}

/// A registry dropped with models still loaded (a `serve` future dropped before it returned, a
/// caller of the library that never unloaded) drains and joins them. Blocking: see
/// [`LoadedModel`]'s `Drop`. Loads cannot be running then: each holds the registry.
impl Drop for Registry {
    fn drop(&mut self) {
        self.unload_all();
    }
}

impl LoadedModel {
    /// Closes the queue and joins the replicas once they have drained it: a join waits for the
    /// batch each replica has in flight and for what is still queued (at most the model's
    /// `max_queue_pairs`). A replica inside libtorch cannot be interrupted.
    fn stop(&self) {
        self.queue.close();
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        // A replica never holds its model, but a thread cannot join itself.
        let me = std::thread::current().id();
        for w in workers.into_iter().filter(|w| w.thread().id() != me) {
            let _ = w.join();
        }
    }
}

/// A model dropped without [`Registry::unload`] (its registry dropped, or a FAILED entry
/// replaced by a new load) stops as unload stops it, so no replica thread outlives its model.
/// This blocks the dropping thread for as long as `stop` takes: at most the
/// batch in flight when the queue is already failed (a replica died) or empty (every request
/// holds the model, so none waits once it is dropped).
impl Drop for LoadedModel {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Records what a load ended with: ready or failed, unless the entry was cancelled meanwhile
/// (then the model is stopped and the caller told so). The check and the change are made under
/// the entry's write lock, as [`Registry::cancel_load`] makes its own.
fn settle(
    entry: &Entry,
    started: Result<LoadedModel, LoadError>,
) -> Result<Arc<LoadedModel>, RegistryError> {
    let name = &entry.config.name;
    let mut state = entry.write();
    if entry.cancel.is_cancelled() {
        drop(state);
        if let Ok(model) = started {
            model.stop();
        }
        tracing::info!(model = %name, "abandoned load ended; its result is discarded");
        return Err(RegistryError::Conflict(format!(
            "model {name:?} was unloaded while it loaded (UnloadModel or shutdown); the load \
             was abandoned"
        )));
    }
    match started {
        Ok(model) => {
            let model = Arc::new(model);
            *state = State::Ready(model.clone());
            tracing::info!(model = %name, replicas = model.devices.len(), "model ready");
            Ok(model)
        }
        Err(error) => {
            let failure = LoadFailure::new(name, error);
            tracing::error!(%failure, "model failed to load");
            *state = State::Failed(Failure::Load(failure.clone()));
            Err(RegistryError::LoadFailed(failure))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str) -> ModelConfig {
        format!("{name}=/nonexistent/{name}").parse().unwrap()
    }

    /// Abandoned loads whose threads still run are counted: past MAX_ABANDONED a new load is
    /// refused (LoadModel/UnloadModel in a loop cannot stack loads), and each abandoned load
    /// that ends makes room again. A cancelled name is free at once.
    #[test]
    fn abandoned_loads_are_bounded_until_they_end() {
        let registry = Registry::new(HubConfig::from_vars(|_| None));
        let loading: Vec<_> = (0..MAX_ABANDONED)
            .map(|i| registry.begin(config(&format!("m{i}"))).unwrap())
            .collect();
        for entry in &loading {
            assert!(registry.cancel_load(entry));
        }
        let err = registry.begin(config("next")).err().expect("refused");
        assert!(matches!(err, RegistryError::NotReady(_)), "{err}");
        // The abandoned loads end (here: at once, their directory does not exist).
        for entry in &loading {
            assert!(matches!(
                registry.finish(entry),
                Err(RegistryError::Conflict(_))
            ));
        }
        let entry = registry.begin(config("m0")).unwrap();
        assert!(registry.finish(&entry).is_err());
    }
}
