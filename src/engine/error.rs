//! Errors of the serving core, one variant per kind of gRPC status the transport maps them to.

/// Why a request failed. Messages name the field, the limit and the value where there is one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ServeError {
    #[error("model {model:?} is not loaded; loaded models: {}", if loaded.is_empty() { "none".to_string() } else { loaded.join(", ") })]
    NotFound { model: String, loaded: Vec<String> },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Internal(String),
    /// A result that would not fit its message (the final ranking of a stream).
    #[error("{0}")]
    OutOfRange(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
}
