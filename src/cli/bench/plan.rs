//! What every client of a run sends: the request shape and the plan shared by the clients.

use std::sync::Arc;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Shape {
    /// Score with `size` pairs.
    Score,
    /// Rerank of one query and `size` documents.
    Rerank,
    /// RerankStream of `size` documents sent in messages of `chunk`.
    Stream,
}

/// What the clients of one run (or one group of a mixed run) send.
pub struct Plan {
    pub shape: Shape,
    pub model: String,
    pub size: usize,
    pub chunk: usize,
    pub timeout: Duration,
    pub keep_scores: bool,
    /// Pause of a client after a failed request, as a retrying client would back off.
    pub backoff: Duration,
    /// Share of requests sent with chaos: half of them get a random deadline below `timeout`,
    /// half are dropped by the client after a random delay below it (a cancel).
    pub chaos: f64,
    /// Sent as every request's `priority` (0, the default, is the highest).
    pub priority: u32,
    /// Sent as [`crossrank::api::tenant::TENANT_HEADER`] with every gRPC call; `None`: no tenant named.
    pub tenant: Option<MetadataValue<Ascii>>,
    /// Shared by every group of a mixed run.
    pub corpus: Arc<[(String, String)]>,
    /// Sent as every Score and Rerank request's `truncation` (a `pb::Truncation`).
    pub truncation: i32,
    /// Each document is this many consecutive corpus passages joined (long documents).
    pub doc_passages: usize,
}
