//! Rotary position embeddings as transformers computes them (ModernBERT, Qwen, Llama).

use tch::{Device, Kind, Tensor};

use crate::error::Result;

/// Inverse frequencies 1 / theta^(2k / dim), k < dim / 2, in f32 with the same operations as
/// transformers (so long positions get the same angles).
pub fn frequencies(theta: f64, head_dim: i64, device: Device) -> Result<Tensor> {
    let exponents = Tensor::f_arange_start_step(0, head_dim, 2, (Kind::Int64, Device::Cpu))?
        .f_to_kind(Kind::Float)?
        .f_div_scalar(head_dim)?;
    Ok(Tensor::f_pow_scalar(theta, &exponents)?
        .f_reciprocal()?
        .f_to_device(device)?)
}

/// (cos, sin) tables [s, head_dim] in f32 for positions 0..s.
pub fn tables(freqs: &Tensor, s: i64) -> Result<(Tensor, Tensor)> {
    let positions = Tensor::f_arange(s, (Kind::Float, freqs.device()))?;
    let angles = positions.f_unsqueeze(1)?.f_mul(&freqs.f_unsqueeze(0)?)?;
    let angles = Tensor::f_cat(&[&angles, &angles], 1)?;
    Ok((angles.f_cos()?, angles.f_sin()?))
}

/// `x` [B, H, S, D] rotated: x·cos + rotate_half(x)·sin, in x's dtype.
pub fn rotate(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let half = x.size()[3] / 2;
    let halves = Tensor::f_cat(
        &[
            &x.f_narrow(3, half, half)?.f_neg()?,
            &x.f_narrow(3, 0, half)?,
        ],
        3,
    )?;
    Ok(x.f_mul(cos)?.f_add(&halves.f_mul(sin)?)?)
}
