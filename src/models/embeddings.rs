//! Token + position (+ token type) embeddings followed by LayerNorm, the BERT-family input layer.

use tch::Tensor;

use super::config::EncoderConfig;
use super::weights::{LayerNorm, Weights};
use crate::error::Result;

/// How position ids are derived from the input.
#[derive(Debug, Clone, Copy)]
pub enum Positions {
    /// 0, 1, 2, … (BERT, ELECTRA, DistilBERT).
    Sequential,
    /// RoBERTa/XLM-R: non-padding tokens count up from `padding_idx + 1`; padding gets `padding_idx`.
    AfterPadding { padding_idx: i64 },
}

pub struct Embeddings {
    words: Tensor,
    positions: Tensor,
    token_types: Option<Tensor>,
    norm: LayerNorm,
    position_kind: Positions,
}

impl Embeddings {
    /// `prefix` is e.g. `bert.embeddings`; `token_types` false where the architecture has none.
    pub fn load(
        w: &Weights,
        prefix: &str,
        cfg: &EncoderConfig,
        token_types: bool,
        position_kind: Positions,
    ) -> Result<Self> {
        let e = cfg.embedding_size;
        let p = |s: &str| format!("{prefix}.{s}");
        let token_types = if token_types {
            Some(w.get(
                &p("token_type_embeddings.weight"),
                &[cfg.type_vocab_size, e],
            )?)
        } else {
            None
        };
        Ok(Self {
            words: w.get(&p("word_embeddings.weight"), &[cfg.vocab_size, e])?,
            positions: w.get(
                &p("position_embeddings.weight"),
                &[cfg.max_position_embeddings, e],
            )?,
            token_types,
            norm: w.layer_norm(&p("LayerNorm"), e, cfg.layer_norm_eps)?,
            position_kind,
        })
    }

    pub fn forward(&self, input_ids: &Tensor, token_type_ids: &Tensor) -> Result<Tensor> {
        let position_ids = self.position_ids(input_ids)?;
        let mut x = Tensor::f_embedding(&self.words, input_ids, -1, false, false)?.f_add(
            &Tensor::f_embedding(&self.positions, &position_ids, -1, false, false)?,
        )?;
        if let Some(types) = &self.token_types {
            x = x.f_add(&Tensor::f_embedding(
                types,
                token_type_ids,
                -1,
                false,
                false,
            )?)?;
        }
        self.norm.forward(&x)
    }

    fn position_ids(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (_, s) = input_ids.size2()?;
        match self.position_kind {
            Positions::Sequential => {
                Ok(Tensor::f_arange(s, (tch::Kind::Int64, input_ids.device()))?.f_unsqueeze(0)?)
            }
            Positions::AfterPadding { padding_idx } => {
                let mask = input_ids.f_ne(padding_idx)?.f_to_kind(tch::Kind::Int64)?;
                Ok(mask
                    .f_cumsum(1, tch::Kind::Int64)?
                    .f_mul(&mask)?
                    .f_add_scalar(padding_idx)?)
            }
        }
    }
}
