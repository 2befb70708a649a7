//! `crossrank.v1.CrossEncoder`: Score, Rerank and ScoreStream; RerankStream is in `rerank_stream`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::status::{self, log_value, observed, record_priority, record_tenant, rpc_span};
use super::{convert, pb, rerank_stream};
use crate::api::deadline::{deadline, unary_deadline};
use crate::api::tenant::Tenant;
use crate::engine::stream::{run_bounded, StreamEnd};
use crate::engine::{Engine, ServeError};

pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub struct Scoring {
    pub engine: Arc<Engine>,
    /// Deadline of unary calls without `grpc-timeout`.
    pub default_timeout: Duration,
}

/// One Score call, shared by the unary RPC and ScoreStream.
async fn score_one(
    engine: &Engine,
    req: pb::ScoreRequest,
    tenant: &Tenant,
    deadline: Option<Instant>,
) -> Result<pb::ScoreResponse, ServeError> {
    let request_id = req.request_id.clone();
    let valid = convert::score_request(req, tenant, &engine.limits)?;
    let out = engine.score(valid, deadline).await?;
    Ok(convert::score_response(out, request_id))
}

#[tonic::async_trait]
impl pb::cross_encoder_server::CrossEncoder for Scoring {
    async fn score(
        &self,
        req: Request<pb::ScoreRequest>,
    ) -> Result<Response<pb::ScoreResponse>, Status> {
        let deadline = unary_deadline(req.metadata(), self.default_timeout);
        let model = self.engine.model_label(&req.get_ref().model);
        let span = rpc_span("Score", &model, &req);
        record_priority(&span, req.get_ref().priority);
        let tenant = tenant_of(&req);
        let work = score_one(&self.engine, req.into_inner(), &tenant, deadline);
        Ok(Response::new(observed("Score", model, span, work).await?))
    }

    async fn rerank(
        &self,
        req: Request<pb::RerankRequest>,
    ) -> Result<Response<pb::RerankResponse>, Status> {
        let deadline = unary_deadline(req.metadata(), self.default_timeout);
        let model = self.engine.model_label(&req.get_ref().model);
        let span = rpc_span("Rerank", &model, &req);
        record_priority(&span, req.get_ref().priority);
        let tenant = tenant_of(&req);
        let req = req.into_inner();
        let work = async {
            let request_id = req.request_id.clone();
            let valid = convert::rerank_request(req, &tenant, &self.engine.limits)?;
            let out = self.engine.rerank(valid, deadline).await?;
            Ok(convert::rerank_response(out, request_id))
        };
        Ok(Response::new(observed("Rerank", model, span, work).await?))
    }

    type ScoreStreamStream = ResponseStream<pb::ScoreResponse>;

    async fn score_stream(
        &self,
        req: Request<Streaming<pb::ScoreRequest>>,
    ) -> Result<Response<Self::ScoreStreamStream>, Status> {
        let deadline = deadline(req.metadata());
        let stream_span = rpc_span("ScoreStream", "", &req);
        let tenant = tenant_of(&req);
        let (tx, rx) = mpsc::channel(self.engine.limits.max_stream_in_flight);
        tokio::spawn(score_stream(
            self.engine.clone(),
            req.into_inner(),
            tenant,
            deadline,
            tx,
            stream_span,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type RerankStreamStream = ResponseStream<pb::RerankStreamResponse>;

    async fn rerank_stream(
        &self,
        req: Request<Streaming<pb::RerankStreamRequest>>,
    ) -> Result<Response<Self::RerankStreamStream>, Status> {
        let deadline = deadline(req.metadata());
        let span = rpc_span("RerankStream", "", &req);
        let tenant = tenant_of(&req);
        let (tx, rx) = mpsc::channel(64);
        let engine = self.engine.clone();
        tokio::spawn(rerank_stream::run(
            engine,
            req.into_inner(),
            tenant,
            deadline,
            tx,
            span,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// The call's tenant, which the caller check ([`super::keys::KeyCheck`]) settled.
fn tenant_of<T>(req: &Request<T>) -> Tenant {
    req.extensions()
        .get::<Tenant>()
        .cloned()
        .unwrap_or_default()
}

type ScoreOut = mpsc::Sender<Result<pb::ScoreResponse, Status>>;

/// Drives one ScoreStream call: each request is answered on its own as soon as it is scored,
/// at most `max_stream_in_flight` at once ([`run_bounded`]). A message that fails to decode ends
/// the call with that failure's status once the requests before it are answered; so do the idle
/// timeout and shutdown (UNAVAILABLE), so the drain does not wait on a client that keeps the
/// stream open.
async fn score_stream(
    engine: Arc<Engine>,
    inbound: Streaming<pb::ScoreRequest>,
    tenant: Tenant,
    deadline: Option<Instant>,
    tx: ScoreOut,
    stream_span: tracing::Span,
) {
    let handle = |request: pb::ScoreRequest| {
        let span = tracing::info_span!(
            parent: &stream_span,
            "request",
            request_id = %log_value(&request.request_id),
            model = %engine.model_label(&request.model),
            pairs = tracing::field::Empty,
            tokens = tracing::field::Empty,
            status = tracing::field::Empty,
            priority = i64::from(request.priority),
            tenant = tracing::field::Empty,
        );
        record_tenant(&span, Some(&tenant));
        let tenant = tenant.clone();
        answer(engine.clone(), request, tenant, deadline, tx.clone(), span)
    };
    let end: Option<Status> = match run_bounded(&engine, inbound, handle).await {
        StreamEnd::HalfClosed => None,
        StreamEnd::Draining => Some(Status::unavailable(
            "the server is shutting down: every request received on this stream was answered; \
             send later ones to another replica",
        )),
        StreamEnd::Idle(idle) => Some(rerank_stream::idle_timeout(idle).into()),
        StreamEnd::ReadFailed { received, error } => {
            Some(rerank_stream::stream_error(error, received).into())
        }
    };
    if let Some(status) = end {
        let _ = tx.send(Err(status)).await;
    }
}

/// One ScoreStream request, answered with its scores or its error.
async fn answer(
    engine: Arc<Engine>,
    request: pb::ScoreRequest,
    tenant: Tenant,
    deadline: Option<Instant>,
    tx: ScoreOut,
    span: tracing::Span,
) {
    let request_id = request.request_id.clone();
    let model = engine.model_label(&request.model);
    let work = observed(
        "ScoreStream",
        model,
        span,
        score_one(&engine, request, &tenant, deadline),
    );
    // Dropping the scoring future (client gone) drops its queued pairs.
    let response = tokio::select! {
        r = work => r.unwrap_or_else(|e| error_response(e, request_id)),
        _ = tx.closed() => return,
    };
    let _ = tx.send(Ok(response)).await;
}

fn error_response(e: ServeError, request_id: String) -> pb::ScoreResponse {
    pb::ScoreResponse {
        request_id,
        error: Some(pb::Error {
            code: status::code(&e) as i32,
            message: e.to_string(),
        }),
        ..Default::default()
    }
}
