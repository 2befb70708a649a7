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

/// The gRPC code name used in metrics labels ("OK", "INVALID_ARGUMENT", …).
pub fn code_name<T>(result: &Result<T, ServeError>) -> &'static str {
    match result.as_ref().map_err(code) {
        Ok(_) => "OK",
        Err(Code::Ok) => "OK",
        Err(Code::Cancelled) => "CANCELLED",
        Err(Code::Unknown) => "UNKNOWN",
        Err(Code::InvalidArgument) => "INVALID_ARGUMENT",
        Err(Code::DeadlineExceeded) => "DEADLINE_EXCEEDED",
        Err(Code::NotFound) => "NOT_FOUND",
        Err(Code::AlreadyExists) => "ALREADY_EXISTS",
        Err(Code::PermissionDenied) => "PERMISSION_DENIED",
        Err(Code::ResourceExhausted) => "RESOURCE_EXHAUSTED",
        Err(Code::FailedPrecondition) => "FAILED_PRECONDITION",
        Err(Code::Aborted) => "ABORTED",
        Err(Code::OutOfRange) => "OUT_OF_RANGE",
        Err(Code::Unimplemented) => "UNIMPLEMENTED",
        Err(Code::Internal) => "INTERNAL",
        Err(Code::Unavailable) => "UNAVAILABLE",
        Err(Code::DataLoss) => "DATA_LOSS",
        Err(Code::Unauthenticated) => "UNAUTHENTICATED",
    }
}

/// Runs one call's work counted in the request metrics under `method` and `model`; a call
/// dropped before it finishes (client gone) is counted as CANCELLED.
pub async fn observed<T>(
    method: &str,
    model: String,
    work: impl std::future::Future<Output = Result<T, ServeError>>,
) -> Result<T, ServeError> {
    let guard = crate::telemetry::metrics::RequestGuard::start(method, &model);
    let result = work.await;
    guard.finish(code_name(&result));
    result
}
