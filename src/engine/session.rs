//! A scoring session: one model and its options; pairs are added in batches and each pair's
//! scores come back as soon as its micro-batch ran. Score and Rerank are one-batch sessions,
//! ScoreStream runs a session per request, RerankStream one session over all its batches.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::request::Options;
use super::{check_rerankable, pair_outcome, rank, record_scored, Engine, Ranked, ServeError};
use super::{Submit, Timing, Usage};
use crate::registry::LoadedModel;
use crate::scheduler::{Class, PairResult};
use crate::telemetry::metrics::metrics;
use crate::tokenize::{Cut, Query, Texts};

pub struct Session {
    pub model: Arc<LoadedModel>,
    how: Submit,
    tx: mpsc::UnboundedSender<PairResult>,
    rx: mpsc::UnboundedReceiver<PairResult>,
    /// Pairs added, and pairs whose result came back.
    added: usize,
    done: usize,
    pub usage: Usage,
    /// Per pair added, in order.
    pub truncated: Vec<bool>,
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
        };
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(Self {
            model,
            how,
            tx,
            rx,
            added: 0,
            done: 0,
            usage: Usage::default(),
            truncated: Vec::new(),
            timing: Timing::default(),
            batches: HashSet::new(),
            start: Instant::now(),
        })
    }

    /// Tokenizes and queues `texts` after the pairs already added (indices continue).
    pub async fn add(&mut self, engine: &Engine, texts: Texts) -> Result<(), ServeError> {
        let enq = engine
            .enqueue(&self.model, texts, &self.how, self.added, self.tx.clone())
            .await?;
        self.added += enq.usage.pairs;
        self.usage.pairs += enq.usage.pairs;
        self.usage.tokens += enq.usage.tokens;
        self.usage.truncated += enq.usage.truncated;
        self.truncated.extend(enq.truncated);
        self.timing.tokenize += enq.tokenize;
        Ok(())
    }

    /// Pairs added whose result has not come back.
    pub fn pending(&self) -> usize {
        self.added - self.done
    }

    /// The next pair to complete, as (index, scores); `None` when none is pending. Fails when
    /// the deadline passes first or the pair failed.
    pub async fn next(&mut self) -> Option<Result<(usize, Vec<f32>), ServeError>> {
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

/// The request's cap on document tokens and truncation side. A cap is refused for models that
/// render pairs through a chat template: there a document's tokens depend on the prompt around
/// it, and sentence-transformers has no per-document cap to match.
fn cut(model: &LoadedModel, options: &Options) -> Result<Cut, ServeError> {
    match options.max_tokens_per_doc {
        Some(0) => {
            return Err(ServeError::Invalid(
                "`max_tokens_per_doc` is 0; give at least 1, or leave it unset for no cap".into(),
            ))
        }
        Some(n) if model.tokenizer.uses_chat_template() => {
            return Err(ServeError::Unsupported(format!(
                "`max_tokens_per_doc` is {n}, but model {} renders pairs through a chat template \
                 (an LLM reranker), where a document's tokens depend on the prompt around it; \
                 leave it unset (long pairs are cut at the model's max length of {} tokens)",
                model.name,
                model.tokenizer.max_length()
            )))
        }
        _ => {}
    }
    Ok(Cut {
        doc_tokens: options.max_tokens_per_doc,
        left: options.truncate_left,
    })
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
            how.top_n,
            how.min_score,
            how.return_documents,
        );
        Ok((ranked, timing))
    }
}
