//! A loaded cross-encoder: tokenizer + network + the model's scoring rules, usable
//! synchronously (the CLI) or split between tokenization and device workers (the server).

pub mod batch;

use std::path::Path;

use tch::Device;

use crate::activation::{Activation, ActivationChoice};
use crate::device::DType;
use crate::error::{Result, RuntimeError};
use crate::models::{self, ModelSpec, SequenceClassifier};
use crate::tokenize::{Encoded, PairTokenizer};

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: Device,
    /// Defaults to f32 on CPU and f16 on CUDA.
    pub dtype: Option<DType>,
    /// Overrides the model's maximum input length (capped by its position embeddings).
    pub max_length: Option<usize>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            dtype: None,
            max_length: None,
        }
    }
}

pub struct CrossEncoder {
    pub spec: ModelSpec,
    pub tokenizer: PairTokenizer,
    pub dtype: DType,
    pub device: Device,
    model: Box<dyn SequenceClassifier>,
}

impl CrossEncoder {
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Self> {
        let dtype = opts.dtype.unwrap_or(DType::default_for(opts.device));
        let (model, spec) = models::load(dir, opts.device, dtype.kind())?;
        let tokenizer = PairTokenizer::load(dir, &spec, opts.max_length)?;
        Ok(Self {
            spec,
            tokenizer,
            dtype,
            device: opts.device,
            model,
        })
    }

    pub fn activation(&self, choice: ActivationChoice) -> Result<Activation> {
        choice
            .resolve(self.spec.default_activation, self.spec.labels.len())
            .map_err(RuntimeError::InvalidOption)
    }

    /// One forward pass over already tokenized pairs: scores per pair, in the given order.
    pub fn forward(&self, pairs: &[&Encoded], activation: Activation) -> Result<Vec<Vec<f32>>> {
        let _no_grad = tch::no_grad_guard();
        let inputs = batch::pad(pairs, &self.spec, self.device)?;
        let logits = self.model.logits(&inputs)?;
        batch::rows(&activation.apply(&logits)?)
    }

    /// `CrossEncoder.predict`: tokenizes, sorts by token length, runs batches of `batch_size`
    /// and returns scores in input order. `progress` is told how many pairs each batch finished.
    pub fn predict<S: AsRef<str>>(
        &self,
        pairs: &[(S, S)],
        choice: ActivationChoice,
        batch_size: usize,
        mut progress: impl FnMut(usize),
    ) -> Result<Vec<Vec<f32>>> {
        let activation = self.activation(choice)?;
        let encoded = self.tokenizer.encode(pairs)?;
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].len()));
        let mut scores = vec![Vec::new(); encoded.len()];
        for chunk in order.chunks(batch_size.max(1)) {
            let group: Vec<&Encoded> = chunk.iter().map(|&i| &encoded[i]).collect();
            for (&i, s) in chunk.iter().zip(self.forward(&group, activation)?) {
                scores[i] = s;
            }
            progress(chunk.len());
        }
        Ok(scores)
    }
}
