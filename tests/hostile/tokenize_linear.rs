//! Crossrank's linear pair tokenization gives exactly the tokens of the `tokenizers` crate's own
//! (quadratic) pair encoding with longest-first truncation, for every fixture tokenizer (WordPiece,
//! BPE, Unigram), on random pairs on both sides of the maximum length.

use crate::common;

use common::{fixtures, minilm_dir};
use crossrank::runtime::{CrossEncoder, LoadOptions};
use crossrank::tokenize::{Control, Query, Texts};
use rand::{Rng, SeedableRng};
use tokenizers::{Tokenizer, TruncationParams, TruncationStrategy};

const WORDS: &[&str] = &[
    "the",
    "search",
    "reranker",
    "!",
    "cross-encoder",
    "Zürich",
    "naïve",
    "1984",
    "token",
    "a",
    "unbelievably",
    "résumé",
    "querying",
    "...",
    "GPU",
    "x",
    "of",
    "relevance",
    "日本",
    "??",
];

fn text(rng: &mut impl Rng, words: usize) -> String {
    (0..words)
        .map(|_| WORDS[rng.random_range(0..WORDS.len())])
        .collect::<Vec<_>>()
        .join(" ")
}

/// The crate's own pair encoding, truncated longest-first at `max_length`.
fn reference(dir: &std::path::Path, max_length: usize) -> Tokenizer {
    let mut t = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    t.with_padding(None);
    t.with_truncation(Some(TruncationParams {
        max_length,
        strategy: TruncationStrategy::LongestFirst,
        ..Default::default()
    }))
    .unwrap();
    t
}

#[test]
fn same_tokens_as_the_tokenizers_crate_for_every_tokenizer() {
    let mut dirs: Vec<_> = ["bert", "roberta", "xlm_roberta", "electra", "distilbert"]
        .iter()
        .map(|n| fixtures().join(n))
        .collect();
    dirs.push(minilm_dir());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for dir in dirs {
        let model = CrossEncoder::load(&dir, &LoadOptions::default()).unwrap();
        assert!(
            model.tokenizer.joins_by_template(),
            "{}: the special tokens are placed without the post-processor",
            dir.display()
        );
        let max = model.tokenizer.max_length();
        let oracle = reference(&dir, max);
        // Side lengths from empty to well past the maximum, so that every truncation case occurs:
        // none, only the longer side, both sides.
        let mut pairs = Vec::new();
        for _ in 0..120 {
            let (la, lb) = (rng.random_range(0..max / 3), rng.random_range(0..max / 2));
            let (a, b) = (text(&mut rng, la), text(&mut rng, lb));
            pairs.push(if rng.random_bool(0.5) { (a, b) } else { (b, a) });
        }
        pairs.push((String::new(), String::new()));
        let ours = model.tokenizer.encode(&pairs).unwrap();
        let mut cut = 0;
        for (i, ((a, b), e)) in pairs.iter().zip(&ours).enumerate() {
            let want = oracle.encode((a.as_str(), b.as_str()), true).unwrap();
            let name = dir.display();
            assert_eq!(e.ids, want.get_ids(), "{name}: pair {i} ids");
            assert_eq!(e.type_ids, want.get_type_ids(), "{name}: pair {i} type ids");
            let truncated = !want.get_overflowing().is_empty();
            assert_eq!(e.truncated, truncated, "{name}: pair {i} truncated");
            cut += usize::from(truncated);
        }
        assert!(
            cut > 10 && cut < 111,
            "{}: {cut} of 121 truncated",
            dir.display()
        );

        // One query shared by many documents: the same tokens as separate pairs.
        let query = text(&mut rng, max);
        let documents: Vec<String> = (0..70).map(|i| text(&mut rng, i * 3)).collect();
        let texts = Texts::Query {
            query: Query::new(query.clone()),
            documents: documents.clone(),
        };
        let shared = model
            .tokenizer
            .encode_with(&texts, &Control::default())
            .unwrap();
        for (i, (d, e)) in documents.iter().zip(&shared).enumerate() {
            let want = oracle.encode((query.as_str(), d.as_str()), true).unwrap();
            assert_eq!(e.ids, want.get_ids(), "{}: query pair {i}", dir.display());
        }
    }
}

#[test]
fn reject_mode_stops_at_the_first_truncated_pair_and_a_stop_request_is_obeyed() {
    let model = CrossEncoder::load(&fixtures().join("bert"), &LoadOptions::default()).unwrap();
    let long = "word ".repeat(4 * model.tokenizer.max_length());
    let mut pairs = vec![("q".to_string(), "short".to_string()); 200];
    pairs[130].1 = long;
    let texts = Texts::Pairs(pairs);
    let reject = Control {
        reject_truncated: true,
        ..Default::default()
    };
    match model.tokenizer.encode_with(&texts, &reject) {
        Err(crossrank::tokenize::Stop::Truncated(i)) => assert_eq!(i, 130),
        other => panic!("expected a stop at pair 130, got {other:?}"),
    }
    let stop = Control {
        reject_truncated: false,
        stop: crossrank::tokenize::StopSignal::raised(),
        ..Default::default()
    };
    assert!(matches!(
        model.tokenizer.encode_with(&texts, &stop),
        Err(crossrank::tokenize::Stop::Cancelled)
    ));
}

/// ASCII text of every kind the BERT fast path must treat as the crate does: all 128 code
/// points (control characters, tabs, line breaks, punctuation, capitals), vocabulary words,
/// words longer than WordPiece's 100-character limit, special tokens written in the text in
/// either case, and a few non-ASCII characters (which send the text to the crate).
fn ascii_text(rng: &mut impl Rng) -> String {
    const PIECES: &[&str] = &[
        "the", "Search", "RERANKER", "un", "##ing", "[SEP]", "[cls]", "[MASK", "querying",
        "e-mail", "U.S.A.", "C++", "x86_64", "\t", "\r\n", "\u{b}", "\u{c}", "\0", "\u{7f}",
    ];
    let parts = rng.random_range(0..40);
    let mut s = String::new();
    for _ in 0..parts {
        match rng.random_range(0..10) {
            0..=3 => s.push(char::from(rng.random_range(0u8..128))),
            4..=7 => s.push_str(PIECES[rng.random_range(0..PIECES.len())]),
            8 => s.push_str(&"abc".repeat(rng.random_range(30..40))),
            _ if rng.random_bool(0.1) => s.push('é'),
            _ => s.push(' '),
        }
    }
    s
}

#[test]
fn ascii_fast_path_gives_the_crates_tokens() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    for name in ["bert", "electra", "distilbert"] {
        let dir = fixtures().join(name);
        let model = CrossEncoder::load(&dir, &LoadOptions::default()).unwrap();
        assert!(
            model.tokenizer.has_ascii_fast_path(),
            "{name}: BERT WordPiece"
        );
        let oracle = reference(&dir, model.tokenizer.max_length());
        let pairs: Vec<(String, String)> = (0..400)
            .map(|_| (ascii_text(&mut rng), ascii_text(&mut rng)))
            .collect();
        let ours = model.tokenizer.encode(&pairs).unwrap();
        for (i, ((a, b), e)) in pairs.iter().zip(&ours).enumerate() {
            let want = oracle.encode((a.as_str(), b.as_str()), true).unwrap();
            assert_eq!(e.ids, want.get_ids(), "{name}: pair {i} {a:?} / {b:?}");
            assert_eq!(e.type_ids, want.get_type_ids(), "{name}: pair {i} type ids");
        }
    }
    let roberta = CrossEncoder::load(&fixtures().join("roberta"), &LoadOptions::default()).unwrap();
    assert!(
        !roberta.tokenizer.has_ascii_fast_path(),
        "BPE takes the crate's path"
    );
}
