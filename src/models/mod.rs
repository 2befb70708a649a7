//! Cross-encoder architectures, implemented natively on tch with Hugging Face parameter names.
//!
//! Every model is synchronous and owned by one thread: it turns a padded batch of token ids into
//! logits. Tokenization, activation and batching live elsewhere.

mod bert;
pub mod config;
mod deberta;
mod decoder;
mod distilbert;
mod electra;
mod embeddings;
mod encoder;
mod fake;
mod family;
mod logit_score;
mod modernbert;
mod packing;
mod roberta;
mod rotary;
mod safetensors;
mod torchscript;
pub(crate) mod weights;

use std::path::Path;

use tch::{Device, Tensor};

use crate::activation::Activation;
use crate::device::DType;
use crate::error::{Result, RuntimeError};
use crate::model_dir::{ArchConfig, ModelDir, RawConfig};
pub use family::{families, family, supported_architectures, Family, Kind};

/// The longest input (tokens) the server serves, whatever a model's config declares; also the
/// ceiling of the `max_length` model option.
pub const MAX_MAX_LENGTH: usize = 1 << 16;

/// One padded batch on the model's device: int64 tensors of shape [batch, seq].
pub struct Inputs {
    pub input_ids: Tensor,
    pub attention_mask: Tensor,
    pub token_type_ids: Tensor,
    /// Real tokens of each row, on the host (the attention mask's row sums).
    pub lengths: Vec<i64>,
}

/// A loaded network: padded token ids in, raw logits [batch, num_labels] out.
pub trait SequenceClassifier: Send {
    fn logits(&self, inputs: &Inputs) -> Result<Tensor>;
}

/// What the rest of the runtime needs to know about a model, read from its directory.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub architecture: String,
    pub labels: Vec<String>,
    pub default_activation: Activation,
    /// Longest input (special tokens included) the position embeddings allow.
    pub max_positions: usize,
    /// Whether token type ids from the tokenizer are fed to the model.
    pub uses_token_types: bool,
    pub vocab_size: i64,
    pub type_vocab_size: i64,
    pub pad_token_id: i64,
}

/// A network and what the runtime needs to know about it.
pub type Loaded = (Box<dyn SequenceClassifier>, ModelSpec);

/// Builds the network of `dir` on `device`: the family its `config.json` names (or a
/// TorchScript `model.pt`), found in the table of [`families`], which also refuses a dtype the
/// family lacks.
pub fn load(dir: &ModelDir, device: Device, dtype: DType) -> Result<Loaded> {
    let family = match dir.is_torchscript() {
        true => &family::TORCHSCRIPT,
        false => family::of(config_of(dir)?.architecture())?,
    };
    family.check_dtype(dtype)?;
    let (model, mut spec) = (family.load)(dir, device, dtype)?;
    if !dir.is_torchscript() {
        spec.architecture = config_of(dir)?.architecture().to_owned();
    }
    Ok((model, spec))
}

/// The directory's `config.json`, which every architecture but TorchScript needs.
fn config_of(dir: &ModelDir) -> Result<&ArchConfig> {
    dir.config()?.ok_or_else(|| RuntimeError::MissingFile {
        dir: dir.dir().to_owned(),
        what: "no config.json (nor a TorchScript model.pt)".into(),
    })
}

/// The activation sentence-transformers applies by default: `activation_fn` of
/// `config_sentence_transformers.json`, else the one named in `config.json`, else Sigmoid for
/// one label and none for several.
fn default_activation(dir: &ModelDir, arch: &ArchConfig, labels: usize) -> Result<Activation> {
    #[derive(serde::Deserialize)]
    struct StConfig {
        activation_fn: Option<serde_json::Value>,
    }
    let st_path = dir.path(crate::model_dir::files::ST_CONFIG);
    let saved = match dir.st_config()? {
        Some(value) => crate::model_dir::arch::deserialize::<StConfig>(&st_path, value)?
            .activation_fn
            .and_then(|a| a.as_str().map(str::to_owned)),
        None => None,
    };
    let path = arch.path();
    let named = match saved.as_deref().or(arch.raw.st_activation()) {
        Some(name) => Activation::from_class_path(name).map_err(|m| config::invalid(path, m))?,
        None => None,
    };
    Ok(named.unwrap_or(Activation::default_for(labels)))
}

/// The spec fields common to the config-driven architectures.
/// `raw` is `arch`'s shared fields, possibly with an architecture's defaults filled in.
fn spec_from(
    (dir, arch, raw): (&ModelDir, &ArchConfig, &RawConfig),
    cfg: &config::EncoderConfig,
    position_offset: i64,
    uses_token_types: bool,
) -> Result<ModelSpec> {
    let labels = raw.labels(arch.path())?;
    let default_activation = default_activation(dir, arch, labels.len())?;
    Ok(ModelSpec {
        architecture: String::new(),
        labels,
        default_activation,
        max_positions: serving_positions(cfg.max_position_embeddings - position_offset),
        uses_token_types,
        vocab_size: cfg.vocab_size,
        type_vocab_size: cfg.type_vocab_size,
        pad_token_id: cfg.pad_token_id,
    })
}

/// The longest input served for a model whose position embeddings allow `positions` tokens:
/// never above the server's maximum ([`MAX_MAX_LENGTH`]), whatever the config says.
pub(crate) fn serving_positions(positions: i64) -> usize {
    usize::try_from(positions.max(0))
        .unwrap_or(usize::MAX)
        .min(MAX_MAX_LENGTH)
}

/// The longest input served by architectures whose attention builds S x S tensors in full
/// (ModernBERT's masks, DeBERTa's relative positions): their memory grows with the square of
/// the length (a ModernBERT warm-up at 8,192 tokens measured ~1.4 GiB; at 65,536 it would be
/// ~64x that), so a config declaring more positions is served at 8,192 tokens, ModernBERT's own
/// maximum, with a warning.
pub(crate) const SQUARE_ATTENTION_MAX_LENGTH: usize = 8192;

/// Caps `spec`'s served length at [`SQUARE_ATTENTION_MAX_LENGTH`], saying so when it does.
pub(crate) fn cap_square_attention(mut spec: ModelSpec, path: &Path) -> ModelSpec {
    if spec.max_positions > SQUARE_ATTENTION_MAX_LENGTH {
        tracing::warn!(
            config = %path.display(),
            positions = spec.max_positions,
            served = SQUARE_ATTENTION_MAX_LENGTH,
            "this architecture's attention grows with the square of the length: inputs are cut \
             at {SQUARE_ATTENTION_MAX_LENGTH} tokens"
        );
        spec.max_positions = SQUARE_ATTENTION_MAX_LENGTH;
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the positions a config declares, the served length is at most the server's
    /// maximum; nonsense below zero serves nothing (the tokenizer then refuses the model).
    #[test]
    fn serving_positions_never_exceed_the_server_maximum() {
        assert_eq!(serving_positions(512), 512);
        assert_eq!(serving_positions(1 << 40), MAX_MAX_LENGTH);
        assert_eq!(serving_positions(i64::MAX), MAX_MAX_LENGTH);
        assert_eq!(serving_positions(-3), 0);
    }
}
