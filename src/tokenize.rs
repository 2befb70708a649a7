//! Pair tokenization exactly as sentence-transformers does it: the fast tokenizer from
//! `tokenizer.json`, special tokens, token types, longest-first truncation at the model's
//! maximum length and no padding (batches are padded later, per batch).

use std::path::Path;

use tokenizers::{
    EncodeInput, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

use crate::error::{Result, RuntimeError};
use crate::models::ModelSpec;

/// One tokenized pair, unpadded.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// Whether longest-first truncation removed tokens.
    pub truncated: bool,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The tokenizer of one model, configured for pairs. Cheap to share (`Sync`).
pub struct PairTokenizer {
    tokenizer: Tokenizer,
    max_length: usize,
}

impl PairTokenizer {
    /// Loads `tokenizer.json`. The maximum length is `max_length` when given, else the one
    /// sentence-transformers would use (`sentence_bert_config.json` `max_seq_length`, else
    /// `tokenizer_config.json` `model_max_length`), never above what the position embeddings allow.
    pub fn load(dir: &Path, spec: &ModelSpec, max_length: Option<usize>) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(RuntimeError::MissingFile {
                dir: dir.to_owned(),
                what: "no tokenizer.json (crossrank needs a fast tokenizer file)".into(),
            });
        }
        let err = |message: String| RuntimeError::Tokenizer {
            path: path.clone(),
            message,
        };
        let mut tokenizer = Tokenizer::from_file(&path).map_err(|e| err(e.to_string()))?;
        let configured = max_length.or_else(|| configured_max_length(dir));
        let max_length = configured
            .unwrap_or(spec.max_positions)
            .min(spec.max_positions);
        if max_length < 4 {
            return Err(err(format!(
                "maximum length {max_length} leaves no room for a pair"
            )));
        }
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| err(e.to_string()))?;
        Ok(Self {
            tokenizer,
            max_length,
        })
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Tokenizes (text_a, text_b) pairs, in parallel across pairs.
    pub fn encode<S: AsRef<str>>(&self, pairs: &[(S, S)]) -> Result<Vec<Encoded>> {
        let inputs: Vec<EncodeInput> = pairs
            .iter()
            .map(|(a, b)| EncodeInput::Dual(a.as_ref().into(), b.as_ref().into()))
            .collect();
        let encodings = self
            .tokenizer
            .encode_batch(inputs, true)
            .map_err(|e| RuntimeError::Tokenize(e.to_string()))?;
        Ok(encodings
            .into_iter()
            .map(|e| Encoded {
                truncated: !e.get_overflowing().is_empty(),
                ids: e.get_ids().to_vec(),
                type_ids: e.get_type_ids().to_vec(),
            })
            .collect())
    }
}

fn configured_max_length(dir: &Path) -> Option<usize> {
    let read = |file: &str, key: &str| -> Option<usize> {
        let text = std::fs::read_to_string(dir.join(file)).ok()?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        // transformers writes a huge sentinel when the length is unknown.
        value
            .get(key)?
            .as_u64()
            .filter(|&n| n < 1 << 30)
            .map(|n| n as usize)
    };
    read("sentence_bert_config.json", "max_seq_length")
        .or_else(|| read("tokenizer_config.json", "model_max_length"))
}
