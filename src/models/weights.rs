//! Checkpoint tensors by their Hugging Face names, checked against the shapes the config implies.
//!
//! Reads the safetensors files the model directory found: `model.safetensors`, or every shard
//! listed in `model.safetensors.index.json`.

use std::collections::HashMap;
use std::path::PathBuf;

use tch::{Device, Kind, Tensor};

use super::safetensors::{self, Entry, SafeFile};
use crate::device::DType;
use crate::error::{Result, RuntimeError};

/// The tensors of one checkpoint, indexed by name; a tensor is read from its file, converted to
/// the target dtype and device, when the model takes it ([`Weights::get`]), so tensors the
/// architecture does not use are never read and the load holds the converted weights plus one
/// tensor.
pub struct Weights {
    files: Vec<SafeFile>,
    /// Each tensor's file (an index into `files`) and header entry.
    index: HashMap<String, (usize, Entry)>,
    /// Name prefix of the base model (`bert.`, `roberta.`…), tried when a bare name is missing.
    prefix: String,
    device: Device,
    kind: Kind,
    /// Whether the encoder's linear layers are quantized to int8.
    int8: bool,
}

impl Weights {
    /// The tensors of `paths` (the model directory's safetensors files).
    pub fn load(paths: &[PathBuf], prefix: &str, device: Device, dtype: DType) -> Result<Self> {
        let mut files = Vec::new();
        let mut index = HashMap::new();
        for path in paths {
            let (file, entries) = safetensors::open(path)?;
            for (name, entry) in entries {
                if let Some((other, _)) = index.insert(name.clone(), (files.len(), entry)) {
                    let other: &SafeFile = &files[other];
                    return Err(RuntimeError::Weights {
                        path: path.clone(),
                        message: format!("tensor {name} is also in {}", other.path.display()),
                    });
                }
            }
            files.push(file);
        }
        Ok(Self {
            files,
            index,
            prefix: prefix.to_owned(),
            device,
            kind: dtype.kind(),
            int8: dtype == DType::Int8,
        })
    }

    /// The floating-point kind the weights are converted to.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn int8(&self) -> bool {
        self.int8
    }

    /// The tensor `name` (or `prefix + name`), which must have exactly `shape` and a floating-point
    /// dtype; read now and converted to the weights' dtype and device.
    /// Old checkpoints name LayerNorm parameters `gamma`/`beta`; those are accepted too.
    pub fn get(&self, name: &str, shape: &[i64]) -> Result<Tensor> {
        let (file, entry) = self
            .lookup(name)
            .ok_or_else(|| RuntimeError::MissingTensor {
                name: name.to_owned(),
                expected: shape.to_vec(),
            })?;
        if entry.shape != shape {
            return Err(RuntimeError::ShapeMismatch {
                name: name.to_owned(),
                expected: shape.to_vec(),
                found: entry.shape.clone(),
            });
        }
        if !entry.dtype.is_float() {
            return Err(RuntimeError::Weights {
                path: file.path.clone(),
                message: format!(
                    "tensor {name} is stored as {}; a parameter must be F32, F16, BF16 or F64",
                    entry.dtype
                ),
            });
        }
        let stored = file.read(name, entry)?;
        Ok(stored.f_to_kind(self.kind)?.f_to_device(self.device)?)
    }

    /// Whether the checkpoint has tensor `name` (or `prefix + name`).
    pub fn has(&self, name: &str) -> bool {
        self.lookup(name).is_some()
    }

    fn lookup(&self, name: &str) -> Option<(&SafeFile, &Entry)> {
        let legacy = name
            .strip_suffix("LayerNorm.weight")
            .map(|p| format!("{p}LayerNorm.gamma"))
            .or_else(|| {
                name.strip_suffix("LayerNorm.bias")
                    .map(|p| format!("{p}LayerNorm.beta"))
            });
        let mut candidates = vec![name.to_owned()];
        if let Some(bare) = name.strip_prefix(&self.prefix) {
            candidates.push(bare.to_owned());
        }
        candidates.extend(legacy);
        let (file, entry) = candidates.iter().find_map(|c| self.index.get(c))?;
        Some((&self.files[*file], entry))
    }

    /// A linear layer `prefix.weight` [out, in] and `prefix.bias` [out].
    pub fn linear(&self, prefix: &str, inputs: i64, outputs: i64) -> Result<Linear> {
        Ok(Linear {
            weight: Weight::Dense(self.get(&format!("{prefix}.weight"), &[outputs, inputs])?),
            bias: self.get(&format!("{prefix}.bias"), &[outputs])?,
        })
    }

    /// A linear layer whose checkpoint has a bias only when `bias` (ModernBERT's layers have
    /// none by default); without one it adds zeros.
    pub fn linear_biased(
        &self,
        prefix: &str,
        inputs: i64,
        outputs: i64,
        bias: bool,
    ) -> Result<Linear> {
        if bias {
            return self.linear(prefix, inputs, outputs);
        }
        Ok(Linear {
            weight: Weight::Dense(self.get(&format!("{prefix}.weight"), &[outputs, inputs])?),
            bias: self.zeros(outputs)?,
        })
    }

    /// A LayerNorm with or without a bias in the checkpoint (zeros without).
    pub fn layer_norm_biased(
        &self,
        prefix: &str,
        size: i64,
        eps: f64,
        bias: bool,
    ) -> Result<LayerNorm> {
        if bias {
            return self.layer_norm(prefix, size, eps);
        }
        Ok(LayerNorm {
            weight: self.get(&format!("{prefix}.weight"), &[size])?,
            bias: self.zeros(size)?,
            size,
            eps,
        })
    }

    fn zeros(&self, size: i64) -> Result<Tensor> {
        Ok(Tensor::f_zeros([size], (self.kind, self.device))?)
    }

    pub fn layer_norm(&self, prefix: &str, size: i64, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: self.get(&format!("{prefix}.weight"), &[size])?,
            bias: self.get(&format!("{prefix}.bias"), &[size])?,
            size,
            eps,
        })
    }
}

/// `x · Wᵀ + b`.
pub struct Linear {
    weight: Weight,
    bias: Tensor,
}

enum Weight {
    Dense(Tensor),
    /// Per output channel: int8 values [out, in] and the f32 step of each channel [out].
    Int8 {
        values: Tensor,
        steps: Tensor,
    },
}

impl Linear {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.weight {
            Weight::Dense(w) => Ok(x.f_linear(w, Some(&self.bias))?),
            Weight::Int8 { values, steps } => quantized_linear(x, values, steps, &self.bias),
        }
    }

    /// The layer computing outputs `start..start + len` only (a view of the weights).
    pub fn rows(&self, start: i64, len: i64) -> Result<Linear> {
        let weight = match &self.weight {
            Weight::Dense(w) => Weight::Dense(w.f_narrow(0, start, len)?),
            Weight::Int8 { values, steps } => Weight::Int8 {
                values: values.f_narrow(0, start, len)?,
                steps: steps.f_narrow(0, start, len)?,
            },
        };
        Ok(Linear {
            weight,
            bias: self.bias.f_narrow(0, start, len)?,
        })
    }

    /// One layer computing `parts` side by side (outputs concatenated in order): one larger
    /// matrix product instead of several small ones. Parts must all be dense.
    pub fn concat(parts: &[Linear]) -> Result<Linear> {
        let weights = parts
            .iter()
            .map(|l| match &l.weight {
                Weight::Dense(w) => Ok(w),
                Weight::Int8 { .. } => Err(RuntimeError::Mismatch(
                    "cannot concatenate quantized layers".into(),
                )),
            })
            .collect::<Result<Vec<&Tensor>>>()?;
        let biases: Vec<&Tensor> = parts.iter().map(|l| &l.bias).collect();
        Ok(Linear {
            weight: Weight::Dense(Tensor::f_cat(&weights, 0)?),
            bias: Tensor::f_cat(&biases, 0)?,
        })
    }

    /// The same layer with int8 weights, symmetric per output channel (the step of a channel
    /// is its largest magnitude / 127), as torch.ao's dynamic quantization stores them.
    pub fn quantized(self) -> Result<Linear> {
        let Weight::Dense(w) = &self.weight else {
            return Ok(self);
        };
        let w = w.f_to_kind(Kind::Float)?;
        let steps = int8_steps(&w)?;
        let values = w
            .f_div(&steps)?
            .f_round()?
            .f_to_kind(Kind::Int8)?
            .f_contiguous()?;
        Ok(Linear {
            weight: Weight::Int8 {
                values,
                steps: steps.f_squeeze_dim(1)?,
            },
            bias: self.bias,
        })
    }
}

/// Per row of `x` [N, K]: its largest magnitude / 127 (at least a tiny positive step), [N, 1].
fn int8_steps(x: &Tensor) -> Result<Tensor> {
    // Two reductions: `aminmax` is not vectorized on the CPU (measured 13x slower).
    let (min, max) = (x.f_amin([-1], true)?, x.f_amax([-1], true)?);
    Ok(max
        .f_maximum(&min.f_neg()?)?
        .f_clamp_min(1e-12)?
        .f_div_scalar(127.0)?)
}

/// `x` [T, K] f32 quantized per row on the fly, multiplied with int8 weights [N, K] in int32,
/// scaled back to f32 and biased: [T, N].
fn quantized_linear(x: &Tensor, values: &Tensor, steps: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let x_steps = int8_steps(x)?;
    let q = x.f_div(&x_steps)?.f_round_()?.f_to_kind(Kind::Int8)?;
    let acc = q.f_internal_int_mm(&values.f_transpose(0, 1)?)?;
    let mut y = acc.f_to_kind(Kind::Float)?;
    drop(acc);
    let _ = y.f_mul_(&x_steps)?.f_mul_(steps)?.f_add_(bias)?;
    Ok(y)
}

pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    size: i64,
    eps: f64,
}

impl LayerNorm {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_layer_norm(
            [self.size],
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
            true,
        )?)
    }
}
