//! The post-LayerNorm transformer encoder shared by BERT, RoBERTa, XLM-R, ELECTRA and DistilBERT;
//! only the parameter names differ between them.

use tch::Tensor;

use super::config::EncoderConfig;
use super::packing::Packing;
use super::weights::{LayerNorm, Linear, Weights};
use crate::error::{Result, RuntimeError};

/// Feed-forward activation, by its transformers `hidden_act` name.
#[derive(Debug, Clone, Copy)]
pub enum HiddenAct {
    Gelu,
    GeluTanh,
    Relu,
    Silu,
    QuickGelu,
}

impl HiddenAct {
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "gelu" => Self::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Self::GeluTanh,
            "relu" => Self::Relu,
            "silu" | "swish" => Self::Silu,
            "quick_gelu" => Self::QuickGelu,
            other => {
                return Err(RuntimeError::Unsupported(format!(
                    "hidden_act {other:?} is not supported; supported: gelu, gelu_new, \
                     gelu_pytorch_tanh, gelu_fast, relu, silu, swish, quick_gelu"
                )))
            }
        })
    }

    pub fn forward(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::Gelu => x.f_gelu("none")?,
            Self::GeluTanh => x.f_gelu("tanh")?,
            Self::Relu => x.f_relu()?,
            Self::Silu => x.f_silu()?,
            Self::QuickGelu => x.f_mul(&x.f_mul_scalar(1.702)?.f_sigmoid()?)?,
        })
    }
}

/// Where each parameter of one layer lives, relative to the layer's prefix.
pub struct LayerNames {
    pub query: &'static str,
    pub key: &'static str,
    pub value: &'static str,
    pub attn_out: &'static str,
    pub attn_norm: &'static str,
    pub ffn_in: &'static str,
    pub ffn_out: &'static str,
    pub ffn_norm: &'static str,
}

pub const BERT_NAMES: LayerNames = LayerNames {
    query: "attention.self.query",
    key: "attention.self.key",
    value: "attention.self.value",
    attn_out: "attention.output.dense",
    attn_norm: "attention.output.LayerNorm",
    ffn_in: "intermediate.dense",
    ffn_out: "output.dense",
    ffn_norm: "output.LayerNorm",
};

struct Layer {
    /// Query, key and value projections fused into one [3H, H] layer.
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
    ffn_norm: LayerNorm,
}

pub struct Encoder {
    layers: Vec<Layer>,
    heads: i64,
    head_dim: i64,
    act: HiddenAct,
}

impl Encoder {
    /// Loads layers `{prefix}.{i}.…` for i in 0..num_layers.
    pub fn load(
        w: &Weights,
        prefix: &str,
        names: &LayerNames,
        cfg: &EncoderConfig,
    ) -> Result<Self> {
        let (h, i, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        let layers = (0..cfg.num_layers)
            .map(|n| {
                let p = |s: &str| format!("{prefix}.{n}.{s}");
                let qkv = [
                    w.linear(&p(names.query), h, h)?,
                    w.linear(&p(names.key), h, h)?,
                    w.linear(&p(names.value), h, h)?,
                ];
                let linear = |l: Linear| if w.int8() { l.quantized() } else { Ok(l) };
                Ok(Layer {
                    qkv: linear(Linear::concat(&qkv)?)?,
                    attn_out: linear(w.linear(&p(names.attn_out), h, h)?)?,
                    attn_norm: w.layer_norm(&p(names.attn_norm), h, eps)?,
                    ffn_in: linear(w.linear(&p(names.ffn_in), h, i)?)?,
                    ffn_out: linear(w.linear(&p(names.ffn_out), i, h)?)?,
                    ffn_norm: w.layer_norm(&p(names.ffn_norm), h, eps)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            layers,
            heads: cfg.num_heads,
            head_dim: cfg.head_dim(),
            act: HiddenAct::parse(&cfg.hidden_act)?,
        })
    }

    /// `hidden` [B, S, H], right-padded; sequence `i` has `lengths[i]` real tokens. Returns the last
    /// layer's state of each sequence's first token, [B, H]: all a classification head reads.
    ///
    /// The dense layers, which are nearly all the work, run on the real tokens only, packed into
    /// [T, H]: padding costs nothing there. Attention: see [`Packing::attention`](super::packing::Packing::attention).
    /// The last layer computes keys and values for every token but everything else for the
    /// first tokens alone.
    pub fn forward_first(&self, hidden: Tensor, lengths: &[i64]) -> Result<Tensor> {
        let (b, s, h) = hidden.size3()?;
        let layout = Packing::new(lengths, s, hidden.device())?;
        let packed = layout.pack(&hidden.f_reshape([b * s, h])?)?;
        let Some((last, rest)) = self.layers.split_last() else {
            return layout.firsts(&packed);
        };
        let x = rest
            .iter()
            .try_fold(packed, |x, layer| self.layer_forward(layer, &x, &layout))?;
        self.last_layer_forward(last, &x, &layout)
    }

    fn last_layer_forward(&self, l: &Layer, x: &Tensor, layout: &Packing) -> Result<Tensor> {
        let h = self.heads * self.head_dim;
        let first = layout.firsts(x)?;
        let query = l.qkv.rows(0, h)?.forward(&first)?;
        let kv = l.qkv.rows(h, 2 * h)?.forward(x)?;
        let ctx = layout.first_attention(&query, &kv, self.heads, self.head_dim)?;
        self.dense_forward(l, &ctx, &first)
    }

    fn layer_forward(&self, l: &Layer, x: &Tensor, layout: &Packing) -> Result<Tensor> {
        let ctx = layout.attention(&l.qkv.forward(x)?, self.heads, self.head_dim)?;
        self.dense_forward(l, &ctx, x)
    }

    /// Everything after attention: output projection, residual, norms and feed-forward.
    fn dense_forward(&self, l: &Layer, ctx: &Tensor, x: &Tensor) -> Result<Tensor> {
        let attn = l.attn_norm.forward(&l.attn_out.forward(ctx)?.f_add(x)?)?;
        let inner = self.act.forward(&l.ffn_in.forward(&attn)?)?;
        l.ffn_norm
            .forward(&l.ffn_out.forward(&inner)?.f_add(&attn)?)
    }
}
