//! One REST call from headers to answer, the same for every scoring route: the key and the
//! tenant, the content type, the deadline, the body, the span (continuing the caller's
//! `traceparent`), the metrics, `x-request-id` and TEI's timing headers.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::Instrument;

use super::body::{self, BodyError};
use super::error::{ApiError, Dialect, HttpFailure};
use super::Http;
use crate::api::deadline::{less_margin, parse_timeout};
use crate::api::grpc::{log_value, record_trace_id};
use crate::api::keys::KeyMatch;
use crate::api::tenant::{Tenant, TENANT_HEADER};
use crate::engine::request::Options;
use crate::engine::{ServeError, Timing};
use crate::telemetry::metrics::HttpGuard;

/// The header that sets a call's timeout: `grpc-timeout`'s format (`500m`, `10S`) or seconds.
pub const TIMEOUT_HEADER: &str = "x-request-timeout";

/// A request body that may name its model.
pub trait NamesModel {
    fn model(&self) -> Option<&str>;
}

/// What a route knows of its call while it runs.
pub struct Call {
    pub dialect: Dialect,
    pub deadline: Instant,
    /// The model the call is served by (its `model` field, the default, or the only one).
    pub model: String,
    /// Whom the call is for: its key's name, or `x-crossrank-tenant` when keys are off.
    pub tenant: Tenant,
}

impl Call {
    /// The options every route starts from: the call's model and tenant, and `priority`,
    /// which is recorded on the call's span (the current one while a route runs).
    pub fn options(&self, priority: u32) -> Options {
        tracing::Span::current().record("priority", i64::from(priority));
        Options {
            model: self.model.clone(),
            tenant: self.tenant.0.clone(),
            priority,
            ..Options::default()
        }
    }
}

/// A route's answer: a JSON body, and where the time went.
pub struct Answer {
    pub body: Vec<u8>,
    pub timing: Option<Timing>,
}

impl Answer {
    pub fn json(value: &impl Serialize, timing: Option<Timing>) -> Result<Self, ApiError> {
        let body = serde_json::to_vec(value).map_err(|e| {
            ApiError::serve(
                &ServeError::Internal(format!("encoding the answer failed: {e}")),
                Dialect::Cohere,
            )
        })?;
        Ok(Self { body, timing })
    }
}

impl Http {
    /// Runs one scoring call: refusals before the body is read cost nothing; `work` gets the
    /// parsed body inside the call's span.
    pub async fn handle<T, F, Fut>(
        self: Arc<Self>,
        route: &'static str,
        dialect: Dialect,
        req: Request,
        work: F,
    ) -> Response
    where
        T: DeserializeOwned + NamesModel,
        F: FnOnce(Arc<Http>, Call, T) -> Fut,
        Fut: Future<Output = Result<Answer, ApiError>>,
    {
        let started = Instant::now();
        let (parts, body) = req.into_parts();
        let request_id = parts
            .headers
            .get("x-request-id")
            .filter(|v| v.len() <= self.engine.limits.max_id_bytes)
            .cloned();
        let mut guard = None;
        let result = async {
            let key = self.authorize(&parts.headers, dialect)?;
            let tenant = tenant(&parts.headers, key.as_ref(), dialect)?;
            body::check_json_type(&parts.headers).map_err(|f| ApiError::http(f, dialect))?;
            let (deadline, timeout) = self.deadline(&parts.headers, dialect)?;
            let bytes = body::read(
                &parts.headers,
                body,
                &self.body,
                &self.budget,
                deadline,
                &timeout,
            )
            .await
            .map_err(|e| match e {
                BodyError::Http(f) => ApiError::http(f, dialect),
                BodyError::Serve(e) => ApiError::serve(&e, dialect),
            })?;
            let parsed: T =
                body::parse(&bytes, &self.body).map_err(|f| ApiError::http(f, dialect))?;
            drop(bytes);
            let model = self.resolve_model(parsed.model(), dialect)?;
            let label = self.engine.model_label(&model);
            guard = Some(HttpGuard::start(route, dialect.label(), &label));
            let span = http_span(route, &label, &parts.headers, key.as_ref(), &tenant);
            let call = Call {
                dialect,
                deadline,
                model,
                tenant,
            };
            work(self.clone(), call, parsed).instrument(span).await
        }
        .await;
        let guard = guard.unwrap_or_else(|| HttpGuard::start(route, dialect.label(), ""));
        let mut response = match result {
            Ok(answer) => {
                let mut r = (
                    StatusCode::OK,
                    [(http::header::CONTENT_TYPE, "application/json")],
                    answer.body,
                )
                    .into_response();
                if let Some(t) = answer.timing {
                    timing_headers(r.headers_mut(), &t, started.elapsed());
                }
                r
            }
            Err(e) => {
                if e.status.is_server_error() {
                    tracing::warn!(route, status = %e.status, error = %e.message, "call failed");
                } else {
                    tracing::debug!(route, status = %e.status, error = %e.message, "call refused");
                }
                e.into_response()
            }
        };
        if let Some(id) = request_id {
            response.headers_mut().insert("x-request-id", id);
        }
        guard.finish(response.status().as_u16());
        response
    }

    /// The deadline: `x-request-timeout` when sent, else `--default-timeout-secs`; with where
    /// it came from, for messages.
    fn deadline(
        &self,
        headers: &HeaderMap,
        dialect: Dialect,
    ) -> Result<(Instant, String), ApiError> {
        let (timeout, source) = match headers.get(TIMEOUT_HEADER) {
            None => (
                self.opts.transport.default_timeout,
                format!(
                    "--default-timeout-secs {}",
                    self.opts.transport.default_timeout.as_secs()
                ),
            ),
            Some(v) => {
                let text = v.to_str().unwrap_or("");
                parse_seconds(text)
                    .or_else(|| parse_timeout(text))
                    .map(|t| {
                        let source = format!("{TIMEOUT_HEADER} {:.3} s", t.as_secs_f64());
                        (less_margin(t), source)
                    })
                    .ok_or_else(|| {
                        ApiError::serve(
                            &ServeError::Invalid(format!(
                                "header `{TIMEOUT_HEADER}` is {}; give seconds (\"2.5\") or \
                                 grpc-timeout's form (\"500m\", \"10S\")",
                                log_value(text)
                            )),
                            dialect,
                        )
                    })?
            }
        };
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        Ok((Instant::now().checked_add(timeout).unwrap_or(far), source))
    }

    /// The model a call is for: its `model` field, else `--default-model`, else the only model.
    pub(super) fn resolve_model(
        &self,
        named: Option<&str>,
        dialect: Dialect,
    ) -> Result<String, ApiError> {
        if let Some(name) = named.filter(|n| !n.is_empty()) {
            crate::engine::request::check_model_name(name)
                .map_err(|e| ApiError::serve(&e, dialect))?;
            return Ok(name.to_owned());
        }
        if let Some(name) = &self.opts.http.default_model {
            return Ok(name.clone());
        }
        let names = self.engine.registry.names();
        if names.len() == 1 {
            return Ok(names[0].clone());
        }
        let e = ServeError::Invalid(format!(
            "`model` is not given and {} models are loaded ({}); name one in `model`, or start \
             the server with --default-model",
            names.len(),
            names.join(", ")
        ));
        // 400 in every dialect (TEI has no model field to be invalid).
        let mut refused = ApiError::serve(&e, dialect);
        refused.status = StatusCode::BAD_REQUEST;
        Err(refused)
    }

    /// The data-plane key check (`--api-keys-file`): the key that `authorization` presents;
    /// open (`None`) when no keys are configured.
    fn authorize(
        &self,
        headers: &HeaderMap,
        dialect: Dialect,
    ) -> Result<Option<KeyMatch>, ApiError> {
        let Some(keys) = &self.opts.api_keys else {
            return Ok(None);
        };
        let given = headers
            .get(http::header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        keys.check(given)
            .map(Some)
            .map_err(|e| ApiError::serve(&e, dialect))
    }
}

/// The call's tenant: the key's name, else `x-crossrank-tenant`; a bad header is 400 in every
/// dialect (it is not a body field).
fn tenant(
    headers: &HeaderMap,
    key: Option<&KeyMatch>,
    dialect: Dialect,
) -> Result<Tenant, ApiError> {
    let header = headers.get(TENANT_HEADER).map(HeaderValue::as_bytes);
    Tenant::of_call(key, header).map_err(|e| {
        let mut refused = ApiError::serve(&e, dialect);
        refused.status = StatusCode::BAD_REQUEST;
        refused
    })
}

/// Plain seconds, as a decimal number (at most a year).
fn parse_seconds(text: &str) -> Option<Duration> {
    let s: f64 = text.trim().parse().ok()?;
    (s.is_finite() && s > 0.0 && s <= 365.0 * 24.0 * 3600.0).then(|| Duration::from_secs_f64(s))
}

/// TEI's timing headers, in milliseconds.
fn timing_headers(h: &mut HeaderMap, t: &Timing, total: Duration) {
    let ms = |d: Duration| HeaderValue::from(d.as_millis() as u64);
    h.insert("x-queue-time", ms(t.queue));
    h.insert("x-tokenization-time", ms(t.tokenize));
    h.insert("x-inference-time", ms(t.inference));
    h.insert("x-compute-time", ms(t.tokenize + t.inference));
    h.insert("x-total-time", ms(total));
}

/// The span of one REST call, a child of the caller's span when it sent a W3C `traceparent`,
/// with the call's tenant, and the position of the caller's API key when keys are required
/// (never the key); the route records `priority` ([`Call::options`]).
fn http_span(
    route: &str,
    model: &str,
    headers: &HeaderMap,
    key: Option<&KeyMatch>,
    tenant: &Tenant,
) -> tracing::Span {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let span = tracing::info_span!(
        "http",
        otel.name = %format!("POST {route}"),
        http.route = route,
        model = %model,
        pairs = tracing::field::Empty,
        tokens = tracing::field::Empty,
        status = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        key_index = key.map(|k| k.index.field()),
        tenant = tracing::field::Empty,
        priority = tracing::field::Empty,
    );
    crate::api::grpc::record_tenant(&span, Some(tenant));
    let _ = span.set_parent(crate::telemetry::tracing::remote_context(headers));
    record_trace_id(&span);
    span
}

/// Failures of routes that do not reach the engine.
pub fn refuse(f: HttpFailure, dialect: Dialect) -> Response {
    ApiError::http(f, dialect).into_response()
}
