//! Mutation fuzzing of request decode → validation → tokenization with real tokenizers, for a
//! bounded time (`CROSSRANK_FUZZ_SECS`, default 60; `scripts/fuzz.sh` runs it longer).
//!
//! Seeds are valid Score and Rerank messages; each input is a seed mutated at the byte level
//! (bit flips, insertions, deletions, splices, huge length prefixes, invalid UTF-8) and sent to a
//! real in-process server over gRPC. Every input must be answered within its deadline with OK or
//! a status of the documented kinds, and nothing of this test may panic (see `ours`). Between server
//! inputs, random Unicode pairs are tokenized and compared with the `tokenizers` crate's own pair
//! encoding (the oracle). Coverage-guided fuzzing (cargo-fuzz) needs a nightly toolchain, which
//! this project cannot rely on; this is random mutation fuzzing on stable.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::raw;
use common::server::{model, TestServer};
use crossrank::api::pb;
use crossrank::config::RequestLimits;
use crossrank::runtime::{CrossEncoder, LoadOptions};
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tonic::Code;

const PIECES: &[&str] = &[
    "the",
    " ",
    "search",
    "!",
    "é",
    "e\u{301}",
    "日本語",
    "🦀",
    "\u{200b}",
    "\t",
    "\n",
    "\u{0}",
    "Zürich",
    "??",
    "...",
    "[CLS]",
    "[SEP]",
    "<s>",
    "</s>",
    "<mask>",
    "ﬁ",
    "İ",
    "\u{feff}",
    "a",
];

fn text(rng: &mut impl Rng, max_pieces: usize) -> String {
    let n = rng.random_range(0..=max_pieces);
    (0..n)
        .map(|_| PIECES[rng.random_range(0..PIECES.len())])
        .collect()
}

fn seeds(rng: &mut impl Rng) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    for _ in 0..8 {
        let pairs = (0..rng.random_range(1..6))
            .map(|_| pb::Pair {
                text_a: text(rng, 40),
                text_b: text(rng, 200),
            })
            .collect();
        let score = pb::ScoreRequest {
            model: ["ce", "bpe", "unigram", ""][rng.random_range(0..4)].into(),
            pairs,
            truncation: rng.random_range(0..2),
            request_id: text(rng, 3),
            ..Default::default()
        };
        out.push(("Score", score.encode_to_vec()));
        let rerank = pb::RerankRequest {
            model: ["ce", "bpe", "unigram"][rng.random_range(0..3)].into(),
            query: text(rng, 60),
            documents: (0..rng.random_range(1..6))
                .map(|i| pb::Document {
                    id: format!("d{i}"),
                    text: text(rng, 200),
                })
                .collect(),
            top_n: rng.random_range(0..4),
            min_score: rng.random_bool(0.3).then(|| rng.random_range(-1.0..1.0)),
            return_documents: rng.random_bool(0.5),
            ..Default::default()
        };
        out.push(("Rerank", rerank.encode_to_vec()));
    }
    out
}

/// A well-formed message with random field values around every limit (counts, text and id
/// sizes, enum values, model names): it reaches validation and tokenization.
/// Chunk options, half the time, some of them out of range.
fn chunk_options(rng: &mut impl Rng) -> Option<pb::ChunkOptions> {
    rng.random_bool(0.5).then(|| pb::ChunkOptions {
        overlap_tokens: rng.random_range(0..40),
        max_chunks_per_doc: rng.random_range(0..80),
        pooling: rng.random_range(0..3),
    })
}

fn structured(rng: &mut impl Rng) -> (&'static str, Vec<u8>) {
    let model = ["ce", "bpe", "unigram", "", "nope", "ce\n"][rng.random_range(0..6)].to_string();
    let n = rng.random_range(0..=18); // the limit is 16
    let long = |rng: &mut ChaCha8Rng| {
        let pieces = if rng.random_bool(0.1) { 900 } else { 60 };
        text(rng, pieces)
    };
    let mut r = ChaCha8Rng::seed_from_u64(rng.random());
    if rng.random_bool(0.5) {
        let msg = pb::ScoreRequest {
            model,
            pairs: (0..n)
                .map(|_| pb::Pair {
                    text_a: long(&mut r),
                    text_b: long(&mut r),
                })
                .collect(),
            activation: rng.random_range(0..6),
            truncation: rng.random_range(0..4),
            request_id: "r".repeat(rng.random_range(0..300)),
            instruction: rng.random_bool(0.2).then(|| long(&mut r)),
            priority: rng.random_range(0..12),
            max_tokens_per_doc: rng.random_range(0..3) * 50,
            max_query_tokens: rng.random_range(0..40),
            chunking: chunk_options(rng),
        };
        ("Score", msg.encode_to_vec())
    } else {
        let msg = pb::RerankRequest {
            model,
            query: long(&mut r),
            documents: (0..n)
                .map(|i| pb::Document {
                    id: "i".repeat(if i == 0 { rng.random_range(0..300) } else { 2 }),
                    text: long(&mut r),
                })
                .collect(),
            top_n: rng.random_range(0..20),
            min_score: rng
                .random_bool(0.2)
                .then(|| [f32::NAN, -1.0, 0.5][rng.random_range(0..3)]),
            return_documents: rng.random_bool(0.5),
            activation: rng.random_range(0..6),
            truncation: rng.random_range(0..4),
            request_id: String::new(),
            instruction: rng.random_bool(0.2).then(|| long(&mut r)),
            priority: rng.random_range(0..12),
            max_tokens_per_doc: rng.random_range(0..3) * 50,
            max_query_tokens: rng.random_range(0..40),
            chunking: chunk_options(rng),
        };
        ("Rerank", msg.encode_to_vec())
    }
}

fn mutate(rng: &mut impl Rng, mut b: Vec<u8>, other: &[u8]) -> Vec<u8> {
    for _ in 0..rng.random_range(1..3) {
        let len = b.len().max(1);
        let at = rng.random_range(0..len).min(b.len());
        let last = at.min(b.len().saturating_sub(1));
        match rng.random_range(0..8) {
            0 if !b.is_empty() => b[last] ^= 1 << rng.random_range(0..8),
            1 if !b.is_empty() => b[last] = rng.random(),
            2 => {
                let junk: Vec<u8> = (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
                b.splice(at..at, junk);
            }
            3 => {
                let end = (at + rng.random_range(0..32)).min(b.len());
                b.drain(at..end);
            }
            4 => b.truncate(at),
            5 => {
                let from = rng.random_range(0..other.len().max(1)).min(other.len());
                let end = (from + rng.random_range(0..64)).min(other.len());
                b.splice(at..at, other[from..end].iter().copied());
            }
            // A field whose length prefix claims far more than the message holds.
            6 => {
                b.splice(at..at, [0x12, 0xff, 0xff, 0xff, 0x7f]);
            }
            // Invalid UTF-8 inside what may be a string.
            _ => {
                b.splice(at..at, [0xc3, 0x28, 0xff]);
            }
        };
    }
    b
}

/// Threads of this test's runtime (its server's tasks and blocking tokenization) are named so.
const FUZZ_THREADS: &str = "fuzz-server";

/// Whether a panic belongs to this test: on its own thread or its runtime's, or anywhere in
/// crossrank's code. The hook is process-wide, and other tests of this binary run at the same
/// time and make the tokenizers crate panic on purpose (hostile tokenizer files, caught by the
/// library); those are theirs to judge.
fn ours(info: &std::panic::PanicHookInfo) -> bool {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or_default();
    let in_src = info
        .location()
        .is_some_and(|l| l.file().starts_with("src/"));
    name.starts_with(FUZZ_THREADS) || name.starts_with("fuzz::") || in_src
}

#[test]
fn fuzz_decode_validate_tokenize() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(FUZZ_THREADS)
        .enable_all()
        .build()
        .unwrap()
        .block_on(fuzz());
}

async fn fuzz() {
    let secs: u64 = std::env::var("CROSSRANK_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let seed: u64 = std::env::var("CROSSRANK_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("fuzzing for {secs} s with CROSSRANK_FUZZ_SEED={seed}");
    let panics = Arc::new(AtomicUsize::new(0));
    let counter = panics.clone();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if ours(info) {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        default_hook(info);
    }));

    let limits = RequestLimits {
        max_pairs_per_request: 16,
        max_text_bytes: 4096,
        ..Default::default()
    };
    let models = vec![
        model("ce=bert"),
        model("bpe=roberta"),
        model("unigram=xlm_roberta"),
    ];
    let server = TestServer::start(models, Default::default(), limits).await;
    let oracles: Vec<(CrossEncoder, tokenizers::Tokenizer)> = ["bert", "roberta", "xlm_roberta"]
        .iter()
        .map(|name| {
            let dir = common::fixtures().join(name);
            let model = CrossEncoder::load(&dir, &LoadOptions::default()).unwrap();
            let mut t = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
            t.with_padding(None);
            t.with_truncation(Some(tokenizers::TruncationParams {
                max_length: model.tokenizer.max_length(),
                ..Default::default()
            }))
            .unwrap();
            (model, t)
        })
        .collect();

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let corpus = seeds(&mut rng);
    let mut grpc = raw::client(server.channel.clone()).await;
    let (start, mut inputs, mut codes) =
        (Instant::now(), 0usize, std::collections::BTreeMap::new());
    while start.elapsed() < Duration::from_secs(secs) {
        // Half well-formed messages with hostile values, half byte-level mutations of seeds.
        let (method, input) = if rng.random_bool(0.5) {
            structured(&mut rng)
        } else {
            let (method, base) = &corpus[rng.random_range(0..corpus.len())];
            let other = &corpus[rng.random_range(0..corpus.len())].1;
            (*method, mutate(&mut rng, base.clone(), other))
        };
        let mut req = tonic::Request::new(input.clone());
        req.set_timeout(Duration::from_secs(20));
        let began = Instant::now();
        grpc.ready().await.unwrap();
        let code = if method == "Score" {
            let path = raw::path("/crossrank.v1.CrossEncoder/Score");
            grpc.unary::<_, pb::ScoreResponse, _>(req, path, raw::Raw::default())
                .await
                .map(|_| Code::Ok)
        } else {
            let path = raw::path("/crossrank.v1.CrossEncoder/Rerank");
            grpc.unary::<_, pb::RerankResponse, _>(req, path, raw::Raw::default())
                .await
                .map(|_| Code::Ok)
        }
        .unwrap_or_else(|s| s.code());
        let allowed = [
            Code::Ok,
            Code::InvalidArgument,
            Code::Internal, // undecodable protobuf, as tonic reports it
            Code::NotFound,
            Code::FailedPrecondition,
        ];
        assert!(
            allowed.contains(&code),
            "{method} input {input:?} got {code:?} (CROSSRANK_FUZZ_SEED={seed})"
        );
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "{method} input took {:?}",
            began.elapsed()
        );
        *codes.entry(format!("{code:?}")).or_insert(0) += 1;
        inputs += 1;

        // Differential: random Unicode pairs, ours against the tokenizers crate.
        let (model, oracle) = &oracles[inputs % oracles.len()];
        let (a, b) = (text(&mut rng, 30), text(&mut rng, 300));
        let ours = &model.tokenizer.encode(&[(a.as_str(), b.as_str())]).unwrap()[0];
        let want = oracle.encode((a.as_str(), b.as_str()), true).unwrap();
        assert_eq!(ours.ids, want.get_ids(), "{a:?} / {b:?} (seed {seed})");
        assert_eq!(ours.type_ids, want.get_type_ids(), "{a:?} / {b:?}");
        assert_eq!(ours.truncated, !want.get_overflowing().is_empty());
    }
    println!("{inputs} inputs in {:?}: {codes:?}", start.elapsed());
    assert_eq!(
        panics.load(Ordering::SeqCst),
        0,
        "a panic happened (seed {seed})"
    );
    assert!(inputs > 100, "only {inputs} inputs");
    // The server still serves.
    let ok = pb::ScoreRequest {
        model: "ce".into(),
        pairs: vec![pb::Pair {
            text_a: "a".into(),
            text_b: "b".into(),
        }],
        ..Default::default()
    };
    server.client().score(ok).await.unwrap();
}
