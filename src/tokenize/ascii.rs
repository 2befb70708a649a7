//! BERT's tokenizer (BertNormalizer, BertPreTokenizer, WordPiece) on ASCII text, without the
//! `tokenizers` crate's per-character Unicode table searches, alignment bookkeeping and
//! per-token strings, which made up most of the server's CPU time per pair.
//!
//! On ASCII the normalizer reduces to: drop control characters (clean_text), tabs and line
//! breaks become spaces, lowercase; Chinese characters and accents cannot occur. The
//! pre-tokenizer splits on whitespace and isolates each ASCII punctuation character (for ASCII,
//! `is_bert_punc` is exactly `is_ascii_punctuation`). WordPiece is the same greedy
//! longest-match-first. Text that is not ASCII, or that holds an added (special) token, which
//! the crate would split out first, goes to the crate: `tests/hostile/tokenize_linear.rs` compares both
//! on random text.

use ahash::AHashMap;
use tokenizers::models::ModelWrapper;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{Model, Tokenizer};

pub struct AsciiWordPiece {
    clean_text: bool,
    lowercase: bool,
    vocab: AHashMap<String, u32>,
    prefix: String,
    unk: u32,
    max_chars: usize,
    /// Contents of the added tokens, as given and lowercased.
    added: Vec<String>,
}

impl AsciiWordPiece {
    /// The fast path for `tokenizer`, if it is exactly a BERT WordPiece tokenizer.
    pub fn new(tokenizer: &Tokenizer) -> Option<Self> {
        let Some(NormalizerWrapper::BertNormalizer(norm)) = tokenizer.get_normalizer() else {
            return None;
        };
        let Some(PreTokenizerWrapper::BertPreTokenizer(_)) = tokenizer.get_pre_tokenizer() else {
            return None;
        };
        let ModelWrapper::WordPiece(wp) = tokenizer.get_model() else {
            return None;
        };
        let vocab: AHashMap<String, u32> = wp.get_vocab().into_iter().collect();
        let unk = *vocab.get(&wp.unk_token)?;
        let added = tokenizer
            .get_added_tokens_decoder()
            .values()
            .flat_map(|t| [t.content.clone(), t.content.to_ascii_lowercase()])
            .collect();
        Some(Self {
            clean_text: norm.clean_text,
            lowercase: norm.lowercase,
            vocab,
            prefix: wp.continuing_subword_prefix.clone(),
            unk,
            max_chars: wp.max_input_chars_per_word,
            added,
        })
    }

    /// The token ids of `text` (no special tokens), or `None` where the crate must decide.
    pub fn encode(&self, text: &str) -> Option<Vec<u32>> {
        if !text.is_ascii() {
            return None;
        }
        let normalized = self.normalize(text);
        let holds_added = |s: &str| self.added.iter().any(|a| !a.is_empty() && s.contains(a));
        if holds_added(text) || holds_added(&normalized) {
            return None;
        }
        let mut ids = Vec::with_capacity(text.len() / 3);
        let mut candidate = String::new();
        let words = normalized
            .split(|c: char| c.is_ascii_whitespace() || c == '\x0b')
            .filter(|w| !w.is_empty());
        for word in words {
            for piece in split_punctuation(word) {
                self.word_piece(piece, &mut ids, &mut candidate);
            }
        }
        Some(ids)
    }

    fn normalize(&self, text: &str) -> String {
        let kept = text.chars().filter_map(|c| {
            if !self.clean_text {
                return Some(c);
            }
            match c {
                '\t' | '\n' | '\r' => Some(' '),
                c if c.is_ascii_control() => None,
                c => Some(c),
            }
        });
        if self.lowercase {
            kept.map(|c| c.to_ascii_lowercase()).collect()
        } else {
            kept.collect()
        }
    }

    /// Greedy longest-match-first; a word with a part in no entry is one unknown token.
    fn word_piece(&self, word: &str, ids: &mut Vec<u32>, candidate: &mut String) {
        if word.len() > self.max_chars {
            ids.push(self.unk);
            return;
        }
        let first = ids.len();
        let mut start = 0;
        while start < word.len() {
            let found = (start + 1..=word.len()).rev().find_map(|end| {
                let id = if start == 0 {
                    self.vocab.get(&word[..end])
                } else {
                    candidate.clear();
                    candidate.push_str(&self.prefix);
                    candidate.push_str(&word[start..end]);
                    self.vocab.get(candidate.as_str())
                };
                id.map(|&id| (id, end))
            });
            let Some((id, end)) = found else {
                ids.truncate(first);
                ids.push(self.unk);
                return;
            };
            ids.push(id);
            start = end;
        }
    }
}

/// `word` cut before and after every ASCII punctuation character.
fn split_punctuation(word: &str) -> impl Iterator<Item = &str> {
    let mut rest = word;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let cut = match rest.find(|c: char| c.is_ascii_punctuation()) {
            Some(0) => 1,
            Some(i) => i,
            None => rest.len(),
        };
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
}
