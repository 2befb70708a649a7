//! `config.json` of a Hugging Face checkpoint: the fields every architecture shares, typed
//! ([`RawConfig`]), and the parsed document, from which an architecture deserializes its own
//! fields ([`ArchConfig::fields`]) without reading or parsing the file again. The checks of the
//! sizes it gives live with the models (`models::config`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::{Result, RuntimeError};

#[derive(Debug, Clone, Deserialize)]
pub struct RawConfig {
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: Option<i64>,
    pub hidden_size: Option<i64>,
    pub num_hidden_layers: Option<i64>,
    pub num_attention_heads: Option<i64>,
    pub intermediate_size: Option<i64>,
    pub hidden_act: Option<String>,
    pub layer_norm_eps: Option<f64>,
    pub max_position_embeddings: Option<i64>,
    pub type_vocab_size: Option<i64>,
    pub pad_token_id: Option<i64>,
    pub position_embedding_type: Option<String>,
    /// ELECTRA: embeddings narrower than the encoder, projected up.
    pub embedding_size: Option<i64>,
    // DistilBERT names.
    pub dim: Option<i64>,
    pub n_layers: Option<i64>,
    pub n_heads: Option<i64>,
    pub hidden_dim: Option<i64>,
    pub activation: Option<String>,
    #[serde(default)]
    pub id2label: BTreeMap<String, String>,
    pub num_labels: Option<i64>,
    pub sentence_transformers: Option<StSection>,
    pub sbert_ce_default_activation_function: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StSection {
    pub activation_fn: Option<String>,
}

/// A parsed `config.json`: the shared fields and the whole document.
#[derive(Debug)]
pub struct ArchConfig {
    pub raw: RawConfig,
    value: serde_json::Value,
    path: PathBuf,
}

impl ArchConfig {
    /// `text`, the content of `path`, parsed; errors name the file.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let value: serde_json::Value = super::read::parse(path, text)?;
        let raw = deserialize(path, &value)?;
        Ok(Self {
            raw,
            value,
            path: path.to_owned(),
        })
    }

    /// Where the config was read (errors name it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The architecture named first in `architectures` (empty when none is).
    pub fn architecture(&self) -> &str {
        self.raw.architectures.first().map_or("", String::as_str)
    }

    /// An architecture's own fields (serde defaults for absent ones).
    pub fn fields<T: DeserializeOwned>(&self) -> Result<T> {
        deserialize(&self.path, &self.value)
    }
}

/// `value`, read from `path`, as `T`; errors name the file.
pub fn deserialize<T: DeserializeOwned>(path: &Path, value: &serde_json::Value) -> Result<T> {
    T::deserialize(value).map_err(|e| RuntimeError::Config {
        path: path.to_owned(),
        message: e.to_string(),
    })
}
