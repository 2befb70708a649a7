//! RerankStream: a header, then document batches; documents join the model's micro-batches as
//! they arrive, scores stream back as they complete, and a final ranking follows the half-close.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::status::observed;
use super::{convert, pb};
use crate::config::RequestLimits;
use crate::engine::request::{check_count, check_min_score, check_text, Options};
use crate::engine::{
    check_rerankable, pair_outcome, rank, Engine, RerankOutput, ServeError, Submit, Timing, Usage,
};
use crate::registry::LoadedModel;
use crate::scheduler::PairResult;
use crate::tokenize::{Query, Texts};

type Out = mpsc::Sender<Result<pb::RerankStreamResponse, Status>>;

/// Drives one RerankStream call; any error ends the call with its status.
pub async fn run(
    engine: Arc<Engine>,
    mut inbound: Streaming<pb::RerankStreamRequest>,
    deadline: Option<Instant>,
    out: Out,
    span: tracing::Span,
) {
    let header = match inbound.next().await {
        None => Err(invalid(
            "the stream ended before its header: the first message must be a header",
        )),
        Some(Err(_)) => return, // the client went away
        Some(Ok(pb::RerankStreamRequest {
            kind: Some(pb::rerank_stream_request::Kind::Header(h)),
        })) => Ok(h),
        Some(Ok(_)) => Err(invalid(
            "the first message must be a header; got documents or an empty message",
        )),
    };
    let model = header
        .as_ref()
        .map_or_else(|_| String::new(), |h| engine.model_label(&h.model));
    span.record("model", model.as_str());
    let work = observed("RerankStream", model, span, async {
        let scoring = session(&engine, header?, inbound, &out);
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

/// State of one stream after its header.
struct Session {
    model: Arc<LoadedModel>,
    options: Options,
    header: pb::RerankStreamHeader,
    query: Arc<Query>,
    documents: Vec<(String, String)>,
    scores: Vec<f32>,
    received: usize,
    usage: Usage,
    timing: Timing,
    batches: HashSet<u64>,
}

async fn session(
    engine: &Engine,
    header: pb::RerankStreamHeader,
    mut inbound: Streaming<pb::RerankStreamRequest>,
    out: &Out,
) -> Result<(), ServeError> {
    let start = Instant::now();
    let mut s = Session::open(engine, header)?;
    let activation = Engine::activation(&s.model, &s.options)?;
    let (ptx, mut prx) = mpsc::unbounded_channel::<PairResult>();
    let (mut open, mut cut) = (true, false);
    while open || s.received < s.documents.len() {
        tokio::select! {
            // Shutdown: score what arrived, then end the call so the drain does not wait on a
            // client that keeps the stream open.
            () = engine.draining(), if open => (open, cut) = (false, true),
            msg = inbound.next(), if open => match msg {
                None => open = false,
                Some(Err(_)) => return Ok(()), // cancelled: dropping prx drops the queued pairs
                Some(Ok(m)) => {
                    let batch = documents_of(m)?;
                    s.add(engine, batch, activation, &ptx).await?;
                }
            },
            Some(r) = prx.recv() => {
                let mut partial = vec![s.record(r)?];
                while let Ok(r) = prx.try_recv() {
                    partial.push(s.record(r)?);
                }
                let msg = pb::RerankStreamResponse { kind: Some(pb::rerank_stream_response::Kind::Partial(pb::PartialScores { scores: partial })) };
                if out.send(Ok(msg)).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
    if cut {
        return Err(ServeError::Unavailable(format!(
            "the server is shutting down: the stream was ended after the {} documents received, \
             whose scores were sent as partial scores; send the rest to another replica",
            s.documents.len()
        )));
    }
    s.timing.total = start.elapsed();
    let _ = out.send(Ok(s.finish())).await;
    Ok(())
}

fn documents_of(m: pb::RerankStreamRequest) -> Result<Vec<pb::Document>, ServeError> {
    match m.kind {
        Some(pb::rerank_stream_request::Kind::Documents(b)) => Ok(b.documents),
        Some(pb::rerank_stream_request::Kind::Header(_)) => {
            Err(invalid("a second header: a stream has exactly one"))
        }
        None => Err(invalid("a message with neither header nor documents")),
    }
}

fn invalid(m: &str) -> ServeError {
    ServeError::InvalidArgument(m.into())
}

impl Session {
    fn open(engine: &Engine, h: pb::RerankStreamHeader) -> Result<Self, ServeError> {
        let options = convert::options(h.model.clone(), h.activation, h.truncation)?;
        check_text("header.query", &h.query, &engine.limits)?;
        check_min_score(h.min_score)?;
        let model = engine.model(&options.model)?;
        check_rerankable(&model)?;
        Ok(Self {
            model,
            options,
            query: Query::new(h.query.clone()),
            header: h,
            documents: Vec::new(),
            scores: Vec::new(),
            received: 0,
            usage: Usage::default(),
            timing: Timing::default(),
            batches: HashSet::new(),
        })
    }

    async fn add(
        &mut self,
        engine: &Engine,
        batch: Vec<pb::Document>,
        activation: crate::activation::Activation,
        ptx: &mpsc::UnboundedSender<PairResult>,
    ) -> Result<(), ServeError> {
        let limits: &RequestLimits = &engine.limits;
        let first = self.documents.len();
        check_count(
            "documents (all batches of the stream)",
            first + batch.len(),
            limits,
        )?;
        for (i, d) in batch.iter().enumerate() {
            check_text(&format!("documents[{}].text", first + i), &d.text, limits)?;
        }
        let texts = Texts::Query {
            query: self.query.clone(),
            documents: batch.iter().map(|d| d.text.clone()).collect(),
        };
        let how = Submit {
            activation,
            truncation: self.options.truncation,
            deadline: None,
        };
        let enq = engine
            .enqueue(&self.model, texts, &how, first, ptx.clone())
            .await?;
        self.usage.pairs += enq.usage.pairs;
        self.usage.tokens += enq.usage.tokens;
        self.usage.truncated += enq.usage.truncated;
        self.timing.tokenize += enq.tokenize;
        self.documents
            .extend(batch.into_iter().map(|d| (d.id, d.text)));
        self.scores.resize(self.documents.len(), f32::NAN);
        Ok(())
    }

    fn record(&mut self, r: PairResult) -> Result<pb::PartialScore, ServeError> {
        self.received += 1;
        self.timing.queue = self.timing.queue.max(r.queue);
        if self.batches.insert(r.batch_id) {
            self.timing.inference += r.inference;
        }
        let score = pair_outcome(r.outcome)?[0];
        self.scores[r.index] = score;
        Ok(pb::PartialScore {
            index: r.index as u32,
            id: self.documents[r.index].0.clone(),
            score,
        })
    }

    fn finish(self) -> pb::RerankStreamResponse {
        let h = &self.header;
        let results = rank(
            &self.scores,
            &self.documents,
            h.top_n as usize,
            h.min_score,
            h.return_documents,
        );
        let out = RerankOutput {
            model: self.model.name.clone(),
            results,
            usage: self.usage,
            timing: self.timing,
        };
        crate::engine::record_scored(&out.model, &out.usage);
        let response = convert::rerank_response(out, h.request_id.clone());
        pb::RerankStreamResponse {
            kind: Some(pb::rerank_stream_response::Kind::Final(response)),
        }
    }
}
