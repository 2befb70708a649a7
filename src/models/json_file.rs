//! Bounded reads of a model directory's small files: a file's size is checked against its limit
//! (metadata first, then a `take` that stops one byte past it, for files that grow or lie)
//! before anything is allocated for it, so a 1 GiB `config.json` costs nothing but an error.
//!
//! Limits: [`TOKENIZER_LIMIT`] for `tokenizer.json` (real ones reach ~30 MB: large vocabularies
//! and merges), [`SMALL_LIMIT`] for every other JSON file (`config.json`,
//! `tokenizer_config.json`, `special_tokens_map.json`, `modules.json`, `crossrank.json`, the
//! sentence-transformers configs, the shard index; real ones are a few KiB, a chat template in
//! `tokenizer_config.json` some tens of KiB).

use std::io::Read;
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{Result, RuntimeError};

/// Largest `tokenizer.json` read: 64 MiB.
pub const TOKENIZER_LIMIT: u64 = 64 << 20;
/// Largest small JSON file read (configs, indexes, module lists): 4 MiB.
pub const SMALL_LIMIT: u64 = 4 << 20;

/// The text of `path`, refused when it is longer than `limit` bytes (or not UTF-8).
pub fn read_text(path: &Path, limit: u64) -> Result<String> {
    let io = |source: std::io::Error| RuntimeError::Io {
        path: path.to_owned(),
        source,
    };
    // Checked before opening: opening a FIFO would block.
    if !std::fs::metadata(path).map_err(io)?.is_file() {
        return Err(RuntimeError::Config {
            path: path.to_owned(),
            message: "not a regular file".into(),
        });
    }
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size > limit {
        return Err(too_large(path, size, limit));
    }
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(size as usize)
        .map_err(|e| RuntimeError::Config {
            path: path.to_owned(),
            message: format!("cannot allocate {size} bytes to read it: {e}"),
        })?;
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(path, bytes.len() as u64, limit));
    }
    String::from_utf8(bytes).map_err(|e| RuntimeError::Config {
        path: path.to_owned(),
        message: format!("not UTF-8: {e}"),
    })
}

/// The text of `path`, or `None` when there is no such file.
pub fn read_optional(path: &Path, limit: u64) -> Result<Option<String>> {
    match read_text(path, limit) {
        Ok(text) => Ok(Some(text)),
        Err(RuntimeError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// `path` (at most [`SMALL_LIMIT`] bytes) parsed as `T`; errors name the file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = read_text(path, SMALL_LIMIT)?;
    parse(path, &text)
}

/// `text`, the content of `path`, parsed as `T`; errors name the file.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| RuntimeError::Config {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

fn too_large(path: &Path, size: u64, limit: u64) -> RuntimeError {
    RuntimeError::Config {
        path: path.to_owned(),
        message: format!("the file is {size} bytes; the limit is {limit} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sparse 1 GiB file is refused from its size alone, naming the size and the limit; a
    /// small one reads; a missing one is `None` for the optional read.
    #[test]
    fn sizes_are_checked_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("config.json");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        let err = read_text(&big, SMALL_LIMIT).unwrap_err().to_string();
        assert!(
            err.contains("config.json") && err.contains("1073741824") && err.contains("4194304"),
            "{err}"
        );
        let small = dir.path().join("small.json");
        std::fs::write(&small, r#"{"a": 1}"#).unwrap();
        let v: serde_json::Value = read_json(&small).unwrap();
        assert_eq!(v["a"], 1);
        assert!(read_optional(&dir.path().join("none.json"), 10)
            .unwrap()
            .is_none());
    }
}
