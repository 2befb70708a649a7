//! The one mapping from core errors to gRPC statuses. No wildcard: a new error kind must be
//! given its code here.

use tonic::{Code, Status};

use crate::engine::ServeError;

pub fn code(e: &ServeError) -> Code {
    match e {
        ServeError::NotFound { .. } => Code::NotFound,
        ServeError::InvalidArgument(_) => Code::InvalidArgument,
        ServeError::FailedPrecondition(_) => Code::FailedPrecondition,
        ServeError::AlreadyExists(_) => Code::AlreadyExists,
        ServeError::Unavailable(_) => Code::Unavailable,
        ServeError::ResourceExhausted(_) => Code::ResourceExhausted,
        ServeError::DeadlineExceeded(_) => Code::DeadlineExceeded,
        ServeError::Internal(_) => Code::Internal,
        ServeError::Unauthenticated(_) => Code::Unauthenticated,
        ServeError::PermissionDenied(_) => Code::PermissionDenied,
    }
}

impl From<ServeError> for Status {
    fn from(e: ServeError) -> Self {
        Status::new(code(&e), e.to_string())
    }
}
