//! Pair tokenization exactly as sentence-transformers does it: the fast tokenizer from
//! `tokenizer.json`, special tokens, token types, longest-first truncation at the model's
//! maximum length and no padding (batches are padded later, per batch).

use tokenizers::parallelism::MaybeParallelRefIterator;
use tokenizers::{Encoding, PostProcessor, Tokenizer};

mod ascii;
mod chat;
mod chunk;
mod cut;
mod knobs;
mod render;
mod stop;
mod template;
mod texts;

use crate::error::{Result, RuntimeError};
use crate::model_dir::files::{ST_CONFIG, TOKENIZER};
use crate::model_dir::ModelDir;
use crate::models::ModelSpec;
use ascii::AsciiWordPiece;
use chat::ChatPairs;
pub use chat::Prompt;
pub use chunk::{window_count, ChunkError, Chunking, DocWindows, Span, Windowed};
pub use cut::Cut;
use render::StepBudget;
pub use render::{FUEL, OUTPUT_PER_INPUT_BYTE, OUTPUT_SLACK_BYTES, STEPS_PER_PAIR};
pub use stop::StopSignal;
use template::Template;
pub use texts::{Query, Texts};

/// One tokenized pair, unpadded.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// Whether longest-first truncation removed tokens.
    pub truncated: bool,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The tokenizer of one model, configured for pairs. Cheap to share (`Sync`).
pub struct PairTokenizer {
    /// No truncation, no padding: truncation is done here, linearly (see `join`).
    plain: Tokenizer,
    max_length: usize,
    /// Special tokens the post-processor adds around a pair.
    added_pair_tokens: usize,
    /// How a pair becomes tokens.
    strategy: Strategy,
}

/// How a pair becomes tokens: one of three, chosen at load.
enum Strategy {
    /// Rendered through the model's chat template, then tokenized.
    Chat(ChatPairs),
    /// Each side tokenized alone and the two joined by the special tokens learnt once from the
    /// post-processor; ASCII text skips the crate when the tokenizer is a BERT WordPiece.
    Learnt {
        template: Template,
        ascii: Option<AsciiWordPiece>,
    },
    /// Each pair through the tokenizer's post-processor (it does not add fixed tokens around
    /// the two sides).
    PostProcessor,
}

impl PairTokenizer {
    /// Loads `tokenizer.json`. The maximum length is `max_length` when given, else the one
    /// sentence-transformers would use (`sentence_bert_config.json` `max_seq_length`, else
    /// `tokenizer_config.json` `model_max_length`), never above what the position embeddings allow.
    pub fn load(dir: &ModelDir, spec: &ModelSpec, max_length: Option<usize>) -> Result<Self> {
        let path = dir.path(TOKENIZER);
        let err = |message: String| RuntimeError::Tokenizer {
            path: path.clone(),
            message,
        };
        let Some(text) = dir.tokenizer_json()? else {
            return Err(RuntimeError::MissingFile {
                dir: dir.dir().to_owned(),
                what: "no tokenizer.json (crossrank needs a fast tokenizer file)".into(),
            });
        };
        let mut tokenizer = knobs::parse(&path, text)?;
        let configured = max_length.or_else(|| configured_max_length(dir));
        let max_length = configured
            .unwrap_or(spec.max_positions)
            .min(spec.max_positions);
        if max_length < 4 {
            return Err(err(format!(
                "maximum length {max_length} leaves no room for a pair"
            )));
        }
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| err(e.to_string()))?;
        let added_pair_tokens = tokenizer
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(true));
        // The crate's post-processors index and unwrap on some hostile settings (a template
        // naming a special token it does not define): such a tokenizer is refused here.
        let template =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Template::learn(&tokenizer)))
                .map_err(|_| {
                    err(
                "its post-processor fails on a pair (the tokenizers crate panicked; see the \
                 log): the tokenizer.json is inconsistent"
                    .into(),
            )
                })?;
        let strategy = Strategy::choose(dir, &tokenizer, template)?;
        Ok(Self {
            plain: tokenizer,
            max_length,
            added_pair_tokens,
            strategy,
        })
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Whether ASCII text skips the crate (BERT WordPiece tokenizers).
    pub fn has_ascii_fast_path(&self) -> bool {
        matches!(self.strategy, Strategy::Learnt { ascii: Some(_), .. })
    }

    /// Bytes tokenizing `texts` handles, for admission: the texts themselves, and with a chat
    /// template each pair's rendered prompt (the template, the instruction and, for a shared
    /// query, the query again).
    pub fn work_bytes(&self, texts: &Texts, instruction: Option<&str>) -> usize {
        let Strategy::Chat(chat) = &self.strategy else {
            return texts.bytes();
        };
        let per_pair = chat.overhead_bytes(instruction);
        let repeated = match texts {
            Texts::Pairs(_) => 0,
            Texts::Query { query, .. } => query.text().len(),
        };
        texts.bytes().saturating_add(
            texts
                .len()
                .saturating_mul(per_pair.saturating_add(repeated)),
        )
    }

    /// Whether pairs are rendered through the model's chat template.
    pub fn uses_chat_template(&self) -> bool {
        matches!(self.strategy, Strategy::Chat(_))
    }

    /// Whether pairs get their special tokens from the learnt template (else from the
    /// tokenizer's post-processor, pair by pair).
    pub fn joins_by_template(&self) -> bool {
        matches!(self.strategy, Strategy::Learnt { .. })
    }

    /// Tokenizes (text_a, text_b) pairs, in parallel across pairs.
    pub fn encode<S: AsRef<str>>(&self, pairs: &[(S, S)]) -> Result<Vec<Encoded>> {
        self.encode_instructed(pairs, None, Cut::default())
    }

    /// [`Self::encode`] with a chat template's system message (see [`Control::instruction`])
    /// and caps on the texts' tokens.
    pub fn encode_instructed<S: AsRef<str>>(
        &self,
        pairs: &[(S, S)],
        instruction: Option<&str>,
        cut: Cut,
    ) -> Result<Vec<Encoded>> {
        let texts = Texts::Pairs(
            pairs
                .iter()
                .map(|(a, b)| (a.as_ref().to_owned(), b.as_ref().to_owned()))
                .collect(),
        );
        let ctl = Control {
            instruction,
            cut,
            ..Control::default()
        };
        self.encode_with(&texts, &ctl).map_err(Stop::into_error)
    }

    /// Tokenizes in chunks, in parallel within a chunk; before every pair it asks `ctl` whether
    /// to go on, and in reject mode it stops after the first chunk with a truncated pair. A shared
    /// query is tokenized once. Time and memory are linear in the texts' bytes.
    ///
    /// A panic inside the `tokenizers` crate (it indexes and unwraps on some hostile
    /// tokenizer.json settings, e.g. a post-processor naming a special token it does not define)
    /// fails this call, not the thread or the process.
    pub fn encode_with(&self, texts: &Texts, ctl: &Control) -> Result<Vec<Encoded>, Stop> {
        guarded(|| self.encode_unguarded(texts, ctl))
    }

    fn encode_unguarded(&self, texts: &Texts, ctl: &Control) -> Result<Vec<Encoded>, Stop> {
        if let Strategy::Chat(chat) = &self.strategy {
            return self.encode_chat(chat, texts, ctl);
        }
        let mut out = Vec::with_capacity(texts.len());
        match texts {
            Texts::Pairs(pairs) => {
                for chunk in pairs.chunks(CHUNK_PAIRS) {
                    let encoded = chunk
                        .maybe_par_iter()
                        .map(|(a, b)| {
                            ctl.go_on()?;
                            self.pair(a, b, ctl.cut).map_err(Stop::Failed)
                        })
                        .collect();
                    self.keep(&mut out, encoded, ctl)?;
                }
            }
            Texts::Query { query, documents } => {
                ctl.go_on()?;
                let query = self.query_side(query, ctl.cut).map_err(Stop::Failed)?;
                for chunk in documents.chunks(CHUNK_PAIRS) {
                    let encoded = chunk
                        .maybe_par_iter()
                        .map(|d| {
                            ctl.go_on()?;
                            let side = self.side(d, 1, ctl.cut).map_err(Stop::Failed)?;
                            self.join(query, side, ctl.cut).map_err(Stop::Failed)
                        })
                        .collect();
                    self.keep(&mut out, encoded, ctl)?;
                }
            }
        }
        Ok(out)
    }

    /// One separate pair's tokens.
    fn pair(&self, a: &str, b: &str, cut: Cut) -> Result<Encoded> {
        let (a, b) = self.both_sides(a, b, cut);
        self.join(&a?, b?, cut)
    }

    /// [`Self::encode_with`] for a model with a chat template: each pair rendered, then tokenized.
    fn encode_chat(
        &self,
        chat: &ChatPairs,
        texts: &Texts,
        ctl: &Control,
    ) -> Result<Vec<Encoded>, Stop> {
        let pairs: Vec<(&str, &str)> = match texts {
            Texts::Pairs(pairs) => pairs
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect(),
            Texts::Query { query, documents } => documents
                .iter()
                .map(|d| (query.text(), d.as_str()))
                .collect(),
        };
        if ctl.cut.doc_tokens.is_some() || ctl.cut.query_tokens.is_some() {
            return Err(Stop::Failed(RuntimeError::Tokenize(
                "a cap on document or query tokens does not apply to a model that renders pairs through \
                 a chat template"
                    .into(),
            )));
        }
        ctl.go_on()?;
        let prompt = chat.prompt(&self.plain, ctl.instruction, &ctl.stop)?;
        let budget = StepBudget::for_pairs(pairs.len());
        let mut out = Vec::with_capacity(pairs.len());
        for chunk in pairs.chunks(CHUNK_PAIRS) {
            let encoded = chunk
                .maybe_par_iter()
                .map(|&pair| {
                    ctl.go_on()?;
                    let limits = (&ctl.stop, &budget);
                    let cut = (self.max_length, ctl.cut.left);
                    chat.encode(&self.plain, &prompt, pair, cut, limits)
                })
                .collect();
            self.keep(&mut out, encoded, ctl)?;
        }
        Ok(out)
    }

    /// Appends a chunk's pairs, or stops at its first truncated pair in reject mode.
    fn keep(
        &self,
        out: &mut Vec<Encoded>,
        chunk: Result<Vec<Encoded>, Stop>,
        ctl: &Control,
    ) -> Result<(), Stop> {
        let chunk = chunk?;
        if ctl.reject_truncated {
            if let Some(i) = chunk.iter().position(|e| e.truncated) {
                return Err(Stop::Truncated(out.len() + i));
            }
        }
        out.extend(chunk);
        Ok(())
    }

    /// The query's tokens, computed on first use (and kept for every document).
    /// A query belongs to one session, whose cut does not change.
    fn query_side<'q>(&self, query: &'q Query, cut: Cut) -> Result<&'q Side> {
        if let Some(side) = query.side.get() {
            return Ok(side);
        }
        let side = self.side(query.text(), 0, cut)?;
        Ok(query.side.get_or_init(|| side))
    }

    /// Tokens a pair may keep besides the special tokens.
    fn budget(&self) -> usize {
        self.max_length.saturating_sub(self.added_pair_tokens)
    }

    /// Both sides of a pair, at once on two threads when tokenizer parallelism is on (a single
    /// long pair then takes half the time).
    fn both_sides(&self, a: &str, b: &str, cut: Cut) -> (Result<Side>, Result<Side>) {
        if tokenizers::parallelism::get_parallelism() {
            rayon::join(|| self.side(a, 0, cut), || self.side(b, 1, cut))
        } else {
            (self.side(a, 0, cut), self.side(b, 1, cut))
        }
    }

    /// One side alone, without special tokens, as `tokenizers` encodes it within a pair; the
    /// second text (`type_id` 1) is the document `cut` may cap. Only `budget` tokens can survive
    /// truncation (the first ones, or the last when cutting from the left): the rest is dropped
    /// at once.
    fn side(&self, text: &str, type_id: u32, cut: Cut) -> Result<Side> {
        if let Strategy::Learnt { ascii, .. } = &self.strategy {
            let mut ids = match ascii.as_ref().and_then(|a| a.encode(text)) {
                Some(ids) => ids,
                None => self.crate_encode(text)?.get_ids().to_vec(),
            };
            let full_len = cut.capped(ids.len(), type_id != 0);
            cut.keep(&mut ids, full_len.min(self.budget()));
            return Ok(Side {
                tokens: Tokens::Ids(ids),
                full_len,
            });
        }
        let encoding = self.crate_encode(text)?;
        let full_len = cut.capped(encoding.len(), type_id != 0);
        let keep = full_len.min(self.budget());
        let mut encoding = if keep < encoding.len() {
            cut.encoding(&encoding, keep)
        } else {
            encoding
        };
        if type_id != 0 {
            encoding.set_type_ids(vec![type_id; encoding.len()]);
        }
        Ok(Side {
            tokens: Tokens::Encoding(Box::new(encoding)),
            full_len,
        })
    }

    fn crate_encode(&self, text: &str) -> Result<Encoding> {
        self.plain
            .encode_fast(text, false)
            .map_err(|e| RuntimeError::Tokenize(e.to_string()))
    }

    /// Exactly the tokens of `Tokenizer::encode((a, b), true)` under longest-first truncation
    /// (in `cut`'s direction): both sides cut to the lengths `tokenizers` keeps, then given the
    /// special-token template. (The crate itself builds every combination of the two sides'
    /// overflow chunks, which is quadratic in the texts.) A document cut to its cap alone is
    /// not counted as truncated: the caller asked for it.
    fn join(&self, first: &Side, second: Side, cut: Cut) -> Result<Encoded> {
        let (n1, n2) = longest_first(first.full_len, second.full_len, self.budget());
        let truncated = n1 < first.full_len || n2 < second.full_len;
        let (a, b) = match (&self.strategy, &first.tokens, &second.tokens) {
            (Strategy::Learnt { template, .. }, Tokens::Ids(a), Tokens::Ids(b)) => {
                let (a, b) = (cut.slice(a, n1), cut.slice(b, n2));
                return Ok(template.apply(a, b, truncated));
            }
            (Strategy::PostProcessor, Tokens::Encoding(a), Tokens::Encoding(b)) => (a, b),
            _ => {
                return Err(RuntimeError::Tokenize(
                    "internal: the two sides of a pair were tokenized differently".into(),
                ))
            }
        };
        self.post_processed(cut.encoding(a, n1), cut.encoding(b, n2), truncated)
    }

    /// Two sides joined by the tokenizer's post-processor, with its special tokens and types.
    fn post_processed(&self, a: Encoding, b: Encoding, truncated: bool) -> Result<Encoded> {
        let joined = self
            .plain
            .post_process(a, Some(b), true)
            .map_err(|e| RuntimeError::Tokenize(e.to_string()))?;
        Ok(Encoded {
            ids: joined.get_ids().to_vec(),
            type_ids: joined.get_type_ids().to_vec(),
            truncated,
        })
    }
}

/// `f`, with a panic inside the `tokenizers` crate turned into a failure of this call.
fn guarded<T>(f: impl FnOnce() -> Result<T, Stop>) -> Result<T, Stop> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let why = crate::error::panic_message(&*panic);
        Err(Stop::Failed(RuntimeError::Tokenize(format!(
            "the model's tokenizer failed on this input (its tokenizer.json is not one the \
             tokenizers crate handles): {why}"
        ))))
    })
}

/// One side of a pair, possibly already cut; `full_len` is its length before any cut.
#[derive(Debug)]
struct Side {
    tokens: Tokens,
    full_len: usize,
}

/// A side's tokens: ids alone where the template joins the pair, else the crate's encoding.
#[derive(Debug)]
enum Tokens {
    Ids(Vec<u32>),
    Encoding(Box<Encoding>),
}

/// Pairs tokenized in parallel between two looks for a truncated pair in reject mode.
const CHUNK_PAIRS: usize = 64;

/// How [`PairTokenizer::encode_with`] may stop early.
#[derive(Default)]
pub struct Control<'a> {
    /// Stop at the first truncated pair (the request's truncation is REJECT).
    pub reject_truncated: bool,
    /// Checked before every pair and within a chat template's render: the request was cancelled
    /// or its deadline passed.
    pub stop: StopSignal,
    /// The system message for a chat template: `None` the model's default prompt, `Some("")`
    /// none (ignored by models without a template).
    pub instruction: Option<&'a str>,
    /// A cap on document tokens and the side truncation cuts from.
    pub cut: Cut,
}

impl Control<'_> {
    fn go_on(&self) -> Result<(), Stop> {
        match self.stop.is_raised() {
            true => Err(Stop::Cancelled),
            false => Ok(()),
        }
    }
}

impl Stop {
    /// The stop as an error of a caller without a request (the CLI, the library).
    pub fn into_error(self) -> RuntimeError {
        match self {
            Self::Failed(e) => e,
            Self::Truncated(i) => RuntimeError::Tokenize(format!("pair {i} was truncated")),
            Self::Cancelled => RuntimeError::Tokenize("cancelled".into()),
            Self::Chunk(e) => RuntimeError::Tokenize(e.to_string()),
        }
    }
}

/// Why tokenization stopped before the last pair.
#[derive(Debug)]
pub enum Stop {
    /// In reject mode: the first pair (index in the input) that would be truncated.
    Truncated(usize),
    Cancelled,
    Failed(RuntimeError),
    /// Chunking: a document or the call over a window limit, or a query leaving no room.
    Chunk(ChunkError),
}

/// The lengths `tokenizers` keeps of two sides of `n1` and `n2` tokens when at most `max` fit
/// (`truncate_encodings`, strategy LongestFirst): the longer side is cut first, and when both are
/// too long each keeps half (the second side gets the odd token).
pub fn longest_first(n1: usize, n2: usize, max: usize) -> (usize, usize) {
    if n1 + n2 <= max {
        return (n1, n2);
    }
    let mut short = n1.min(n2);
    let mut long = if short > max {
        short
    } else {
        short.max(max - short)
    };
    if short + long > max {
        short = max / 2;
        long = short + max % 2;
    }
    let (short, long) = (short.min(n1.min(n2)), long.min(n1.max(n2)));
    if n1 > n2 {
        (long, short)
    } else {
        (short, long)
    }
}

/// The maximum length a model's files set: `max_seq_length` of `sentence_bert_config.json`,
/// else `model_max_length` of `tokenizer_config.json`. A file that cannot be read gives no
/// length here (the chat template's reader refuses it with the reason).
fn configured_max_length(dir: &ModelDir) -> Option<usize> {
    length_in(dir.sbert_config(), "max_seq_length")
        .or_else(|| length_in(dir.tokenizer_config(), "model_max_length"))
}

fn length_in(config: Result<Option<&serde_json::Value>>, key: &str) -> Option<usize> {
    let value = config
        .inspect_err(|e| tracing::warn!("{e}; its length setting is ignored"))
        .ok()??;
    // transformers writes a huge sentinel when the length is unknown.
    value
        .get(key)?
        .as_u64()
        .filter(|&n| n < 1 << 30)
        .map(|n| n as usize)
}

impl Strategy {
    /// The chat template when the model has one that renders pairs; else the `template`
    /// learnt from the post-processor (with the ASCII fast path when it applies); else the
    /// post-processor itself. A default prompt without a chat template is refused.
    fn choose(dir: &ModelDir, tokenizer: &Tokenizer, template: Option<Template>) -> Result<Self> {
        if let Some(chat) = ChatPairs::load(dir, tokenizer)? {
            return Ok(Self::Chat(chat));
        }
        if let Some(prompt) = chat::default_prompt(dir)? {
            return Err(RuntimeError::Config {
                path: dir.path(ST_CONFIG),
                message: format!(
                    "a default prompt ({prompt:?}) for a model that does not render pairs \
                     through a chat template: sentence-transformers prepends it to every query, \
                     which crossrank does not do"
                ),
            });
        }
        Ok(match template {
            Some(template) => Self::Learnt {
                template,
                ascii: AsciiWordPiece::new(tokenizer),
            },
            None => Self::PostProcessor,
        })
    }
}
