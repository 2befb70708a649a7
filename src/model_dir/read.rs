//! Bounded reads of a model directory's small files: a file's size is checked against its limit
//! (metadata first, then a `take` that stops one byte past it, for files that grow or lie)
//! before anything is allocated for it, so a 1 GiB `config.json` costs nothing but an error.
//!
//! The limits are declared with the files, in [`super::files::FILES`].

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use super::files::{MAX_TEMPLATE_BYTES, SMALL_LIMIT, TOKENIZER_LIMIT};
use crate::error::{Result, RuntimeError};

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

/// A chat template file, read up to one byte past [`super::files::MAX_TEMPLATE_BYTES`];
/// `None` when it is not a regular file.
pub fn read_template(path: PathBuf) -> Result<Option<(String, PathBuf)>> {
    if !path.is_file() {
        return Ok(None);
    }
    let mut text = String::new();
    let read = std::fs::File::open(&path).and_then(|f| {
        f.take(MAX_TEMPLATE_BYTES as u64 + 1)
            .read_to_string(&mut text)
    });
    match read {
        Ok(len) => check_template_len(&path, len).map(|()| Some((text, path))),
        Err(source) => Err(RuntimeError::Io { path, source }),
    }
}

/// A chat template of `len` bytes from `path`, refused past [`MAX_TEMPLATE_BYTES`].
pub fn check_template_len(path: &Path, len: usize) -> Result<()> {
    if len <= MAX_TEMPLATE_BYTES {
        return Ok(());
    }
    Err(RuntimeError::Config {
        path: path.to_owned(),
        message: format!("the chat template has {len} bytes; the limit is {MAX_TEMPLATE_BYTES}"),
    })
}

/// The same error again, for a second part that needs the file (a file is read once; each
/// part that needs it reports its failure). Only the variants reads produce are kept as they
/// are; an I/O error keeps its kind and message.
pub fn replay(e: &RuntimeError) -> RuntimeError {
    match e {
        RuntimeError::MissingFile { dir, what } => RuntimeError::MissingFile {
            dir: dir.clone(),
            what: what.clone(),
        },
        RuntimeError::Io { path, source } => RuntimeError::Io {
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        RuntimeError::Config { path, message } => RuntimeError::Config {
            path: path.clone(),
            message: message.clone(),
        },
        RuntimeError::Weights { path, message } => RuntimeError::Weights {
            path: path.clone(),
            message: message.clone(),
        },
        RuntimeError::Tokenizer { path, message } => RuntimeError::Tokenizer {
            path: path.clone(),
            message: message.clone(),
        },
        // Reads produce none of the others; kept whole as text should one appear.
        other => RuntimeError::Mismatch(other.to_string()),
    }
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
