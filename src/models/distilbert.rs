//! `DistilBertForSequenceClassification`: no token types, its own parameter names, and a
//! pre_classifier + ReLU + classifier head on the first token.

use tch::{Device, Tensor};

use super::embeddings::{Embeddings, Positions};
use super::encoder::{Encoder, LayerNames};
use super::weights::{Linear, Weights};
use super::{config_of, spec_from, Inputs, Loaded, SequenceClassifier};
use crate::device::DType;
use crate::error::Result;
use crate::model_dir::ModelDir;

const NAMES: LayerNames = LayerNames {
    query: "attention.q_lin",
    key: "attention.k_lin",
    value: "attention.v_lin",
    attn_out: "attention.out_lin",
    attn_norm: "sa_layer_norm",
    ffn_in: "ffn.lin1",
    ffn_out: "ffn.lin2",
    ffn_norm: "output_layer_norm",
};

struct DistilBert {
    embeddings: Embeddings,
    encoder: Encoder,
    pre_classifier: Linear,
    classifier: Linear,
}

pub fn load(dir: &ModelDir, device: Device, dtype: DType) -> Result<Loaded> {
    let arch = config_of(dir)?;
    let (raw, path) = (&arch.raw, arch.path());
    let cfg = raw.distilbert(path)?;
    let spec = spec_from((dir, arch, raw), &cfg, 0, false)?;
    let w = Weights::load(dir.weight_files()?, "distilbert.", device, dtype)?;
    let h = cfg.hidden_size;
    let model = DistilBert {
        embeddings: Embeddings::load(
            &w,
            "distilbert.embeddings",
            &cfg,
            false,
            Positions::Sequential,
        )?,
        encoder: Encoder::load(&w, "distilbert.transformer.layer", &NAMES, &cfg)?,
        pre_classifier: w.linear("pre_classifier", h, h)?,
        classifier: w.linear("classifier", h, spec.labels.len() as i64)?,
    };
    Ok((Box::new(model), spec))
}

impl SequenceClassifier for DistilBert {
    fn logits(&self, inputs: &Inputs) -> Result<Tensor> {
        let x = self
            .embeddings
            .forward(&inputs.input_ids, &inputs.token_type_ids)?;
        let first = self.encoder.forward_first(x, &inputs.lengths)?;
        let x = self.pre_classifier.forward(&first)?.f_relu()?;
        self.classifier.forward(&x)
    }
}
