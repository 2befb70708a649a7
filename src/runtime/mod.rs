//! A loaded cross-encoder. [`Network`] is the part a device thread owns (tch model, not `Sync`);
//! [`CrossEncoder`] adds the tokenizer for synchronous use (the CLI).

pub mod batch;
mod split;
pub mod worker;

use std::path::Path;

use tch::Device;

use crate::activation::{Activation, ActivationChoice};
use crate::device::DType;
use crate::error::{Result, RuntimeError};
use crate::model_dir::ModelDir;
use crate::models::{self, ModelSpec, SequenceClassifier};
use crate::pooling::{DocPool, Pooled, Pooling};
use crate::tokenize::{Chunking, Control, Cut, Encoded, PairTokenizer, Stop, Texts};

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

/// A network on one device: padded token ids in, f32 logits out.
pub struct Network {
    pub spec: ModelSpec,
    pub dtype: DType,
    pub device: Device,
    model: Box<dyn SequenceClassifier>,
}

impl Network {
    pub fn load(dir: &ModelDir, device: Device, dtype: Option<DType>) -> Result<Self> {
        let dtype = dtype.unwrap_or(DType::default_for(device));
        if dtype == DType::Int8 && device != Device::Cpu {
            return Err(RuntimeError::InvalidOption(format!(
                "dtype int8 runs on the CPU only, not on {}; use f16 or bf16 there",
                crate::device::device_name(device)
            )));
        }
        let (model, spec) = models::load(dir, device, dtype)?;
        Ok(Self {
            spec,
            dtype,
            device,
            model,
        })
    }

    /// One forward pass: raw logits (upcast to f32) per pair, in the given order.
    pub fn logits(&self, pairs: &[&Encoded]) -> Result<Vec<Vec<f32>>> {
        let _no_grad = tch::no_grad_guard();
        let inputs = batch::pad(pairs, &self.spec, self.device)?;
        let rows = batch::rows(&self.model.logits(&inputs)?)?;
        let labels = self.spec.labels.len();
        if rows.len() != pairs.len() || rows.iter().any(|r| r.len() != labels) {
            return Err(RuntimeError::Mismatch(format!(
                "the model returned {} rows of {} logits for {} pairs; expected {labels} per pair",
                rows.len(),
                rows.first().map_or(0, Vec::len),
                pairs.len()
            )));
        }
        Ok(rows)
    }

    /// The activation for a caller's choice, or why it does not fit this model.
    pub fn activation(&self, choice: ActivationChoice) -> Result<Activation> {
        choice
            .resolve(self.spec.default_activation, self.spec.labels.len())
            .map_err(RuntimeError::InvalidOption)
    }
}

pub struct CrossEncoder {
    pub network: Network,
    pub tokenizer: PairTokenizer,
}

impl CrossEncoder {
    /// Reads `dir` once and loads the network and the tokenizer from it.
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Self> {
        let dir = ModelDir::read(dir);
        let network = Network::load(&dir, opts.device, opts.dtype)?;
        let tokenizer = PairTokenizer::load(&dir, &network.spec, opts.max_length)?;
        Ok(Self { network, tokenizer })
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.network.spec
    }

    /// One forward pass over already tokenized pairs: scores per pair, in the given order.
    pub fn forward(&self, pairs: &[&Encoded], activation: Activation) -> Result<Vec<Vec<f32>>> {
        let logits = self.network.logits(pairs)?;
        Ok(logits.iter().map(|l| activation.apply(l)).collect())
    }

    /// `CrossEncoder.predict`: tokenizes, sorts by token length, runs batches of `batch_size`
    /// and returns scores in input order. `progress` is told how many pairs each batch finished.
    pub fn predict<S: AsRef<str>>(
        &self,
        pairs: &[(S, S)],
        choice: ActivationChoice,
        batch_size: usize,
        progress: impl FnMut(usize),
    ) -> Result<Vec<Vec<f32>>> {
        self.predict_instructed(pairs, None, Cut::default(), choice, batch_size, progress)
    }

    /// [`Self::predict`] with a chat template's system message (`None` the model's default
    /// prompt, `Some("")` none) and caps on the texts' tokens.
    pub fn predict_instructed<S: AsRef<str>>(
        &self,
        pairs: &[(S, S)],
        instruction: Option<&str>,
        cut: Cut,
        choice: ActivationChoice,
        batch_size: usize,
        progress: impl FnMut(usize),
    ) -> Result<Vec<Vec<f32>>> {
        let activation = self.network.activation(choice)?;
        let encoded = self.tokenizer.encode_instructed(pairs, instruction, cut)?;
        self.run_sorted(&encoded, activation, batch_size, progress)
    }

    /// Long documents (the second text of each pair) scored as windows and pooled, as the
    /// server's truncation CHUNK does: per pair, its scores and the window that scored highest.
    pub fn predict_chunked<S: AsRef<str>>(
        &self,
        pairs: &[(S, S)],
        how: &Chunked,
        choice: ActivationChoice,
        batch_size: usize,
        progress: impl FnMut(usize),
    ) -> Result<Vec<Pooled>> {
        let activation = self.network.activation(choice)?;
        let texts = Texts::Pairs(
            pairs
                .iter()
                .map(|(a, b)| (a.as_ref().to_owned(), b.as_ref().to_owned()))
                .collect(),
        );
        let ctl = Control {
            cut: how.cut,
            ..Control::default()
        };
        let windowed = self
            .tokenizer
            .encode_windows(&texts, &ctl, how.chunking)
            .map_err(Stop::into_error)?;
        // Windows are pooled on raw logits; the activation comes after.
        let logits =
            self.run_sorted(&windowed.pairs, Activation::Identity, batch_size, progress)?;
        let mut logits = logits.into_iter();
        let mut out = Vec::with_capacity(windowed.docs.len());
        for doc in windowed.docs {
            let mut pool = DocPool::new(doc.spans);
            for (k, row) in logits.by_ref().take(pool.windows()).enumerate() {
                pool.add(k, row);
            }
            let pooled = pool.finish(how.pooling, activation).ok_or_else(|| {
                RuntimeError::Mismatch("a document's windows were not all scored".into())
            })?;
            out.push(pooled);
        }
        Ok(out)
    }

    /// Scores `encoded` in batches of `batch_size`, longest first; results in input order.
    fn run_sorted(
        &self,
        encoded: &[Encoded],
        activation: Activation,
        batch_size: usize,
        mut progress: impl FnMut(usize),
    ) -> Result<Vec<Vec<f32>>> {
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

/// How [`CrossEncoder::predict_chunked`] cuts and pools.
#[derive(Debug, Clone, Copy)]
pub struct Chunked {
    pub chunking: Chunking,
    pub pooling: Pooling,
    /// Caps on query and document tokens.
    pub cut: Cut,
}
