//! Parity of LLM rerankers served through their chat template with sentence-transformers 6.2:
//! the causal form (a Qwen3 causal LM with a `LogitScore` module, saved by sentence-transformers
//! itself, tied and untied LM head) and a Qwen3 sequence classifier with the same template.
//! References from tests/fixtures/make_causal_reranker.py: the token ids sentence-transformers
//! feeds the model (after truncation and the template-tail restore) and its scores.

use crate::common;

use common::fixtures;
use crossrank::activation::ActivationChoice;
use crossrank::runtime::{CrossEncoder, LoadOptions};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    pairs: Vec<(String, String)>,
    rows: Vec<Row>,
    scores: Scores,
}

#[derive(Deserialize)]
struct Row {
    input_ids: Vec<u32>,
    truncated: bool,
}

#[derive(Deserialize)]
struct Scores {
    default: Vec<f32>,
    identity: Vec<f32>,
}

fn reference(dir: &std::path::Path) -> Reference {
    let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Token ids equal sentence-transformers' (template, system prompt, special tokens written in
/// the text, the cut row's restored tail); scores within 1e-5, raw logit differences within
/// 1e-5 of the largest; one pair at a time equals the whole batch.
#[test]
fn llm_rerankers_match_sentence_transformers() {
    let root = fixtures().join("causal");
    for dir in [root.clone(), root.join("untied"), root.join("seqcls")] {
        let name = dir.display().to_string();
        let exp = reference(&dir);
        let model = CrossEncoder::load(&dir, &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(model.tokenizer.uses_chat_template(), "{name}");
        let encoded = model.tokenizer.encode(&exp.pairs).unwrap();
        for (i, (e, r)) in encoded.iter().zip(&exp.rows).enumerate() {
            assert_eq!(e.ids, r.input_ids, "{name}: pair {i} tokens");
            assert_eq!(e.truncated, r.truncated, "{name}: pair {i} truncated");
        }
        assert!(
            exp.rows.iter().any(|r| r.truncated),
            "{name}: no truncated pair"
        );
        let run = |choice, batch| {
            model
                .predict(&exp.pairs, choice, batch, |_| {})
                .unwrap()
                .into_iter()
                .map(|s| s[0])
                .collect::<Vec<f32>>()
        };
        let diff = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max)
        };
        let d = diff(&run(ActivationChoice::Default, 32), &exp.scores.default);
        assert!(d <= 1e-5, "{name}: default scores differ by {d}");
        let scale = exp.scores.identity.iter().fold(1f32, |m, x| m.max(x.abs()));
        let raw = run(ActivationChoice::None, 32);
        let d = diff(&raw, &exp.scores.identity);
        assert!(d <= 1e-5 * scale, "{name}: raw scores differ by {d}");
        let single = run(ActivationChoice::None, 1);
        let d = diff(&raw, &single);
        println!("{name}: batched vs single max |delta| = {d:e}");
        assert!(d <= 1e-5 * scale, "{name}: batched vs single differ by {d}");
    }
}

/// Admission charges a chat model's tokenization for what it really handles: each document is
/// rendered with the query, the template and the instruction again.
#[test]
fn chat_tokenization_is_charged_per_rendered_pair() {
    use crossrank::tokenize::{Query, Texts};
    let model = CrossEncoder::load(&fixtures().join("causal"), &LoadOptions::default()).unwrap();
    let query = "q".repeat(1000);
    let texts = Texts::Query {
        query: Query::new(query.clone()),
        documents: vec!["doc".into(); 10],
    };
    let plain = texts.bytes();
    let charged = model.tokenizer.work_bytes(&texts, Some("instruct"));
    assert!(
        charged >= plain + 10 * (query.len() + "instruct".len()),
        "{charged} vs {plain}"
    );
    let pairs = Texts::Pairs(vec![("a".into(), "b".into())]);
    assert!(model.tokenizer.work_bytes(&pairs, None) > pairs.bytes());
}
