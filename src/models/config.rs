//! The sizes of a Hugging Face sequence-classification checkpoint's `config.json` (read into
//! [`RawConfig`] by the model directory), reduced to what the runtime needs. Field names follow transformers; DistilBERT's own names are mapped here.
//!
//! A config is untrusted input: every size it gives is checked against [`LIMITS`] (by
//! [`EncoderConfig::bounded`], or [`bounded`] for an architecture's own fields) before it sizes
//! anything, and the errors name the file, the field, the limit and the value.

use std::path::Path;

use crate::error::{Result, RuntimeError};
pub use crate::model_dir::arch::{RawConfig, StSection};

/// The encoder dimensions every supported architecture shares.
#[derive(Debug, Clone)]
pub struct EncoderConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub embedding_size: i64,
    pub num_layers: i64,
    pub num_heads: i64,
    pub intermediate_size: i64,
    pub hidden_act: String,
    pub layer_norm_eps: f64,
    pub max_position_embeddings: i64,
    pub type_vocab_size: i64,
    pub pad_token_id: i64,
}

/// Largest value accepted for each size a config may give (the largest published models use a
/// fraction of each). Sizes above these are refused before they size anything.
pub const LIMITS: [(&str, i64); 10] = [
    ("labels", MAX_LABELS),
    ("vocab_size", 1 << 22),
    ("hidden_size", 1 << 16),
    ("embedding_size", 1 << 16),
    ("intermediate_size", 1 << 18),
    ("num_hidden_layers", 1024),
    ("num_attention_heads", 1024),
    ("head_dim", 4096),
    ("max_position_embeddings", 1 << 24),
    ("type_vocab_size", 1024),
];

/// Most labels (classifier outputs) a model may have.
pub const MAX_LABELS: i64 = 65_536;

/// The limit of `kind` in [`LIMITS`].
pub fn limit(kind: &str) -> i64 {
    LIMITS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, l)| *l)
        .expect("every size kind checked has a limit in LIMITS. This is a bug.")
}

/// `value` of `field` in `path` when it is at most the limit of `kind`; else an error naming
/// the file, the field, the limit and the value.
pub fn bounded(path: &Path, field: &str, kind: &str, value: i64) -> Result<i64> {
    let max = limit(kind);
    if value > max {
        return Err(invalid(
            path,
            format!("`{field}` is {value}; the limit is {max}"),
        ));
    }
    Ok(value)
}

impl RawConfig {
    /// `config.json` at `path`, alone (a model's loaders take theirs from its `ModelDir`).
    pub fn read(path: &Path) -> Result<Self> {
        crate::model_dir::read::read_json(path)
    }

    /// Labels in id order: `id2label` when present, else `num_labels` generic names
    /// (transformers defaults to 2 labels when neither is given); at most [`MAX_LABELS`].
    pub fn labels(&self, path: &Path) -> Result<Vec<String>> {
        if !self.id2label.is_empty() {
            let n = i64::try_from(self.id2label.len()).unwrap_or(i64::MAX);
            bounded(path, "id2label", "labels", n)?;
            let mut pairs: Vec<(i64, &String)> = self
                .id2label
                .iter()
                .map(|(k, v)| (k.parse().unwrap_or(i64::MAX), v))
                .collect();
            pairs.sort();
            return Ok(pairs.into_iter().map(|(_, v)| v.clone()).collect());
        }
        let n = bounded(path, "num_labels", "labels", self.num_labels.unwrap_or(2))?.max(1);
        Ok((0..n).map(|i| format!("LABEL_{i}")).collect())
    }

    /// Parameters of the encoder's layers (attention and feed-forward weights), BERT-family or
    /// DistilBERT names; `None` when the config names neither.
    pub fn encoder_parameters(&self) -> Option<i64> {
        let h = self.hidden_size.or(self.dim)?;
        let layers = self.num_hidden_layers.or(self.n_layers)?;
        let inner = self.intermediate_size.or(self.hidden_dim).unwrap_or(4 * h);
        let per_layer = h.checked_mul(h)?.checked_mul(4)?;
        let per_layer = per_layer.checked_add(h.checked_mul(inner)?.checked_mul(2)?)?;
        layers.checked_mul(per_layer)
    }

    /// The class path of the sentence-transformers default activation, if the config names one.
    pub fn st_activation(&self) -> Option<&str> {
        self.sentence_transformers
            .as_ref()
            .and_then(|s| s.activation_fn.as_deref())
            .or(self.sbert_ce_default_activation_function.as_deref())
    }

    /// BERT-family names (BERT, RoBERTa, XLM-R, ELECTRA).
    pub fn bert_like(&self, path: &Path) -> Result<EncoderConfig> {
        if let Some(kind) = &self.position_embedding_type {
            if kind != "absolute" {
                return Err(invalid(
                    path,
                    format!(
                        "position_embedding_type {kind:?} is not supported (only \"absolute\")"
                    ),
                ));
            }
        }
        let hidden_size = need(path, "hidden_size", self.hidden_size)?;
        EncoderConfig {
            vocab_size: need(path, "vocab_size", self.vocab_size)?,
            hidden_size,
            embedding_size: self.embedding_size.unwrap_or(hidden_size),
            // 0 layers is a valid (if useless) model: embeddings straight into the head. The
            // server-overhead benchmark uses one as a model that costs nothing.
            num_layers: need_count(path, "num_hidden_layers", self.num_hidden_layers)?,
            num_heads: need(path, "num_attention_heads", self.num_attention_heads)?,
            intermediate_size: need(path, "intermediate_size", self.intermediate_size)?,
            hidden_act: self.hidden_act.clone().unwrap_or_else(|| "gelu".into()),
            layer_norm_eps: self.layer_norm_eps.unwrap_or(1e-12),
            max_position_embeddings: need(
                path,
                "max_position_embeddings",
                self.max_position_embeddings,
            )?,
            type_vocab_size: self.type_vocab_size.unwrap_or(2),
            pad_token_id: self.pad_token_id.unwrap_or(0),
        }
        .checked(path)
    }

    /// DistilBERT names; its LayerNorm eps is fixed at 1e-12 in transformers.
    pub fn distilbert(&self, path: &Path) -> Result<EncoderConfig> {
        let dim = need(path, "dim", self.dim)?;
        EncoderConfig {
            vocab_size: need(path, "vocab_size", self.vocab_size)?,
            hidden_size: dim,
            embedding_size: dim,
            num_layers: need(path, "n_layers", self.n_layers)?,
            num_heads: need(path, "n_heads", self.n_heads)?,
            intermediate_size: need(path, "hidden_dim", self.hidden_dim)?,
            hidden_act: self.activation.clone().unwrap_or_else(|| "gelu".into()),
            layer_norm_eps: 1e-12,
            max_position_embeddings: need(
                path,
                "max_position_embeddings",
                self.max_position_embeddings,
            )?,
            type_vocab_size: 0,
            pad_token_id: self.pad_token_id.unwrap_or(0),
        }
        .bounded_named(path, &DISTILBERT_NAMES)?
        .heads_divide(path)
    }
}

/// The config fields of [`EncoderConfig`]'s sizes, which are also their kinds in [`LIMITS`].
const TRANSFORMERS_NAMES: [&str; 8] = [
    "vocab_size",
    "hidden_size",
    "embedding_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "max_position_embeddings",
    "type_vocab_size",
];

/// DistilBERT's names of the same sizes.
const DISTILBERT_NAMES: [&str; 8] = [
    "vocab_size",
    "dim",
    "dim",
    "hidden_dim",
    "n_layers",
    "n_heads",
    "max_position_embeddings",
    "type_vocab_size",
];

impl EncoderConfig {
    /// Every size within [`LIMITS`], errors naming transformers' fields.
    pub fn bounded(self, path: &Path) -> Result<Self> {
        self.bounded_named(path, &TRANSFORMERS_NAMES)
    }

    /// Every size within [`LIMITS`], errors naming the fields as `names` (in the order of
    /// [`TRANSFORMERS_NAMES`]).
    fn bounded_named(self, path: &Path, names: &[&str; 8]) -> Result<Self> {
        let values = [
            self.vocab_size,
            self.hidden_size,
            self.embedding_size,
            self.intermediate_size,
            self.num_layers,
            self.num_heads,
            self.max_position_embeddings,
            self.type_vocab_size,
        ];
        for ((field, kind), value) in names.iter().zip(TRANSFORMERS_NAMES).zip(values) {
            bounded(path, field, kind, value)?;
            if value < 0 {
                return Err(invalid(
                    path,
                    format!("`{field}` must be at least 0, got {value}"),
                ));
            }
        }
        Ok(self)
    }

    /// Bounded, and the hidden size a multiple of the heads.
    fn checked(self, path: &Path) -> Result<Self> {
        let this = self.bounded(path)?;
        this.heads_divide(path)
    }

    fn heads_divide(self, path: &Path) -> Result<Self> {
        if self.num_heads <= 0 || self.hidden_size % self.num_heads != 0 {
            return Err(invalid(
                path,
                format!(
                    "hidden size {} is not a multiple of the {} attention heads",
                    self.hidden_size, self.num_heads
                ),
            ));
        }
        Ok(self)
    }

    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_heads
    }
}

pub(crate) fn need(path: &Path, field: &str, value: Option<i64>) -> Result<i64> {
    need_at_least(path, field, value, 1)
}

/// A count that may be zero.
fn need_count(path: &Path, field: &str, value: Option<i64>) -> Result<i64> {
    need_at_least(path, field, value, 0)
}

fn need_at_least(path: &Path, field: &str, value: Option<i64>, min: i64) -> Result<i64> {
    match value {
        Some(v) if v >= min => Ok(v),
        Some(v) => {
            let what = if min > 0 { "positive" } else { "at least 0" };
            Err(invalid(path, format!("`{field}` must be {what}, got {v}")))
        }
        None => Err(invalid(path, format!("`{field}` is missing"))),
    }
}

pub(crate) fn invalid(path: &Path, message: String) -> RuntimeError {
    RuntimeError::Config {
        path: path.to_owned(),
        message,
    }
}
