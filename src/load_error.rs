//! Why a model failed to load, typed from its cause (the Hub, the runtime) up to the API's
//! message, which is built once from the chain and names the model once.

use std::sync::Arc;

use crate::error::RuntimeError;
use crate::hub::HubError;

/// What stopped a model's load; the cause is its [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The Hugging Face id could not be brought into the cache (the Hub error names the id).
    #[error("fetching it from the Hugging Face Hub (no local directory has its name)")]
    Fetch(#[source] HubError),
    /// A replica's device is no device name.
    #[error("replica {index}: {reason}")]
    Device { index: usize, reason: String },
    /// A replica failed to start its thread, to load the model or its tokenizer, or to warm up.
    #[error("replica {index} on {device}")]
    Replica {
        index: usize,
        device: String,
        #[source]
        source: RuntimeError,
    },
    /// The placement named no device (the configuration's checks prevent it).
    #[error("no replica devices configured")]
    NoDevices,
    /// UnloadModel or shutdown abandoned the load.
    #[error("cancelled")]
    Cancelled,
}

impl LoadError {
    /// This error and its cause, joined by ": ". The Hub's and the runtime's messages are
    /// complete (an I/O error's text included, libtorch's backtrace cut), so the chain ends
    /// there.
    pub fn message(&self) -> String {
        match std::error::Error::source(self) {
            Some(cause) => format!("{self}: {cause}"),
            None => self.to_string(),
        }
    }
}

/// A model's failed load, shared by its FAILED entry and the answer to LoadModel.
#[derive(Debug, Clone)]
pub struct LoadFailure {
    pub model: String,
    pub error: Arc<LoadError>,
}

impl LoadFailure {
    pub fn new(model: &str, error: LoadError) -> Self {
        Self {
            model: model.to_owned(),
            error: Arc::new(error),
        }
    }
}

impl std::fmt::Display for LoadFailure {
    /// The API's message: `model "NAME" failed to load: ` and the chain ([`LoadError::message`]).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "model {:?} failed to load: {}",
            self.model,
            self.error.message()
        )
    }
}

/// Two failures are the same when they are one load's (the error is shared, never copied).
impl PartialEq for LoadFailure {
    fn eq(&self, other: &Self) -> bool {
        self.model == other.model && Arc::ptr_eq(&self.error, &other.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message names the model once, then each cause once: the Hub's error names the id.
    #[test]
    fn messages_name_the_model_and_the_id_once() {
        let hub = HubError::Http {
            repo: "org/tiny@main".into(),
            what: "config.json".into(),
            status: 404,
            code: None,
            message: None,
        };
        let failure = LoadFailure::new("rr", LoadError::Fetch(hub));
        let text = failure.to_string();
        assert!(
            text.starts_with("model \"rr\" failed to load: fetching it from the Hugging Face Hub"),
            "{text}"
        );
        assert_eq!(text.matches("org/tiny").count(), 1, "{text}");
        assert!(text.contains("config.json: HTTP 404"), "{text}");
        let replica = LoadError::Replica {
            index: 0,
            device: "cpu".into(),
            source: RuntimeError::Tokenize("bad".into()),
        };
        assert_eq!(
            replica.message(),
            "replica 0 on cpu: tokenization failed: bad"
        );
    }
}
