//! The load loop: `concurrency` clients, each on its own connection (gRPC, or HTTP/1.1 to the
//! REST port), sending requests built from consecutive slices of the corpus until the deadline or
//! the request count is reached.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossrank::api::pb;
use crossrank::api::tenant::TENANT_HEADER;
use pb::cross_encoder_client::CrossEncoderClient;
use tonic::transport::Channel;

pub use super::plan::{Plan, Shape};
use super::report::{Failure, Tally};
use super::rest::Rest;

/// A gRPC client on `channel` that takes messages of any size (the server bounds them).
pub fn grpc_client(channel: Channel) -> CrossEncoderClient<Channel> {
    CrossEncoderClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

/// One client's connection.
pub enum Conn {
    Grpc(Box<CrossEncoderClient<Channel>>),
    Http(Rest),
}

impl Conn {
    pub fn grpc(channel: Channel) -> Self {
        Self::Grpc(Box::new(grpc_client(channel)))
    }

    /// Sends request number `k` (warm-up requests use any `k`) with deadline `timeout`.
    pub async fn send(
        &mut self,
        plan: &Plan,
        k: u64,
        tally: &mut Tally,
        timeout: Duration,
    ) -> Result<(), Failure> {
        match self {
            Self::Grpc(client) => Ok(send(client, plan, k, tally, timeout).await?),
            Self::Http(rest) => rest.send(plan, k, timeout).await,
        }
    }
}

/// When the run ends.
#[derive(Clone, Copy)]
pub enum Stop {
    At(Instant),
    After(u64),
}

/// Counters shared by the clients and the progress display.
#[derive(Default)]
pub struct Progress {
    next: AtomicU64,
    pub done: AtomicU64,
    pub pairs: AtomicU64,
    pub failed: AtomicU64,
}

impl Progress {
    /// Counts one finished request of `size` pairs in `tally` and here; true if it failed.
    pub fn record(
        &self,
        tally: &mut Tally,
        size: usize,
        outcome: Result<(), Failure>,
        latency: Duration,
    ) -> bool {
        let failed = match outcome {
            Ok(()) => {
                tally.ok(latency, size);
                self.pairs.fetch_add(size as u64, Ordering::Relaxed);
                false
            }
            Err(failure) => {
                tally.error(latency, failure);
                self.failed.fetch_add(1, Ordering::Relaxed);
                true
            }
        };
        self.done.fetch_add(1, Ordering::Relaxed);
        failed
    }

    /// The next request number, or `None` once the run is over.
    fn claim(&self, stop: Stop) -> Option<u64> {
        match stop {
            Stop::At(deadline) if Instant::now() >= deadline => None,
            Stop::At(_) => Some(self.next.fetch_add(1, Ordering::Relaxed)),
            Stop::After(n) => {
                let k = self.next.fetch_add(1, Ordering::Relaxed);
                (k < n).then_some(k)
            }
        }
    }
}

/// One client: sends requests until the run is over.
pub async fn client(mut conn: Conn, plan: Arc<Plan>, stop: Stop, progress: Arc<Progress>) -> Tally {
    let mut tally = Tally::default();
    while let Some(k) = progress.claim(stop) {
        let start = Instant::now();
        let outcome = match &mut conn {
            Conn::Grpc(client) => chaotic(client, &plan, k, &mut tally)
                .await
                .map_err(Failure::from),
            http => http.send(&plan, k, &mut tally, plan.timeout).await,
        };
        if progress.record(&mut tally, plan.size, outcome, start.elapsed()) {
            tokio::time::sleep(plan.backoff).await;
        }
    }
    tally
}

/// Sends request number `k`, or with `--chaos` sometimes a random deadline or a cancel (the
/// client drops the call; counted as CANCELLED).
async fn chaotic(
    client: &mut CrossEncoderClient<Channel>,
    plan: &Plan,
    k: u64,
    tally: &mut Tally,
) -> Result<(), tonic::Status> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(k);
    let max_ms = plan.timeout.as_millis().max(2) as u64;
    if plan.chaos <= 0.0 || !rng.random_bool(plan.chaos.min(1.0)) {
        return send(client, plan, k, tally, plan.timeout).await;
    }
    let within = Duration::from_millis(rng.random_range(1..max_ms));
    if rng.random_bool(0.5) {
        return send(client, plan, k, tally, within).await;
    }
    match tokio::time::timeout(within, send(client, plan, k, tally, plan.timeout)).await {
        Ok(r) => r,
        Err(_) => Err(tonic::Status::cancelled(
            "cancelled by the client (--chaos)",
        )),
    }
}

impl Plan {
    /// The corpus indices of request number `k`: `size` consecutive pairs, wrapping around; the
    /// first pair's query is the query of Rerank requests.
    pub fn slice(&self, k: u64) -> Vec<usize> {
        let n = self.corpus.len();
        let first = (k as usize).wrapping_mul(self.size) % n;
        (0..self.size).map(|j| (first + j) % n).collect()
    }

    /// The document of corpus pair `i`: its passage, or `doc_passages` consecutive passages
    /// from it joined by spaces.
    pub fn document(&self, i: usize) -> String {
        let n = self.corpus.len();
        let parts: Vec<&str> = (0..self.doc_passages.max(1))
            .map(|j| self.corpus[(i + j) % n].1.as_str())
            .collect();
        parts.join(" ")
    }

    /// A call carrying `message`, with deadline `timeout` and the plan's tenant.
    fn call<T>(&self, message: T, timeout: Duration) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(timeout);
        if let Some(tenant) = &self.tenant {
            request.metadata_mut().insert(TENANT_HEADER, tenant.clone());
        }
        request
    }
}

/// Sends request number `k` over gRPC with deadline `timeout`.
pub async fn send(
    client: &mut CrossEncoderClient<Channel>,
    plan: &Plan,
    k: u64,
    tally: &mut Tally,
    timeout: Duration,
) -> Result<(), tonic::Status> {
    let indices = plan.slice(k);
    let query = plan.corpus[indices[0]].0.clone();
    let documents = || {
        indices.iter().map(|&i| pb::Document {
            id: i.to_string(),
            text: plan.document(i),
        })
    };
    match plan.shape {
        Shape::Score => {
            let pairs = indices
                .iter()
                .map(|&i| pb::Pair {
                    text_a: plan.corpus[i].0.clone(),
                    text_b: plan.document(i),
                })
                .collect();
            let request = pb::ScoreRequest {
                model: plan.model.clone(),
                pairs,
                priority: plan.priority,
                truncation: plan.truncation,
                ..Default::default()
            };
            let response = client.score(plan.call(request, timeout)).await?;
            tally.tokens += response.get_ref().usage.map_or(0, |u| u.tokens);
            if plan.keep_scores {
                for (&i, r) in indices.iter().zip(&response.get_ref().results) {
                    if let Some(&s) = r.scores.first() {
                        tally.scores.push((i, s));
                    }
                }
            }
        }
        Shape::Rerank => {
            let request = pb::RerankRequest {
                model: plan.model.clone(),
                query,
                documents: documents().collect(),
                priority: plan.priority,
                truncation: plan.truncation,
                ..Default::default()
            };
            let response = client.rerank(plan.call(request, timeout)).await?;
            tally.tokens += response.get_ref().usage.map_or(0, |u| u.tokens);
        }
        Shape::Stream => {
            use pb::rerank_stream_request::Kind;
            let header = pb::RerankStreamHeader {
                model: plan.model.clone(),
                query,
                priority: plan.priority,
                truncation: plan.truncation,
                ..Default::default()
            };
            let mut messages = vec![pb::RerankStreamRequest {
                kind: Some(Kind::Header(header)),
            }];
            let docs: Vec<pb::Document> = documents().collect();
            for chunk in docs.chunks(plan.chunk.max(1)) {
                let batch = pb::DocumentBatch {
                    documents: chunk.to_vec(),
                };
                messages.push(pb::RerankStreamRequest {
                    kind: Some(Kind::Documents(batch)),
                });
            }
            let request = plan.call(tokio_stream::iter(messages), timeout);
            let mut responses = client.rerank_stream(request).await?.into_inner();
            let mut finished = false;
            while let Some(message) = responses.message().await? {
                finished |= matches!(
                    message.kind,
                    Some(pb::rerank_stream_response::Kind::Final(_))
                );
            }
            if !finished {
                return Err(tonic::Status::internal(
                    "RerankStream ended without its final ranking",
                ));
            }
        }
    }
    Ok(())
}
