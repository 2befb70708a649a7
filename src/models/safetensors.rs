//! Reading a safetensors file one tensor at a time: each tensor's bytes are read, turned into a
//! tensor, converted to the model's dtype and device, and dropped before the next is read. The
//! load's peak memory is then the converted weights plus one tensor, where reading the whole file
//! first (tch's `read_safetensors`) held the file and its copy at once: 4.2 GiB peak for a
//! 1.9 GiB Qwen3-0.6B-shaped checkpoint.
//!
//! Format: 8 bytes little-endian header length N, N bytes of JSON
//! `{name: {dtype, shape, data_offsets: [start, end]}, "__metadata__": {...}}`, then the data,
//! offsets relative to its start.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::Deserialize;
use tch::{Kind, Tensor};

use crate::error::{Result, RuntimeError};

#[derive(Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<i64>,
    data_offsets: (u64, u64),
}

/// Largest header accepted (the format's own reference limit is 100 MB).
const MAX_HEADER: u64 = 100 << 20;

/// Every tensor of `path`, each passed through `convert` as soon as it is read.
pub fn read(
    path: &Path,
    mut convert: impl FnMut(Tensor) -> Result<Tensor>,
) -> Result<Vec<(String, Tensor)>> {
    let err = |message: String| RuntimeError::Weights {
        path: path.to_owned(),
        message,
    };
    let mut file = File::open(path).map_err(|e| err(e.to_string()))?;
    let file_len = file.metadata().map_err(|e| err(e.to_string()))?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|e| err(format!("reading the header length: {e}")))?;
    let header_len = u64::from_le_bytes(len);
    if header_len > MAX_HEADER || 8 + header_len > file_len {
        return Err(err(format!(
            "header of {header_len} bytes does not fit the file of {file_len} bytes"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| err(format!("reading the header: {e}")))?;
    let mut entries: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| err(format!("header: {e}")))?;
    entries.remove("__metadata__");
    let data_start = 8 + header_len;
    let mut out = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        let entry: Entry =
            serde_json::from_value(value).map_err(|e| err(format!("tensor {name}: {e}")))?;
        let tensor = read_one(&mut file, &entry, data_start, file_len)
            .map_err(|m| err(format!("tensor {name}: {m}")))?;
        out.push((name, convert(tensor)?));
    }
    Ok(out)
}

fn read_one(file: &mut File, e: &Entry, data_start: u64, file_len: u64) -> Result<Tensor, String> {
    let (kind, size) = kind_of(&e.dtype)?;
    let (start, end) = e.data_offsets;
    let elements = e.shape.iter().try_fold(1u64, |n, &d| {
        u64::try_from(d).ok().and_then(|d| n.checked_mul(d))
    });
    let expected = elements.and_then(|n| n.checked_mul(size));
    let within = data_start.checked_add(end).is_some_and(|e| e <= file_len);
    if end < start || expected != Some(end - start) || !within {
        return Err(format!(
            "offsets {start}..{end} do not hold a {:?} tensor of shape {:?} in a file of {file_len} bytes",
            e.dtype, e.shape
        ));
    }
    let mut bytes = vec![0u8; (end - start) as usize];
    file.seek(SeekFrom::Start(data_start + start))
        .and_then(|_| file.read_exact(&mut bytes))
        .map_err(|e| e.to_string())?;
    Tensor::f_from_data_size(&bytes, &e.shape, kind).map_err(|e| e.to_string())
}

/// The tensor kind and element size of a safetensors dtype.
fn kind_of(dtype: &str) -> Result<(Kind, u64), String> {
    Ok(match dtype {
        "F64" => (Kind::Double, 8),
        "F32" => (Kind::Float, 4),
        "F16" => (Kind::Half, 2),
        "BF16" => (Kind::BFloat16, 2),
        "I64" => (Kind::Int64, 8),
        "I32" => (Kind::Int, 4),
        "I16" => (Kind::Int16, 2),
        "I8" => (Kind::Int8, 1),
        "U8" => (Kind::Uint8, 1),
        "BOOL" => (Kind::Bool, 1),
        other => return Err(format!("dtype {other} is not supported")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What tch writes reads back equal, tensor by tensor, through the conversion; a header
    /// whose offsets do not match a tensor's shape is refused by name.
    #[test]
    fn tensors_read_back_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let a = Tensor::f_arange(12, (Kind::Float, tch::Device::Cpu))
            .unwrap()
            .f_view([3, 4])
            .unwrap();
        let b = Tensor::f_from_slice(&[7i64, -1]).unwrap();
        let c = a.f_to_kind(Kind::BFloat16).unwrap();
        Tensor::write_safetensors(&[("a", &a), ("b", &b), ("c", &c)], &path).unwrap();
        let mut seen = 0;
        let tensors = read(&path, |t| {
            seen += 1;
            Ok(t)
        })
        .unwrap();
        assert_eq!(seen, 3);
        let get = |n: &str| {
            tensors
                .iter()
                .find(|(k, _)| k == n)
                .unwrap()
                .1
                .shallow_clone()
        };
        assert!(get("a").equal(&a) && get("b").equal(&b) && get("c").equal(&c));

        let mut bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let at = text.find("[2,3]").or_else(|| text.find("[3,4]")).unwrap();
        bytes[at + 1] = b'9';
        std::fs::write(&path, &bytes).unwrap();
        let err = read(&path, Ok).unwrap_err().to_string();
        assert!(
            err.contains("w.safetensors") && err.contains("offsets"),
            "{err}"
        );
    }
}
