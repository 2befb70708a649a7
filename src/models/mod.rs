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
pub mod json_file;
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
use crate::config::MAX_MAX_LENGTH;
use crate::device::DType;
use crate::error::{Result, RuntimeError};
use config::RawConfig;

pub const SUPPORTED_ARCHITECTURES: [&str; 13] = [
    "BertForSequenceClassification",
    "RobertaForSequenceClassification",
    "XLMRobertaForSequenceClassification",
    "ElectraForSequenceClassification",
    "DistilBertForSequenceClassification",
    "ModernBertForSequenceClassification",
    "DebertaV2ForSequenceClassification",
    "Qwen3ForSequenceClassification",
    "Qwen2ForSequenceClassification",
    "LlamaForSequenceClassification",
    "Qwen3ForCausalLM",
    "Qwen2ForCausalLM",
    "LlamaForCausalLM",
];

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

/// Reads `config.json` (or `crossrank.json` for TorchScript) and builds the network on `device`.
pub fn load(
    dir: &Path,
    device: Device,
    dtype: DType,
) -> Result<(Box<dyn SequenceClassifier>, ModelSpec)> {
    if dir.join(torchscript::MODEL_FILE).is_file() {
        if dtype == DType::Int8 {
            return Err(RuntimeError::InvalidOption(
                "dtype int8 is not available for TorchScript models; use f32 or bf16".into(),
            ));
        }
        return torchscript::load(dir, device, dtype.kind());
    }
    let path = dir.join("config.json");
    if !path.is_file() {
        return Err(RuntimeError::MissingFile {
            dir: dir.to_owned(),
            what: "no config.json (nor a TorchScript model.pt)".into(),
        });
    }
    let raw = RawConfig::read(&path)?;
    let arch = raw.architectures.first().cloned().unwrap_or_default();
    let (model, mut spec): (Box<dyn SequenceClassifier>, ModelSpec) = match arch.as_str() {
        "BertForSequenceClassification" => bert::load(dir, &raw, device, dtype)?,
        "RobertaForSequenceClassification" | "XLMRobertaForSequenceClassification" => {
            roberta::load(dir, &raw, device, dtype)?
        }
        "ElectraForSequenceClassification" => electra::load(dir, &raw, device, dtype)?,
        "DistilBertForSequenceClassification" => distilbert::load(dir, &raw, device, dtype)?,
        "ModernBertForSequenceClassification" => modernbert::load(dir, &raw, device, dtype)?,
        "DebertaV2ForSequenceClassification" => deberta::load(dir, &raw, device, dtype)?,
        "Qwen3ForSequenceClassification" => {
            decoder::load(dir, &raw, decoder::Family::Qwen3, None, device, dtype)?
        }
        "Qwen2ForSequenceClassification" => {
            decoder::load(dir, &raw, decoder::Family::Qwen2, None, device, dtype)?
        }
        "LlamaForSequenceClassification" => {
            decoder::load(dir, &raw, decoder::Family::Llama, None, device, dtype)?
        }
        "Qwen3ForCausalLM" | "Qwen2ForCausalLM" | "LlamaForCausalLM" => {
            let family = match arch.as_str() {
                "Qwen3ForCausalLM" => decoder::Family::Qwen3,
                "Qwen2ForCausalLM" => decoder::Family::Qwen2,
                _ => decoder::Family::Llama,
            };
            let tokens = logit_score::read(dir)?;
            decoder::load(dir, &raw, family, Some(tokens), device, dtype)?
        }
        _ => return Err(RuntimeError::UnknownArchitecture { given: arch }),
    };
    spec.architecture = arch;
    Ok((model, spec))
}

/// int8 is implemented for the BERT-family encoders only.
fn refuse_int8(dtype: DType, family: &str) -> Result<()> {
    match dtype {
        DType::Int8 => Err(RuntimeError::InvalidOption(format!(
            "dtype int8 is available for BERT-family encoders only; use f32 or bf16 for {family}"
        ))),
        _ => Ok(()),
    }
}

/// The activation sentence-transformers applies by default: `activation_fn` of
/// `config_sentence_transformers.json` (beside `config.json` at `path`), else the one named in
/// `config.json`, else Sigmoid for one label and none for several.
fn default_activation(raw: &RawConfig, path: &Path, labels: usize) -> Result<Activation> {
    #[derive(serde::Deserialize)]
    struct StConfig {
        activation_fn: Option<serde_json::Value>,
    }
    let st_path = path.with_file_name("config_sentence_transformers.json");
    let saved = match json_file::read_optional(&st_path, json_file::SMALL_LIMIT)? {
        Some(text) => json_file::parse::<StConfig>(&st_path, &text)?
            .activation_fn
            .and_then(|a| a.as_str().map(str::to_owned)),
        None => None,
    };
    let named = match saved.as_deref().or(raw.st_activation()) {
        Some(name) => Activation::from_class_path(name).map_err(|m| config::invalid(path, m))?,
        None => None,
    };
    Ok(named.unwrap_or(Activation::default_for(labels)))
}

/// The spec fields common to the config-driven architectures.
fn spec_from(
    raw: &RawConfig,
    path: &Path,
    cfg: &config::EncoderConfig,
    position_offset: i64,
    uses_token_types: bool,
) -> Result<ModelSpec> {
    let labels = raw.labels(path)?;
    let default_activation = default_activation(raw, path, labels.len())?;
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
