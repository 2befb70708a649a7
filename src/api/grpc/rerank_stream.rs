//! RerankStream: a header, then document batches. The engine's [`RerankSession`] queues
//! documents as they arrive and ranks them at the end; this module only converts messages and
//! decides when the stream ends (half-close, error, idle timeout, deadline or shutdown).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::status::{observed, record_priority};
use super::{convert, pb};
use crate::api::tenant::Tenant;
use crate::engine::request::{check_count, check_id, check_min_score, check_options, check_text};
use crate::engine::{Engine, RankOptions, RerankOutput, RerankSession, ServeError};

type Out = mpsc::Sender<Result<pb::RerankStreamResponse, Status>>;

/// Drives one RerankStream call; any error ends the call with its status.
pub async fn run(
    engine: Arc<Engine>,
    mut inbound: Streaming<pb::RerankStreamRequest>,
    tenant: Tenant,
    deadline: Option<Instant>,
    out: Out,
    span: tracing::Span,
) {
    let idle = Duration::from_secs(engine.limits.stream_idle_timeout_secs);
    let header = match tokio::time::timeout(idle, inbound.next()).await {
        Err(_) => Err(idle_timeout(idle)),
        Ok(None) => Err(invalid(
            "the stream ended before its header: the first message must be a header",
        )),
        Ok(Some(Err(status))) => {
            let _ = out.send(Err(status)).await; // undecodable, or the client went away
            return;
        }
        Ok(Some(Ok(pb::RerankStreamRequest {
            kind: Some(pb::rerank_stream_request::Kind::Header(h)),
        }))) => Ok(h),
        Ok(Some(Ok(_))) => Err(invalid(
            "the first message must be a header; got documents or an empty message",
        )),
    };
    let model = header
        .as_ref()
        .map_or_else(|_| String::new(), |h| engine.model_label(&h.model));
    span.record("model", model.as_str());
    if let Ok(h) = &header {
        record_priority(&span, h.priority);
    }
    let work = observed("RerankStream", model, span, async {
        let scoring = drive(&engine, header?, &tenant, inbound, deadline, &out);
        match deadline {
            Some(d) => tokio::time::timeout_at(d.into(), scoring)
                .await
                .unwrap_or_else(|_| {
                    Err(ServeError::DeadlineExceeded(
                        "the deadline passed before every document was scored".into(),
                    ))
                }),
            None => scoring.await,
        }
    });
    if let Err(e) = work.await {
        let _ = out.send(Err(e.into())).await;
    }
}

/// Why the read side of a stream stopped.
enum Closed {
    /// The client half-closed: rank what arrived.
    HalfClosed,
    /// Shutdown: send what arrived as partial scores, then end with UNAVAILABLE.
    Draining,
}

async fn drive(
    engine: &Engine,
    h: pb::RerankStreamHeader,
    tenant: &Tenant,
    mut inbound: Streaming<pb::RerankStreamRequest>,
    deadline: Option<Instant>,
    out: &Out,
) -> Result<(), ServeError> {
    let mut options = convert::options(
        h.model.clone(),
        h.activation,
        h.truncation,
        h.instruction.clone(),
    )?;
    if let Some(text) = &options.instruction {
        check_text("header.instruction", text, &engine.limits)?;
    }
    options.priority = h.priority;
    options.tenant = tenant.0.clone();
    let long = convert::LongTexts {
        max_tokens_per_doc: h.max_tokens_per_doc,
        max_query_tokens: h.max_query_tokens,
        chunking: h.chunking,
    };
    let options = convert::long_texts(options, long)?;
    check_options(&options, &engine.limits)?;
    check_text("header.query", &h.query, &engine.limits)?;
    check_id("header.request_id", &h.request_id, &engine.limits)?;
    check_min_score(h.min_score)?;
    let mut s = RerankSession::open(engine, &options, h.query.clone(), deadline)?;
    let mut final_size = FinalSize::new(h.top_n, h.return_documents);
    let idle = Duration::from_secs(engine.limits.stream_idle_timeout_secs);
    let mut closed = None;
    while closed.is_none() || s.pending() > 0 {
        tokio::select! {
            () = engine.draining(), if closed.is_none() => closed = Some(Closed::Draining),
            // Idle: no message and nothing being scored for a whole period.
            () = tokio::time::sleep(idle), if closed.is_none() && s.pending() == 0 => {
                return Err(idle_timeout(idle));
            }
            msg = inbound.next(), if closed.is_none() => match msg {
                None => closed = Some(Closed::HalfClosed),
                Some(Err(status)) => return Err(stream_error(status, s.received())),
                Some(Ok(m)) => add(engine, &mut s, m, h.return_documents, &mut final_size).await?,
            },
            Some(first) = s.next() => {
                let mut partial = vec![partial_score(first?)];
                // Whatever else already completed goes in the same message.
                while let Some(Some(r)) = futures::FutureExt::now_or_never(s.next()) {
                    partial.push(partial_score(r?));
                }
                let kind = pb::rerank_stream_response::Kind::Partial(pb::PartialScores { scores: partial });
                if out.send(Ok(pb::RerankStreamResponse { kind: Some(kind) })).await.is_err() {
                    return Ok(()); // the client went away: dropping the session drops its pairs
                }
            }
        }
    }
    if let Some(Closed::Draining) = closed {
        return Err(ServeError::ShuttingDown(format!(
            "the server is shutting down: the stream was ended after the {} documents received, \
             whose scores were sent as partial scores; send the rest to another replica",
            s.received()
        )));
    }
    let how = RankOptions {
        top_n: h.top_n as usize,
        min_score: h.min_score,
        return_documents: h.return_documents,
    };
    let (results, timing) = s.rank(how).await?;
    let output = RerankOutput {
        model: s.session.model.name.clone(),
        results,
        usage: s.session.usage,
        timing,
    };
    let response = convert::rerank_response(output, h.request_id);
    let kind = pb::rerank_stream_response::Kind::Final(response);
    let _ = out
        .send(Ok(pb::RerankStreamResponse { kind: Some(kind) }))
        .await;
    Ok(())
}

/// One document batch: validated against the stream's totals, then queued.
async fn add(
    engine: &Engine,
    s: &mut RerankSession,
    m: pb::RerankStreamRequest,
    return_documents: bool,
    final_size: &mut FinalSize,
) -> Result<(), ServeError> {
    let batch = match m.kind {
        Some(pb::rerank_stream_request::Kind::Documents(b)) => b.documents,
        Some(pb::rerank_stream_request::Kind::Header(_)) => {
            return Err(invalid("a second header: a stream has exactly one"))
        }
        None => return Err(invalid("a message with neither header nor documents")),
    };
    let limits = &engine.limits;
    let first = s.received();
    check_count(
        "documents (all batches of the stream)",
        first + batch.len(),
        limits,
    )?;
    for (i, d) in batch.iter().enumerate() {
        check_id(&format!("documents[{}].id", first + i), &d.id, limits)?;
        check_text(&format!("documents[{}].text", first + i), &d.text, limits)?;
        final_size.add(first + i, d)?;
    }
    let documents = batch.into_iter().map(|d| (d.id, d.text)).collect();
    s.add(engine, documents, return_documents).await
}

/// The largest final message the documents received so far could need: the `top_n` largest
/// results (all when `top_n` is 0), each with its id and, with `return_documents`, its text.
/// The stream fails as soon as that cannot fit in one response message, before any more work,
/// rather than after every document was scored.
struct FinalSize {
    /// How many results the final message may carry.
    top_n: usize,
    return_documents: bool,
    /// Encoded sizes of the largest results so far (at most `top_n`), smallest on top.
    largest: BinaryHeap<Reverse<usize>>,
    bytes: usize,
}

/// Room in the final message for what is not a result (model, usage, timing, framing).
const FINAL_OVERHEAD: usize = 64 << 10;

impl FinalSize {
    fn new(top_n: u32, return_documents: bool) -> Self {
        Self {
            top_n: match top_n {
                0 => usize::MAX,
                n => n as usize,
            },
            return_documents,
            largest: BinaryHeap::new(),
            bytes: 0,
        }
    }

    fn add(&mut self, index: usize, d: &pb::Document) -> Result<(), ServeError> {
        // A RankedDocument: id, index, score, the text with return_documents, and their tags
        // and lengths.
        let text = if self.return_documents {
            d.text.len()
        } else {
            0
        };
        let size = text + d.id.len() + 24;
        self.largest.push(Reverse(size));
        self.bytes += size;
        if self.largest.len() > self.top_n {
            if let Some(Reverse(smallest)) = self.largest.pop() {
                self.bytes -= smallest;
            }
        }
        let limit = super::MAX_RESPONSE_BYTES - FINAL_OVERHEAD;
        if self.bytes > limit {
            return Err(ServeError::TooLarge(format!(
                "the final ranking could need {} bytes at documents[{index}] (the {} largest \
                 results received: ids, and texts with return_documents); a response message \
                 holds at most {limit}; set top_n lower, or leave return_documents off and look \
                 the texts up by id or index",
                self.bytes,
                self.largest.len()
            )));
        }
        Ok(())
    }
}

fn partial_score(p: crate::engine::Partial) -> pb::PartialScore {
    pb::PartialScore {
        index: p.index as u32,
        id: p.id,
        score: p.score,
        best_chunk: convert::chunk(p.best_chunk),
    }
}

fn invalid(m: &str) -> ServeError {
    ServeError::Invalid(m.into())
}

pub fn idle_timeout(idle: Duration) -> ServeError {
    ServeError::DeadlineExceeded(format!(
        "no message from the client for {} s (stream_idle_timeout_secs) while nothing was being \
         scored; the stream was ended",
        idle.as_secs()
    ))
}

/// A failed read (a message that does not decode, is too large, or stalls) ends the call with
/// that failure's own status (INVALID_ARGUMENT, RESOURCE_EXHAUSTED or DEADLINE_EXCEEDED, as for
/// unary calls; INTERNAL otherwise),
/// saying how far the stream got.
pub fn stream_error(status: Status, received: usize) -> ServeError {
    let message = format!(
        "reading the stream failed after {received} messages or documents ({:?}): {}",
        status.code(),
        status.message()
    );
    match status.code() {
        tonic::Code::ResourceExhausted => ServeError::Overloaded(message),
        tonic::Code::InvalidArgument => ServeError::Invalid(message),
        tonic::Code::DeadlineExceeded => ServeError::DeadlineExceeded(message),
        tonic::Code::Cancelled | tonic::Code::Unavailable => ServeError::ClientGone(message),
        _ => ServeError::Internal(message),
    }
}
