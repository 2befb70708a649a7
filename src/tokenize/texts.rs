//! The texts of one request, before tokenization: separate pairs, or one query shared by many
//! documents (tokenized once, kept for every batch of a stream).

use std::sync::{Arc, OnceLock};

use super::{chunk, Side};

/// The texts of a request: separate pairs, or one query paired with each document.
#[derive(Debug, Clone)]
pub enum Texts {
    Pairs(Vec<(String, String)>),
    Query {
        query: Arc<Query>,
        documents: Vec<String>,
    },
}

/// A query paired with many documents (Rerank, or every batch of a RerankStream): tokenized once.
#[derive(Debug)]
pub struct Query {
    text: String,
    pub(super) side: OnceLock<Side>,
    /// Its tokens for windows (truncation CHUNK).
    pub(super) window_side: OnceLock<chunk::QueryTokens>,
}

impl Query {
    pub fn new(text: String) -> Arc<Self> {
        Arc::new(Self {
            text,
            side: OnceLock::new(),
            window_side: OnceLock::new(),
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

impl Texts {
    /// Pairs.
    pub fn len(&self) -> usize {
        match self {
            Self::Pairs(p) => p.len(),
            Self::Query { documents, .. } => documents.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of text to tokenize (a shared query counts once).
    pub fn bytes(&self) -> usize {
        match self {
            Self::Pairs(p) => p.iter().map(|(a, b)| a.len() + b.len()).sum(),
            Self::Query { query, documents } => {
                query.text.len() + documents.iter().map(String::len).sum::<usize>()
            }
        }
    }
}
