//! Device and precision names as users write them (`cpu`, `cuda:1`, `bf16`).

use std::fmt;
use std::str::FromStr;

use tch::{Device, Kind, Tensor};

use crate::error::Result;

/// Precision a model runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    Bf16,
    /// CPU only: the encoder's linear layers in int8 (per-channel weights, per-row dynamic
    /// activations), everything else in f32.
    Int8,
}

impl DType {
    /// The floating-point kind of weights and activations.
    pub fn kind(self) -> Kind {
        match self {
            Self::F32 | Self::Int8 => Kind::Float,
            Self::F16 => Kind::Half,
            Self::Bf16 => Kind::BFloat16,
        }
    }

    /// f32 on CPU, f16 on CUDA.
    pub fn default_for(device: Device) -> Self {
        if device.is_cuda() {
            Self::F16
        } else {
            Self::F32
        }
    }
}

impl FromStr for DType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" | "float32" | "fp32" => Ok(Self::F32),
            "f16" | "float16" | "fp16" | "half" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            "int8" | "qint8" => Ok(Self::Int8),
            _ => Err(format!("dtype {s:?} is not one of: f32, f16, bf16, int8")),
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
            Self::Int8 => "int8",
        })
    }
}

/// `cpu`, `cuda` (= `cuda:0`) or `cuda:N`; CUDA devices must exist.
pub fn parse_device(s: &str) -> Result<Device, String> {
    let index = match s {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        _ => s
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| format!("device {s:?} is not one of: cpu, cuda, cuda:N"))?,
    };
    let available = tch::Cuda::device_count() as usize;
    if index >= available {
        return Err(format!(
            "device {s:?} is not available: this machine has {available} CUDA device(s)"
        ));
    }
    Ok(Device::Cuda(index))
}

pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}

/// `host` (a CPU tensor) on `device`. To a GPU it goes through pinned memory and is copied
/// without blocking: the host does not wait for the work already queued on the device.
pub fn upload(host: Tensor, device: Device) -> Result<Tensor> {
    if !device.is_cuda() {
        return Ok(host.f_to_device(device)?);
    }
    let pinned = host.f_pin_memory(device)?;
    Ok(pinned.f_to_device_(device, pinned.kind(), true, false)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_names_round_trip() {
        for (name, dtype) in [
            ("f32", DType::F32),
            ("bf16", DType::Bf16),
            ("int8", DType::Int8),
        ] {
            assert_eq!(name.parse::<DType>().unwrap(), dtype);
            assert_eq!(dtype.to_string(), name);
        }
        assert_eq!(
            DType::Int8.kind(),
            Kind::Float,
            "int8 keeps f32 activations"
        );
        let err = "int4".parse::<DType>().unwrap_err();
        assert!(err.contains("int8"), "{err}");
    }
}
