//! Errors of the serving core, by what went wrong, not by how a protocol says it: `api::grpc`
//! maps each to a gRPC status and `api::http` to each dialect's HTTP status and body, once.

use crate::load_error::LoadFailure;
use crate::registry::RegistryError;

/// Why a request failed. Messages name the field, the limit and the value where there is one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ServeError {
    /// The request names a model that is not loaded.
    #[error("model {model:?} is not loaded; loaded models: {}", if loaded.is_empty() { "none".to_string() } else { loaded.join(", ") })]
    UnknownModel { model: String, loaded: Vec<String> },
    /// A field breaks a rule or a limit (the message names the field, the limit and the value).
    #[error("{0}")]
    Invalid(String),
    /// The model cannot do what was asked (Rerank of a several-label model, say).
    #[error("{0}")]
    Unsupported(String),
    /// The model's queue or the tokenizing budget is full; a retry later may succeed.
    #[error("{0}")]
    Overloaded(String),
    /// The server is shutting down: retry on another replica.
    #[error("{0}")]
    ShuttingDown(String),
    /// The model is loading or unloading, or too much loading work is winding down.
    #[error("{0}")]
    NotReady(String),
    /// The model failed to load, or a replica died: it cannot serve until reloaded.
    #[error("{0}")]
    ModelFailed(String),
    /// libtorch failed on a batch.
    #[error("{0}")]
    InferenceFailed(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A result that would not fit its message (the final ranking of a stream).
    #[error("{0}")]
    TooLarge(String),
    /// A model-management call that conflicts with the model's state (already unloading,
    /// unloaded while it loaded, a model root that cannot be used).
    #[error("{0}")]
    Conflict(String),
    /// LoadModel of a name that is loaded or loading.
    #[error("{0}")]
    AlreadyLoaded(String),
    /// A model that failed to load (LoadModel's answer), with its cause.
    #[error("{0}")]
    LoadFailed(LoadFailure),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// The client's connection failed or was closed while its request was read.
    #[error("{0}")]
    ClientGone(String),
    /// A bug or a broken model file (a tokenizer that does not match the weights).
    #[error("{0}")]
    Internal(String),
}

/// The registry's refusals, kind for kind.
impl From<RegistryError> for ServeError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::UnknownModel { model, loaded } => Self::UnknownModel { model, loaded },
            RegistryError::NotReady(m) => Self::NotReady(m),
            RegistryError::Failed(m) => Self::ModelFailed(m),
            RegistryError::AlreadyLoaded(m) => Self::AlreadyLoaded(m),
            RegistryError::Conflict(m) => Self::Conflict(m),
            RegistryError::LoadFailed(failure) => Self::LoadFailed(failure),
        }
    }
}
