//! Long documents as windows (truncation CHUNK), at the token level. The query is tokenized once
//! without special tokens and cut to its cap; each document is tokenized once, without special
//! tokens and with character offsets, and cut to `max_tokens_per_doc`. With `q` query tokens and
//! `s` special tokens around a pair, a window holds `W = max_length - q - s` document tokens and
//! windows start every `W - overlap` tokens until the document's last token is covered (the last
//! one may be shorter). Each window becomes the pair (query, window) exactly as the model's
//! post-processor builds a pair from two token sequences, so a document that fits one window
//! gives the same tokens as without chunking.
//!
//! Counting comes before building: every document's window count is known from its length, the
//! limits are checked, and only then are the windows (slices of the tokens) made. Time and
//! memory stay linear in the texts' bytes, and the windows of one call are at most
//! `max_windows` pairs of at most `max_length` tokens.

use tokenizers::parallelism::MaybeParallelRefIterator;
use tokenizers::Encoding;

use super::cut::range;
use super::{Control, Encoded, PairTokenizer, Query, Stop, Strategy, Texts, CHUNK_PAIRS};
use crate::error::{Result, RuntimeError};

/// How a call's documents are cut into windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunking {
    /// Tokens each window repeats from the one before it.
    pub overlap: usize,
    /// Windows one document may have.
    pub max_chunks_per_doc: usize,
    /// Windows the whole call may have.
    pub max_windows: usize,
}

/// One window of a document: its position among the document's windows and the characters
/// (Unicode code points of the document text) its tokens cover, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub index: u32,
    pub start: u32,
    pub end: u32,
}

/// The windows of one call: every window's pair, document after document, and each document's
/// window spans.
#[derive(Debug, Default)]
pub struct Windowed {
    pub pairs: Vec<Encoded>,
    pub docs: Vec<DocWindows>,
}

/// One document's windows.
#[derive(Debug, Clone)]
pub struct DocWindows {
    pub spans: Vec<Span>,
    /// Whether its query was cut to the query cap.
    pub truncated: bool,
}

/// Why a call cannot be cut into windows; `index` is the document's (or pair's) in the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkError {
    TooManyChunks {
        index: usize,
        count: usize,
        limit: usize,
    },
    TooManyWindows {
        count: usize,
        limit: usize,
    },
    /// The query (after its cap) and the special tokens fill the model's max length.
    NoRoom {
        index: usize,
        query_tokens: usize,
        special_tokens: usize,
        max_length: usize,
    },
    /// The overlap is more than half the window (at `overlap >= W` the windows would not even
    /// advance).
    Overlap {
        index: usize,
        overlap: usize,
        window: usize,
    },
}

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::TooManyChunks {
                index,
                count,
                limit,
            } => write!(
                f,
                "document {index} needs {count} windows; the limit is {limit} (max_chunks_per_doc)"
            ),
            Self::TooManyWindows { count, limit } => {
                write!(f, "{count} windows in all; the limit is {limit}")
            }
            Self::NoRoom {
                index,
                query_tokens,
                special_tokens,
                max_length,
            } => write!(
                f,
                "document {index}: its query keeps {query_tokens} tokens, which with \
                 {special_tokens} special tokens leaves no room for a window in the max length \
                 of {max_length}"
            ),
            Self::Overlap {
                index,
                overlap,
                window,
            } => write!(
                f,
                "document {index}: an overlap of {overlap} tokens is more than half its \
                 windows of {window} tokens"
            ),
        }
    }
}

/// A query cut to its cap: its tokens and whether the cap removed any.
#[derive(Debug)]
pub(super) struct QueryTokens {
    encoding: Encoding,
    truncated: bool,
}

/// A document's tokens (with character offsets) and its window plan.
struct Planned {
    tokens: Encoding,
    window: usize,
    /// Tokens from one window's start to the next one's.
    step: usize,
    count: usize,
}

impl PairTokenizer {
    /// The query tokens a window pair keeps when the request sets no cap: half of what a pair
    /// leaves besides its special tokens.
    pub fn default_query_tokens(&self) -> usize {
        self.budget() / 2
    }

    /// Special tokens around a pair.
    pub fn special_pair_tokens(&self) -> usize {
        self.added_pair_tokens
    }

    /// Cuts every document of `texts` into windows paired with its query (the first text of
    /// each pair for separate pairs). Stops like [`Self::encode_with`]; a document over its
    /// window limit, or a call over its total, stops with [`Stop::Chunk`] before any window
    /// is built.
    pub fn encode_windows(
        &self,
        texts: &Texts,
        ctl: &Control,
        chunking: Chunking,
    ) -> Result<Windowed, Stop> {
        super::guarded(|| self.windows_unguarded(texts, ctl, chunking))
    }

    fn windows_unguarded(
        &self,
        texts: &Texts,
        ctl: &Control,
        chunking: Chunking,
    ) -> Result<Windowed, Stop> {
        if matches!(self.strategy, Strategy::Chat(_)) {
            return Err(Stop::Failed(RuntimeError::Tokenize(
                "chunking does not apply to a model that renders pairs through a chat template"
                    .into(),
            )));
        }
        let owned: Vec<QueryTokens>;
        let (queries, documents): (Vec<&QueryTokens>, Vec<&str>) = match texts {
            Texts::Query { query, documents } => {
                ctl.go_on()?;
                let q = self.cached_query(query, ctl).map_err(Stop::Failed)?;
                (vec![q], documents.iter().map(String::as_str).collect())
            }
            Texts::Pairs(pairs) => {
                owned = self.in_chunks(pairs, ctl, |(a, _)| {
                    self.query_tokens(a, ctl).map_err(Stop::Failed)
                })?;
                (
                    owned.iter().collect(),
                    pairs.iter().map(|(_, b)| b.as_str()).collect(),
                )
            }
        };
        let query_of = |i: usize| queries[if queries.len() == 1 { 0 } else { i }];
        let indexed: Vec<(usize, &str)> = documents.into_iter().enumerate().collect();
        let planned = self.in_chunks(&indexed, ctl, |&(i, text)| {
            self.plan(i, query_of(i), text, ctl, chunking)
        })?;
        check_counts(&planned, chunking)?;
        let built = self.in_chunks(&indexed, ctl, |&(i, _)| {
            self.build(query_of(i), &planned[i]).map_err(Stop::Failed)
        })?;
        let mut out = Windowed {
            pairs: Vec::with_capacity(planned.iter().map(|p| p.count).sum()),
            docs: Vec::with_capacity(built.len()),
        };
        for (i, (pairs, spans)) in built.into_iter().enumerate() {
            out.pairs.extend(pairs);
            out.docs.push(DocWindows {
                spans,
                truncated: query_of(i).truncated,
            });
        }
        Ok(out)
    }

    /// `f` over `items` in chunks, in parallel within a chunk, stopping at the first error.
    fn in_chunks<I: Sync, T: Send>(
        &self,
        items: &[I],
        ctl: &Control,
        f: impl Fn(&I) -> Result<T, Stop> + Sync + Send,
    ) -> Result<Vec<T>, Stop> {
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(CHUNK_PAIRS) {
            let done: Result<Vec<T>, Stop> = chunk
                .maybe_par_iter()
                .map(|item| {
                    ctl.go_on()?;
                    f(item)
                })
                .collect();
            out.extend(done?);
        }
        Ok(out)
    }

    /// A shared query's window tokens, computed on first use (a query belongs to one session,
    /// whose cut does not change).
    fn cached_query<'q>(&self, query: &'q Query, ctl: &Control) -> Result<&'q QueryTokens> {
        if let Some(q) = query.window_side.get() {
            return Ok(q);
        }
        let q = self.query_tokens(query.text(), ctl)?;
        Ok(query.window_side.get_or_init(|| q))
    }

    /// A query's tokens cut to the request's cap, or to [`Self::default_query_tokens`].
    fn query_tokens(&self, text: &str, ctl: &Control) -> Result<QueryTokens> {
        let encoding = self.crate_encode(text)?;
        let cap = ctl.cut.query_tokens.unwrap_or(self.default_query_tokens());
        let keep = encoding.len().min(cap);
        Ok(QueryTokens {
            truncated: keep < encoding.len(),
            encoding: ctl.cut.encoding(&encoding, keep),
        })
    }

    /// A document's tokens and how many windows it needs.
    fn plan(
        &self,
        index: usize,
        query: &QueryTokens,
        text: &str,
        ctl: &Control,
        chunking: Chunking,
    ) -> Result<Planned, Stop> {
        let q = query.encoding.len();
        let Some(window) = self.budget().checked_sub(q).filter(|w| *w > 0) else {
            return Err(Stop::Chunk(ChunkError::NoRoom {
                index,
                query_tokens: q,
                special_tokens: self.added_pair_tokens,
                max_length: self.max_length,
            }));
        };
        // At most half a window: each token is then scored in at most two windows, so the
        // model's work stays within a small multiple of the document's tokens.
        if 2 * chunking.overlap > window {
            return Err(Stop::Chunk(ChunkError::Overlap {
                index,
                overlap: chunking.overlap,
                window,
            }));
        }
        let tokens = self
            .plain
            .encode_char_offsets(text, false)
            .map_err(|e| Stop::Failed(RuntimeError::Tokenize(e.to_string())))?;
        let keep = ctl.cut.capped(tokens.len(), true);
        let tokens = if keep < tokens.len() {
            ctl.cut.encoding(&tokens, keep)
        } else {
            tokens
        };
        let count = window_count(tokens.len(), window, chunking.overlap);
        Ok(Planned {
            tokens,
            window,
            step: window - chunking.overlap,
            count,
        })
    }

    /// The window pairs and spans of one planned document.
    fn build(&self, query: &QueryTokens, doc: &Planned) -> Result<(Vec<Encoded>, Vec<Span>)> {
        let n = doc.tokens.len();
        let mut pairs = Vec::with_capacity(doc.count);
        let mut spans = Vec::with_capacity(doc.count);
        for k in 0..doc.count {
            let start = k * doc.step;
            let end = (start + doc.window).min(n);
            let window = range(&doc.tokens, start..end);
            spans.push(span(k, &window));
            pairs.push(self.window_pair(query, window)?);
        }
        Ok((pairs, spans))
    }

    /// The pair (query, window) as the model's post-processor builds it.
    fn window_pair(&self, query: &QueryTokens, mut window: Encoding) -> Result<Encoded> {
        if let Strategy::Learnt { template, .. } = &self.strategy {
            return Ok(template.apply(query.encoding.get_ids(), window.get_ids(), query.truncated));
        }
        window.set_type_ids(vec![1; window.len()]);
        self.post_processed(query.encoding.clone(), window, query.truncated)
    }
}

/// Windows of `window` tokens advancing by `window - overlap` that cover `n` tokens (at least
/// one, for an empty document).
pub fn window_count(n: usize, window: usize, overlap: usize) -> usize {
    if n <= window {
        return 1;
    }
    1 + (n - window).div_ceil(window - overlap)
}

/// The characters window `k` covers: from its first token's start to its last token's end.
fn span(k: usize, window: &Encoding) -> Span {
    let offsets = window.get_offsets();
    let (start, end) = match (offsets.first(), offsets.last()) {
        (Some(first), Some(last)) => (first.0, last.1),
        _ => (0, 0),
    };
    Span {
        index: k as u32,
        start: start as u32,
        end: end as u32,
    }
}

/// Every document within its window limit and the call within its total; the first document
/// over, else the total.
fn check_counts(planned: &[Planned], chunking: Chunking) -> Result<(), Stop> {
    if let Some((index, p)) = planned
        .iter()
        .enumerate()
        .find(|(_, p)| p.count > chunking.max_chunks_per_doc)
    {
        return Err(Stop::Chunk(ChunkError::TooManyChunks {
            index,
            count: p.count,
            limit: chunking.max_chunks_per_doc,
        }));
    }
    let count: usize = planned.iter().map(|p| p.count).sum();
    if count > chunking.max_windows {
        return Err(Stop::Chunk(ChunkError::TooManyWindows {
            count,
            limit: chunking.max_windows,
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::window_count;

    /// Windows start every `W - overlap` tokens until the last token is covered: 10 tokens in
    /// windows of 4 with an overlap of 1 are [0,4) [3,7) [6,10), as the tokenizers library's
    /// `Encoding.truncate(4, stride=1)` cuts them.
    #[test]
    fn windows_cover_the_document_and_stop_there() {
        assert_eq!(window_count(0, 4, 0), 1);
        assert_eq!(window_count(4, 4, 0), 1);
        assert_eq!(window_count(5, 4, 0), 2);
        assert_eq!(window_count(10, 4, 1), 3);
        assert_eq!(window_count(11, 4, 1), 4);
        assert_eq!(window_count(65_536, 36, 0), 1821);
    }
}
