//! What the queue holds and answers: a queued pair ([`Job`]) with the request it belongs to
//! ([`Sink`], [`Class`]), its result or error, and why a request was not admitted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::activation::Activation;
use crate::tokenize::Encoded;

/// How urgent a request is and whom it is for: the scheduler serves the lowest effective
/// priority first, and tenants of one priority fairly.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Class {
    /// 0 is the highest.
    pub priority: u32,
    /// "" for calls that name no tenant.
    pub tenant: Arc<str>,
}

/// Where a request's pair results go, shared by all its queued pairs.
pub struct Sink {
    /// The request's span; batch spans link to it.
    pub span: tracing::Span,
    pub activation: Activation,
    pub deadline: Option<Instant>,
    pub class: Class,
    /// Results as they complete; a closed receiver means the caller is gone.
    pub tx: mpsc::UnboundedSender<PairResult>,
}

/// One queued pair. Every job is answered exactly once: by [`Job::answer`], or, if it is dropped
/// unanswered (its replica died holding it), with [`PairError::Stopped`].
pub struct Job {
    pub encoded: Encoded,
    /// Position of the pair in its request (or stream).
    pub index: usize,
    pub sink: Arc<Sink>,
    pub enqueued: Instant,
    /// Arrival order and start tag in its queue (set when queued).
    pub(super) seq: u64,
    pub(super) tag: u64,
    pub(super) answered: std::cell::Cell<bool>,
}

impl Job {
    pub fn new(encoded: Encoded, index: usize, sink: Arc<Sink>, enqueued: Instant) -> Self {
        Self {
            encoded,
            index,
            sink,
            enqueued,
            seq: 0,
            tag: 0,
            answered: std::cell::Cell::new(false),
        }
    }

    /// Sends this pair's result (a closed receiver means the caller is gone: nothing to do).
    pub fn answer(
        &self,
        outcome: Result<Vec<f32>, PairError>,
        queue: Duration,
        inference: Duration,
        batch_id: u64,
    ) {
        self.answered.set(true);
        let _ = self.sink.tx.send(PairResult {
            index: self.index,
            outcome,
            queue,
            inference,
            batch_id,
        });
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if !self.answered.get() {
            let why = "the pair was dropped before it ran".to_string();
            self.answer(
                Err(PairError::Stopped(why)),
                Duration::ZERO,
                Duration::ZERO,
                0,
            );
        }
    }
}

/// What happened to one pair.
#[derive(Debug)]
pub struct PairResult {
    pub index: usize,
    pub outcome: Result<Vec<f32>, PairError>,
    /// Time from queueing to the start of its batch.
    pub queue: Duration,
    /// Forward-pass time of its batch, and the batch's identity (to sum distinct batches).
    pub inference: Duration,
    pub batch_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairError {
    DeadlineExceeded,
    Inference(String),
    /// The model stopped serving (a replica thread died) before this pair ran.
    Stopped(String),
    /// Displaced from a full queue by a request of this (higher) priority.
    Evicted {
        by_priority: u32,
    },
}

/// Why a request was not queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// Queue full: (queued now, asked for, limit).
    Full {
        queued: usize,
        asked: usize,
        limit: usize,
    },
    /// The tenant's quota is full: (tenant, its pairs queued now, asked for, quota).
    TenantQuota {
        tenant: Arc<str>,
        queued: usize,
        asked: usize,
        limit: usize,
    },
    /// The work queued ahead takes at least `least`, and the deadline is `left` away.
    Late {
        ahead_tokens: usize,
        least: Duration,
        left: Duration,
    },
    /// Displaced while being tokenized by a request of this (higher) priority.
    Displaced { by_priority: u32 },
    /// The model is unloading or the server shutting down.
    Closed,
    /// The model stopped serving: a replica thread died.
    Failed,
}

/// Queued pairs of the given token lengths, all of one request, and that request's receiver.
#[cfg(test)]
pub(crate) fn test_jobs(lengths: &[usize]) -> (Vec<Job>, mpsc::UnboundedReceiver<PairResult>) {
    test_request(lengths, Class::default(), None, Instant::now())
}

/// One request's pairs of the given token lengths, of `class`, queued at `enqueued`.
#[cfg(test)]
pub(crate) fn test_request(
    lengths: &[usize],
    class: Class,
    deadline: Option<Instant>,
    enqueued: Instant,
) -> (Vec<Job>, mpsc::UnboundedReceiver<PairResult>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let sink = Arc::new(Sink {
        span: tracing::Span::none(),
        activation: Activation::Identity,
        deadline,
        class,
        tx,
    });
    let jobs = lengths
        .iter()
        .enumerate()
        .map(|(index, &n)| {
            let encoded = Encoded {
                ids: vec![1; n],
                type_ids: vec![0; n],
                truncated: false,
            };
            Job::new(encoded, index, sink.clone(), enqueued)
        })
        .collect();
    (jobs, rx)
}
