//! A safetensors file opened for reading one tensor at a time: the header is parsed into typed
//! entries (a streaming visitor, never a generic JSON value) and checked whole before any tensor
//! is read; a tensor's bytes are then read only when the model asks for it, so unused tensors
//! cost nothing and a load's peak is the converted weights plus one tensor.
//!
//! Format: 8 bytes little-endian header length N, N bytes of JSON
//! `{name: {dtype, shape, data_offsets: [start, end]}, "__metadata__": {str: str}}`, then the
//! data, offsets relative to its start. Checked as the safetensors crate does: at most
//! [`MAX_HEADER`] bytes and [`MAX_ENTRIES`] tensors, each tensor's bytes match its dtype and
//! shape, and the offsets, sorted, tile the data area exactly (no gap, no overlap, no alias,
//! nothing past its end).

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use tch::{Kind, Tensor};

use crate::error::{torch_message, Result, RuntimeError};

/// Largest header accepted (the format's own reference limit is 100 MB).
pub const MAX_HEADER: u64 = 100 << 20;
/// Most tensors (and `__metadata__` entries) one file may declare.
pub const MAX_ENTRIES: usize = 100_000;
/// Most dimensions of one tensor.
const MAX_RANK: usize = 8;

/// The safetensors dtypes crossrank reads.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Dtype {
    F64,
    F32,
    F16,
    Bf16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl Dtype {
    /// The tensor kind, the element size and the name in the format.
    fn describe(self) -> (Kind, u64, &'static str) {
        match self {
            Dtype::F64 => (Kind::Double, 8, "F64"),
            Dtype::F32 => (Kind::Float, 4, "F32"),
            Dtype::F16 => (Kind::Half, 2, "F16"),
            Dtype::Bf16 => (Kind::BFloat16, 2, "BF16"),
            Dtype::I64 => (Kind::Int64, 8, "I64"),
            Dtype::I32 => (Kind::Int, 4, "I32"),
            Dtype::I16 => (Kind::Int16, 2, "I16"),
            Dtype::I8 => (Kind::Int8, 1, "I8"),
            Dtype::U8 => (Kind::Uint8, 1, "U8"),
            Dtype::Bool => (Kind::Bool, 1, "BOOL"),
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, Dtype::F64 | Dtype::F32 | Dtype::F16 | Dtype::Bf16)
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.describe().2)
    }
}

/// One tensor's header entry.
#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    pub dtype: Dtype,
    #[serde(deserialize_with = "shape")]
    pub shape: Vec<i64>,
    data_offsets: (u64, u64),
}

/// An open safetensors file whose header has been checked.
pub struct SafeFile {
    pub path: PathBuf,
    /// Read through `&File` with a seek before each read: a `SafeFile` is used by one thread.
    file: File,
    data_start: u64,
}

/// Opens `path` and checks its header; returns the file and its tensors by name.
pub fn open(path: &Path) -> Result<(SafeFile, Vec<(String, Entry)>)> {
    let err = |message: String| weights_err(path, message);
    // Checked before opening: opening a FIFO would block.
    if !std::fs::metadata(path)
        .map_err(|e| err(e.to_string()))?
        .is_file()
    {
        return Err(err("not a regular file".into()));
    }
    let mut file = File::open(path).map_err(|e| err(e.to_string()))?;
    let file_len = file.metadata().map_err(|e| err(e.to_string()))?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|e| err(format!("reading the header length: {e}")))?;
    let header_len = u64::from_le_bytes(len);
    if header_len > MAX_HEADER || 8 + header_len > file_len {
        return Err(err(format!(
            "header of {header_len} bytes does not fit the file of {file_len} bytes (limit {MAX_HEADER})"
        )));
    }
    let header = read_exactly(&file, 8, header_len).map_err(err)?;
    let Header(entries) =
        serde_json::from_slice(&header).map_err(|e| err(format!("header: {e}")))?;
    drop(header);
    let data_start = 8 + header_len;
    check_layout(&entries, file_len - data_start).map_err(err)?;
    let safe = SafeFile {
        path: path.to_owned(),
        file,
        data_start,
    };
    Ok((safe, entries))
}

impl SafeFile {
    /// The tensor of `entry` (one of this file's), as stored.
    pub fn read(&self, name: &str, entry: &Entry) -> Result<Tensor> {
        let (start, end) = entry.data_offsets;
        let (kind, _, _) = entry.dtype.describe();
        let bytes = read_exactly(&self.file, self.data_start + start, end - start)
            .map_err(|m| weights_err(&self.path, format!("tensor {name}: {m}")))?;
        Tensor::f_from_data_size(&bytes, &entry.shape, kind)
            .map_err(|e| weights_err(&self.path, format!("tensor {name}: {}", torch_message(&e))))
    }
}

fn weights_err(path: &Path, message: String) -> RuntimeError {
    RuntimeError::Weights {
        path: path.to_owned(),
        message,
    }
}

/// `len` bytes at `offset`, in a buffer reserved fallibly (the size comes from the file) and
/// filled without zeroing it first.
fn read_exactly(mut file: &File, offset: u64, len: u64) -> Result<Vec<u8>, String> {
    let size = usize::try_from(len).map_err(|_| format!("{len} bytes do not fit in memory"))?;
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(size)
        .map_err(|e| format!("cannot allocate {len} bytes: {e}"))?;
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.take(len).read_to_end(&mut bytes))
        .map_err(|e| format!("reading {len} bytes at {offset}: {e}"))?;
    if bytes.len() != size {
        return Err(format!(
            "the file ended after {} of {len} bytes at {offset}",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// Each entry's bytes match its dtype and shape, and the entries, sorted by offset, tile the
/// `data_len` bytes of the data area exactly.
fn check_layout(entries: &[(String, Entry)], data_len: u64) -> Result<(), String> {
    let mut spans = Vec::new();
    spans
        .try_reserve_exact(entries.len())
        .map_err(|e| e.to_string())?;
    for (name, e) in entries {
        let (start, end) = e.data_offsets;
        let elements = e.shape.iter().try_fold(1u64, |n, &d| {
            u64::try_from(d).ok().and_then(|d| n.checked_mul(d))
        });
        let expected = elements.and_then(|n| n.checked_mul(e.dtype.describe().1));
        if end < start || expected != Some(end - start) {
            return Err(format!(
                "tensor {name}: offsets {start}..{end} do not hold a {} tensor of shape {:?}",
                e.dtype, e.shape
            ));
        }
        spans.push((start, end, name.as_str()));
    }
    spans.sort_unstable();
    let mut at = 0u64;
    for (start, end, name) in spans {
        if start != at {
            let what = if start < at {
                "overlap"
            } else {
                "leave a gap after"
            };
            return Err(format!(
                "tensor {name}: offsets {start}..{end} {what} the tensor before, which ends at {at}; the tensors must tile the data area"
            ));
        }
        at = end;
    }
    if at != data_len {
        return Err(format!(
            "the tensors end at {at} but the data area is {data_len} bytes"
        ));
    }
    Ok(())
}

/// The header's tensor entries, in file order; `__metadata__` is checked and dropped.
struct Header(Vec<(String, Entry)>);

impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(HeaderVisitor)
    }
}

struct HeaderVisitor;

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = Header;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of tensor names to {dtype, shape, data_offsets}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header, A::Error> {
        let mut entries = Vec::new();
        let mut metadata = false;
        while let Some(name) = map.next_key::<String>()? {
            if name == "__metadata__" && !metadata {
                metadata = true;
                map.next_value::<Metadata>()?;
                continue;
            }
            if entries.len() == MAX_ENTRIES {
                return Err(de::Error::custom(format!(
                    "more than {MAX_ENTRIES} tensors (the limit)"
                )));
            }
            let entry: Entry = map
                .next_value()
                .map_err(|e| <A::Error as de::Error>::custom(format!("tensor {name}: {e}")))?;
            entries.push((name, entry));
        }
        Ok(Header(entries))
    }
}

/// `__metadata__`: at most [`MAX_ENTRIES`] string pairs, not kept.
struct Metadata;

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(Metadata)
    }
}

impl<'de> Visitor<'de> for Metadata {
    type Value = Metadata;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`__metadata__`: a map of strings to strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Metadata, A::Error> {
        let mut n = 0;
        while map.next_entry::<String, String>()?.is_some() {
            n += 1;
            if n > MAX_ENTRIES {
                return Err(de::Error::custom(format!(
                    "`__metadata__` has more than {MAX_ENTRIES} entries (the limit)"
                )));
            }
        }
        Ok(Metadata)
    }
}

/// A shape of at most [`MAX_RANK`] dimensions.
fn shape<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
    struct Dims;
    impl<'de> Visitor<'de> for Dims {
        type Value = Vec<i64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a shape of at most {MAX_RANK} dimensions")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<i64>, A::Error> {
            let mut dims = Vec::new();
            while let Some(d) = seq.next_element::<i64>()? {
                if dims.len() == MAX_RANK {
                    return Err(de::Error::custom(format!(
                        "a shape of more than {MAX_RANK} dimensions"
                    )));
                }
                dims.push(d);
            }
            Ok(dims)
        }
    }
    d.deserialize_seq(Dims)
}

#[cfg(test)]
mod tests;
