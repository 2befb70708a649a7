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
    /// `supported`: the architectures served (the models' family table gives them).
    #[error(
        "unsupported architecture {given:?}; supported: {}, or a TorchScript model.pt with crossrank.json",
        supported.join(", ")
    )]
    UnknownArchitecture {
        given: String,
        supported: Vec<&'static str>,
    },
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
    /// An option the model cannot take (a dtype, an activation).
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// A setting of the model's config that crossrank does not implement (an activation
    /// function of the hidden layers).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A replica's thread could not be started.
    #[error("cannot start thread {thread}: {error}")]
    Spawn {
        thread: String,
        error: std::io::Error,
    },
    /// A replica's thread ended before it said whether its model loaded.
    #[error("replica thread {thread} died while loading")]
    Died { thread: String },
    /// libtorch panicked (caught at the replica's boundary).
    #[error("libtorch panicked {during}")]
    Panicked { during: &'static str },
    /// A batch with no pair or no token reached the model (a bug in the caller).
    #[error("cannot run an empty batch")]
    EmptyBatch,
    /// The model's tables and its inputs or outputs disagree (a tokenizer that does not match
    /// the weights, a model that answers the wrong shape).
    #[error("{0}")]
    Mismatch(String),
    #[error("libtorch error: {}", torch_message(.0))]
    Torch(#[from] tch::TchError),
}

/// What a caught panic says (its `&str` or `String` payload).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

/// A libtorch error's message without its C++ backtrace and build paths: the first non-empty
/// line, cut before "Exception raised from". Every tch error text that reaches a message goes
/// through here.
pub fn torch_message(e: &tch::TchError) -> String {
    first_line(&e.to_string()).to_owned()
}

/// The first non-empty line of `message`, cut before "Exception raised from".
pub fn first_line(message: &str) -> &str {
    let cut = message
        .find("Exception raised from")
        .unwrap_or(message.len());
    message[..cut]
        .lines()
        .map(str::trim_end)
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// libtorch's multi-line message keeps its first line only.
    #[test]
    fn torch_messages_lose_the_backtrace() {
        let raw = "expected m1 and m2 to have the same dtype, but got: float != signed char\nException raised from addmm_impl_cpu_ at /pytorch/aten/src/ATen/native/LinearAlgebra.cpp:1423 (most recent call first):\nframe #0: c10::Error::Error";
        let e = RuntimeError::Torch(tch::TchError::Torch(raw.into()));
        assert_eq!(
            e.to_string(),
            "libtorch error: Internal torch error: expected m1 and m2 to have the same dtype, but got: float != signed char"
        );
        assert_eq!(first_line("a Exception raised from x"), "a");
        assert_eq!(first_line("\n\nfirst\nsecond"), "first");
    }
}
