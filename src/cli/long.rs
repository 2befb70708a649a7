//! The truncation flags of `score` and `rerank`: caps on a text's tokens, and long documents
//! scored in windows and pooled (`--truncation chunk`), as the server's truncation CHUNK.

use clap::{Args, ValueEnum};
use crossrank::engine::request::DEFAULT_MAX_CHUNKS_PER_DOC;
use crossrank::pooling::Pooling;
use crossrank::runtime::Chunked;
use crossrank::tokenize::{Chunking, Cut, Span};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TruncationArg {
    /// Cut each pair longest-first at the model's max length, like sentence-transformers.
    LongestFirst,
    /// Score every window of a long document and pool.
    Chunk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PoolingArg {
    Max,
    Mean,
}

#[derive(Args, Debug, Clone)]
pub struct LongArgs {
    /// How a pair longer than the model's max length is handled.
    #[arg(long, value_enum, default_value = "longest-first")]
    truncation: TruncationArg,
    /// Each document (second text) keeps at most this many tokens.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    max_tokens_per_doc: Option<u32>,
    /// Each query (first text) keeps at most this many tokens (with chunk: default half of
    /// what the max length leaves besides special tokens).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    max_query_tokens: Option<u32>,
    /// With chunk: tokens each window repeats from the one before it.
    #[arg(long, default_value_t = 0)]
    chunk_overlap: u32,
    /// With chunk: how window scores become a document's score.
    #[arg(long, value_enum, default_value = "max")]
    chunk_pooling: PoolingArg,
    /// With chunk: windows a document may have (more is an error).
    #[arg(long, default_value_t = DEFAULT_MAX_CHUNKS_PER_DOC as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_chunks_per_doc: u32,
}

impl LongArgs {
    pub fn cut(&self) -> Cut {
        Cut {
            doc_tokens: self.max_tokens_per_doc.map(|n| n as usize),
            query_tokens: self.max_query_tokens.map(|n| n as usize),
            left: false,
        }
    }

    /// The windows and pooling of `--truncation chunk`; `None` for longest-first.
    pub fn chunked(&self) -> Option<Chunked> {
        (self.truncation == TruncationArg::Chunk).then(|| Chunked {
            chunking: Chunking {
                overlap: self.chunk_overlap as usize,
                max_chunks_per_doc: self.max_chunks_per_doc as usize,
                max_windows: usize::MAX,
            },
            pooling: match self.chunk_pooling {
                PoolingArg::Max => Pooling::Max,
                PoolingArg::Mean => Pooling::Mean,
            },
            cut: self.cut(),
        })
    }
}

/// A scored input: its scores, and with chunking the window that scored highest.
pub struct Scored {
    pub scores: Vec<f32>,
    pub best: Option<Span>,
}

/// `best` as JSON: `{index, start, end}` (characters of the document).
pub fn chunk_json(best: Option<Span>) -> serde_json::Value {
    match best {
        Some(s) => serde_json::json!({ "index": s.index, "start": s.start, "end": s.end }),
        None => serde_json::Value::Null,
    }
}

/// `best` as a TSV column: `index:start-end`.
pub fn chunk_column(best: Span) -> String {
    format!("{}:{}-{}", best.index, best.start, best.end)
}
