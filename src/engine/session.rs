//! A scoring session: one model and its options; pairs are added in batches and each pair's
//! scores come back as soon as its micro-batch ran. Score and Rerank are one-batch sessions,
//! ScoreStream runs a session per request, RerankStream one session over all its batches.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::request::{Options, Truncation, DEFAULT_MAX_CHUNKS_PER_DOC};
use super::{check_rerankable, pair_outcome, rank, record_scored, Engine, Ranked, ServeError};
use super::{Submit, Timing, Usage};
use crate::activation::Activation;
use crate::pooling::{DocPool, Pooling};
use crate::registry::LoadedModel;
use crate::scheduler::{Class, PairResult};
use crate::telemetry::metrics::metrics;
use crate::tokenize::{Chunking, Cut, DocWindows, Query, Span, Texts};

pub struct Session {
    pub model: Arc<LoadedModel>,
    how: Submit,
    tx: mpsc::UnboundedSender<PairResult>,
    rx: mpsc::UnboundedReceiver<PairResult>,
    /// Pairs (documents) added; jobs (pairs, or windows with chunking) queued and answered.
    added: usize,
    jobs: usize,
    done: usize,
    /// With chunking: each document's windows as they are scored.
    windows: Option<Windows>,
    pub usage: Usage,
    /// Per pair added, in order.
    pub truncated: Vec<bool>,
    /// Per pair added with chunking: the window that scored highest, once scored.
    pub best_chunks: Vec<Option<Span>>,
    timing: Timing,
    batches: HashSet<u64>,
    start: Instant,
}

impl Session {
    /// Resolves the model (refused while the server drains) and the activation.
    pub fn open(
        engine: &Engine,
        options: &Options,
        deadline: Option<Instant>,
    ) -> Result<Self, ServeError> {
        let model = engine.model(&options.model)?;
        let instruction = options.instruction.as_deref();
        if instruction.is_some_and(|i| !i.is_empty()) && !model.tokenizer.uses_chat_template() {
            return Err(ServeError::Invalid(format!(
                "`instruction` is set, but model {} has no chat template: instructions apply to \
                 models that render pairs through one (LLM rerankers)",
                model.name
            )));
        }
        let how = Submit {
            activation: Engine::activation(&model, options)?,
            truncation: options.truncation,
            deadline,
            instruction: instruction.map(Arc::from),
            cut: cut(&model, options)?,
            class: Class {
                priority: options.priority,
                tenant: Arc::from(options.tenant.as_str()),
            },
            chunking: chunking(&model, options, engine.limits.max_pairs_per_request)?,
        };
        let windows = how.chunking.map(|(_, pooling)| Windows {
            pooling,
            activation: how.activation,
            owner: Vec::new(),
            docs: Vec::new(),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(Self {
            model,
            how,
            tx,
            rx,
            added: 0,
            jobs: 0,
            done: 0,
            windows,
            usage: Usage::default(),
            truncated: Vec::new(),
            best_chunks: Vec::new(),
            timing: Timing::default(),
            batches: HashSet::new(),
            start: Instant::now(),
        })
    }

    /// Tokenizes and queues `texts` after the pairs already added (indices continue).
    pub async fn add(&mut self, engine: &Engine, texts: Texts) -> Result<(), ServeError> {
        // A stream's windows count together against max_pairs_per_request.
        let window_limit = engine
            .limits
            .max_pairs_per_request
            .saturating_sub(self.jobs);
        if let Some((chunking, _)) = &mut self.how.chunking {
            chunking.max_windows = window_limit;
        }
        let at = (self.added, self.jobs);
        let enq = engine
            .enqueue(&self.model, texts, &self.how, at, self.tx.clone())
            .await?;
        if let (Some(w), Some(docs)) = (&mut self.windows, enq.windows) {
            w.extend(self.added, docs);
        }
        self.added += enq.usage.pairs;
        self.jobs += enq.usage.chunks;
        self.usage.pairs += enq.usage.pairs;
        self.usage.chunks += enq.usage.chunks;
        self.usage.tokens += enq.usage.tokens;
        self.usage.truncated += enq.usage.truncated;
        self.truncated.extend(enq.truncated);
        self.best_chunks.resize(self.added, None);
        self.timing.tokenize += enq.tokenize;
        Ok(())
    }

    /// Jobs queued whose result has not come back (0 once every pair is scored).
    pub fn pending(&self) -> usize {
        self.jobs - self.done
    }

    /// The next pair (document) to complete, as (index, scores); `None` when none is pending.
    /// Fails when the deadline passes first or a pair failed. With chunking, a document
    /// completes when its last window is scored, and its best window is kept.
    pub async fn next(&mut self) -> Option<Result<(usize, Vec<f32>), ServeError>> {
        loop {
            let (job, scores) = match self.next_job().await? {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            };
            let Some(windows) = &mut self.windows else {
                return Some(Ok((job, scores)));
            };
            if let Some((doc, pooled)) = windows.take(job, scores) {
                self.best_chunks[doc] = Some(pooled.best);
                return Some(Ok((doc, pooled.scores)));
            }
        }
    }

    /// The next job's result, as (job index, scores).
    async fn next_job(&mut self) -> Option<Result<(usize, Vec<f32>), ServeError>> {
        if self.pending() == 0 {
            return None;
        }
        let next = match self.how.deadline {
            Some(d) => match tokio::time::timeout_at(d.into(), self.rx.recv()).await {
                Ok(r) => r,
                Err(_) => {
                    metrics().reject(&self.model.name, "deadline");
                    return Some(Err(deadline_exceeded()));
                }
            },
            None => self.rx.recv().await,
        };
        let Some(r) = next else {
            return Some(Err(ServeError::ModelFailed(
                "the model stopped before answering".into(),
            )));
        };
        self.done += 1;
        self.timing.queue = self.timing.queue.max(r.queue);
        if self.batches.insert(r.batch_id) {
            self.timing.inference += r.inference;
        }
        let outcome = pair_outcome(&self.model.name, &self.how.class.tenant, r.outcome);
        Some(outcome.map(|s| (r.index, s)))
    }

    /// Waits for every pending pair; scores in input order.
    pub async fn collect(&mut self) -> Result<Vec<Vec<f32>>, ServeError> {
        let mut scores = vec![Vec::new(); self.added];
        while let Some(r) = self.next().await {
            let (i, s) = r?;
            scores[i] = s;
        }
        Ok(scores)
    }

    /// Counts the session's pairs in the metrics; its timing so far.
    pub fn finish(&mut self) -> Timing {
        record_scored(&self.model.name, &self.how.class.tenant, &self.usage);
        self.timing.total = self.start.elapsed();
        self.timing
    }
}

/// The request's caps on document and query tokens and its truncation side. A cap is refused
/// for models that render pairs through a chat template: there a text's tokens depend on the
/// prompt around it, and sentence-transformers has no per-text cap to match.
fn cut(model: &LoadedModel, options: &Options) -> Result<Cut, ServeError> {
    let caps = [
        ("max_tokens_per_doc", options.max_tokens_per_doc),
        ("max_query_tokens", options.max_query_tokens),
    ];
    for (field, cap) in caps {
        if let Some(n) = cap.filter(|_| model.tokenizer.uses_chat_template()) {
            return Err(ServeError::Unsupported(format!(
                "`{field}` is {n}, but model {} renders pairs through a chat template (an LLM \
                 reranker), where a text's tokens depend on the prompt around it; leave it \
                 unset (long pairs are cut at the model's max length of {} tokens)",
                model.name,
                model.tokenizer.max_length()
            )));
        }
    }
    Ok(Cut {
        doc_tokens: options.max_tokens_per_doc,
        query_tokens: options.max_query_tokens,
        left: options.truncate_left,
    })
}

/// Truncation CHUNK's windows and pooling; refused for models with a chat template, where a
/// window's tokens cannot be placed in the rendered prompt exactly (the template renders text,
/// and a window's text re-tokenized is not always its tokens).
fn chunking(
    model: &LoadedModel,
    options: &Options,
    max_pairs_per_request: usize,
) -> Result<Option<(Chunking, Pooling)>, ServeError> {
    if options.truncation != Truncation::Chunk {
        return Ok(None);
    }
    if model.tokenizer.uses_chat_template() {
        return Err(ServeError::Unsupported(format!(
            "`truncation` is CHUNK, but model {} renders pairs through a chat template (an LLM \
             reranker): a window's tokens cannot be placed in the rendered prompt exactly, so \
             its scores would not be the model's; use LONGEST_FIRST",
            model.name
        )));
    }
    let c = options.chunking;
    let chunking = Chunking {
        overlap: c.overlap,
        max_chunks_per_doc: c.max_chunks_per_doc.unwrap_or(DEFAULT_MAX_CHUNKS_PER_DOC),
        max_windows: max_pairs_per_request,
    };
    Ok(Some((chunking, c.pooling)))
}

/// The windows of a chunked session's documents: which document and window each job is, and
/// each document's pool until its last window is scored.
struct Windows {
    pooling: Pooling,
    activation: Activation,
    /// Per job: (document, window).
    owner: Vec<(usize, usize)>,
    /// Per document; emptied once pooled.
    docs: Vec<Option<DocPool>>,
}

impl Windows {
    /// The windows of documents `first..`, whose jobs follow those already queued.
    fn extend(&mut self, first: usize, docs: Vec<DocWindows>) {
        for (i, doc) in docs.into_iter().enumerate() {
            self.owner
                .extend((0..doc.spans.len()).map(|k| (first + i, k)));
            self.docs.push(Some(DocPool::new(doc.spans)));
        }
    }

    /// Records a job's raw logits; the document's pooled scores once its last window arrived.
    fn take(&mut self, job: usize, logits: Vec<f32>) -> Option<(usize, crate::pooling::Pooled)> {
        let &(doc, k) = self.owner.get(job)?;
        let pool = self.docs.get_mut(doc)?.as_mut()?;
        if !pool.add(k, logits) {
            return None;
        }
        let pooled = pool.finish(self.pooling, self.activation)?;
        self.docs[doc] = None;
        Some((doc, pooled))
    }
}

fn deadline_exceeded() -> ServeError {
    ServeError::DeadlineExceeded("the deadline passed before every pair was scored".into())
}

/// A rerank over documents that arrive in batches: one query, scores kept for the final ranking.
pub struct RerankSession {
    pub session: Session,
    query: Arc<Query>,
    /// (caller's id, text), in arrival order.
    documents: Vec<(String, String)>,
    scores: Vec<f32>,
}

/// How the final ranking is cut.
#[derive(Debug, Clone, Copy)]
pub struct RankOptions {
    pub top_n: usize,
    pub min_score: Option<f32>,
    pub return_documents: bool,
}

/// One document's score as it completes.
pub struct Partial {
    pub index: usize,
    pub id: String,
    pub score: f32,
    /// With chunking: the window that scored highest.
    pub best_chunk: Option<Span>,
}

impl RerankSession {
    pub fn open(
        engine: &Engine,
        options: &Options,
        query: String,
        deadline: Option<Instant>,
    ) -> Result<Self, ServeError> {
        let session = Session::open(engine, options, deadline)?;
        check_rerankable(&session.model)?;
        Ok(Self {
            session,
            query: Query::new(query),
            documents: Vec::new(),
            scores: Vec::new(),
        })
    }

    pub fn received(&self) -> usize {
        self.documents.len()
    }

    /// Queues `documents` (id, text) after those received.
    pub async fn add(
        &mut self,
        engine: &Engine,
        documents: Vec<(String, String)>,
        return_documents: bool,
    ) -> Result<(), ServeError> {
        let texts = Texts::Query {
            query: self.query.clone(),
            documents: documents.iter().map(|(_, t)| t.clone()).collect(),
        };
        self.session.add(engine, texts).await?;
        // Texts are kept only when the caller wants them back.
        self.documents
            .extend(documents.into_iter().map(|(id, text)| {
                (
                    id,
                    if return_documents {
                        text
                    } else {
                        String::new()
                    },
                )
            }));
        self.scores.resize(self.documents.len(), f32::NAN);
        Ok(())
    }

    pub fn pending(&self) -> usize {
        self.session.pending()
    }

    /// The next document to be scored; `None` when none is pending.
    pub async fn next(&mut self) -> Option<Result<Partial, ServeError>> {
        let r = self.session.next().await?;
        Some(r.map(|(index, scores)| {
            self.scores[index] = scores[0];
            Partial {
                index,
                id: self.documents[index].0.clone(),
                score: scores[0],
                best_chunk: self.session.best_chunks[index],
            }
        }))
    }

    /// Every pending document, then the ranking.
    pub async fn rank(&mut self, how: RankOptions) -> Result<(Vec<Ranked>, Timing), ServeError> {
        while let Some(r) = self.next().await {
            r?;
        }
        let timing = self.session.finish();
        let ranked = rank(
            &self.scores,
            &self.documents,
            &self.session.best_chunks,
            how.top_n,
            how.min_score,
            how.return_documents,
        );
        Ok((ranked, timing))
    }
}
