//! `DebertaV2ForSequenceClassification` (DeBERTa-v2 and -v3): a post-LayerNorm encoder whose
//! attention adds disentangled relative-position terms (content→position `c2p` and
//! position→content `p2c`, log-bucketed distances), the ContextPooler on [CLS] and a linear
//! classifier. Computed over the padded batch as transformers does: scores, mask fill with the
//! dtype's lowest value, softmax.

use std::path::Path;

use serde::Deserialize;
use tch::{Device, Kind, Tensor};

use super::config::{bounded, invalid, EncoderConfig};
use super::encoder::HiddenAct;
use super::weights::{LayerNorm, Linear, Weights};
use super::{config_of, spec_from, Inputs, Loaded, SequenceClassifier};
use crate::device::{upload, DType};
use crate::error::Result;
use crate::model_dir::ModelDir;

/// The DeBERTa-specific config fields, with transformers' defaults.
#[derive(Deserialize)]
struct Config {
    #[serde(default)]
    relative_attention: bool,
    #[serde(default = "minus_one")]
    max_relative_positions: i64,
    #[serde(default = "minus_one")]
    position_buckets: i64,
    #[serde(default)]
    pos_att_type: Option<PosAttType>,
    #[serde(default)]
    share_att_key: bool,
    #[serde(default = "yes")]
    position_biased_input: bool,
    #[serde(default)]
    norm_rel_ebd: Option<String>,
    #[serde(default)]
    conv_kernel_size: i64,
    #[serde(default = "gelu")]
    pooler_hidden_act: String,
    pooler_hidden_size: Option<i64>,
    attention_head_size: Option<i64>,
}

/// `"p2c|c2p"` in older configs, `["p2c", "c2p"]` in newer ones.
#[derive(Deserialize)]
#[serde(untagged)]
enum PosAttType {
    Joined(String),
    List(Vec<String>),
}

/// DeBERTa's own sizes within the limits of their kinds.
fn bounded_fields(c: &Config, path: &Path) -> Result<()> {
    let positions = "max_position_embeddings";
    bounded(
        path,
        "max_relative_positions",
        positions,
        c.max_relative_positions,
    )?;
    bounded(path, "position_buckets", positions, c.position_buckets)?;
    bounded(path, "conv_kernel_size", positions, c.conv_kernel_size)?;
    if let Some(size) = c.pooler_hidden_size {
        bounded(path, "pooler_hidden_size", "hidden_size", size)?;
    }
    if let Some(size) = c.attention_head_size {
        bounded(path, "attention_head_size", "head_dim", size)?;
    }
    Ok(())
}

fn minus_one() -> i64 {
    -1
}
fn yes() -> bool {
    true
}
fn gelu() -> String {
    "gelu".into()
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    /// Projections of the relative embeddings when keys are not shared.
    pos_key: Option<Linear>,
    pos_query: Option<Linear>,
    attn_out: Linear,
    attn_norm: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
    ffn_norm: LayerNorm,
}

/// The relative-position part of attention.
struct Relative {
    /// [2·span, H], normalized when the config says so.
    embeddings: Tensor,
    span: i64,
    buckets: i64,
    max_positions: i64,
    c2p: bool,
    p2c: bool,
    shared_keys: bool,
}

struct Deberta {
    words: Tensor,
    positions: Option<Tensor>,
    token_types: Option<Tensor>,
    embed_proj: Option<Tensor>,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    relative: Option<Relative>,
    heads: i64,
    head_dim: i64,
    /// sqrt(head_dim x (1 + the pos_att_type kinds)), computed in f32 and rounded to the
    /// model's dtype as transformers does (the kinds count even without relative attention).
    scale: f64,
    act: HiddenAct,
    pooler: Linear,
    pooler_act: HiddenAct,
    classifier: Linear,
}

pub fn load(dir: &ModelDir, device: Device, dtype: DType) -> Result<Loaded> {
    let arch = config_of(dir)?;
    let (raw, path) = (&arch.raw, arch.path());
    let c: Config = arch.fields()?;
    let mut cfg = raw.bert_like(path)?;
    // DeBERTa's defaults where BERT's differ: no token types, LayerNorm eps 1e-7.
    cfg.type_vocab_size = raw.type_vocab_size.unwrap_or(0);
    cfg.layer_norm_eps = raw.layer_norm_eps.unwrap_or(1e-7);
    let cfg = cfg.bounded(path)?;
    bounded_fields(&c, path)?;
    let spec = super::cap_square_attention(
        spec_from((dir, arch, raw), &cfg, 0, cfg.type_vocab_size > 0)?,
        path,
    );
    if c.conv_kernel_size > 0 {
        return Err(invalid(
            path,
            "`conv_kernel_size` > 0 (the convolution layer of DeBERTa-v2 xlarge/xxlarge) is not supported".into(),
        ));
    }
    let w = Weights::load(dir.weight_files()?, "deberta.", device, dtype)?;
    let model = build(&w, &c, &cfg, path, spec.labels.len() as i64)?;
    Ok((Box::new(model), spec))
}

fn build(
    w: &Weights,
    c: &Config,
    cfg: &EncoderConfig,
    path: &Path,
    labels: i64,
) -> Result<Deberta> {
    let (h, e, eps) = (cfg.hidden_size, cfg.embedding_size, cfg.layer_norm_eps);
    let head_dim = c
        .attention_head_size
        .unwrap_or(cfg.hidden_size / cfg.num_heads);
    let all = match head_dim.checked_mul(cfg.num_heads) {
        Some(all) if head_dim > 0 => all,
        _ => {
            return Err(invalid(
                path,
                format!("attention_head_size {head_dim} is not usable"),
            ))
        }
    };
    let kinds = attention_kinds(c, path)?;
    let factor = 1 + i64::from(kinds.0) + i64::from(kinds.1);
    let scale = Tensor::from(((head_dim * factor) as f32).sqrt())
        .f_to_kind(w.kind())?
        .f_to_kind(Kind::Double)?
        .f_double_value(&[])?;
    let relative = match c.relative_attention {
        false => None,
        true => Some(relative(w, c, cfg, kinds, path)?),
    };
    let separate = |on: bool, p: &str| -> Result<Option<Linear>> {
        match on && c.relative_attention && !c.share_att_key {
            true => Ok(Some(w.linear(p, h, all)?)),
            false => Ok(None),
        }
    };
    let layers = (0..cfg.num_layers)
        .map(|n| {
            let p = |s: &str| format!("deberta.encoder.layer.{n}.{s}");
            Ok(Layer {
                query: w.linear(&p("attention.self.query_proj"), h, all)?,
                key: w.linear(&p("attention.self.key_proj"), h, all)?,
                value: w.linear(&p("attention.self.value_proj"), h, all)?,
                pos_key: separate(kinds.0, &p("attention.self.pos_key_proj"))?,
                pos_query: separate(kinds.1, &p("attention.self.pos_query_proj"))?,
                attn_out: w.linear(&p("attention.output.dense"), all, h)?,
                attn_norm: w.layer_norm(&p("attention.output.LayerNorm"), h, eps)?,
                ffn_in: w.linear(&p("intermediate.dense"), h, cfg.intermediate_size)?,
                ffn_out: w.linear(&p("output.dense"), cfg.intermediate_size, h)?,
                ffn_norm: w.layer_norm(&p("output.LayerNorm"), h, eps)?,
            })
        })
        .collect::<Result<_>>()?;
    let pooled = c.pooler_hidden_size.unwrap_or(h);
    let emb = |s: &str| format!("deberta.embeddings.{s}");
    Ok(Deberta {
        words: w.get(&emb("word_embeddings.weight"), &[cfg.vocab_size, e])?,
        positions: c
            .position_biased_input
            .then(|| {
                w.get(
                    &emb("position_embeddings.weight"),
                    &[cfg.max_position_embeddings, e],
                )
            })
            .transpose()?,
        token_types: (cfg.type_vocab_size > 0)
            .then(|| {
                w.get(
                    &emb("token_type_embeddings.weight"),
                    &[cfg.type_vocab_size, e],
                )
            })
            .transpose()?,
        embed_proj: (e != h)
            .then(|| w.get(&emb("embed_proj.weight"), &[h, e]))
            .transpose()?,
        embed_norm: w.layer_norm(&emb("LayerNorm"), h, eps)?,
        layers,
        relative,
        heads: cfg.num_heads,
        head_dim,
        scale,
        act: HiddenAct::parse(&cfg.hidden_act)?,
        pooler: w.linear("pooler.dense", h, pooled)?,
        pooler_act: HiddenAct::parse(&c.pooler_hidden_act)?,
        classifier: w.linear("classifier", pooled, labels)?,
    })
}

/// (c2p, p2c) from `pos_att_type`; other kinds are refused by name.
fn attention_kinds(c: &Config, path: &Path) -> Result<(bool, bool)> {
    let kinds: Vec<String> = match &c.pos_att_type {
        None => Vec::new(),
        Some(PosAttType::Joined(s)) => s.split('|').map(|k| k.trim().to_lowercase()).collect(),
        Some(PosAttType::List(v)) => v.iter().map(|k| k.trim().to_lowercase()).collect(),
    };
    if let Some(other) = kinds
        .iter()
        .find(|k| !["c2p", "p2c", ""].contains(&k.as_str()))
    {
        return Err(invalid(
            path,
            format!("pos_att_type {other:?} is not supported (c2p, p2c)"),
        ));
    }
    Ok((
        kinds.iter().any(|k| k == "c2p"),
        kinds.iter().any(|k| k == "p2c"),
    ))
}

fn relative(
    w: &Weights,
    c: &Config,
    cfg: &EncoderConfig,
    kinds: (bool, bool),
    path: &Path,
) -> Result<Relative> {
    let max_positions = match c.max_relative_positions {
        n if n < 1 => cfg.max_position_embeddings,
        n => n,
    };
    let span = if c.position_buckets > 0 {
        c.position_buckets
    } else {
        max_positions
    };
    let h = cfg.hidden_size;
    let rows = span
        .checked_mul(2)
        .filter(|_| span > 0)
        .ok_or_else(|| invalid(path, format!("relative span {span} is not usable")))?;
    let table = w.get("deberta.encoder.rel_embeddings.weight", &[rows, h])?;
    let normed = c
        .norm_rel_ebd
        .as_deref()
        .unwrap_or("none")
        .split('|')
        .any(|k| k.trim().eq_ignore_ascii_case("layer_norm"));
    let embeddings = match normed {
        true => w
            .layer_norm("deberta.encoder.LayerNorm", h, cfg.layer_norm_eps)?
            .forward(&table)?,
        false => table,
    };
    Ok(Relative {
        embeddings,
        span,
        buckets: c.position_buckets,
        max_positions,
        c2p: kinds.0,
        p2c: kinds.1,
        shared_keys: c.share_att_key,
    })
}

/// Relative positions i - j [S, S] (int64, on the CPU), log-bucketed as transformers'
/// `make_log_bucket_position` does (the same tensor operations, so the same roundings).
fn relative_positions(s: i64, buckets: i64, max_positions: i64) -> Result<Tensor> {
    let at = Tensor::f_arange(s, (Kind::Int64, Device::Cpu))?;
    let rel = at.f_unsqueeze(1)?.f_sub(&at.f_unsqueeze(0)?)?;
    if buckets <= 0 || max_positions <= 0 {
        return Ok(rel);
    }
    let mid = buckets / 2;
    let inside = rel.f_lt(mid)?.f_logical_and(&rel.f_gt(-mid)?)?;
    let abs = rel
        .f_full_like(mid - 1)?
        .f_where_self(&inside, &rel.f_abs()?)?;
    let ratio = Tensor::from((max_positions - 1) as f64 / mid as f64).f_to_kind(Kind::Float)?;
    let log = abs
        .f_div_scalar(mid)?
        .f_log()?
        .f_div(&ratio.f_log()?)?
        .f_mul_scalar(mid - 1)?
        .f_ceil()?
        .f_add_scalar(mid)?;
    let bucketed = log.f_mul(&rel.f_sign()?.f_to_kind(Kind::Float)?)?;
    let near = abs.f_le(mid)?;
    Ok(rel
        .f_to_kind(Kind::Float)?
        .f_where_self(&near, &bucketed)?
        .f_to_kind(Kind::Int64)?)
}

impl Deberta {
    /// Embeddings [B, S, H], zero at padded positions.
    fn embed(&self, inputs: &Inputs, mask: &Tensor) -> Result<Tensor> {
        let (_, s) = inputs.input_ids.size2()?;
        let mut x = Tensor::f_embedding(&self.words, &inputs.input_ids, -1, false, false)?;
        if let Some(positions) = &self.positions {
            let at = Tensor::f_arange(s, (Kind::Int64, x.device()))?.f_unsqueeze(0)?;
            x = x.f_add(&Tensor::f_embedding(positions, &at, -1, false, false)?)?;
        }
        if let Some(types) = &self.token_types {
            let t = Tensor::f_embedding(types, &inputs.token_type_ids, -1, false, false)?;
            x = x.f_add(&t)?;
        }
        if let Some(proj) = &self.embed_proj {
            x = x.f_linear::<Tensor>(proj, None)?;
        }
        Ok(self.embed_norm.forward(&x)?.f_mul(&mask.f_unsqueeze(-1)?)?)
    }

    /// [B, S, H·D] → [B, heads, S, D].
    fn split(&self, x: &Tensor) -> Result<Tensor> {
        let (b, s, _) = x.size3()?;
        Ok(x.f_view([b, s, self.heads, self.head_dim])?
            .f_transpose(1, 2)?)
    }

    /// The disentangled terms [B, heads, S, S] added to the content scores.
    fn relative_scores(
        &self,
        l: &Layer,
        r: &Relative,
        q: &Tensor,
        k: &Tensor,
        positions: &Tensor,
        scale: f64,
    ) -> Result<Option<Tensor>> {
        let (b, heads, s, _) = q.size4()?;
        let table = r.embeddings.f_unsqueeze(0)?;
        let project = |shared: &Linear, own: &Option<Linear>| -> Result<Tensor> {
            let layer = match (r.shared_keys, own) {
                (false, Some(own)) => own,
                _ => shared,
            };
            self.split(&layer.forward(&table)?)
        };
        let index = |shift: &Tensor| -> Result<Tensor> {
            Ok(shift
                .f_clamp(0, 2 * r.span - 1)?
                .f_expand([b, heads, s, s], false)?)
        };
        let mut terms = Vec::with_capacity(2);
        if r.c2p {
            let pos_k = project(&l.key, &l.pos_key)?;
            let c2p = q.f_matmul(&pos_k.f_transpose(-1, -2)?)?;
            let at = index(&positions.f_add_scalar(r.span)?)?;
            terms.push(c2p.f_gather(-1, &at, false)?.f_div_scalar(scale)?);
        }
        if r.p2c {
            let pos_q = project(&l.query, &l.pos_query)?;
            let p2c = k.f_matmul(&pos_q.f_transpose(-1, -2)?)?;
            let at = index(&positions.f_neg()?.f_add_scalar(r.span)?)?;
            let term = p2c.f_gather(-1, &at, false)?.f_transpose(-1, -2)?;
            terms.push(term.f_div_scalar(scale)?);
        }
        let mut total: Option<Tensor> = None;
        for t in terms {
            total = Some(match total {
                None => t,
                Some(sum) => sum.f_add(&t)?,
            });
        }
        Ok(total)
    }

    fn layer(
        &self,
        l: &Layer,
        x: &Tensor,
        fill: &Tensor,
        positions: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, s, _) = x.size3()?;
        let (q, k, v) = (
            self.split(&l.query.forward(x)?)?,
            self.split(&l.key.forward(x)?)?,
            self.split(&l.value.forward(x)?)?,
        );
        let scale = self.scale;
        let mut scores = q.f_matmul(&k.f_transpose(-1, -2)?.f_div_scalar(scale)?)?;
        if let (Some(r), Some(positions)) = (&self.relative, positions) {
            if let Some(terms) = self.relative_scores(l, r, &q, &k, positions, scale)? {
                scores = scores.f_add(&terms)?;
            }
        }
        let lowest = match scores.kind() {
            Kind::Half => -65504.0,
            Kind::BFloat16 => -3.3895313892515355e38,
            _ => f64::from(f32::MIN),
        };
        let probs = scores
            .f_masked_fill(fill, lowest)?
            .f_softmax(-1, scores.kind())?;
        let ctx =
            probs
                .f_matmul(&v)?
                .f_transpose(1, 2)?
                .f_reshape([b, s, self.heads * self.head_dim])?;
        let attn = l.attn_norm.forward(&l.attn_out.forward(&ctx)?.f_add(x)?)?;
        let inner = self.act.forward(&l.ffn_in.forward(&attn)?)?;
        l.ffn_norm
            .forward(&l.ffn_out.forward(&inner)?.f_add(&attn)?)
    }
}

impl SequenceClassifier for Deberta {
    fn logits(&self, inputs: &Inputs) -> Result<Tensor> {
        let (_, s) = inputs.input_ids.size2()?;
        let kind = self.words.kind();
        let mask = inputs.attention_mask.f_to_kind(kind)?;
        let mut x = self.embed(inputs, &mask)?;
        // Pairs (i, j) where either is padding: [B, 1, S, S].
        let real = inputs.attention_mask.f_ne(0)?;
        let both = real
            .f_unsqueeze(1)?
            .f_unsqueeze(3)?
            .f_logical_and(&real.f_unsqueeze(1)?.f_unsqueeze(2)?)?;
        let fill = both.f_logical_not()?;
        let positions = match &self.relative {
            Some(r) => Some(upload(
                relative_positions(s, r.buckets, r.max_positions)?,
                x.device(),
            )?),
            None => None,
        };
        for l in &self.layers {
            x = self.layer(l, &x, &fill, positions.as_ref())?;
        }
        let pooled = self
            .pooler_act
            .forward(&self.pooler.forward(&x.f_select(1, 0)?)?)?;
        self.classifier.forward(&pooled)
    }
}
