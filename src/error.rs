//! Errors of the model runtime: loading a model directory and running it.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a cross-encoder.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("model directory {dir}: {what}")]
    MissingFile { dir: PathBuf, what: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid config: {message}")]
    Config { path: PathBuf, message: String },
    #[error(
        "unsupported architecture {given:?}; supported: {}, or a TorchScript model.pt with crossrank.json",
        crate::models::SUPPORTED_ARCHITECTURES.join(", ")
    )]
    UnknownArchitecture { given: String },
    #[error("tensor {name:?} is missing from the checkpoint (expected shape {expected:?})")]
    MissingTensor { name: String, expected: Vec<i64> },
    #[error("tensor {name:?} has shape {found:?}; the config implies {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<i64>,
        found: Vec<i64>,
    },
    #[error("cannot read weights {path}: {message}")]
    Weights { path: PathBuf, message: String },
    #[error("tokenizer {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("tokenization failed: {0}")]
    Tokenize(String),
    #[error("invalid option: {0}")]
    InvalidOption(String),
    #[error("libtorch error: {0}")]
    Torch(#[from] tch::TchError),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
