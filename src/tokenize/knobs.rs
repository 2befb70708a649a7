//! `tokenizer.json` read as hostile input: whoever published the model wrote it. A file the
//! `tokenizers` crate panics on is a clean error, and parameters that make tokenization
//! superlinear are bounded at load, so a value in it cannot turn one long word into seconds of
//! CPU (docs/hardening/templates.md lists what was looked at and why).

use std::path::Path;

use tokenizers::models::ModelWrapper;
use tokenizers::Tokenizer;

use crate::error::{Result, RuntimeError};

/// The most characters WordPiece tries to split into pieces; a longer word is one unknown
/// token. Splitting a word of n characters costs ~n^3 (every start × every end × hashing the
/// candidate), so the file's value is clamped to this. BERT's is 100; every published WordPiece
/// tokenizer we know of uses 100.
pub const MAX_WORDPIECE_CHARS: usize = 200;

/// The longest Unigram piece accepted, in characters. Viterbi walks the vocabulary's trie from
/// every position as deep as the text follows a piece, so a piece of L characters makes a text
/// of n characters cost up to n·L. SentencePiece's default `max_piece_length` is 16.
pub const MAX_UNIGRAM_PIECE_CHARS: usize = 1024;

/// Parses `text`, the tokenizer.json at `path` (read whole by the model directory, at most
/// its declared limit), and bounds its parameters (see [`bound`]).
pub fn parse(path: &Path, text: &str) -> Result<Tokenizer> {
    let err = |message: String| RuntimeError::Tokenizer {
        path: path.to_owned(),
        message,
    };
    // The crate unwraps inside some deserializers (decoders, seen by tests/hostile/fuzz_tokenizer.rs).
    let read = std::panic::catch_unwind(|| text.parse::<Tokenizer>());
    let mut tokenizer = match read {
        Ok(Ok(tokenizer)) => tokenizer,
        Ok(Err(e)) => return Err(err(e.to_string())),
        Err(panic) => {
            let why = crate::error::panic_message(&*panic);
            return Err(err(format!("the tokenizers crate failed on it: {why}")));
        }
    };
    bound(&mut tokenizer, path)?;
    Ok(tokenizer)
}

/// Clamps or refuses the parameters of `tokenizer` (read from `path`) that make its cost
/// superlinear in a text's length.
fn bound(tokenizer: &mut Tokenizer, path: &Path) -> Result<()> {
    match tokenizer.get_model() {
        ModelWrapper::WordPiece(wp) if wp.max_input_chars_per_word > MAX_WORDPIECE_CHARS => {
            tracing::warn!(
                path = %path.display(),
                max_input_chars_per_word = wp.max_input_chars_per_word,
                limit = MAX_WORDPIECE_CHARS,
                "tokenizer.json: WordPiece max_input_chars_per_word clamped to the limit (a \
                 longer word becomes the unknown token)"
            );
            let mut wp = wp.clone();
            wp.max_input_chars_per_word = MAX_WORDPIECE_CHARS;
            tokenizer.with_model(wp);
        }
        ModelWrapper::Unigram(unigram) => {
            let longest = unigram.iter().map(|(piece, _)| piece.chars().count()).max();
            if let Some(chars) = longest.filter(|&c| c > MAX_UNIGRAM_PIECE_CHARS) {
                return Err(RuntimeError::Tokenizer {
                    path: path.to_owned(),
                    message: format!(
                        "model.vocab holds a Unigram piece of {chars} characters; the limit is \
                         {MAX_UNIGRAM_PIECE_CHARS} (tokenizing costs up to text length x the \
                         longest piece)"
                    ),
                });
            }
        }
        _ => {}
    }
    Ok(())
}
