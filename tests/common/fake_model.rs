//! The weightless `CrossrankFakeForTests` model (src/models/fake.rs), written by the test: a
//! `config.json` and a word-level `tokenizer.json` ([CLS] query [SEP] document [SEP], every word
//! unknown), so a server test that does not test numerics needs no generated fixture.

use std::path::Path;

use serde_json::json;

/// Writes the fake model into `dir`; each batch costs `cost_ms_per_pair` per pair.
pub fn write(dir: &Path, cost_ms_per_pair: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let config = json!({
        "architectures": ["CrossrankFakeForTests"],
        "num_labels": 1,
        "vocab_size": 4,
        "max_position_embeddings": 512,
        "cost_ms_per_pair": cost_ms_per_pair,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), tokenizer().to_string()).unwrap();
}

/// The score sentence-transformers' default activation (sigmoid, one label) gives a pair of
/// `query_words` and `document_words` whitespace-separated words: three special tokens.
pub fn score(query_words: usize, document_words: usize) -> f32 {
    let logit = (query_words + document_words + 3) as f32 / 100.0;
    1.0 / (1.0 + (-logit).exp())
}

fn special(id: u32, content: &str) -> serde_json::Value {
    json!({"id": id, "content": content, "single_word": false, "lstrip": false,
           "rstrip": false, "normalized": false, "special": true})
}

fn piece(kind: &str, id: &str, type_id: u32) -> serde_json::Value {
    json!({kind: {"id": id, "type_id": type_id}})
}

fn tokenizer() -> serde_json::Value {
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(0, "[PAD]"), special(1, "[UNK]"), special(2, "[CLS]"),
                         special(3, "[SEP]")],
        "normalizer": null,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [piece("SpecialToken", "[CLS]", 0), piece("Sequence", "A", 0),
                       piece("SpecialToken", "[SEP]", 0)],
            "pair": [piece("SpecialToken", "[CLS]", 0), piece("Sequence", "A", 0),
                     piece("SpecialToken", "[SEP]", 0), piece("Sequence", "B", 1),
                     piece("SpecialToken", "[SEP]", 1)],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]},
            },
        },
        "decoder": null,
        "model": {
            "type": "WordLevel",
            "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3},
            "unk_token": "[UNK]",
        },
    })
}
