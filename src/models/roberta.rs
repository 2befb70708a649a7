//! `RobertaForSequenceClassification` and `XLMRobertaForSequenceClassification` (same network):
//! position ids offset past the padding index, no token types from the tokenizer, and a
//! dense + tanh + out_proj head on `<s>`.

use tch::{Device, Tensor};

use super::embeddings::{Embeddings, Positions};
use super::encoder::{Encoder, BERT_NAMES};
use super::weights::{Linear, Weights};
use super::{config_of, spec_from, Inputs, Loaded, SequenceClassifier};
use crate::device::DType;
use crate::error::Result;
use crate::model_dir::ModelDir;

struct Roberta {
    embeddings: Embeddings,
    encoder: Encoder,
    dense: Linear,
    out_proj: Linear,
}

pub fn load(dir: &ModelDir, device: Device, dtype: DType) -> Result<Loaded> {
    let arch = config_of(dir)?;
    let (raw, path) = (&arch.raw, arch.path());
    let mut raw = raw.clone();
    raw.pad_token_id = Some(raw.pad_token_id.unwrap_or(1));
    raw.type_vocab_size = Some(raw.type_vocab_size.unwrap_or(1));
    let cfg = raw.bert_like(path)?;
    let padding_idx = cfg.pad_token_id;
    let spec = spec_from((dir, arch, &raw), &cfg, padding_idx + 1, false)?;
    let w = Weights::load(dir.weight_files()?, "roberta.", device, dtype)?;
    let h = cfg.hidden_size;
    let model = Roberta {
        embeddings: Embeddings::load(
            &w,
            "roberta.embeddings",
            &cfg,
            true,
            Positions::AfterPadding { padding_idx },
        )?,
        encoder: Encoder::load(&w, "roberta.encoder.layer", &BERT_NAMES, &cfg)?,
        dense: w.linear("classifier.dense", h, h)?,
        out_proj: w.linear("classifier.out_proj", h, spec.labels.len() as i64)?,
    };
    Ok((Box::new(model), spec))
}

impl SequenceClassifier for Roberta {
    fn logits(&self, inputs: &Inputs) -> Result<Tensor> {
        let x = self
            .embeddings
            .forward(&inputs.input_ids, &inputs.token_type_ids)?;
        let first = self.encoder.forward_first(x, &inputs.lengths)?;
        let x = self.dense.forward(&first)?.f_tanh()?;
        self.out_proj.forward(&x)
    }
}
