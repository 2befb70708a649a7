//! Replica threads: each owns one [`Network`] on its device and pulls batches from the model's
//! queue until the queue is closed and drained, then ends; its owner joins it. A thread is named
//! `{model}-replica-{index}` (the threads libtorch starts from it take that name too and end
//! with it). Inference never runs on async threads.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Instant;

use tch::Device;

use super::Network;
use crate::device::DType;
use crate::error::{Result, RuntimeError};
use crate::model_dir::ModelDir;
use crate::models::ModelSpec;
use crate::scheduler::{Job, PairError, Queue};
use crate::telemetry::metrics::metrics;
use crate::tokenize::{Encoded, PairTokenizer};

/// What a replica thread needs to start.
pub struct ReplicaConfig {
    pub name: String,
    /// The model directory, read once for the whole load and shared by its replicas.
    pub dir: Arc<ModelDir>,
    pub device: Device,
    pub dtype: Option<DType>,
    pub max_length: Option<usize>,
    pub index: usize,
    /// Called once if this replica's thread dies after loading (the model is then FAILED).
    pub on_failure: Arc<dyn Fn() + Send + Sync>,
}

/// A running replica and what it learnt while loading.
pub struct Started {
    pub handle: JoinHandle<()>,
    pub spec: ModelSpec,
    pub dtype: DType,
    pub tokenizer: PairTokenizer,
}

type Ready = Result<(ModelSpec, DType, PairTokenizer)>;

/// Starts one replica thread; returns once its model is loaded and warmed up (or failed). The
/// caller joins the thread once it has closed the queue (`registry::LoadedModel`).
pub fn spawn(cfg: ReplicaConfig, queue: Arc<Queue>) -> Result<Started> {
    name_shared_pool();
    let (ready_tx, ready_rx) = mpsc::channel::<Ready>();
    let thread_name = format!("{}-replica-{}", cfg.name, cfg.index);
    let handle = std::thread::Builder::new()
        .name(thread_name.clone())
        .spawn(move || {
            let network = match load_and_warm_up(&cfg) {
                Ok((network, tokenizer)) => {
                    let _ = ready_tx.send(Ok((network.spec.clone(), network.dtype, tokenizer)));
                    network
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            supervised(&cfg, &queue, || serve(&cfg, &network, &queue));
        })
        .map_err(|error| RuntimeError::Spawn {
            thread: thread_name.clone(),
            error,
        })?;
    match ready_rx.recv() {
        Ok(Ok((spec, dtype, tokenizer))) => Ok(Started {
            handle,
            spec,
            dtype,
            tokenizer,
        }),
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(e)
        }
        Err(_) => {
            let _ = handle.join();
            Err(RuntimeError::Died {
                thread: thread_name,
            })
        }
    }
}

/// Builds the process-wide rayon pool (the tokenizers' threads) with names of its own before a
/// replica's first tokenization would build it: a thread takes the name of the thread that
/// starts it, so the pool would carry that replica's name after the replica ended.
fn name_shared_pool() {
    static NAMED: std::sync::Once = std::sync::Once::new();
    NAMED.call_once(|| {
        // Err: something built it already (then not from a replica thread).
        let _ = rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("rayon-{i}"))
            .build_global();
    });
}

/// Loads the network and runs it once on a short and a maximum-length pair, so the first real
/// request does not pay for allocator growth and kernel selection.
fn load_and_warm_up(cfg: &ReplicaConfig) -> Result<(Network, PairTokenizer)> {
    let device = crate::device::device_name(cfg.device);
    let span = tracing::info_span!("load_model", model = %cfg.name, %device, replica = cfg.index);
    let _entered = span.enter();
    let network = Network::load(&cfg.dir, cfg.device, cfg.dtype)?;
    let tokenizer = PairTokenizer::load(&cfg.dir, &network.spec, cfg.max_length)?;
    // The tokenizer's maximum never exceeds the model's serving positions, which never exceed
    // the server's maximum; the `min` keeps the warm-up bounded even so.
    let long = "warm up ".repeat(tokenizer.max_length().min(crate::models::MAX_MAX_LENGTH));
    let pairs = tokenizer.encode(&[
        ("warm up", "a short document"),
        (long.as_str(), long.as_str()),
    ])?;
    let refs: Vec<&Encoded> = pairs.iter().collect();
    let _no_grad = tch::no_grad_guard();
    tracing::info_span!("warm_up", pairs = refs.len()).in_scope(|| network.logits(&refs))?;
    Ok((network, tokenizer))
}

/// Runs the replica's loop; if anything in it panics, the model stops serving: its queue is
/// closed and failed with the reason, every queued pair is answered with that failure, and
/// `on_failure` tells the registry (health turns NOT_SERVING). Replicas are not restarted:
/// an operator reloads the model, or the orchestrator replaces the process (README).
pub fn supervised(cfg: &ReplicaConfig, queue: &Queue, work: impl FnOnce()) {
    let Err(panic) = catch_unwind(AssertUnwindSafe(work)) else {
        return;
    };
    let what = crate::error::panic_message(&*panic);
    let reason = format!("replica {} died: {what}", cfg.index);
    tracing::error!(model = %cfg.name, %reason, "replica thread died; the model is FAILED");
    let start = Instant::now();
    for job in queue.fail(&reason) {
        reply(
            &job,
            0,
            start,
            Err(PairError::Stopped(reason.clone())),
            Default::default(),
        );
    }
    (cfg.on_failure)();
}

fn serve(cfg: &ReplicaConfig, network: &Network, queue: &Queue) {
    let _no_grad = tch::no_grad_guard();
    while let Some(batch) = queue.next_batch() {
        let (batch_id, jobs) = (batch.id, batch.jobs);
        answer_expired(&cfg.name, batch.expired);
        if jobs.is_empty() {
            continue;
        }
        // Test builds only: a replica of the named model dies outside the forward pass, holding
        // a batch, as a bug would make it (tests/serve/faults.rs).
        #[cfg(debug_assertions)]
        if std::env::var("CROSSRANK_FAULT_REPLICA_PANIC").is_ok_and(|m| m == cfg.name) {
            panic!(
                "injected fault (CROSSRANK_FAULT_REPLICA_PANIC) holding {} pairs",
                jobs.len()
            );
        }
        let span = batch_span(cfg, &jobs);
        let tokens = jobs.iter().map(|j| j.encoded.len()).sum();
        let start = Instant::now();
        span.in_scope(|| run_batch(&cfg.name, network, batch_id, jobs));
        queue.record_batch(tokens, start.elapsed());
    }
}

/// Pairs whose deadline passed in the queue: answered, never run.
fn answer_expired(model: &str, expired: Vec<Job>) {
    let now = Instant::now();
    for job in expired {
        metrics().reject(model, "deadline");
        reply(
            &job,
            0,
            now,
            Err(PairError::DeadlineExceeded),
            Default::default(),
        );
    }
}

/// The span of one executed batch, linked to the span of every request it serves.
fn batch_span(cfg: &ReplicaConfig, jobs: &[Job]) -> tracing::Span {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let tokens: usize = jobs.iter().map(|j| j.encoded.len()).sum();
    let padded = jobs.iter().map(|j| j.encoded.len()).max().unwrap_or(0) * jobs.len();
    let span = tracing::info_span!(
        "batch",
        model = %cfg.name,
        pairs = jobs.len(),
        tokens,
        padding_ratio = 1.0 - tokens as f64 / padded.max(1) as f64,
        device = %crate::device::device_name(cfg.device),
        replica = cfg.index,
    );
    let mut linked: Vec<*const crate::scheduler::Sink> = Vec::new();
    for job in jobs {
        let key = Arc::as_ptr(&job.sink);
        if !linked.contains(&key) {
            linked.push(key);
            span.add_link(job.sink.span.context().span().span_context().clone());
        }
    }
    span
}

/// Runs one batch and answers every pair in it; a failed batch runs again in halves, so only the
/// pairs that fail on their own get an error. Nothing here may take the thread down.
fn run_batch(model: &str, network: &Network, batch_id: u64, jobs: Vec<Job>) {
    let m = metrics();
    let start = Instant::now();
    let (live, expired): (Vec<Job>, Vec<Job>) = jobs
        .into_iter()
        .partition(|j| j.sink.deadline.is_none_or(|d| d > start));
    for job in expired {
        m.reject(model, "deadline");
        reply(
            &job,
            batch_id,
            start,
            Err(PairError::DeadlineExceeded),
            Default::default(),
        );
    }
    if live.is_empty() {
        return;
    }
    let inputs: Vec<&Encoded> = live.iter().map(|j| &j.encoded).collect();
    let outcomes = super::split::run_split(&inputs, &mut |part: &[&Encoded]| {
        catch_unwind(AssertUnwindSafe(|| network.logits(part))).unwrap_or(Err(
            RuntimeError::Panicked {
                during: "during inference",
            },
        ))
    });
    let inference = start.elapsed();
    let tokens: usize = inputs.iter().map(|e| e.len()).sum();
    let padded = inputs.iter().map(|e| e.len()).max().unwrap_or(0) * inputs.len();
    m.batch(model, inputs.len(), tokens, padded, inference);
    m.queue_waits(
        model,
        live.iter().map(|j| {
            let waited = start.saturating_duration_since(j.enqueued);
            (j.sink.class.priority, waited)
        }),
    );
    let mut errors = outcomes.iter().filter_map(|o| o.as_ref().err());
    if let Some(first) = errors.next() {
        let pairs = 1 + errors.count();
        tracing::error!(error = %first, pairs, of = live.len(), "inference failed");
    }
    for (job, outcome) in live.iter().zip(outcomes) {
        let result = outcome
            .map(|logits| job.sink.activation.apply(&logits))
            .map_err(|e| PairError::Inference(e.to_string()));
        reply(job, batch_id, start, result, inference);
    }
}

fn reply(
    job: &Job,
    batch_id: u64,
    start: Instant,
    outcome: Result<Vec<f32>, PairError>,
    inference: std::time::Duration,
) {
    let queue = start.saturating_duration_since(job.enqueued);
    job.answer(outcome, queue, inference, batch_id);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn a_dying_replica_fails_its_queue_and_answers_every_queued_pair() {
        let queue = Queue::new(Default::default());
        let (jobs, mut rx) = crate::scheduler::test_jobs(&[3, 4, 5]);
        queue
            .reserve(3, &Default::default())
            .unwrap()
            .submit(jobs)
            .unwrap();
        let told = Arc::new(AtomicBool::new(false));
        let flag = told.clone();
        let cfg = ReplicaConfig {
            name: "m".into(),
            dir: Arc::new(ModelDir::read(std::path::Path::new(""))),
            device: Device::Cpu,
            dtype: None,
            max_length: None,
            index: 1,
            on_failure: Arc::new(move || flag.store(true, Ordering::SeqCst)),
        };
        supervised(&cfg, &queue, || panic!("boom"));
        assert!(told.load(Ordering::SeqCst));
        assert_eq!(queue.failure().as_deref(), Some("replica 1 died: boom"));
        for _ in 0..3 {
            let r = rx.try_recv().unwrap();
            assert_eq!(
                r.outcome,
                Err(PairError::Stopped("replica 1 died: boom".into()))
            );
        }
        assert_eq!(
            queue.reserve(1, &Default::default()).err(),
            Some(crate::scheduler::Rejected::Failed)
        );
        assert!(queue.next_batch().is_none(), "other replicas stop");

        // A replica that returns normally (queue closed) fails nothing.
        let calm = Queue::new(Default::default());
        supervised(&cfg, &calm, || {});
        assert!(calm.failure().is_none());
    }
}
