//! Parity of the two truncation knobs with the Python reference (tests/fixtures/make_truncation.py):
//! a cap on each document's tokens and left truncation give, on every fixture tokenizer family
//! (WordPiece with the ASCII fast path, byte-level BPE, Unigram with a `</s> </s>` template) and
//! on MiniLM, exactly the token ids transformers and the tokenizers library give.

use crate::common;

use std::collections::BTreeMap;

use common::{fixtures, minilm_dir};
use crossrank::runtime::{CrossEncoder, LoadOptions};
use crossrank::tokenize::{Control, Cut, Encoded, Query, Texts};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    model: String,
    query: String,
    doc: String,
    cap: Option<usize>,
    left: bool,
    ids: Vec<u32>,
    type_ids: Option<Vec<u32>>,
}

#[derive(Deserialize)]
struct Reference {
    cases: Vec<Case>,
    chat_left: Vec<ChatRow>,
}

/// What sentence-transformers feeds the LLM reranker fixture with truncation_side left.
#[derive(Deserialize)]
struct ChatRow {
    query: String,
    doc: String,
    ids: Vec<u32>,
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(fixtures().join("truncation.json"))
        .expect("truncation.json: run scripts/test.sh, which generates it");
    serde_json::from_str(&text).unwrap()
}

fn load(name: &str) -> CrossEncoder {
    let dir = match name {
        "minilm" => minilm_dir(),
        other => fixtures().join(other),
    };
    CrossEncoder::load(&dir, &LoadOptions::default()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn check(case: &Case, got: &Encoded, how: &str) {
    let what = format!(
        "{} ({how}): cap {:?}, left {}, query {:?}, doc {:?}",
        case.model,
        case.cap,
        case.left,
        case.query.chars().take(30).collect::<String>(),
        case.doc.chars().take(30).collect::<String>()
    );
    assert_eq!(got.ids, case.ids, "{what}");
    if let Some(types) = &case.type_ids {
        assert_eq!(&got.type_ids, types, "{what}");
    }
}

/// Every case, as separate pairs (Score) and as one query shared by its documents (Rerank),
/// grouped by model and cut so each group is one call.
#[test]
fn capped_and_left_truncated_pairs_match_the_python_reference() {
    let reference = reference();
    let mut groups: BTreeMap<(&str, Option<usize>, bool), Vec<&Case>> = BTreeMap::new();
    for case in &reference.cases {
        let key = (case.model.as_str(), case.cap, case.left);
        groups.entry(key).or_default().push(case);
    }
    assert!(groups.keys().any(|k| k.0 == "minilm"), "no MiniLM cases");
    let mut models = BTreeMap::new();
    for ((name, cap, left), cases) in groups {
        let model = models.entry(name).or_insert_with(|| load(name));
        let ctl = Control {
            cut: Cut {
                doc_tokens: cap,
                left,
                ..Cut::default()
            },
            ..Default::default()
        };
        let pairs = cases
            .iter()
            .map(|c| (c.query.clone(), c.doc.clone()))
            .collect();
        let encoded = model
            .tokenizer
            .encode_with(&Texts::Pairs(pairs), &ctl)
            .unwrap();
        for (case, got) in cases.iter().zip(&encoded) {
            check(case, got, "pairs");
        }
        for case in &cases {
            let texts = Texts::Query {
                query: Query::new(case.query.clone()),
                documents: vec![case.doc.clone()],
            };
            let got = model.tokenizer.encode_with(&texts, &ctl).unwrap();
            check(case, &got[0], "shared query");
        }
    }
}

/// A document cut to its cap is not a truncated pair (the caller asked for the cut); a pair
/// still too long after it is, whichever side truncation cuts from.
#[test]
fn a_cap_alone_does_not_mark_a_pair_truncated() {
    let model = load("bert");
    let long = "word ".repeat(4 * model.tokenizer.max_length());
    let pairs = Texts::Pairs(vec![("q".into(), long.clone()), (long.clone(), long)]);
    for left in [false, true] {
        let ctl = |cap| Control {
            cut: Cut {
                doc_tokens: cap,
                left,
                ..Cut::default()
            },
            ..Default::default()
        };
        let capped = model.tokenizer.encode_with(&pairs, &ctl(Some(5))).unwrap();
        assert!(!capped[0].truncated, "left {left}");
        assert!(capped[1].truncated, "left {left}");
        let whole = model.tokenizer.encode_with(&pairs, &ctl(None)).unwrap();
        assert!(whole[0].truncated && whole[1].truncated, "left {left}");
    }
}

/// An LLM reranker (chat template) cut from the left gets exactly what sentence-transformers
/// feeds it with the tokenizer's truncation_side set to left: the prompt's start dropped, its
/// tail intact; a cap on document tokens is refused for it.
#[test]
fn a_chat_template_model_is_cut_from_the_left_as_sentence_transformers_does() {
    let rows = reference().chat_left;
    let model = load("causal");
    let pairs: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.query.clone(), r.doc.clone()))
        .collect();
    let left = Control {
        cut: Cut {
            left: true,
            ..Cut::default()
        },
        ..Default::default()
    };
    let texts = Texts::Pairs(pairs);
    let got = model.tokenizer.encode_with(&texts, &left).unwrap();
    let right = model
        .tokenizer
        .encode_with(&texts, &Control::default())
        .unwrap();
    let mut cut = 0;
    for (i, (row, (g, r))) in rows.iter().zip(got.iter().zip(&right)).enumerate() {
        assert_eq!(g.ids, row.ids, "pair {i}");
        cut += usize::from(g.truncated && g.ids != r.ids);
    }
    assert!(cut > 0, "no pair was cut differently from the left");
    let capped = Control {
        cut: Cut {
            doc_tokens: Some(8),
            ..Cut::default()
        },
        ..Default::default()
    };
    let err = model.tokenizer.encode_with(&texts, &capped).unwrap_err();
    assert!(format!("{err:?}").contains("chat template"), "{err:?}");
}
