//! `BertForSequenceClassification`: BERT encoder, tanh pooler on [CLS], linear classifier.

use tch::{Device, Tensor};

use super::embeddings::{Embeddings, Positions};
use super::encoder::{Encoder, BERT_NAMES};
use super::weights::{Linear, Weights};
use super::{config_of, spec_from, Inputs, Loaded, SequenceClassifier};
use crate::device::DType;
use crate::error::Result;
use crate::model_dir::ModelDir;

struct Bert {
    embeddings: Embeddings,
    encoder: Encoder,
    pooler: Linear,
    classifier: Linear,
}

pub fn load(dir: &ModelDir, device: Device, dtype: DType) -> Result<Loaded> {
    let arch = config_of(dir)?;
    let (raw, path) = (&arch.raw, arch.path());
    let cfg = raw.bert_like(path)?;
    let spec = spec_from((dir, arch, raw), &cfg, 0, true)?;
    let w = Weights::load(dir.weight_files()?, "bert.", device, dtype)?;
    let h = cfg.hidden_size;
    let model = Bert {
        embeddings: Embeddings::load(&w, "bert.embeddings", &cfg, true, Positions::Sequential)?,
        encoder: Encoder::load(&w, "bert.encoder.layer", &BERT_NAMES, &cfg)?,
        pooler: w.linear("bert.pooler.dense", h, h)?,
        classifier: w.linear("classifier", h, spec.labels.len() as i64)?,
    };
    Ok((Box::new(model), spec))
}

impl SequenceClassifier for Bert {
    fn logits(&self, inputs: &Inputs) -> Result<Tensor> {
        let x = self
            .embeddings
            .forward(&inputs.input_ids, &inputs.token_type_ids)?;
        let first = self.encoder.forward_first(x, &inputs.lengths)?;
        let pooled = self.pooler.forward(&first)?.f_tanh()?;
        self.classifier.forward(&pooled)
    }
}
