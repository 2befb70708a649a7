//! The serving core between transport and models: resolves the model, tokenizes off the async
//! threads, queues every pair on the model's micro-batcher and gathers the results.
//! Knows nothing of gRPC.

mod admission;
mod error;
mod rank;
pub mod request;
mod session;
pub mod stream;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::Instrument;

pub use error::ServeError;
pub use rank::{rank, Ranked};
use request::{Options, Truncation, ValidRerank, ValidScore};
pub use session::{Partial, RankOptions, RerankSession, Session};

use crate::activation::Activation;
use crate::config::RequestLimits;
use crate::hub::HubConfig;
use crate::pooling::Pooling;
use crate::registry::{LoadedModel, Registry};
use crate::scheduler::{Class, Job, PairError, PairResult, Rejected, Sink};
use crate::telemetry::metrics::{metrics, ModelLabel};
use crate::tokenize::{
    ChunkError, Chunking, Control, Cut, DocWindows, Encoded, Span, Stop, StopSignal, Texts,
};
pub use admission::ByteBudget;

/// Counts that go back to the caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub pairs: usize,
    pub tokens: usize,
    pub truncated: usize,
    /// Model inputs scored: one per pair, or one per window with chunking.
    pub chunks: usize,
}

/// Where the time of a request went.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    pub queue: Duration,
    pub tokenize: Duration,
    pub inference: Duration,
    pub total: Duration,
}

pub struct ScoreOutput {
    pub model: String,
    /// Per pair, in input order.
    pub scores: Vec<Vec<f32>>,
    pub truncated: Vec<bool>,
    /// Per pair with chunking: the window that scored highest.
    pub best_chunks: Vec<Option<Span>>,
    pub usage: Usage,
    pub timing: Timing,
}

pub struct RerankOutput {
    pub model: String,
    pub results: Vec<Ranked>,
    pub usage: Usage,
    pub timing: Timing,
}

/// Pairs handed to a model's queue; their results arrive on the receiver given to [`Engine::enqueue`].
pub struct Enqueued {
    pub usage: Usage,
    /// Per pair (per document with chunking).
    pub truncated: Vec<bool>,
    /// With chunking, each document's windows; the jobs queued are its windows in order.
    pub windows: Option<Vec<DocWindows>>,
    pub tokenize: Duration,
}

/// How the pairs of one request (or stream) are scored.
#[derive(Debug, Clone)]
pub struct Submit {
    pub activation: Activation,
    pub truncation: Truncation,
    pub deadline: Option<Instant>,
    /// The system message for chat-template models (see [`request::Options::instruction`]).
    pub instruction: Option<Arc<str>>,
    /// The cap on document tokens and the truncation side.
    pub cut: Cut,
    /// Priority and tenant, for the model's scheduler.
    pub class: Class,
    /// Truncation CHUNK: how documents become windows, and how their scores are pooled.
    pub chunking: Option<(Chunking, Pooling)>,
}

/// The metric label and log value of a `model` field that names no loaded model: unknown names
/// are client-controlled and must not grow the label set.
pub const UNKNOWN_MODEL: &str = "(unknown)";

pub struct Engine {
    pub registry: Registry,
    pub limits: RequestLimits,
    /// Bytes of text being tokenized now, across all requests.
    pub tokenizing: ByteBudget,
    /// Set at shutdown: new calls are refused with UNAVAILABLE and open streams are ended.
    draining: tokio::sync::watch::Sender<bool>,
}

impl Engine {
    /// An engine whose loads fetch Hub ids with the environment's settings
    /// ([`HubConfig::from_env`]); a server reads them once and calls [`Engine::with_hub`].
    pub fn new(limits: RequestLimits) -> Arc<Self> {
        Self::with_hub(limits, HubConfig::from_env())
    }

    pub fn with_hub(limits: RequestLimits, hub: HubConfig) -> Arc<Self> {
        Arc::new(Self {
            registry: Registry::new(hub),
            tokenizing: ByteBudget::new(limits.max_tokenizing_bytes),
            limits,
            draining: tokio::sync::watch::Sender::new(false),
        })
    }

    pub fn start_draining(&self) {
        self.draining.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Completes once shutdown has begun (at once if it has).
    pub async fn draining(&self) {
        let _ = self.draining.subscribe().wait_for(|d| *d).await;
    }

    /// The name a request's `model` field resolves to (the only model for ""), for labels and
    /// logs; [`UNKNOWN_MODEL`] when it names no model.
    pub fn model_label(&self, name: &str) -> String {
        self.registry
            .entry(name)
            .map_or_else(|_| UNKNOWN_MODEL.to_owned(), |e| e.config.name.clone())
    }

    /// The ready model for a call, or why there is none.
    pub fn model(&self, name: &str) -> Result<Arc<LoadedModel>, ServeError> {
        if self.is_draining() {
            return Err(ServeError::ShuttingDown(
                "the server is shutting down".into(),
            ));
        }
        Ok(self.registry.get(name)?)
    }

    pub fn activation(model: &LoadedModel, options: &Options) -> Result<Activation, ServeError> {
        options
            .activation
            .resolve(model.spec.default_activation, model.spec.labels.len())
            .map_err(ServeError::Invalid)
    }

    pub async fn score(
        &self,
        req: ValidScore,
        deadline: Option<Instant>,
    ) -> Result<ScoreOutput, ServeError> {
        let mut s = Session::open(self, &req.options, deadline)?;
        let n = req.pairs.len();
        s.add(self, Texts::Pairs(req.pairs)).await?;
        record_span_usage(&s.usage);
        let scores = s
            .collect()
            .instrument(tracing::info_span!("queue_wait", pairs = n))
            .await?;
        Ok(ScoreOutput {
            model: s.model.name.clone(),
            scores,
            timing: s.finish(),
            truncated: std::mem::take(&mut s.truncated),
            best_chunks: std::mem::take(&mut s.best_chunks),
            usage: s.usage,
        })
    }

    pub async fn rerank(
        &self,
        req: ValidRerank,
        deadline: Option<Instant>,
    ) -> Result<RerankOutput, ServeError> {
        let mut s = RerankSession::open(self, &req.options, req.query, deadline)?;
        let n = req.documents.len();
        s.add(self, req.documents, req.return_documents).await?;
        record_span_usage(&s.session.usage);
        let how = RankOptions {
            top_n: req.top_n,
            min_score: req.min_score,
            return_documents: req.return_documents,
        };
        let (results, timing) = s
            .rank(how)
            .instrument(tracing::info_span!("queue_wait", pairs = n))
            .await?;
        Ok(RerankOutput {
            model: s.session.model.name.clone(),
            results,
            usage: s.session.usage,
            timing,
        })
    }

    /// Admits `texts` (all or none, refused at once when the model's queue or the tokenizing
    /// budget is full), tokenizes them on a blocking thread and queues them, the first as pair
    /// `first_index` (for messages) and job `first_job`; each job's result is sent on `tx` as
    /// soon as its batch ran. With chunking a document's windows are its jobs, admitted once
    /// counted. Dropping the returned future stops the tokenization within one chunk of pairs.
    pub async fn enqueue(
        &self,
        model: &Arc<LoadedModel>,
        texts: Texts,
        how: &Submit,
        (first_index, first_job): (usize, usize),
        tx: mpsc::UnboundedSender<PairResult>,
    ) -> Result<Enqueued, ServeError> {
        let pairs = texts.len();
        let mut reservation = model
            .queue
            .reserve(pairs, &how.class)
            .map_err(|r| rejected(&model.name, &how.class.tenant, r))?;
        let work = model
            .tokenizer
            .work_bytes(&texts, how.instruction.as_deref());
        let held = self.tokenizing.take(work).inspect_err(|_| {
            metrics().reject(&model.name, "overload");
        })?;
        let started = Instant::now();
        let (encoded, windows) = tokenize(model, texts, how, first_index).await?;
        drop(held);
        let tokenize = started.elapsed();
        check_vocabulary(model, &encoded)?;
        reservation
            .grow(encoded.len().saturating_sub(pairs), &how.class)
            .map_err(|r| rejected(&model.name, &how.class.tenant, r))?;
        let truncated: Vec<bool> = match &windows {
            Some(docs) => docs.iter().map(|d| d.truncated).collect(),
            None => encoded.iter().map(|e| e.truncated).collect(),
        };
        let usage = Usage {
            pairs,
            tokens: encoded.iter().map(|e| e.len()).sum(),
            truncated: truncated.iter().filter(|&&t| t).count(),
            chunks: encoded.len(),
        };
        let sink = Arc::new(Sink {
            span: tracing::Span::current(),
            // Windows are pooled on raw logits; the session applies the activation after.
            activation: match how.chunking {
                Some(_) => Activation::Identity,
                None => how.activation,
            },
            deadline: how.deadline,
            class: how.class.clone(),
            tx,
        });
        let now = Instant::now();
        let jobs = encoded
            .into_iter()
            .enumerate()
            .map(|(i, encoded)| Job::new(encoded, first_job + i, sink.clone(), now))
            .collect();
        let label = ModelLabel {
            model: model.name.clone(),
        };
        metrics()
            .tokenize_duration
            .get_or_create(&label)
            .observe(tokenize.as_secs_f64());
        reservation
            .submit(jobs)
            .map_err(|r| rejected(&model.name, &how.class.tenant, r))?;
        Ok(Enqueued {
            usage,
            truncated,
            windows,
            tokenize,
        })
    }
}

/// Sets its flag when dropped: the blocking tokenization of a request whose future was dropped
/// (client gone, call cancelled, server past its grace period) stops at its next pair.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Tokenizes on a blocking thread; stops early when the future is dropped, the deadline passes,
/// or (truncation REJECT) at the first chunk holding a pair that would be truncated. With
/// chunking, the pairs are every document's windows, and each document's windows come too.
async fn tokenize(
    model: &LoadedModel,
    texts: Texts,
    how: &Submit,
    first_index: usize,
) -> Result<(Vec<Encoded>, Option<Vec<DocWindows>>), ServeError> {
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(stop.clone());
    let tokenizer = model.tokenizer.clone();
    let (reject, deadline, cut) = (how.truncation == Truncation::Reject, how.deadline, how.cut);
    let instruction = how.instruction.clone();
    let chunking = how.chunking.map(|(c, _)| c);
    let documents = matches!(texts, Texts::Query { .. });
    let span = tracing::info_span!("tokenize", pairs = texts.len());
    let result = tokio::task::spawn_blocking(move || {
        let ctl = Control {
            reject_truncated: reject,
            stop: StopSignal::new(stop, deadline),
            instruction: instruction.as_deref(),
            cut,
        };
        span.in_scope(|| match chunking {
            Some(c) => tokenizer
                .encode_windows(&texts, &ctl, c)
                .map(|w| (w.pairs, Some(w.docs))),
            None => tokenizer.encode_with(&texts, &ctl).map(|e| (e, None)),
        })
    })
    .await
    .map_err(|e| ServeError::Internal(format!("tokenizer task failed: {e}")))?;
    result.map_err(|stop| match stop {
        Stop::Truncated(i) => ServeError::Invalid(format!(
            "pair {} is longer than the model's max length of {} tokens and truncation is REJECT",
            first_index + i,
            model.tokenizer.max_length()
        )),
        Stop::Cancelled => ServeError::DeadlineExceeded(
            "the deadline passed while the request was being tokenized".into(),
        ),
        Stop::Failed(e) => ServeError::Invalid(e.to_string()),
        Stop::Chunk(e) => chunk_error(e, documents, first_index),
    })
}

/// A chunking limit, naming the document (or pair) by its index in the request.
fn chunk_error(e: ChunkError, documents: bool, first_index: usize) -> ServeError {
    let what = if documents { "documents" } else { "pairs" };
    ServeError::Invalid(match e {
        ChunkError::TooManyChunks {
            index,
            count,
            limit,
        } => format!(
            "`{what}[{}]` needs {count} windows; the limit is {limit} \
             (chunking.max_chunks_per_doc; raise it up to max_pairs_per_request, or cap the \
             document with max_tokens_per_doc)",
            first_index + index
        ),
        ChunkError::TooManyWindows { count, limit } => format!(
            "the documents need {count} windows in all; the limit is {limit} (what is left of \
             max_pairs_per_request: every window is a pair, and a stream's windows count together)"
        ),
        ChunkError::NoRoom {
            index,
            query_tokens,
            special_tokens,
            max_length,
        } => format!(
            "`{what}[{}]`: the query keeps {query_tokens} tokens, which with {special_tokens} \
             special tokens leaves no room for a document window in the model's max length of \
             {max_length}; lower max_query_tokens",
            first_index + index
        ),
        ChunkError::Overlap {
            index,
            overlap,
            window,
        } => format!(
            "`chunking.overlap_tokens` is {overlap}, but `{what}[{}]` has windows of {window} \
             document tokens; the limit is {} (half the window: each token is scored in at most \
             two windows)",
            first_index + index,
            window / 2
        ),
    })
}

/// Token ids beyond the model's tables (a tokenizer.json that does not match the weights) fail
/// this request alone, before its pairs can share a batch with anyone else's.
fn check_vocabulary(model: &LoadedModel, encoded: &[Encoded]) -> Result<(), ServeError> {
    let spec = &model.spec;
    let max_id = encoded
        .iter()
        .flat_map(|e| e.ids.iter())
        .max()
        .copied()
        .unwrap_or(0);
    let max_type = encoded
        .iter()
        .flat_map(|e| e.type_ids.iter())
        .max()
        .copied()
        .unwrap_or(0);
    let bad_type = spec.uses_token_types && i64::from(max_type) >= spec.type_vocab_size;
    if i64::from(max_id) >= spec.vocab_size || bad_type {
        return Err(ServeError::Internal(format!(
            "model {:?}: its tokenizer produced token id {max_id} (type {max_type}) outside the model's \
             tables ({} tokens, {} types); tokenizer.json does not match the weights",
            model.name, spec.vocab_size, spec.type_vocab_size
        )));
    }
    Ok(())
}

pub fn check_rerankable(model: &LoadedModel) -> Result<(), ServeError> {
    let labels = model.spec.labels.len();
    if labels != 1 {
        return Err(ServeError::Unsupported(format!(
            "model {:?} has {labels} labels; Rerank needs a one-label model (use Score)",
            model.name
        )));
    }
    Ok(())
}

/// Counts pairs, tokens and truncated pairs of a scored request (or stream batch), and the
/// pairs of its tenant.
pub fn record_scored(model: &str, tenant: &str, usage: &Usage) {
    let m = metrics();
    let l = ModelLabel {
        model: model.into(),
    };
    m.pairs.get_or_create(&l).inc_by(usage.pairs as u64);
    m.tokens.get_or_create(&l).inc_by(usage.tokens as u64);
    m.truncated_pairs
        .get_or_create(&l)
        .inc_by(usage.truncated as u64);
    m.tenant_scored(model, tenant, usage.pairs);
}

/// A request of `tenant` refused (or displaced) for `reason`, in the rejection metrics.
fn record_rejected(model: &str, tenant: &str, reason: &str) {
    metrics().reject(model, reason);
    metrics().tenant_rejected(model, tenant, reason);
}

fn rejected(model: &str, tenant: &str, r: Rejected) -> ServeError {
    match r {
        Rejected::Full { .. } => record_rejected(model, tenant, "overload"),
        Rejected::TenantQuota { .. } => record_rejected(model, tenant, "tenant_quota"),
        Rejected::Displaced { .. } => record_rejected(model, tenant, "evicted"),
        Rejected::Late { .. } => metrics().reject(model, "deadline"),
        _ => {}
    }
    match r {
        Rejected::Full { queued, asked, limit } => ServeError::Overloaded(format!(
            "model {model:?} is overloaded: {queued} pairs queued + {asked} requested exceeds max_queue_pairs {limit}"
        )),
        Rejected::TenantQuota {
            tenant,
            queued,
            asked,
            limit,
        } => ServeError::Overloaded(format!(
            "tenant {tenant:?} has {queued} pairs queued on model {model:?}; {asked} more exceeds \
             tenant_max_queue_pairs {limit}"
        )),
        Rejected::Displaced { by_priority } => displaced(by_priority),
        Rejected::Late {
            ahead_tokens,
            least,
            left,
        } => ServeError::DeadlineExceeded(format!(
            "the request cannot start before its deadline: {ahead_tokens} tokens of work are \
             queued ahead of it on model {model:?}, at least {} ms at the model's recent pace, \
             and the deadline is {} ms away",
            least.as_millis(),
            left.as_millis()
        )),
        Rejected::Closed => ServeError::NotReady(format!("model {model:?} is unloading")),
        Rejected::Failed => ServeError::ModelFailed(format!(
            "model {model:?} stopped serving: a replica thread died (the reason is in the \
             server's log and in GetModel for admin token holders)"
        )),
    }
}

/// A pair's result for the request of `tenant` on `model`; a displaced pair is counted as an
/// `evicted` rejection (the request ends with it, so it is counted once per request).
pub fn pair_outcome(
    model: &str,
    tenant: &str,
    outcome: Result<Vec<f32>, PairError>,
) -> Result<Vec<f32>, ServeError> {
    outcome.map_err(|e| match e {
        PairError::DeadlineExceeded => deadline_exceeded(),
        PairError::Inference(m) => ServeError::InferenceFailed(format!("inference failed: {m}")),
        PairError::Evicted { by_priority } => {
            record_rejected(model, tenant, "evicted");
            displaced(by_priority)
        }
        PairError::Stopped(_) => ServeError::ModelFailed(
            "the model stopped serving before this pair ran: a replica thread died (see the \
             server's log)"
                .into(),
        ),
    })
}

fn deadline_exceeded() -> ServeError {
    ServeError::DeadlineExceeded("the deadline passed before every pair was scored".into())
}

/// A request (or stream) whose queued pairs gave way to more urgent work.
fn displaced(by_priority: u32) -> ServeError {
    ServeError::Overloaded(format!(
        "displaced by higher-priority work: the model's queue was full and a request of \
         priority {by_priority} took this request's place; retry later or with a higher \
         priority (a lower number)"
    ))
}

fn record_span_usage(usage: &Usage) {
    tracing::Span::current()
        .record("pairs", usage.pairs)
        .record("tokens", usage.tokens);
}
