//! Server configuration: a TOML file (`--config`) and/or repeated `--model` flags, merged into one
//! typed [`ServeConfig`]. Parsing reads the file and looks whether a model's directory exists
//! ([`ModelSource::resolve`](crate::hub::ModelSource::resolve)); nothing else touches the disk.
//!
//! ```toml
//! metric_tenants = ["search", "batch"]  # tenants with a metric label of their own (at most 64)
//!
//! [limits]                    # optional; these are the defaults
//! max_pairs_per_request = 2048
//! max_text_bytes = 65536
//! max_priority = 9            # requests may give `priority` 0 (highest) to this
//!
//! [[models]]
//! name = "minilm"
//! path = "models/minilm-ce"
//! devices = ["cpu"]           # one replica per entry; or `device` + `replicas`
//! dtype = "f32"
//! max_batch_tokens = 16384
//! max_batch_pairs = 32           # 64 when a replica is on a GPU
//! max_wait_ms = 2
//! max_queue_pairs = 4096      # full: lower-priority pairs are displaced, else refused
//! priority_aging_ms = 100     # a waiting pair's priority improves one level per this (0: never)
//! tenant_max_queue_pairs = 1024  # pairs one tenant may have queued (default: no quota)
//! ```
//!
//! Layout: [`limits`] (per-request limits), [`model`] (one model's options, defaults and
//! bounds), `flag` (`--model`), `file` (the TOML file), and here the whole and its checks.

mod file;
mod flag;
pub mod limits;
pub mod model;

use std::path::PathBuf;

pub use limits::{RequestLimits, MAX_PRIORITY_LEVELS};
pub use model::{
    check_model, ModelConfig, ModelOptions, Placement, MAX_AGING_MS, MAX_BATCH_PAIRS,
    MAX_BATCH_TOKENS, MAX_MAX_LENGTH, MAX_QUEUE_PAIRS, MAX_REPLICAS, MAX_WAIT_MS,
};

/// Longest model name, in bytes (configured names, and the `model` field of requests).
pub const MAX_MODEL_NAME_BYTES: usize = 128;

/// Tenants with a metric label of their own (`metric_tenants`, `--metric-tenant`).
pub const MAX_METRIC_TENANTS: usize = 64;

/// The characters of model names, API key names and metric tenants: A-Z a-z 0-9 - _ .
pub fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.".contains(&b)
}

/// Why a configuration is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// An error in the file at `path`.
    #[error("{}: {error}", path.display())]
    InFile {
        path: PathBuf,
        error: Box<ConfigError>,
    },
    /// The TOML does not parse or has fields of the wrong type or name.
    #[error("{0}")]
    Toml(String),
    /// A value out of bounds or options that contradict each other; the message names the
    /// option, the limit and the value.
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServeConfig {
    pub models: Vec<ModelConfig>,
    pub limits: RequestLimits,
    /// The REST port (`http_port` in the file, `--http-port`); off when unset.
    pub http_port: Option<u16>,
    /// The model of REST calls that name none (TEI's routes), when several are loaded.
    pub default_model: Option<String>,
    /// The data-plane keys file (`api_keys_file`, relative to the config file's directory;
    /// `--api-keys-file` wins).
    pub api_keys_file: Option<PathBuf>,
    /// Tenants counted under their own name in the per-tenant metrics (`metric_tenants`, and
    /// every `--metric-tenant`); others count as `(other)`.
    pub metric_tenants: Vec<String>,
}

impl ServeConfig {
    /// Names unique, limits coherent.
    pub fn check(&self) -> Result<(), ConfigError> {
        for (i, m) in self.models.iter().enumerate() {
            if self.models[..i].iter().any(|o| o.name == m.name) {
                return Err(ConfigError::Invalid(format!(
                    "model name {:?} is configured twice",
                    m.name
                )));
            }
            check_model(m)?;
        }
        let tenants = &self.metric_tenants;
        if tenants.len() > MAX_METRIC_TENANTS {
            return Err(ConfigError::Invalid(format!(
                "metric_tenants has {} names; the limit is {MAX_METRIC_TENANTS}",
                tenants.len()
            )));
        }
        let plain = |t: &String| !t.is_empty() && t.len() <= 128 && t.bytes().all(is_name_byte);
        if let Some(bad) = tenants.iter().find(|t| !plain(t)) {
            return Err(ConfigError::Invalid(format!(
                "metric_tenants: {bad:?} must be 1-128 characters of A-Z a-z 0-9 - _ ."
            )));
        }
        self.limits.check()
    }
}
