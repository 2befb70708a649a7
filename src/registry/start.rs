//! Starting a model: its directory fetched (a Hub id) and read once, its replicas placed on
//! devices (by the model's size for a GPU without a configured count) and spawned one by one;
//! whatever was started is stopped and joined when a later step fails or the load is abandoned.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::config::{ModelConfig, Placement};
use crate::device::{parse_device, DType};
use crate::hub::{Cancel, HubConfig, Progress};
use crate::load_error::LoadError;
use crate::model_dir::ModelDir;
use crate::models::ModelSpec;
use crate::runtime::worker::{self, ReplicaConfig};
use crate::scheduler::Queue;
use crate::tokenize::PairTokenizer;

use super::LoadedModel;

/// Starts every replica of `config`; all must load and warm up. Stops early once `cancel` is
/// set (the result would be discarded).
pub(super) fn start(
    config: &ModelConfig,
    hub: &HubConfig,
    cancel: &Cancel,
    on_failure: Arc<dyn Fn() + Send + Sync>,
) -> Result<LoadedModel, LoadError> {
    let dir = config
        .source
        .dir(&config.name, hub, Progress::Log, cancel)
        .map_err(LoadError::Fetch)?;
    // Read once for the whole load: the sizing below and every replica use the same parts.
    let dir = Arc::new(ModelDir::read(&dir));
    let devices = replica_devices(&config.placement, &dir);
    let queue = Queue::new(config.batching);
    queue.set_replicas(devices.len());
    let mut workers = Vec::new();
    let mut first: Option<(ModelSpec, DType, PairTokenizer)> = None;
    for (index, device) in devices.iter().enumerate() {
        if cancel.is_cancelled() {
            return Err(stop_all(&queue, &mut workers, LoadError::Cancelled));
        }
        let parsed = parse_device(device).map_err(|reason| LoadError::Device { index, reason });
        let replica = ReplicaConfig {
            name: config.name.clone(),
            dir: dir.clone(),
            device: parsed.map_err(|e| stop_all(&queue, &mut workers, e))?,
            dtype: config.dtype,
            max_length: config.max_length,
            index,
            on_failure: on_failure.clone(),
        };
        let started = worker::spawn(replica, queue.clone()).map_err(|source| {
            let device = device.clone();
            let error = LoadError::Replica {
                index,
                device,
                source,
            };
            stop_all(&queue, &mut workers, error)
        })?;
        workers.push(started.handle);
        first.get_or_insert((started.spec, started.dtype, started.tokenizer));
    }
    let (spec, dtype, tokenizer) = first.ok_or(LoadError::NoDevices)?;
    Ok(LoadedModel {
        name: config.name.clone(),
        spec,
        dtype,
        tokenizer: Arc::new(tokenizer),
        queue,
        devices,
        workers: Mutex::new(workers),
    })
}

fn stop_all(queue: &Queue, workers: &mut Vec<JoinHandle<()>>, error: LoadError) -> LoadError {
    queue.close();
    for w in workers.drain(..) {
        let _ = w.join();
    }
    error
}

/// The device of each replica: as configured, or for [`Placement::BySize`] as many on the GPU
/// as suit the encoder's size. A small model's batch is too short to fill the chip, so several
/// replicas overlap their kernel launches (MiniLM-L6, 11M encoder parameters, on an H200:
/// 11,086 pairs/s with one replica, 17,582 with four), while a large one fills it alone
/// (BERT-large, 302M: the GPU saturated with one). Base-size models (85M) get two, a choice not
/// measured yet; a model whose size is unknown gets one.
fn replica_devices(placement: &Placement, dir: &ModelDir) -> Vec<String> {
    match placement {
        Placement::Devices(devices) => devices.clone(),
        Placement::BySize(device) => {
            let replicas = match encoder_parameters(dir) {
                Some(p) if p <= 30_000_000 => 4,
                Some(p) if p <= 120_000_000 => 2,
                _ => 1,
            };
            vec![device.clone(); replicas]
        }
    }
}

/// The encoder's parameter count from the model's `config.json`, when it says.
fn encoder_parameters(dir: &ModelDir) -> Option<i64> {
    dir.config().ok()??.raw.encoder_parameters()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model directory whose config.json has these BERT sizes.
    fn sized_model(hidden: i64, layers: i64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let config = serde_json::json!({
            "hidden_size": hidden, "num_hidden_layers": layers, "intermediate_size": 4 * hidden,
        });
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        dir
    }

    /// Replicas on a GPU follow the model's size, read when it loads, unless configured.
    #[test]
    fn gpu_replicas_follow_the_model_size_unless_configured() {
        let (mini, large) = (sized_model(384, 6), sized_model(1024, 24));
        let devices = |dir: &tempfile::TempDir, opts: &str| {
            let spec = format!("m={}{opts}", dir.path().display());
            let config: ModelConfig = spec.parse().unwrap();
            replica_devices(&config.placement, &ModelDir::read(dir.path()))
        };
        assert_eq!(devices(&mini, ",device=cuda:1"), vec!["cuda:1"; 4]);
        assert_eq!(devices(&large, ",device=cuda"), vec!["cuda"; 1]);
        assert_eq!(
            devices(&sized_model(768, 12), ",device=cuda"),
            vec!["cuda"; 2]
        );
        assert_eq!(devices(&mini, ",device=cuda,replicas=1"), vec!["cuda"; 1]);
        assert_eq!(devices(&mini, ""), vec!["cpu"; 1]);
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(devices(&empty, ",device=cuda"), vec!["cuda"; 1]);
    }
}
