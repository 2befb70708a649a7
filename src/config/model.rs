//! One model's configuration: the options as given (a `[[models]]` table, a `--model` flag or
//! a LoadModel call), their defaults and their bounds. Nothing here reads the disk beyond
//! [`ModelSource::resolve`]'s look for a directory; replicas sized by the model are decided
//! when it loads ([`Placement::BySize`]).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, MAX_MODEL_NAME_BYTES};
use crate::device::DType;
use crate::hub::ModelSource;
use crate::scheduler::BatchLimits;

/// One model to serve.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub name: String,
    /// Its directory or Hugging Face id, decided once ([`ModelSource::resolve`]).
    pub source: ModelSource,
    /// Where its replicas run.
    pub placement: Placement,
    pub dtype: Option<DType>,
    pub max_length: Option<usize>,
    pub batching: BatchLimits,
}

/// Where a model's replicas run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// One replica per entry, by device name (`cpu`, `cuda:0`, …).
    Devices(Vec<String>),
    /// A GPU given without `replicas`: as many replicas on it as suit the model's size,
    /// decided when the model loads (its config.json is read then, not here).
    BySize(String),
}

impl Placement {
    /// The devices known from the configuration alone (one entry for [`Placement::BySize`]).
    pub fn configured(&self) -> &[String] {
        match self {
            Self::Devices(devices) => devices,
            Self::BySize(device) => std::slice::from_ref(device),
        }
    }
}

/// A model's options as given; unset options take their defaults in
/// [`ModelOptions::into_config`], the one place where defaults and bounds are applied.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ModelOptions {
    pub name: String,
    pub path: PathBuf,
    pub devices: Option<Vec<String>>,
    pub device: Option<String>,
    pub replicas: Option<usize>,
    pub dtype: Option<String>,
    pub max_length: Option<usize>,
    pub max_batch_tokens: Option<usize>,
    pub max_batch_pairs: Option<usize>,
    pub max_wait_ms: Option<u64>,
    pub max_queue_pairs: Option<usize>,
    /// A waiting pair's priority improves one level per this many ms (0: no aging).
    pub priority_aging_ms: Option<u64>,
    /// Pairs one tenant may have queued on this model (unset: no quota beyond max_queue_pairs).
    pub tenant_max_queue_pairs: Option<usize>,
}

/// Upper bounds of model options: beyond them a value is a mistake (or an attack on LoadModel).
pub const MAX_REPLICAS: usize = 64;
pub const MAX_WAIT_MS: u64 = 60_000;
pub const MAX_AGING_MS: u64 = 3_600_000;
pub const MAX_BATCH_PAIRS: usize = 4096;
pub const MAX_BATCH_TOKENS: usize = 1 << 22;
pub const MAX_QUEUE_PAIRS: usize = 1 << 20;
pub use crate::models::MAX_MAX_LENGTH;

fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid(message)
}

impl ModelOptions {
    /// The model's configuration, with defaults applied and every option checked against its
    /// bounds; `path` is resolved against `base` ([`ModelSource::resolve`]).
    pub fn into_config(self, base: &Path) -> Result<ModelConfig, ConfigError> {
        let source = ModelSource::resolve(&self.path, Some(base));
        self.into_config_from(source)
    }

    /// [`into_config`](Self::into_config) for a source already resolved (LoadModel's, under
    /// the model root); `path` is not looked at.
    pub fn into_config_from(self, source: ModelSource) -> Result<ModelConfig, ConfigError> {
        let config = self.apply_defaults(source)?;
        check_model(&config)?;
        Ok(config)
    }

    fn placement(&mut self) -> Result<Placement, ConfigError> {
        let name = &self.name;
        match self.replicas {
            Some(0) => {
                return Err(invalid(format!(
                    "model {name}: replicas must be at least 1"
                )))
            }
            Some(r) if r > MAX_REPLICAS => {
                return Err(invalid(format!(
                    "model {name}: replicas is {r}; at most {MAX_REPLICAS}"
                )))
            }
            _ => {}
        }
        match (self.devices.take(), self.device.take(), self.replicas) {
            (Some(_), Some(_), _) => Err(invalid(format!(
                "model {name}: give `devices` or `device`, not both"
            ))),
            (Some(d), None, _) => Ok(Placement::Devices(d)),
            (None, d, Some(replicas)) => {
                Ok(Placement::Devices(vec![
                    d.unwrap_or_else(|| "cpu".into());
                    replicas
                ]))
            }
            // one replica on the CPU, whose cores it shares (`bench/compare.sh`)
            (None, Some(d), None) if d.starts_with("cuda") => Ok(Placement::BySize(d)),
            (None, d, None) => Ok(Placement::Devices(vec![d.unwrap_or_else(|| "cpu".into())])),
        }
    }

    fn apply_defaults(mut self, source: ModelSource) -> Result<ModelConfig, ConfigError> {
        let placement = self.placement()?;
        let d = BatchLimits::default();
        let max_batch_pairs = self
            .max_batch_pairs
            .unwrap_or_else(|| default_batch_pairs(placement.configured()));
        let dtype = self.dtype.as_deref().map(DType::from_str).transpose();
        Ok(ModelConfig {
            source,
            placement,
            dtype: dtype.map_err(invalid)?,
            max_length: self.max_length,
            batching: BatchLimits {
                max_batch_tokens: self.max_batch_tokens.unwrap_or(d.max_batch_tokens),
                max_batch_pairs,
                max_wait: self.max_wait_ms.map_or(d.max_wait, Duration::from_millis),
                max_queue_pairs: self.max_queue_pairs.unwrap_or(d.max_queue_pairs),
                priority_aging: self
                    .priority_aging_ms
                    .map_or(d.priority_aging, Duration::from_millis),
                tenant_max_queue_pairs: self.tenant_max_queue_pairs,
            },
            name: self.name,
        })
    }
}

/// Pairs per batch unless configured: 32 when every replica is on the CPU, where larger batches
/// measured no faster and raised peak memory (the batch's activations), 64 otherwise.
fn default_batch_pairs(devices: &[String]) -> usize {
    if devices.iter().all(|d| d == "cpu") {
        32
    } else {
        BatchLimits::default().max_batch_pairs
    }
}

/// The name's characters and every option within its bounds.
pub fn check_model(m: &ModelConfig) -> Result<(), ConfigError> {
    let name = &m.name;
    if name.is_empty()
        || name.len() > MAX_MODEL_NAME_BYTES
        || !name.bytes().all(super::is_name_byte)
    {
        return Err(invalid(format!(
            "model name {name:?} must be 1-128 characters of A-Z a-z 0-9 - _ ."
        )));
    }
    if name.starts_with("crossrank.") {
        return Err(invalid(format!(
            "model name {name:?}: names starting with \"crossrank.\" are reserved for the \
             server's own health services"
        )));
    }
    if m.placement.configured().is_empty() {
        return Err(invalid(format!(
            "model {name}: at least one replica device is needed"
        )));
    }
    for (option, value, max) in bounds(m) {
        let may_be_zero = ["max_wait_ms", "priority_aging_ms"].contains(&option);
        let positive = may_be_zero || value > 0;
        if !positive || value > max {
            return Err(invalid(format!(
                "model {name}: {option} is {value}; it must be between {} and {max}",
                u64::from(!may_be_zero)
            )));
        }
    }
    Ok(())
}

/// Each bounded option: its name, its value and its ceiling.
fn bounds(m: &ModelConfig) -> [(&'static str, u64, u64); 8] {
    let b = &m.batching;
    let replicas = m.placement.configured().len() as u64;
    [
        ("replicas", replicas, MAX_REPLICAS as u64),
        (
            "max_batch_pairs",
            b.max_batch_pairs as u64,
            MAX_BATCH_PAIRS as u64,
        ),
        (
            "max_batch_tokens",
            b.max_batch_tokens as u64,
            MAX_BATCH_TOKENS as u64,
        ),
        (
            "max_queue_pairs",
            b.max_queue_pairs as u64,
            MAX_QUEUE_PAIRS as u64,
        ),
        ("max_wait_ms", b.max_wait.as_millis() as u64, MAX_WAIT_MS),
        (
            "priority_aging_ms",
            b.priority_aging.as_millis() as u64,
            MAX_AGING_MS,
        ),
        (
            "tenant_max_queue_pairs",
            b.tenant_max_queue_pairs.unwrap_or(1) as u64,
            MAX_QUEUE_PAIRS as u64,
        ),
        (
            "max_length",
            m.max_length.unwrap_or(1) as u64,
            MAX_MAX_LENGTH as u64,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(device: Option<&str>, replicas: Option<usize>) -> ModelOptions {
        ModelOptions {
            name: "m".into(),
            path: "/m".into(),
            device: device.map(str::to_owned),
            replicas,
            ..Default::default()
        }
    }

    /// A GPU without `replicas` is sized when the model loads (nothing is read here); given
    /// replicas, or the CPU, are fixed.
    #[test]
    fn replicas_on_a_gpu_are_left_to_the_load_unless_configured() {
        let placement = |device, replicas| {
            options(device, replicas)
                .into_config(Path::new(""))
                .unwrap()
                .placement
        };
        assert_eq!(
            placement(Some("cuda:1"), None),
            Placement::BySize("cuda:1".into())
        );
        assert_eq!(
            placement(Some("cuda"), Some(1)),
            Placement::Devices(vec!["cuda".into()])
        );
        assert_eq!(
            placement(None, None),
            Placement::Devices(vec!["cpu".into()])
        );
        assert_eq!(
            placement(Some("cpu"), Some(2)),
            Placement::Devices(vec!["cpu".into(); 2])
        );
    }
}
