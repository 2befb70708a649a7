//! Validated requests: a `Valid*` value exists only after its limits were checked.

use crate::activation::ActivationChoice;
use crate::config::{RequestLimits, MAX_MODEL_NAME_BYTES};
use crate::pooling::Pooling;

use super::ServeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Truncation {
    #[default]
    LongestFirst,
    /// Refuse pairs that would be truncated.
    Reject,
    /// Score every window of a long document and pool (see [`crate::tokenize::Chunking`]).
    Chunk,
}

/// Windows a document may have unless the request says otherwise.
pub const DEFAULT_MAX_CHUNKS_PER_DOC: usize = 64;

/// How a long document is cut into windows and pooled (truncation CHUNK only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkOptions {
    /// Tokens each window repeats from the one before it.
    pub overlap: usize,
    /// Windows a document may have; `None`: [`DEFAULT_MAX_CHUNKS_PER_DOC`].
    pub max_chunks_per_doc: Option<usize>,
    pub pooling: Pooling,
}

impl ChunkOptions {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Options shared by every scoring call.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub model: String,
    pub activation: ActivationChoice,
    pub truncation: Truncation,
    /// The system message for chat-template models: `None` the model's default, `Some("")`
    /// none.
    pub instruction: Option<String>,
    /// Each document (the second text of a pair) is cut to this many tokens before pairing.
    pub max_tokens_per_doc: Option<usize>,
    /// Each query (the first text of a pair) is cut to this many tokens before pairing; with
    /// chunking, unset means half of what a pair leaves for text.
    pub max_query_tokens: Option<usize>,
    /// Windows and pooling of truncation CHUNK.
    pub chunking: ChunkOptions,
    /// Truncation removes tokens from the start of a text instead of its end (TEI's
    /// `truncation_direction: Left`).
    pub truncate_left: bool,
    /// Scheduling priority, 0 the highest (at most `max_priority`).
    pub priority: u32,
    /// Who the call is for (an API key's name or the `x-crossrank-tenant` header); "" for
    /// calls that name none. Pairs of different tenants at one priority share batches fairly.
    pub tenant: String,
}

/// Bytes of a tenant name.
pub const MAX_TENANT_BYTES: usize = 128;

#[derive(Debug, Clone)]
pub struct ValidScore {
    pub options: Options,
    pub pairs: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct ValidRerank {
    pub options: Options,
    pub query: String,
    /// (caller's id, text)
    pub documents: Vec<(String, String)>,
    pub top_n: usize,
    pub return_documents: bool,
    pub min_score: Option<f32>,
}

/// The options every call checks: the instruction is bounded like a text, the priority by
/// `max_priority`, the tenant's name by [`MAX_TENANT_BYTES`].
pub fn check_options(options: &Options, limits: &RequestLimits) -> Result<(), ServeError> {
    if options.priority > limits.max_priority {
        return Err(ServeError::Invalid(format!(
            "`priority` is {}; the limit is {} (max_priority; 0 is the highest)",
            options.priority, limits.max_priority
        )));
    }
    if options.tenant.len() > MAX_TENANT_BYTES {
        return Err(ServeError::Invalid(format!(
            "the tenant name is {} bytes; the limit is {MAX_TENANT_BYTES}",
            options.tenant.len()
        )));
    }
    check_chunking(options, limits)?;
    match &options.instruction {
        Some(text) => check_text("instruction", text, limits),
        None => Ok(()),
    }
}

/// Chunk options only with truncation CHUNK, and a document's windows at most what a request
/// may have.
fn check_chunking(options: &Options, limits: &RequestLimits) -> Result<(), ServeError> {
    let c = &options.chunking;
    if options.truncation != Truncation::Chunk && !c.is_default() {
        return Err(ServeError::Invalid(format!(
            "`chunking` is set ({c:?}) but `truncation` is not CHUNK; set truncation to CHUNK \
             or leave chunking unset"
        )));
    }
    for (field, value) in [
        ("max_tokens_per_doc", options.max_tokens_per_doc),
        ("max_query_tokens", options.max_query_tokens),
        ("chunking.max_chunks_per_doc", c.max_chunks_per_doc),
    ] {
        if value == Some(0) {
            return Err(ServeError::Invalid(format!(
                "`{field}` is 0; give at least 1, or leave it unset"
            )));
        }
    }
    match c.max_chunks_per_doc {
        Some(n) if n > limits.max_pairs_per_request => Err(ServeError::Invalid(format!(
            "`chunking.max_chunks_per_doc` is {n}; the limit is {} (max_pairs_per_request: \
             every window is a pair)",
            limits.max_pairs_per_request
        ))),
        _ => Ok(()),
    }
}

impl ValidScore {
    pub fn new(
        options: Options,
        pairs: Vec<(String, String)>,
        limits: &RequestLimits,
    ) -> Result<Self, ServeError> {
        check_count("pairs", pairs.len(), limits)?;
        check_options(&options, limits)?;
        for (i, (a, b)) in pairs.iter().enumerate() {
            check_text(&format!("pairs[{i}].text_a"), a, limits)?;
            check_text(&format!("pairs[{i}].text_b"), b, limits)?;
        }
        Ok(Self { options, pairs })
    }
}

/// The rerank-specific fields of a request.
pub struct RerankFields {
    pub query: String,
    pub documents: Vec<(String, String)>,
    pub top_n: usize,
    pub return_documents: bool,
    pub min_score: Option<f32>,
}

impl ValidRerank {
    pub fn new(
        options: Options,
        f: RerankFields,
        limits: &RequestLimits,
    ) -> Result<Self, ServeError> {
        check_count("documents", f.documents.len(), limits)?;
        check_options(&options, limits)?;
        check_text("query", &f.query, limits)?;
        for (i, (id, text)) in f.documents.iter().enumerate() {
            check_id(&format!("documents[{i}].id"), id, limits)?;
            check_text(&format!("documents[{i}].text"), text, limits)?;
        }
        check_min_score(f.min_score)?;
        Ok(Self {
            options,
            query: f.query,
            documents: f.documents,
            top_n: f.top_n,
            return_documents: f.return_documents,
            min_score: f.min_score,
        })
    }
}

pub fn check_min_score(min_score: Option<f32>) -> Result<(), ServeError> {
    match min_score {
        Some(m) if m.is_nan() => Err(ServeError::Invalid(
            "`min_score` is NaN; give a number or leave it unset".into(),
        )),
        _ => Ok(()),
    }
}

pub fn check_count(field: &str, n: usize, limits: &RequestLimits) -> Result<(), ServeError> {
    if n == 0 {
        return Err(ServeError::Invalid(format!(
            "`{field}` is empty; at least one is needed"
        )));
    }
    if n > limits.max_pairs_per_request {
        return Err(ServeError::Invalid(format!(
            "`{field}` has {n} entries; the limit is {} (max_pairs_per_request)",
            limits.max_pairs_per_request
        )));
    }
    Ok(())
}

/// `request_id` or a `Document.id`: bounded, and never echoed back when too long.
pub fn check_id(field: &str, id: &str, limits: &RequestLimits) -> Result<(), ServeError> {
    if id.len() > limits.max_id_bytes {
        return Err(ServeError::Invalid(format!(
            "`{field}` is {} bytes; the limit is {} (max_id_bytes)",
            id.len(),
            limits.max_id_bytes
        )));
    }
    Ok(())
}

/// The `model` field: at most as long as a configured name can be.
pub fn check_model_name(name: &str) -> Result<(), ServeError> {
    if name.len() > MAX_MODEL_NAME_BYTES {
        return Err(ServeError::Invalid(format!(
            "`model` is {} bytes; the limit is {MAX_MODEL_NAME_BYTES}",
            name.len()
        )));
    }
    Ok(())
}

pub fn check_text(field: &str, text: &str, limits: &RequestLimits) -> Result<(), ServeError> {
    if text.len() > limits.max_text_bytes {
        return Err(ServeError::Invalid(format!(
            "`{field}` is {} bytes; the limit is {} (max_text_bytes)",
            text.len(),
            limits.max_text_bytes
        )));
    }
    Ok(())
}
