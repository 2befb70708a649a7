//! The one mapping from core errors to gRPC statuses. No wildcard: a new error kind must be
//! given its code here.

use tonic::{Code, Status};

use crate::api::tenant::Tenant;
use crate::engine::ServeError;

pub fn code(e: &ServeError) -> Code {
    match e {
        ServeError::UnknownModel { .. } => Code::NotFound,
        ServeError::Invalid(_) => Code::InvalidArgument,
        ServeError::Unsupported(_) | ServeError::Conflict(_) | ServeError::LoadFailed(_) => {
            Code::FailedPrecondition
        }
        ServeError::AlreadyLoaded(_) => Code::AlreadyExists,
        ServeError::ShuttingDown(_)
        | ServeError::NotReady(_)
        | ServeError::ModelFailed(_)
        | ServeError::ClientGone(_) => Code::Unavailable,
        ServeError::Overloaded(_) => Code::ResourceExhausted,
        ServeError::DeadlineExceeded(_) => Code::DeadlineExceeded,
        ServeError::InferenceFailed(_) | ServeError::Internal(_) => Code::Internal,
        ServeError::TooLarge(_) => Code::OutOfRange,
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

/// Runs one call's work inside `span`, counted in the request metrics under `method` and
/// `model`; a call dropped before it finishes (client gone) is counted as CANCELLED.
pub async fn observed<T>(
    method: &str,
    model: String,
    span: tracing::Span,
    work: impl std::future::Future<Output = Result<T, ServeError>>,
) -> Result<T, ServeError> {
    let guard = crate::telemetry::metrics::RequestGuard::start(method, &model);
    let result = tracing::Instrument::instrument(work, span.clone()).await;
    let code = code_name(&result);
    span.record("status", code);
    if let Err(e) = &result {
        span.in_scope(|| tracing::info!(code, error = %e, "request failed"));
    }
    guard.finish(code);
    result
}

/// A client-controlled string as it may appear in logs: its first 64 characters, escaped (no
/// raw newlines or control characters), with its full length when cut.
pub fn log_value(s: &str) -> String {
    const KEEP: usize = 64;
    match s.char_indices().nth(KEEP) {
        None => format!("{s:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &s[..cut], s.len()),
    }
}

/// The span of one RPC, a child of the caller's span when it sent a W3C `traceparent`, with
/// the call's tenant, and the position of the caller's API key when keys are required (never
/// the key). The handler records `priority` once it has read it.
pub fn rpc_span<T>(method: &str, model: &str, req: &tonic::Request<T>) -> tracing::Span {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let span = tracing::info_span!(
        "rpc",
        otel.name = %format!("crossrank.v1.CrossEncoder/{method}"),
        rpc.method = method,
        model = %model,
        pairs = tracing::field::Empty,
        tokens = tracing::field::Empty,
        status = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        key_index = tracing::field::Empty,
        tenant = tracing::field::Empty,
        priority = tracing::field::Empty,
    );
    if let Some(key) = req.extensions().get::<crate::api::keys::KeyMatch>() {
        span.record("key_index", key.index.field());
    }
    record_tenant(&span, req.extensions().get::<Tenant>());
    let headers = req.metadata().clone().into_headers();
    let _ = span.set_parent(crate::telemetry::tracing::remote_context(&headers));
    record_trace_id(&span);
    span
}

/// The call's tenant, when it has one, as the span's `tenant`.
pub fn record_tenant(span: &tracing::Span, tenant: Option<&Tenant>) {
    if let Some(t) = tenant.filter(|t| !t.0.is_empty()) {
        span.record("tenant", t.as_str());
    }
}

/// A request's `priority` as the span's `priority` (an integer attribute).
pub fn record_priority(span: &tracing::Span, priority: u32) {
    span.record("priority", i64::from(priority));
}

/// Puts the span's trace id into its fields, so that log lines inside it carry it.
pub fn record_trace_id(span: &tracing::Span) {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let id = span.context().span().span_context().trace_id();
    if id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(id));
    }
}
