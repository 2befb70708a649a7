//! The one mapping from core errors to HTTP statuses and bodies, per dialect: Cohere and Jina
//! routes answer `{"message"}` (with Jina's `detail` beside it), TEI routes `{"error",
//! "error_type"}` with TEI's statuses. Overload and shutdown carry `Retry-After`.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use crate::engine::ServeError;

/// The error body of Cohere and Jina routes (`detail` is what Jina's clients read).
#[derive(Serialize, ToSchema)]
pub struct CohereError {
    pub message: String,
    pub detail: String,
}

/// The error body of TEI routes.
#[derive(Serialize, ToSchema)]
pub struct TeiError {
    pub error: String,
    /// validation, empty, overloaded, backend, unhealthy, timeout or unauthorized.
    pub error_type: String,
}

/// Which API family a route belongs to: it decides the error body and some statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `/v2/rerank`, `/v1/rerank` (Cohere v1 and Jina) and the server's own routes.
    Cohere,
    /// `/rerank` with `texts`, `/predict`.
    Tei,
}

impl Dialect {
    pub fn label(self) -> &'static str {
        match self {
            Self::Cohere => "cohere",
            Self::Tei => "tei",
        }
    }
}

/// An HTTP-only failure, before a request reaches the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum HttpFailure {
    /// No body, or an empty list where one is needed (TEI's "empty").
    Empty(String),
    /// The body is not JSON, or not the route's shape (parser position in the message).
    Malformed(String),
    /// `Content-Type` is not JSON.
    NotJson(String),
    /// The body is larger than the request limit.
    TooLarge(String),
    /// A data-plane key is missing or wrong.
    Unauthorized(String),
    /// A route that does not exist.
    NoRoute(String),
    MethodNotAllowed(String),
}

/// What a route answers on failure.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u32>,
    pub dialect: Dialect,
}

/// Seconds a client is told to wait after an overload or on shutdown.
const RETRY_AFTER_SECS: u32 = 1;

impl ApiError {
    pub fn serve(e: &ServeError, dialect: Dialect) -> Self {
        let tei = dialect == Dialect::Tei;
        let (status, kind, retry) = match e {
            ServeError::UnknownModel { .. } => (StatusCode::NOT_FOUND, "validation", false),
            ServeError::Invalid(_) | ServeError::Unsupported(_) if tei => {
                (StatusCode::UNPROCESSABLE_ENTITY, "validation", false)
            }
            ServeError::Invalid(_) | ServeError::Unsupported(_) => {
                (StatusCode::BAD_REQUEST, "validation", false)
            }
            ServeError::Overloaded(_) => (StatusCode::TOO_MANY_REQUESTS, "overloaded", true),
            ServeError::ShuttingDown(_) | ServeError::NotReady(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unhealthy", true)
            }
            ServeError::ModelFailed(_) | ServeError::InferenceFailed(_) if tei => {
                (StatusCode::FAILED_DEPENDENCY, "backend", false)
            }
            ServeError::ModelFailed(_) => (StatusCode::SERVICE_UNAVAILABLE, "backend", false),
            ServeError::InferenceFailed(_) | ServeError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "backend", false)
            }
            ServeError::DeadlineExceeded(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout", false),
            ServeError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "validation", false),
            ServeError::Conflict(_) | ServeError::AlreadyLoaded(_) | ServeError::LoadFailed(_) => {
                (StatusCode::CONFLICT, "validation", false)
            }
            ServeError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthorized", false),
            ServeError::PermissionDenied(_) => (StatusCode::FORBIDDEN, "unauthorized", false),
            // The client has gone: nobody reads this; 499 is nginx's "client closed request".
            ServeError::ClientGone(_) => (StatusCode::BAD_REQUEST, "validation", false),
        };
        Self {
            status,
            kind,
            message: e.to_string(),
            retry_after: retry.then_some(RETRY_AFTER_SECS),
            dialect,
        }
    }

    pub fn http(f: HttpFailure, dialect: Dialect) -> Self {
        let (status, kind, message) = match f {
            HttpFailure::Empty(m) => (StatusCode::BAD_REQUEST, "empty", m),
            HttpFailure::Malformed(m) if dialect == Dialect::Tei => {
                (StatusCode::UNPROCESSABLE_ENTITY, "validation", m)
            }
            HttpFailure::Malformed(m) => (StatusCode::BAD_REQUEST, "validation", m),
            HttpFailure::NotJson(m) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "validation", m),
            HttpFailure::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "validation", m),
            HttpFailure::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", m),
            HttpFailure::NoRoute(m) => (StatusCode::NOT_FOUND, "validation", m),
            HttpFailure::MethodNotAllowed(m) => (StatusCode::METHOD_NOT_ALLOWED, "validation", m),
        };
        Self {
            status,
            kind,
            message,
            retry_after: None,
            dialect,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.dialect {
            Dialect::Cohere => serde_json::to_vec(&CohereError {
                detail: self.message.clone(),
                message: self.message,
            }),
            Dialect::Tei => serde_json::to_vec(&TeiError {
                error: self.message,
                error_type: self.kind.into(),
            }),
        }
        .unwrap_or_default();
        let mut response = (
            self.status,
            [(http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        let h = response.headers_mut();
        if let Some(s) = self.retry_after {
            h.insert(http::header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
