//! `ModernBertForSequenceClassification`: a pre-norm encoder with rotary positions, a GeGLU
//! feed-forward, global attention every `global_attn_every_n_layers` layers and sliding-window
//! attention (tokens at most `local_attention / 2` apart) in the others, no biases unless the
//! config asks for them, a final norm, and a head (dense, activation, norm) on [CLS] or on the
//! mean of the tokens (`classifier_pooling`).
//!
//! Attention runs over the padded batch with a mask per layer kind; every query row attends to
//! at least one position, so padded rows stay finite (mean pooling multiplies them by zero).

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use tch::{Device, Kind, Tensor};

use super::config::{invalid, need, EncoderConfig};
use super::encoder::HiddenAct;
use super::rotary;
use super::weights::{LayerNorm, Linear, Weights};
use super::{config_of, spec_from, Inputs, Loaded, SequenceClassifier};
use crate::device::DType;
use crate::error::Result;
use crate::model_dir::ModelDir;

/// The config fields ModernBERT reads, with transformers' defaults. Both layouts on the Hub are
/// accepted: `global_attn_every_n_layers` / `global_rope_theta` / `local_rope_theta` (the
/// original) and `layer_types` / `rope_parameters` (written by transformers 5).
#[derive(Deserialize)]
struct Config {
    vocab_size: Option<i64>,
    hidden_size: Option<i64>,
    num_hidden_layers: Option<i64>,
    num_attention_heads: Option<i64>,
    intermediate_size: Option<i64>,
    #[serde(default = "gelu")]
    hidden_activation: String,
    #[serde(default = "gelu")]
    classifier_activation: String,
    #[serde(default = "cls")]
    classifier_pooling: String,
    #[serde(default = "norm_eps")]
    norm_eps: f64,
    #[serde(default)]
    norm_bias: bool,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    #[serde(default)]
    classifier_bias: bool,
    #[serde(default = "every_third")]
    global_attn_every_n_layers: i64,
    layer_types: Option<Vec<String>>,
    #[serde(default = "local_attention")]
    local_attention: i64,
    global_rope_theta: Option<f64>,
    local_rope_theta: Option<f64>,
    rope_parameters: Option<HashMap<String, Option<Rope>>>,
    rope_scaling: Option<serde_json::Value>,
    #[serde(default = "max_positions")]
    max_position_embeddings: i64,
    #[serde(default = "pad_token_id")]
    pad_token_id: i64,
}

#[derive(Deserialize)]
struct Rope {
    rope_theta: Option<f64>,
    rope_type: Option<String>,
}

fn gelu() -> String {
    "gelu".into()
}
fn cls() -> String {
    "cls".into()
}
fn norm_eps() -> f64 {
    1e-5
}
fn every_third() -> i64 {
    3
}
fn local_attention() -> i64 {
    128
}
fn max_positions() -> i64 {
    8192
}
fn pad_token_id() -> i64 {
    50283
}

/// Global attention over every token, or local attention within a window.
#[derive(Clone, Copy, PartialEq)]
enum Span {
    Global,
    Local,
}

struct Layer {
    span: Span,
    /// `None` in the first layer (the embeddings' norm precedes it).
    attn_norm: Option<LayerNorm>,
    qkv: Linear,
    attn_out: Linear,
    mlp_norm: LayerNorm,
    mlp_in: Linear,
    mlp_out: Linear,
}

struct ModernBert {
    words: Tensor,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    final_norm: LayerNorm,
    heads: i64,
    head_dim: i64,
    act: HiddenAct,
    /// Local attention reaches tokens at most this far away.
    window: i64,
    /// Rotary frequencies [head_dim / 2] (f32) of global and local layers.
    global_freqs: Tensor,
    local_freqs: Tensor,
    mean_pooling: bool,
    head_dense: Linear,
    head_act: HiddenAct,
    head_norm: LayerNorm,
    classifier: Linear,
}

pub fn load(dir: &ModelDir, device: Device, dtype: DType) -> Result<Loaded> {
    let arch = config_of(dir)?;
    let (raw, path) = (&arch.raw, arch.path());
    let c: Config = arch.fields()?;
    let enc = encoder_config(&c, path)?;
    let spec = super::cap_square_attention(spec_from((dir, arch, raw), &enc, 0, false)?, path);
    let spans = spans(&c, enc.num_layers, path)?;
    let (global_theta, local_theta) = thetas(&c, path)?;
    let w = Weights::load(dir.weight_files()?, "model.", device, dtype)?;
    let (h, i, eps) = (enc.hidden_size, enc.intermediate_size, enc.layer_norm_eps);
    let norm = |name: &str| w.layer_norm_biased(name, h, eps, c.norm_bias);
    let layers = spans
        .into_iter()
        .enumerate()
        .map(|(n, span)| {
            let p = |s: &str| format!("model.layers.{n}.{s}");
            Ok(Layer {
                span,
                attn_norm: (n > 0).then(|| norm(&p("attn_norm"))).transpose()?,
                qkv: w.linear_biased(&p("attn.Wqkv"), h, 3 * h, c.attention_bias)?,
                attn_out: w.linear_biased(&p("attn.Wo"), h, h, c.attention_bias)?,
                mlp_norm: norm(&p("mlp_norm"))?,
                mlp_in: w.linear_biased(&p("mlp.Wi"), h, 2 * i, c.mlp_bias)?,
                mlp_out: w.linear_biased(&p("mlp.Wo"), i, h, c.mlp_bias)?,
            })
        })
        .collect::<Result<_>>()?;
    let head_dim = enc.head_dim();
    let model = ModernBert {
        words: w.get(
            "model.embeddings.tok_embeddings.weight",
            &[enc.vocab_size, h],
        )?,
        embed_norm: norm("model.embeddings.norm")?,
        layers,
        final_norm: norm("model.final_norm")?,
        heads: enc.num_heads,
        head_dim,
        act: HiddenAct::parse(&c.hidden_activation)?,
        window: c.local_attention / 2,
        global_freqs: rotary::frequencies(global_theta, head_dim, device)?,
        local_freqs: rotary::frequencies(local_theta, head_dim, device)?,
        mean_pooling: match c.classifier_pooling.as_str() {
            "cls" => false,
            "mean" => true,
            other => {
                return Err(invalid(
                    path,
                    format!("classifier_pooling {other:?} is not supported (cls or mean)"),
                ))
            }
        },
        head_dense: w.linear_biased("head.dense", h, h, c.classifier_bias)?,
        head_act: HiddenAct::parse(&c.classifier_activation)?,
        head_norm: norm("head.norm")?,
        classifier: w.linear("classifier", h, spec.labels.len() as i64)?,
    };
    Ok((Box::new(model), spec))
}

/// The sizes every architecture shares, checked.
fn encoder_config(c: &Config, path: &Path) -> Result<EncoderConfig> {
    let need = |field: &str, v: Option<i64>| need(path, field, v);
    let (hidden, heads) = (
        need("hidden_size", c.hidden_size)?,
        need("num_attention_heads", c.num_attention_heads)?,
    );
    if hidden % heads != 0 || (hidden / heads) % 2 != 0 {
        return Err(invalid(
            path,
            format!("hidden size {hidden} over {heads} heads must give an even head size"),
        ));
    }
    EncoderConfig {
        vocab_size: need("vocab_size", c.vocab_size)?,
        hidden_size: hidden,
        embedding_size: hidden,
        num_layers: need("num_hidden_layers", c.num_hidden_layers)?,
        num_heads: heads,
        intermediate_size: need("intermediate_size", c.intermediate_size)?,
        hidden_act: c.hidden_activation.clone(),
        layer_norm_eps: c.norm_eps,
        max_position_embeddings: c.max_position_embeddings,
        type_vocab_size: 1,
        pad_token_id: c.pad_token_id,
    }
    .bounded(path)
}

/// Each layer's attention span: `layer_types` when given, else global every n-th layer.
fn spans(c: &Config, layers: i64, path: &Path) -> Result<Vec<Span>> {
    if c.global_attn_every_n_layers < 1 {
        return Err(invalid(
            path,
            "`global_attn_every_n_layers` must be positive".into(),
        ));
    }
    let Some(types) = &c.layer_types else {
        let global = |n: i64| n % c.global_attn_every_n_layers == 0;
        return Ok((0..layers)
            .map(|n| if global(n) { Span::Global } else { Span::Local })
            .collect());
    };
    if types.len() as i64 != layers {
        return Err(invalid(
            path,
            format!(
                "`layer_types` has {} entries for {layers} layers",
                types.len()
            ),
        ));
    }
    types
        .iter()
        .map(|t| match t.as_str() {
            "full_attention" => Ok(Span::Global),
            "sliding_attention" => Ok(Span::Local),
            other => Err(invalid(
                path,
                format!(
                    "layer type {other:?} is not supported (full_attention, sliding_attention)"
                ),
            )),
        })
        .collect()
}

/// Rotary bases of global and local layers; only the default (unscaled) rotary kind is served.
fn thetas(c: &Config, path: &Path) -> Result<(f64, f64)> {
    if c.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(invalid(path, "`rope_scaling` is not supported".into()));
    }
    let from_parameters = |kind: &str| -> Result<Option<f64>> {
        let Some(rope) = c
            .rope_parameters
            .as_ref()
            .and_then(|p| p.get(kind)?.as_ref())
        else {
            return Ok(None);
        };
        match rope.rope_type.as_deref() {
            None | Some("default") => Ok(rope.rope_theta),
            Some(other) => Err(invalid(
                path,
                format!("rope_type {other:?} of {kind} is not supported (only \"default\")"),
            )),
        }
    };
    let global = from_parameters("full_attention")?
        .or(c.global_rope_theta)
        .unwrap_or(160_000.0);
    let local = from_parameters("sliding_attention")?
        .or(c.local_rope_theta)
        .unwrap_or(10_000.0);
    Ok((global, local))
}

/// `x` [B, H, S, D] rotated by position, computed in f32 as transformers does (with the
/// tables rounded to the model's dtype first, as its rotary embedding returns them).
fn rotate(x: &Tensor, (cos, sin): &(Tensor, Tensor)) -> Result<Tensor> {
    let kind = x.kind();
    let round = |t: &Tensor| -> Result<Tensor> { Ok(t.f_to_kind(kind)?.f_to_kind(Kind::Float)?) };
    let rotated = rotary::rotate(&x.f_to_kind(Kind::Float)?, &round(cos)?, &round(sin)?)?;
    Ok(rotated.f_to_kind(kind)?)
}

impl ModernBert {
    /// Attention masks [B, 1, S, S] (true: attended) of global and local layers.
    /// Attention masks (true: attended) of global layers, [B, 1, 1, S] (key padding: a padded
    /// query row still sees the real tokens), and of local layers, [B, 1, S, S] (the window,
    /// plus each position itself so that a padded row far from every real token stays finite).
    /// Only booleans are S x S: 64 MiB per row at 8,192 tokens.
    fn masks(&self, attention_mask: &Tensor) -> Result<(Tensor, Tensor)> {
        let (_, s) = attention_mask.size2()?;
        let device = attention_mask.device();
        let keys = attention_mask.f_ne(0)?.f_unsqueeze(1)?.f_unsqueeze(1)?;
        let band = Tensor::f_ones([s, s], (Kind::Bool, device))?
            .f_triu(-self.window)?
            .f_tril(self.window)?;
        let own = Tensor::f_eye(s, (Kind::Bool, device))?;
        let local = keys.f_logical_and(&band)?.f_logical_or(&own)?;
        Ok((keys, local))
    }

    fn layer(
        &self,
        l: &Layer,
        x: &Tensor,
        mask: &Tensor,
        rope: &(Tensor, Tensor),
    ) -> Result<Tensor> {
        let (b, s, h) = x.size3()?;
        let normed = match &l.attn_norm {
            Some(n) => n.forward(x)?,
            None => x.shallow_clone(),
        };
        let qkv = l
            .qkv
            .forward(&normed)?
            .f_view([b, s, 3, self.heads, self.head_dim])?
            .f_permute([2, 0, 3, 1, 4])?;
        let q = rotate(&qkv.f_select(0, 0)?, rope)?;
        let k = rotate(&qkv.f_select(0, 1)?, rope)?;
        let ctx = Tensor::f_scaled_dot_product_attention(
            &q,
            &k,
            &qkv.f_select(0, 2)?,
            Some(mask),
            0.0,
            false,
            None,
            false,
        )?
        .f_transpose(1, 2)?
        .f_reshape([b, s, h])?;
        let x = x.f_add(&l.attn_out.forward(&ctx)?)?;
        let inner = l.mlp_in.forward(&l.mlp_norm.forward(&x)?)?;
        let half = inner.size()[2] / 2;
        let gated = self
            .act
            .forward(&inner.f_narrow(2, 0, half)?)?
            .f_mul(&inner.f_narrow(2, half, half)?)?;
        Ok(x.f_add(&l.mlp_out.forward(&gated)?)?)
    }

    /// [B, S, H] → [B, H]: the first token, or the mean over the real tokens.
    fn pool(&self, x: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        if !self.mean_pooling {
            return Ok(x.f_select(1, 0)?);
        }
        let mask = attention_mask.f_to_kind(x.kind())?;
        let summed = x
            .f_mul(&mask.f_unsqueeze(-1)?)?
            .f_sum_dim_intlist(1, false, x.kind())?;
        Ok(summed.f_div(&mask.f_sum_dim_intlist(1, true, x.kind())?)?)
    }
}

impl SequenceClassifier for ModernBert {
    fn logits(&self, inputs: &Inputs) -> Result<Tensor> {
        let (_, s) = inputs.input_ids.size2()?;
        let ids = &inputs.input_ids;
        let mut x =
            self.embed_norm
                .forward(&Tensor::f_embedding(&self.words, ids, -1, false, false)?)?;
        let (global, local) = self.masks(&inputs.attention_mask)?;
        let ropes = (
            rotary::tables(&self.global_freqs, s)?,
            rotary::tables(&self.local_freqs, s)?,
        );
        for l in &self.layers {
            x = match l.span {
                Span::Global => self.layer(l, &x, &global, &ropes.0)?,
                Span::Local => self.layer(l, &x, &local, &ropes.1)?,
            };
        }
        let pooled = self.pool(&self.final_norm.forward(&x)?, &inputs.attention_mask)?;
        let head = self
            .head_norm
            .forward(&self.head_act.forward(&self.head_dense.forward(&pooled)?)?)?;
        self.classifier.forward(&head)
    }
}
