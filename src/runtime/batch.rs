//! Padding a group of tokenized pairs into the tensors a model takes.

use tch::{Device, Kind, Tensor};

use crate::device::upload;
use crate::error::{Result, RuntimeError};
use crate::models::{Inputs, ModelSpec};
use crate::tokenize::Encoded;

/// Right-pads `pairs` to the longest one and moves the batch to `device`.
/// Token ids are checked against the model's vocabulary here, on the CPU: an out-of-range id
/// on CUDA would be a device-side assert that poisons the whole context.
pub fn pad(pairs: &[&Encoded], spec: &ModelSpec, device: Device) -> Result<Inputs> {
    let rows = pairs.len();
    let width = pairs.iter().map(|e| e.len()).max().unwrap_or(0);
    if rows == 0 || width == 0 {
        return Err(RuntimeError::EmptyBatch);
    }
    let mut ids = vec![spec.pad_token_id; rows * width];
    let mut mask = vec![0i64; rows * width];
    let mut types = vec![0i64; rows * width];
    for (row, enc) in pairs.iter().enumerate() {
        let base = row * width;
        for (col, &id) in enc.ids.iter().enumerate() {
            let id = i64::from(id);
            if id >= spec.vocab_size {
                return Err(out_of_range("token id", id, spec.vocab_size));
            }
            ids[base + col] = id;
            mask[base + col] = 1;
        }
        if spec.uses_token_types {
            for (col, &t) in enc.type_ids.iter().enumerate() {
                let t = i64::from(t);
                if t >= spec.type_vocab_size {
                    return Err(out_of_range("token type id", t, spec.type_vocab_size));
                }
                types[base + col] = t;
            }
        }
    }
    let tensor = |data: &[i64]| -> Result<Tensor> {
        upload(
            Tensor::f_from_slice(data)?.f_view([rows as i64, width as i64])?,
            device,
        )
    };
    Ok(Inputs {
        input_ids: tensor(&ids)?,
        attention_mask: tensor(&mask)?,
        token_type_ids: tensor(&types)?,
        lengths: pairs.iter().map(|e| e.len() as i64).collect(),
    })
}

fn out_of_range(what: &str, value: i64, limit: i64) -> RuntimeError {
    RuntimeError::Mismatch(format!(
        "{what} {value} is outside the model's table of {limit}: tokenizer.json does not match the model"
    ))
}

/// Splits f32 scores [rows, labels] into one vector per row.
pub fn rows(scores: &Tensor) -> Result<Vec<Vec<f32>>> {
    let (n, labels) = scores.size2()?;
    let flat: Vec<f32> = Vec::<f32>::try_from(
        &scores
            .f_to_device(Device::Cpu)?
            .f_to_kind(Kind::Float)?
            .f_contiguous()?
            .f_view([-1])?,
    )?;
    debug_assert_eq!(flat.len() as i64, n * labels);
    Ok(flat
        .chunks(labels.max(1) as usize)
        .map(<[f32]>::to_vec)
        .collect())
}
