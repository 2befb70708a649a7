//! `ElectraForSequenceClassification`: ELECTRA discriminator (embeddings optionally projected up to
//! the hidden size) and a dense + GELU + out_proj head on the first token.

use tch::{Device, Tensor};

use super::embeddings::{Embeddings, Positions};
use super::encoder::{Encoder, HiddenAct, BERT_NAMES};
use super::weights::{Linear, Weights};
use super::{config_of, spec_from, Inputs, Loaded, SequenceClassifier};
use crate::device::DType;
use crate::error::Result;
use crate::model_dir::ModelDir;

struct Electra {
    embeddings: Embeddings,
    project: Option<Linear>,
    encoder: Encoder,
    dense: Linear,
    out_proj: Linear,
}

pub fn load(dir: &ModelDir, device: Device, dtype: DType) -> Result<Loaded> {
    let arch = config_of(dir)?;
    let (raw, path) = (&arch.raw, arch.path());
    let cfg = raw.bert_like(path)?;
    let spec = spec_from((dir, arch, raw), &cfg, 0, true)?;
    let w = Weights::load(dir.weight_files()?, "electra.", device, dtype)?;
    let h = cfg.hidden_size;
    let project = if cfg.embedding_size != h {
        Some(w.linear("electra.embeddings_project", cfg.embedding_size, h)?)
    } else {
        None
    };
    let model = Electra {
        embeddings: Embeddings::load(&w, "electra.embeddings", &cfg, true, Positions::Sequential)?,
        project,
        encoder: Encoder::load(&w, "electra.encoder.layer", &BERT_NAMES, &cfg)?,
        dense: w.linear("classifier.dense", h, h)?,
        out_proj: w.linear("classifier.out_proj", h, spec.labels.len() as i64)?,
    };
    Ok((Box::new(model), spec))
}

impl SequenceClassifier for Electra {
    fn logits(&self, inputs: &Inputs) -> Result<Tensor> {
        let mut x = self
            .embeddings
            .forward(&inputs.input_ids, &inputs.token_type_ids)?;
        if let Some(project) = &self.project {
            x = project.forward(&x)?;
        }
        let first = self.encoder.forward_first(x, &inputs.lengths)?;
        // transformers' ElectraClassificationHead uses exact GELU whatever `hidden_act` says.
        let x = HiddenAct::Gelu.forward(&self.dense.forward(&first)?)?;
        self.out_proj.forward(&x)
    }
}
