//! Server configuration: a TOML file (`--config`) and/or repeated `--model` flags, merged into one
//! typed [`ServeConfig`].
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

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::device::DType;
use crate::models::config::RawConfig;
use crate::scheduler::BatchLimits;

/// One model to serve.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub name: String,
    /// The model directory, or the Hugging Face id as given when `hub` is set.
    pub path: PathBuf,
    /// Set when `path` is a Hugging Face id to fetch (no directory of that name exists): decided
    /// once, here, and never by looking at the disk again.
    pub hub: Option<crate::hub::RepoRef>,
    /// `path` is a local directory whose name is also a valid Hugging Face id (said in the log
    /// when the model loads).
    pub shadows_id: bool,
    /// One replica per entry, by device name (`cpu`, `cuda:0`, …).
    pub devices: Vec<String>,
    pub dtype: Option<DType>,
    pub max_length: Option<usize>,
    pub batching: BatchLimits,
}

/// Longest model name, in bytes (configured names, and the `model` field of requests).
pub const MAX_MODEL_NAME_BYTES: usize = 128;

/// Tenants with a metric label of their own (`metric_tenants`, `--metric-tenant`).
pub const MAX_METRIC_TENANTS: usize = 64;

/// The characters of model names, API key names and metric tenants: A-Z a-z 0-9 - _ .
pub fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.".contains(&b)
}

/// Per-request limits, checked before any work is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestLimits {
    /// Pairs (or documents) in one request.
    pub max_pairs_per_request: usize,
    /// Bytes in one text (text_a, text_b, query or document).
    pub max_text_bytes: usize,
    /// Bytes in one `request_id` or `Document.id`.
    pub max_id_bytes: usize,
    /// Bytes of text being tokenized at once, over all requests; beyond, RESOURCE_EXHAUSTED.
    pub max_tokenizing_bytes: usize,
    /// ScoreStream requests being scored at once on one stream; the stream stops reading beyond.
    pub max_stream_in_flight: usize,
    /// Seconds a ScoreStream or RerankStream may go without a client message before it ends.
    pub stream_idle_timeout_secs: u64,
    /// The largest (least urgent) `priority` a request may give; 0 is the highest.
    pub max_priority: u32,
}

/// The ceiling of `max_priority`.
pub const MAX_PRIORITY_LEVELS: u32 = 1000;

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_pairs_per_request: 2048,
            max_text_bytes: 64 * 1024,
            max_id_bytes: 256,
            max_tokenizing_bytes: 64 << 20,
            max_stream_in_flight: 8,
            stream_idle_timeout_secs: 300,
            max_priority: 9,
        }
    }
}

impl RequestLimits {
    /// The largest request message these limits let through: every pair at its largest, with
    /// ids, plus protobuf framing. The default gRPC message limit is this, capped at 64 MiB.
    pub fn max_request_bytes(&self) -> usize {
        let per_pair = 2 * self.max_text_bytes + self.max_id_bytes + 16;
        let header = self.max_text_bytes + self.max_id_bytes + MAX_MODEL_NAME_BYTES + 64;
        self.max_pairs_per_request
            .saturating_mul(per_pair)
            .saturating_add(header)
    }

    pub fn check(&self) -> Result<(), String> {
        let positive = [
            ("max_pairs_per_request", self.max_pairs_per_request as u64),
            ("max_text_bytes", self.max_text_bytes as u64),
            ("max_id_bytes", self.max_id_bytes as u64),
            ("max_tokenizing_bytes", self.max_tokenizing_bytes as u64),
            ("max_stream_in_flight", self.max_stream_in_flight as u64),
            ("stream_idle_timeout_secs", self.stream_idle_timeout_secs),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("limits: {name} must be positive"));
            }
        }
        let ceilings = [
            (
                "max_pairs_per_request",
                self.max_pairs_per_request as u64,
                1 << 20,
            ),
            ("max_text_bytes", self.max_text_bytes as u64, 64 << 20),
            ("max_id_bytes", self.max_id_bytes as u64, 64 << 10),
            (
                "max_stream_in_flight",
                self.max_stream_in_flight as u64,
                1024,
            ),
            (
                "stream_idle_timeout_secs",
                self.stream_idle_timeout_secs,
                86_400,
            ),
            (
                "max_priority",
                u64::from(self.max_priority),
                u64::from(MAX_PRIORITY_LEVELS),
            ),
        ];
        for (name, value, max) in ceilings {
            if value > max {
                return Err(format!("limits: {name} is {value}; at most {max}"));
            }
        }
        Ok(())
    }
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

/// The TOML file's shape.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    limits: RequestLimits,
    #[serde(default)]
    models: Vec<ModelOptions>,
    http_port: Option<u16>,
    default_model: Option<String>,
    api_keys_file: Option<PathBuf>,
    #[serde(default)]
    metric_tenants: Vec<String>,
}

/// A model's options as given (a TOML `[[models]]` table, a `--model` flag or a LoadModel
/// call); unset options take their defaults in [`ModelOptions::into_config`], the one place
/// where defaults and bounds are applied.
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
pub const MAX_MAX_LENGTH: usize = 1 << 16;

impl ServeConfig {
    /// Parses a TOML config; relative model paths are taken from the file's directory.
    pub fn from_toml(text: &str, base: &Path) -> Result<Self, String> {
        let file: FileConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        let models = file
            .models
            .into_iter()
            .map(|m| m.into_config(base))
            .collect::<Result<Vec<_>, _>>()?;
        let config = Self {
            models,
            limits: file.limits,
            http_port: file.http_port,
            default_model: file.default_model,
            api_keys_file: file.api_keys_file.map(|p| base.join(p)),
            metric_tenants: file.metric_tenants,
        };
        config.check()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Names unique, limits coherent.
    pub fn check(&self) -> Result<(), String> {
        for (i, m) in self.models.iter().enumerate() {
            if self.models[..i].iter().any(|o| o.name == m.name) {
                return Err(format!("model name {:?} is configured twice", m.name));
            }
            check_model(m)?;
        }
        let tenants = &self.metric_tenants;
        if tenants.len() > MAX_METRIC_TENANTS {
            return Err(format!(
                "metric_tenants has {} names; the limit is {MAX_METRIC_TENANTS}",
                tenants.len()
            ));
        }
        let plain = |t: &String| !t.is_empty() && t.len() <= 128 && t.bytes().all(is_name_byte);
        if let Some(bad) = tenants.iter().find(|t| !plain(t)) {
            return Err(format!(
                "metric_tenants: {bad:?} must be 1-128 characters of A-Z a-z 0-9 - _ ."
            ));
        }
        self.limits.check()
    }
}

pub fn check_model(m: &ModelConfig) -> Result<(), String> {
    let b = &m.batching;
    let name = &m.name;
    if name.is_empty()
        || name.len() > MAX_MODEL_NAME_BYTES
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(format!(
            "model name {name:?} must be 1-128 characters of A-Z a-z 0-9 - _ ."
        ));
    }
    if name.starts_with("crossrank.") {
        return Err(format!(
            "model name {name:?}: names starting with \"crossrank.\" are reserved for the \
             server's own health services"
        ));
    }
    if m.devices.is_empty() {
        return Err(format!(
            "model {name}: at least one replica device is needed"
        ));
    }
    let bounds = [
        ("replicas", m.devices.len() as u64, MAX_REPLICAS as u64),
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
    ];
    for (option, value, max) in bounds {
        let may_be_zero = ["max_wait_ms", "priority_aging_ms"].contains(&option);
        let positive = may_be_zero || value > 0;
        if !positive || value > max {
            return Err(format!(
                "model {name}: {option} is {value}; it must be between {} and {max}",
                u64::from(!may_be_zero)
            ));
        }
    }
    Ok(())
}

/// Pairs per batch unless configured: 32 when every replica is on the CPU, where larger batches
/// measured no faster and raised peak memory (the batch's activations), 64 otherwise.
/// Replicas of a model on its device when not configured. On the CPU one: replicas share its
/// cores (`bench/compare.sh` measures the layouts). On a GPU by the encoder's size: a small
/// model's batch is too short to fill the chip, so several replicas overlap their kernel
/// launches (MiniLM-L6, 11M encoder parameters, on an H200: 11,086 pairs/s with one replica,
/// 17,582 with four), while a large one fills it alone (BERT-large, 302M: the GPU saturated
/// with one). Base-size models (85M) get two, a choice not measured yet.
fn default_replicas(device: &str, dir: &Path, hub: Option<&crate::hub::RepoRef>) -> usize {
    if !device.starts_with("cuda") {
        return 1;
    }
    // A Hugging Face id is sized from its cached snapshot; not yet fetched, it gets 1.
    let dir = hub
        .and_then(crate::hub::cached_snapshot)
        .unwrap_or_else(|| dir.to_owned());
    let params = RawConfig::read(&dir.join("config.json"))
        .ok()
        .and_then(|c| c.encoder_parameters());
    match params {
        Some(p) if p <= 30_000_000 => 4,
        Some(p) if p <= 120_000_000 => 2,
        _ => 1,
    }
}

/// A model's path as configured: relative to `base`, unless it is a Hugging Face id with no
/// directory of that name there (then the id itself, fetched when the model loads).
fn model_path(base: &Path, path: &Path) -> (PathBuf, Option<crate::hub::RepoRef>) {
    let local = base.join(path);
    match crate::hub::RepoRef::parse_path(path) {
        Some(repo) if !local.exists() => (path.to_owned(), Some(repo)),
        _ => (local, None),
    }
}

fn default_batch_pairs(devices: &[String]) -> usize {
    if devices.iter().all(|d| d == "cpu") {
        32
    } else {
        BatchLimits::default().max_batch_pairs
    }
}

impl ModelOptions {
    /// The model's configuration, with defaults applied and every option checked against its
    /// bounds; a relative path is taken from `base`.
    pub fn into_config(self, base: &Path) -> Result<ModelConfig, String> {
        let config = self.apply_defaults(base)?;
        check_model(&config)?;
        Ok(config)
    }

    fn apply_defaults(self, base: &Path) -> Result<ModelConfig, String> {
        if self.replicas == Some(0) {
            return Err(format!("model {}: replicas must be at least 1", self.name));
        }
        if self.replicas.is_some_and(|r| r > MAX_REPLICAS) {
            return Err(format!(
                "model {}: replicas is {}; at most {MAX_REPLICAS}",
                self.name,
                self.replicas.unwrap_or_default()
            ));
        }
        let (path, hub) = model_path(base, &self.path);
        let devices = match (self.devices, self.device) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "model {}: give `devices` or `device`, not both",
                    self.name
                ))
            }
            (Some(d), None) => d,
            (None, d) => {
                let device = d.unwrap_or_else(|| "cpu".into());
                let replicas = self
                    .replicas
                    .unwrap_or_else(|| default_replicas(&device, &path, hub.as_ref()));
                vec![device; replicas]
            }
        };
        let d = BatchLimits::default();
        let max_batch_pairs = self
            .max_batch_pairs
            .unwrap_or_else(|| default_batch_pairs(&devices));
        let shadows_id = hub.is_none() && crate::hub::RepoRef::parse_path(&self.path).is_some();
        Ok(ModelConfig {
            path,
            hub,
            shadows_id,
            devices,
            dtype: self.dtype.as_deref().map(DType::from_str).transpose()?,
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

impl FromStr for ModelConfig {
    type Err = String;

    /// `NAME=DIR[,device=cuda:0][,dtype=f16][,replicas=2][,max_batch_tokens=N][,max_batch_pairs=N]
    /// [,max_wait_ms=N][,max_queue_pairs=N][,max_length=N][,priority_aging_ms=N]
    /// [,tenant_max_queue_pairs=N]`
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, rest) = s
            .split_once('=')
            .ok_or_else(|| format!("--model {s:?}: expected NAME=DIR[,key=value…] (DIR: a directory or a Hugging Face id org/name[@revision])"))?;
        let mut parts = rest.split(',');
        let mut m = ModelOptions {
            name: name.to_owned(),
            path: PathBuf::from(parts.next().unwrap_or_default()),
            ..Default::default()
        };
        for kv in parts {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("--model {name}: {kv:?} is not key=value"))?;
            let num = || {
                v.parse::<usize>()
                    .map_err(|_| format!("--model {name}: {k}={v:?} is not a whole number"))
            };
            match k {
                "device" => m.device = Some(v.to_owned()),
                "dtype" => m.dtype = Some(v.to_owned()),
                "replicas" => m.replicas = Some(num()?),
                "max_batch_tokens" => m.max_batch_tokens = Some(num()?),
                "max_batch_pairs" => m.max_batch_pairs = Some(num()?),
                "max_wait_ms" => m.max_wait_ms = Some(num()? as u64),
                "max_queue_pairs" => m.max_queue_pairs = Some(num()?),
                "max_length" => m.max_length = Some(num()?),
                "priority_aging_ms" => m.priority_aging_ms = Some(num()? as u64),
                "tenant_max_queue_pairs" => m.tenant_max_queue_pairs = Some(num()?),
                _ => return Err(format!("--model {name}: unknown option {k:?}; known: device, dtype, replicas, max_batch_tokens, max_batch_pairs, max_wait_ms, max_queue_pairs, max_length, priority_aging_ms, tenant_max_queue_pairs")),
            }
        }
        m.into_config(Path::new(""))
    }
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

    #[test]
    fn gpu_replicas_follow_the_model_size_unless_configured() {
        let (mini, large) = (sized_model(384, 6), sized_model(1024, 24));
        let devices = |dir: &tempfile::TempDir, opts: &str| {
            let spec = format!("m={}{opts}", dir.path().display());
            spec.parse::<ModelConfig>().unwrap().devices
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

    #[test]
    fn model_flag_with_options() {
        let m: ModelConfig =
            "ce=/m,device=cpu,replicas=2,dtype=bf16,max_wait_ms=7,max_queue_pairs=10"
                .parse()
                .unwrap();
        assert_eq!(m.name, "ce");
        assert_eq!(m.path, PathBuf::from("/m"));
        assert_eq!(m.devices, vec!["cpu", "cpu"]);
        assert_eq!(m.dtype, Some(DType::Bf16));
        assert_eq!(m.batching.max_wait, Duration::from_millis(7));
        assert_eq!(m.batching.max_queue_pairs, 10);
    }

    #[test]
    fn batch_pairs_default_by_device_unless_given() {
        let pairs = |spec: &str| {
            spec.parse::<ModelConfig>()
                .unwrap()
                .batching
                .max_batch_pairs
        };
        assert_eq!(pairs("ce=/m"), 32);
        assert_eq!(pairs("ce=/m,device=cuda:0"), 64);
        assert_eq!(pairs("ce=/m,max_batch_pairs=48"), 48);
        let text = "[[models]]\nname = \"a\"\npath = \"m\"\ndevices = [\"cpu\", \"cuda:0\"]\n";
        let c = ServeConfig::from_toml(text, Path::new("")).unwrap();
        assert_eq!(c.models[0].batching.max_batch_pairs, 64);
    }

    #[test]
    fn model_flag_errors_name_the_option() {
        assert!("ce"
            .parse::<ModelConfig>()
            .unwrap_err()
            .contains("NAME=DIR"));
        assert!("ce=/m,colour=red"
            .parse::<ModelConfig>()
            .unwrap_err()
            .contains("\"colour\""));
        assert!("ce=/m,replicas=x"
            .parse::<ModelConfig>()
            .unwrap_err()
            .contains("replicas"));
        assert!("ce=/m,replicas=0"
            .parse::<ModelConfig>()
            .unwrap_err()
            .contains("at least 1"));
    }

    #[test]
    fn toml_config() {
        let text = "[limits]\nmax_text_bytes = 100\n[[models]]\nname = \"a\"\npath = \"m\"\ndevices = [\"cpu\", \"cpu\"]\n";
        let c = ServeConfig::from_toml(text, Path::new("/etc/cr")).unwrap();
        assert_eq!(c.limits.max_text_bytes, 100);
        assert_eq!(c.models[0].path, PathBuf::from("/etc/cr/m"));
        assert_eq!(c.models[0].devices.len(), 2);
        let dup =
            "[[models]]\nname = \"a\"\npath = \"m\"\n[[models]]\nname = \"a\"\npath = \"n\"\n";
        assert!(ServeConfig::from_toml(dup, Path::new(""))
            .unwrap_err()
            .contains("twice"));
        assert!(ServeConfig::from_toml(
            "[[models]]\nname=\"a\"\npath=\"m\"\ncolor=1\n",
            Path::new("")
        )
        .is_err());
    }

    #[test]
    fn hugging_face_ids_stay_ids_unless_a_directory_has_that_name() {
        let base = tempfile::tempdir().unwrap();
        let text = "[[models]]\nname = \"a\"\npath = \"org/name@v1\"\n";
        let c = ServeConfig::from_toml(text, base.path()).unwrap();
        assert_eq!(c.models[0].path, PathBuf::from("org/name@v1"));
        assert_eq!(c.models[0].hub.as_ref().unwrap().revision, "v1");
        std::fs::create_dir_all(base.path().join("org/name@v1")).unwrap();
        let c = ServeConfig::from_toml(text, base.path()).unwrap();
        assert_eq!(c.models[0].path, base.path().join("org/name@v1"));
        assert_eq!(c.models[0].hub, None);
        let flag: ModelConfig = "a=org/name,device=cpu".parse().unwrap();
        assert_eq!(flag.path, PathBuf::from("org/name"));
    }
}
