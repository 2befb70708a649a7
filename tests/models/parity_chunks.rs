//! Long documents scored in windows (truncation CHUNK) against the Python reference
//! (tests/fixtures/make_chunks.py: the tokenizers library's own overflow windows and
//! post-processor, and the Hugging Face model run on each window): pooled raw logits within
//! 1e-5, the same windows, the same best window and its characters, on BERT, XLM-R (two labels,
//! `</s></s>` between the texts), DeBERTa-v3 and ModernBERT.

use crate::common;

use std::collections::BTreeMap;

use common::fixtures;
use crossrank::activation::ActivationChoice;
use crossrank::pooling::Pooling;
use crossrank::runtime::{Chunked, CrossEncoder, LoadOptions};
use crossrank::tokenize::{Chunking, Control, Cut, Texts};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    model: String,
    query: String,
    doc: String,
    overlap: usize,
    pooling: String,
    max_query_tokens: Option<usize>,
    max_tokens_per_doc: Option<usize>,
    windows: usize,
    truncated: bool,
    scores: Vec<f32>,
    best: (u32, u32, u32),
    best_text: String,
    first_ids: Vec<u32>,
    window_first_logits: Vec<f32>,
    spans: Vec<(u32, u32)>,
}

fn cases() -> Vec<Case> {
    #[derive(Deserialize)]
    struct File {
        cases: Vec<Case>,
    }
    let text = std::fs::read_to_string(fixtures().join("chunks.json"))
        .expect("chunks.json: run scripts/test.sh, which generates it");
    serde_json::from_str::<File>(&text).unwrap().cases
}

fn load(name: &str) -> CrossEncoder {
    CrossEncoder::load(&fixtures().join(name), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn how(case: &Case) -> Chunked {
    Chunked {
        chunking: Chunking {
            overlap: case.overlap,
            max_chunks_per_doc: 64,
            max_windows: 100_000,
        },
        pooling: match case.pooling.as_str() {
            "max" => Pooling::Max,
            _ => Pooling::Mean,
        },
        cut: Cut {
            doc_tokens: case.max_tokens_per_doc,
            query_tokens: case.max_query_tokens,
            left: false,
        },
    }
}

/// Every case: its windows (count, the first one's ids, whether the query was cut), then its
/// pooled scores and best window, the cases of one model and setting scored in one call.
#[test]
fn pooled_window_scores_match_the_python_reference() {
    let cases = cases();
    let mut groups: BTreeMap<String, Vec<&Case>> = BTreeMap::new();
    for case in &cases {
        let key = format!(
            "{} {} {} {:?} {:?}",
            case.model, case.overlap, case.pooling, case.max_query_tokens, case.max_tokens_per_doc
        );
        groups.entry(key).or_default().push(case);
    }
    let mut models = BTreeMap::new();
    let mut worst = 0f32;
    for (key, group) in groups {
        let model = models
            .entry(group[0].model.clone())
            .or_insert_with(|| load(&group[0].model));
        let how = how(group[0]);
        let pairs: Vec<(String, String)> = group
            .iter()
            .map(|c| (c.query.clone(), c.doc.clone()))
            .collect();
        let ctl = Control {
            cut: how.cut,
            ..Control::default()
        };
        let windowed = model
            .tokenizer
            .encode_windows(&Texts::Pairs(pairs.clone()), &ctl, how.chunking)
            .unwrap_or_else(|e| panic!("{key}: {e:?}"));
        let mut at = 0;
        for (case, doc) in group.iter().zip(&windowed.docs) {
            let what = format!("{key}: doc of {} chars", case.doc.chars().count());
            assert_eq!(doc.spans.len(), case.windows, "{what}: windows");
            assert_eq!(doc.truncated, case.truncated, "{what}: query cut");
            assert_eq!(
                windowed.pairs[at].ids, case.first_ids,
                "{what}: first window"
            );
            at += doc.spans.len();
        }
        let pooled = model
            .predict_chunked(&pairs, &how, ActivationChoice::None, 7, |_| {})
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        for (case, got) in group.iter().zip(&pooled) {
            let what = format!("{key}: doc of {} chars", case.doc.chars().count());
            assert_eq!(got.scores.len(), case.scores.len(), "{what}");
            for (g, w) in got.scores.iter().zip(&case.scores) {
                worst = worst.max((g - w).abs());
                assert!(
                    (g - w).abs() < 1e-5,
                    "{what}: {:?} vs {:?}",
                    got.scores,
                    case.scores
                );
            }
            // The best window is the reference's, or one whose first logit is within float
            // noise of it (CPU kernels order near-equal windows differently).
            let b = got.best;
            let reference = &case.window_first_logits;
            let top = reference[case.best.0 as usize];
            let mine = reference[b.index as usize];
            assert!(
                (b.index, b.start, b.end) == case.best || top - mine < 1e-5,
                "{what}: best window {b:?}, logit {mine} in the reference; its best {:?}, {top}",
                case.best
            );
            assert_eq!(
                (b.start, b.end),
                case.spans[b.index as usize],
                "{what}: span"
            );
            let text: String = case
                .doc
                .chars()
                .skip(b.start as usize)
                .take((b.end - b.start) as usize)
                .collect();
            if (b.index, b.start, b.end) == case.best {
                assert_eq!(text, case.best_text, "{what}: the best window's characters");
            }
        }
    }
    assert!(cases
        .iter()
        .any(|c| c.windows >= 40 && c.model == "modernbert"));
    eprintln!("largest difference from the reference: {worst:e}");
}

/// A document that fits one window, with a query within its cap, scores exactly as without
/// chunking (the same tokens, the same forward pass).
#[test]
fn one_window_documents_score_as_without_chunking() {
    for name in ["bert", "xlm_roberta", "deberta_v3", "modernbert"] {
        let model = load(name);
        let pairs = [
            ("what does the fox do", "the fox jumps"),
            ("a query", "a short document about foxes and dogs"),
            ("", "an empty query"),
            ("an empty document", ""),
        ];
        let how = Chunked {
            chunking: Chunking {
                overlap: 0,
                max_chunks_per_doc: 64,
                max_windows: 64,
            },
            pooling: Pooling::Mean,
            cut: Cut::default(),
        };
        let chunked = model
            .predict_chunked(&pairs, &how, ActivationChoice::Default, 4, |_| {})
            .unwrap();
        let whole = model
            .predict(&pairs, ActivationChoice::Default, 4, |_| {})
            .unwrap();
        for (i, (c, w)) in chunked.iter().zip(&whole).enumerate() {
            assert_eq!(&c.scores, w, "{name}: pair {i}");
            assert_eq!(c.best.index, 0, "{name}: pair {i}");
        }
    }
}
