//! `CrossrankFakeForTests`: a network without weights, for server tests that do not test
//! numerics (queues, streams, admission, lifecycle). Its directory is two small files a test
//! writes itself (`config.json` and a word-level `tokenizer.json`): no generated fixture, no
//! Python.
//!
//! The logit of label `j` for a pair is `tokens / 100 + j` (`tokens`: the pair's real tokens,
//! special tokens included), so a test predicts every score from the text alone.
//! `cost_ms_per_pair` (config, default 0, at most [`MAX_COST_MS_PER_PAIR`]) makes a batch take
//! that long per pair on its replica thread, as a real model's compute would, for tests of what
//! happens while batches run.

use std::time::Duration;

use serde::Deserialize;
use tch::{Device, Kind, Tensor};

use super::config::{bounded, invalid, need};
use super::SequenceClassifier;
use super::{config_of, default_activation, serving_positions, Inputs, Loaded, ModelSpec};
use crate::device::DType;
use crate::error::Result;
use crate::model_dir::ModelDir;

/// The architecture name of `config.json` that selects this family.
pub const ARCHITECTURE: &str = "CrossrankFakeForTests";

/// Longest simulated cost per pair: 10 s.
pub const MAX_COST_MS_PER_PAIR: u64 = 10_000;

#[derive(Deserialize)]
struct FakeFields {
    #[serde(default)]
    cost_ms_per_pair: u64,
}

struct Fake {
    device: Device,
    labels: i64,
    cost_per_pair: Duration,
}

pub fn load(dir: &ModelDir, device: Device, _dtype: DType) -> Result<Loaded> {
    let arch = config_of(dir)?;
    let (raw, path) = (&arch.raw, arch.path());
    let cost = arch.fields::<FakeFields>()?.cost_ms_per_pair;
    if cost > MAX_COST_MS_PER_PAIR {
        return Err(invalid(
            path,
            format!("`cost_ms_per_pair` is {cost}; the limit is {MAX_COST_MS_PER_PAIR}"),
        ));
    }
    let labels = raw.labels(path)?;
    let positions = need(path, "max_position_embeddings", raw.max_position_embeddings)?;
    bounded(
        path,
        "max_position_embeddings",
        "max_position_embeddings",
        positions,
    )?;
    let vocab_size = need(path, "vocab_size", raw.vocab_size)?;
    bounded(path, "vocab_size", "vocab_size", vocab_size)?;
    let spec = ModelSpec {
        architecture: String::new(),
        default_activation: default_activation(dir, arch, labels.len())?,
        labels,
        max_positions: serving_positions(positions),
        uses_token_types: true,
        vocab_size,
        type_vocab_size: 2,
        pad_token_id: raw.pad_token_id.unwrap_or(0),
    };
    let model = Fake {
        device,
        labels: spec.labels.len() as i64,
        cost_per_pair: Duration::from_millis(cost),
    };
    Ok((Box::new(model), spec))
}

impl SequenceClassifier for Fake {
    fn logits(&self, inputs: &Inputs) -> Result<Tensor> {
        let rows = u32::try_from(inputs.lengths.len()).unwrap_or(u32::MAX);
        // Simulated compute: this thread is the replica's own, as a forward pass would hold it.
        std::thread::sleep(self.cost_per_pair.saturating_mul(rows));
        let tokens = Tensor::f_from_slice(&inputs.lengths)?
            .f_to_kind(Kind::Float)?
            .f_div_scalar(100.0)?
            .f_unsqueeze(1)?;
        let offsets = Tensor::f_arange(self.labels, (Kind::Float, Device::Cpu))?.f_unsqueeze(0)?;
        Ok(tokens.f_add(&offsets)?.f_to_device(self.device)?)
    }
}
