//! Decoder-LLM rerankers, Qwen3, Qwen2 and Llama: a pre-RMSNorm causal decoder (rotary positions,
//! grouped-query attention, SwiGLU; Qwen3 adds an RMSNorm over each head's queries and keys) in
//! either form sentence-transformers serves:
//! - `*ForSequenceClassification`: a linear `score` head on the last token that is not padding,
//!   found as transformers does (the rightmost position whose id differs from `pad_token_id`);
//! - `*ForCausalLM` with a `LogitScore` module: the language-model head's logit of the "true"
//!   token at the last position, minus the "false" token's when there is one (only those rows of
//!   the head are computed).
//!
//! Batches are right-padded with positions 0, 1, … per row; transformers' left-padded batches
//! shift a row's positions by its padding, which rotary attention does not see (it depends on
//! position differences only).

use std::path::Path;

use serde::Deserialize;
use tch::{Device, Kind, Tensor};

use super::config::{bounded, invalid, need, EncoderConfig};
use super::encoder::HiddenAct;
use super::logit_score::TrueFalse;
use super::rotary;
use super::weights::{Linear, Weights};
use super::{config_of, spec_from, Inputs, Loaded, SequenceClassifier};
use crate::device::DType;
use crate::error::{Result, RuntimeError};
use crate::model_dir::{ArchConfig, ModelDir};

/// Which decoder family: they differ in biases and the query/key norm.
#[derive(Clone, Copy, PartialEq)]
pub enum Family {
    Qwen3,
    Qwen2,
    Llama,
}

#[derive(Deserialize)]
struct Config {
    vocab_size: Option<i64>,
    hidden_size: Option<i64>,
    intermediate_size: Option<i64>,
    num_hidden_layers: Option<i64>,
    num_attention_heads: Option<i64>,
    num_key_value_heads: Option<i64>,
    head_dim: Option<i64>,
    #[serde(default = "silu")]
    hidden_act: String,
    max_position_embeddings: Option<i64>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_parameters: Option<Rope>,
    rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    attention_bias: Option<bool>,
    #[serde(default)]
    mlp_bias: bool,
    #[serde(default)]
    use_sliding_window: bool,
    pad_token_id: Option<i64>,
}

#[derive(Deserialize)]
struct Rope {
    rope_theta: Option<f64>,
    rope_type: Option<String>,
}

fn silu() -> String {
    "silu".into()
}

/// y = weight · x / sqrt(mean(x²) + eps), computed in f32 as transformers does.
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn load(w: &Weights, name: &str, size: i64, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: w.get(&format!("{name}.weight"), &[size])?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let f = x.f_to_kind(Kind::Float)?;
        let variance = f
            .f_pow_tensor_scalar(2)?
            .f_mean_dim(-1, true, Kind::Float)?;
        let normed = f.f_mul(&variance.f_add_scalar(self.eps)?.f_rsqrt()?)?;
        Ok(self.weight.f_mul(&normed.f_to_kind(x.kind())?)?)
    }
}

struct Layer {
    input_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    /// Qwen3 only: RMSNorm over each head's queries and keys.
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    post_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// What reads the last token's state.
enum Head {
    /// `score.weight` [labels, H], on the last non-pad token.
    Classifier(Tensor),
    /// The LM head's rows of the true token and, if any, the false token [1 or 2, H], on the
    /// last real token.
    TrueFalse(Tensor),
}

struct Decoder {
    words: Tensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    head: Head,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
    act: HiddenAct,
    /// Rotary frequencies [head_dim / 2], f32.
    freqs: Tensor,
    pad_token_id: Option<i64>,
}

pub fn load_qwen3(dir: &ModelDir, device: Device, dtype: DType) -> Result<Loaded> {
    load_form(dir, Family::Qwen3, device, dtype)
}

pub fn load_qwen2(dir: &ModelDir, device: Device, dtype: DType) -> Result<Loaded> {
    load_form(dir, Family::Qwen2, device, dtype)
}

pub fn load_llama(dir: &ModelDir, device: Device, dtype: DType) -> Result<Loaded> {
    load_form(dir, Family::Llama, device, dtype)
}

/// The `*ForCausalLM` form scores with its LogitScore tokens, the other with its `score` head.
fn load_form(dir: &ModelDir, family: Family, device: Device, dtype: DType) -> Result<Loaded> {
    let arch = config_of(dir)?;
    let logit_score = match arch.architecture().ends_with("ForCausalLM") {
        true => Some(super::logit_score::read(dir)?),
        false => None,
    };
    load(dir, arch, family, logit_score, (device, dtype))
}

/// `logit_score`: `Some` for the causal form.
fn load(
    dir: &ModelDir,
    arch: &ArchConfig,
    family: Family,
    logit_score: Option<TrueFalse>,
    (device, dtype): (Device, DType),
) -> Result<Loaded> {
    let (raw, path) = (&arch.raw, arch.path());
    let c: Config = arch.fields()?;
    if c.use_sliding_window {
        return Err(invalid(
            path,
            "`use_sliding_window` is not supported".into(),
        ));
    }
    let theta = rope_theta(&c, path)?;
    let enc = sizes(&c, family, path)?;
    if let Some(d) = c.head_dim {
        bounded(path, "head_dim", "head_dim", d)?;
    }
    if let Some(kv) = c.num_key_value_heads {
        bounded(path, "num_key_value_heads", "num_attention_heads", kv)?;
    }
    let mut spec = spec_from((dir, arch, raw), &enc, 0, false)?;
    if logit_score.is_some() {
        // One score per pair; the default activation is what spec_from found, else Sigmoid.
        spec.labels = vec!["LABEL_0".into()];
        spec.default_activation = super::default_activation(dir, arch, 1)?;
    }
    let heads = enc.num_heads;
    let kv_heads = c.num_key_value_heads.unwrap_or(heads);
    // transformers' defaults: Qwen3 128, the others hidden size / heads.
    let head_dim = match (c.head_dim, family) {
        (Some(d), _) => d,
        (None, Family::Qwen3) => 128,
        (None, _) => enc.hidden_size / heads,
    };
    let (q_out, kv_out) = match (heads.checked_mul(head_dim), kv_heads.checked_mul(head_dim)) {
        (Some(q), Some(kv)) if head_dim > 0 => (q, kv),
        _ => {
            return Err(invalid(
                path,
                format!("{heads} heads of size {head_dim} overflow"),
            ))
        }
    };
    if kv_heads < 1 || heads % kv_heads != 0 || head_dim % 2 != 0 {
        return Err(invalid(
            path,
            format!("{heads} query heads, {kv_heads} key/value heads and head size {head_dim}: query heads must be a multiple of key/value heads and the head size even"),
        ));
    }
    let w = Weights::load(dir.weight_files()?, "model.", device, dtype)?;
    let eps = c.rms_norm_eps.unwrap_or(1e-6);
    let (h, i) = (enc.hidden_size, enc.intermediate_size);
    let (qkv_bias, o_bias) = match family {
        Family::Qwen2 => (true, false),
        _ => {
            let b = c.attention_bias.unwrap_or(false);
            (b, b)
        }
    };
    let mlp_bias = family == Family::Llama && c.mlp_bias;
    let layers = (0..enc.num_layers)
        .map(|n| {
            let p = |s: &str| format!("model.layers.{n}.{s}");
            let lin = |s: &str, i: i64, o: i64, b: bool| w.linear_biased(&p(s), i, o, b);
            let head_norm = |s: &str| match family {
                Family::Qwen3 => RmsNorm::load(&w, &p(s), head_dim, eps).map(Some),
                _ => Ok(None),
            };
            Ok(Layer {
                input_norm: RmsNorm::load(&w, &p("input_layernorm"), h, eps)?,
                q: lin("self_attn.q_proj", h, q_out, qkv_bias)?,
                k: lin("self_attn.k_proj", h, kv_out, qkv_bias)?,
                v: lin("self_attn.v_proj", h, kv_out, qkv_bias)?,
                o: lin("self_attn.o_proj", q_out, h, o_bias)?,
                q_norm: head_norm("self_attn.q_norm")?,
                k_norm: head_norm("self_attn.k_norm")?,
                post_norm: RmsNorm::load(&w, &p("post_attention_layernorm"), h, eps)?,
                gate: lin("mlp.gate_proj", h, i, mlp_bias)?,
                up: lin("mlp.up_proj", h, i, mlp_bias)?,
                down: lin("mlp.down_proj", i, h, mlp_bias)?,
            })
        })
        .collect::<Result<_>>()?;
    let freqs = rotary::frequencies(theta, head_dim, device)?;
    let model = Decoder {
        words: w.get("model.embed_tokens.weight", &[enc.vocab_size, h])?,
        layers,
        norm: RmsNorm::load(&w, "model.norm", h, eps)?,
        head: match &logit_score {
            None => Head::Classifier(w.get("score.weight", &[spec.labels.len() as i64, h])?),
            Some(tf) => Head::TrueFalse(true_false_rows(&w, tf, enc.vocab_size, h)?),
        },
        heads,
        kv_heads,
        head_dim,
        act: HiddenAct::parse(&c.hidden_act)?,
        freqs,
        pad_token_id: c.pad_token_id,
    };
    Ok((Box::new(model), spec))
}

/// The LM head's rows for the true and false tokens (`lm_head.weight`, or the input embeddings
/// when they are tied).
fn true_false_rows(w: &Weights, tf: &TrueFalse, vocab: i64, h: i64) -> Result<Tensor> {
    let table = match w.has("lm_head.weight") {
        true => w.get("lm_head.weight", &[vocab, h])?,
        false => w.get("model.embed_tokens.weight", &[vocab, h])?,
    };
    let ids: Vec<i64> = std::iter::once(tf.true_id).chain(tf.false_id).collect();
    if let Some(&bad) = ids.iter().find(|&&id| id < 0 || id >= vocab) {
        return Err(RuntimeError::Mismatch(format!(
            "LogitScore token id {bad} ({}) is outside the vocabulary of {vocab}",
            tf.source
        )));
    }
    let index = Tensor::f_from_slice(&ids)?.f_to_device(table.device())?;
    Ok(table.f_index_select(0, &index)?)
}

/// The sizes shared with the encoders, checked.
fn sizes(c: &Config, family: Family, path: &Path) -> Result<EncoderConfig> {
    let need = |field: &str, v: Option<i64>| need(path, field, v);
    EncoderConfig {
        vocab_size: need("vocab_size", c.vocab_size)?,
        hidden_size: need("hidden_size", c.hidden_size)?,
        embedding_size: need("hidden_size", c.hidden_size)?,
        num_layers: need("num_hidden_layers", c.num_hidden_layers)?,
        num_heads: need("num_attention_heads", c.num_attention_heads)?,
        intermediate_size: need("intermediate_size", c.intermediate_size)?,
        hidden_act: c.hidden_act.clone(),
        layer_norm_eps: c.rms_norm_eps.unwrap_or(1e-6),
        // transformers' defaults: Llama 2,048, Qwen 32,768.
        max_position_embeddings: c.max_position_embeddings.unwrap_or(match family {
            Family::Llama => 2048,
            _ => 32_768,
        }),
        type_vocab_size: 1,
        pad_token_id: c.pad_token_id.unwrap_or(0),
    }
    .bounded(path)
}

/// The rotary base; scaled or other rotary kinds are refused by name.
fn rope_theta(c: &Config, path: &Path) -> Result<f64> {
    if c.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(invalid(path, "`rope_scaling` is not supported".into()));
    }
    if let Some(kind) = c
        .rope_parameters
        .as_ref()
        .and_then(|r| r.rope_type.as_deref())
    {
        if kind != "default" {
            return Err(invalid(
                path,
                format!("rope_type {kind:?} is not supported (only \"default\")"),
            ));
        }
    }
    Ok(c.rope_parameters
        .as_ref()
        .and_then(|r| r.rope_theta)
        .or(c.rope_theta)
        .unwrap_or(10_000.0))
}

impl Decoder {
    /// [B, S, n·D] → [B, n, S, D], normalized per head when the family does.
    fn heads_of(&self, x: &Tensor, n: i64, norm: Option<&RmsNorm>) -> Result<Tensor> {
        let (b, s, _) = x.size3()?;
        let split = x.f_view([b, s, n, self.head_dim])?;
        let split = match norm {
            Some(norm) => norm.forward(&split)?,
            None => split,
        };
        Ok(split.f_transpose(1, 2)?)
    }

    /// [B, kv, S, D] → [B, heads, S, D], each key/value head shared by its query group.
    fn repeat_kv(&self, x: &Tensor) -> Result<Tensor> {
        let groups = self.heads / self.kv_heads;
        if groups == 1 {
            return Ok(x.shallow_clone());
        }
        let (b, kv, s, d) = x.size4()?;
        Ok(x.f_unsqueeze(2)?
            .f_expand([b, kv, groups, s, d], false)?
            .f_reshape([b, kv * groups, s, d])?)
    }

    fn layer(&self, l: &Layer, x: &Tensor, rope: &(Tensor, Tensor)) -> Result<Tensor> {
        let (b, s, _) = x.size3()?;
        let h = l.input_norm.forward(x)?;
        let q = self.heads_of(&l.q.forward(&h)?, self.heads, l.q_norm.as_ref())?;
        let k = self.heads_of(&l.k.forward(&h)?, self.kv_heads, l.k_norm.as_ref())?;
        let v = self.heads_of(&l.v.forward(&h)?, self.kv_heads, None)?;
        let (q, k) = (
            rotary::rotate(&q, &rope.0, &rope.1)?,
            rotary::rotate(&k, &rope.0, &rope.1)?,
        );
        // Causal attention alone: with right padding a real token's earlier positions are all
        // real, so no padding mask is needed (padded rows compute garbage nobody reads), and
        // no [S, S] mask is built: memory stays linear in the tokens.
        let ctx = Tensor::f_scaled_dot_product_attention::<Tensor>(
            &q,
            &self.repeat_kv(&k)?,
            &self.repeat_kv(&v)?,
            None,
            0.0,
            true,
            None,
            false,
        )?
        .f_transpose(1, 2)?
        .f_reshape([b, s, self.heads * self.head_dim])?;
        let x = x.f_add(&l.o.forward(&ctx)?)?;
        let m = l.post_norm.forward(&x)?;
        let gated = self
            .act
            .forward(&l.gate.forward(&m)?)?
            .f_mul(&l.up.forward(&m)?)?;
        Ok(x.f_add(&l.down.forward(&gated)?)?)
    }

    /// Each row's last position whose id is not `pad_token_id` for a classifier ([B], int64);
    /// each row's last real token for the causal form (sentence-transformers pads those on the
    /// left and reads the last column) or without a pad token.
    fn last_tokens(&self, inputs: &Inputs) -> Result<Tensor> {
        let ids = &inputs.input_ids;
        let (_, s) = ids.size2()?;
        let keep = match (&self.head, self.pad_token_id) {
            (Head::Classifier(_), Some(pad)) => ids.f_ne(pad)?,
            _ => inputs.attention_mask.f_ne(0)?,
        };
        let at = Tensor::f_arange(s, (Kind::Int64, ids.device()))?;
        Ok(at
            .f_mul(&keep.f_to_kind(Kind::Int64)?)?
            .f_argmax(-1, false)?)
    }
}

impl SequenceClassifier for Decoder {
    fn logits(&self, inputs: &Inputs) -> Result<Tensor> {
        let (b, s) = inputs.input_ids.size2()?;
        let device = inputs.input_ids.device();
        let mut x = Tensor::f_embedding(&self.words, &inputs.input_ids, -1, false, false)?;
        let (cos, sin) = rotary::tables(&self.freqs, s)?;
        let rope = (cos.f_to_kind(x.kind())?, sin.f_to_kind(x.kind())?);
        for l in &self.layers {
            x = self.layer(l, &x, &rope)?;
        }
        let last = self.last_tokens(inputs)?;
        let rows = Tensor::f_arange(b, (Kind::Int64, device))?;
        let states = self.norm.forward(&x.f_index(&[Some(rows), Some(last)])?)?;
        match &self.head {
            Head::Classifier(score) => Ok(states.f_linear::<Tensor>(score, None)?),
            Head::TrueFalse(rows) => {
                let logits = states.f_linear::<Tensor>(rows, None)?;
                match logits.size2()?.1 {
                    1 => Ok(logits),
                    _ => Ok(logits
                        .f_narrow(1, 0, 1)?
                        .f_sub(&logits.f_narrow(1, 1, 1)?)?),
                }
            }
        }
    }
}
