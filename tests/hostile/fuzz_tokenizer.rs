//! Mutation fuzzing of the model files that drive tokenization, for a bounded time
//! (`CROSSRANK_FUZZ_TOKENIZER_SECS`, default 10; seed `CROSSRANK_FUZZ_SEED`): the generated
//! fixtures' `tokenizer.json` (WordPiece, BPE, Unigram) mutated as JSON (numbers made huge, zero
//! or negative, strings replaced, keys dropped, types swapped) and as bytes, and the causal
//! reranker's chat template mutated with hostile Jinja (loops, 100 MB strings, recursion,
//! captures, raised exceptions). Each input is loaded in-process through the library
//! (`PairTokenizer::load`) and, when it loads, tokenizes a few pairs under a deadline. Every input
//! must give Ok or a clean error quickly; a panic fails the test.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use crossrank::activation::Activation;
use crossrank::model_dir::ModelDir;
use crossrank::models::ModelSpec;
use crossrank::tokenize::{Control, PairTokenizer, StopSignal, Texts};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// Hostile Jinja put into the chat template at random places.
const SNIPPETS: &[&str] = &[
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    r#"{{ "x" * 100000000 }}"#,
    r#"{% for i in range(1000) %}{{ "ab" * 10000000 }}{% endfor %}"#,
    r#"{% set s %}{% for i in range(1000) %}{{ "x" * 10000000 }}{% endfor %}{% endset %}"#,
    "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    r#"{{ raise_exception("no") }}"#,
    "{{ messages[0].content * 1000 }}",
    "{% for m in messages %}{{ m.content | upper }}{% endfor %}",
    "{{ range(100001) }}",
    "{% for c in messages[1].content %}{{ c }}{% endfor %}",
    "{{ messages | tojson }}",
    "{% if %}",
    "{{",
    "{% endfor %}",
    "{{ 1 / 0 }}",
    "{{ undefined_thing.attr.attr }}",
    "{{ messages[99999999999] }}",
    "{% filter upper %}{% for i in range(100000) %}xx{% endfor %}{% endfilter %}",
];

/// Values put in place of JSON numbers and strings.
fn hostile_value(rng: &mut impl Rng) -> Value {
    let options = [
        serde_json::json!(0),
        serde_json::json!(-1),
        serde_json::json!(1),
        serde_json::json!(10_000_000),
        serde_json::json!(u64::MAX),
        serde_json::json!(i64::MIN),
        serde_json::json!(1e300),
        serde_json::json!(""),
        serde_json::json!("[UNK]"),
        serde_json::json!("(a+)+$"),
        serde_json::json!("\u{0}"),
        serde_json::json!("x".repeat(5000)),
        Value::Null,
        serde_json::json!([]),
        serde_json::json!({}),
        serde_json::json!(true),
    ];
    options[rng.random_range(0..options.len())].clone()
}

/// Changes one random node of `v`.
fn mutate_json(rng: &mut impl Rng, v: &mut Value) {
    let descend = rng.random_bool(0.8);
    match v {
        Value::Object(map) if descend && !map.is_empty() => {
            let key = map
                .keys()
                .nth(rng.random_range(0..map.len()))
                .unwrap()
                .clone();
            if rng.random_bool(0.1) {
                map.remove(&key);
            } else {
                mutate_json(rng, map.get_mut(&key).unwrap());
            }
        }
        Value::Array(items) if descend && !items.is_empty() => {
            let i = rng.random_range(0..items.len());
            match rng.random_range(0..10) {
                0 => {
                    items.remove(i);
                }
                1 => {
                    let copy = items[i].clone();
                    items.push(copy);
                }
                _ => mutate_json(rng, &mut items[i]),
            }
        }
        _ => *v = hostile_value(rng),
    }
}

fn mutate_bytes(rng: &mut impl Rng, mut bytes: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.random_range(1..4) {
        if bytes.is_empty() {
            break;
        }
        let at = rng.random_range(0..bytes.len());
        match rng.random_range(0..4) {
            0 => bytes[at] ^= 1 << rng.random_range(0..8),
            1 => bytes.truncate(at),
            2 => {
                bytes.remove(at);
            }
            _ => bytes.insert(at, b"{}[]\",:0\\"[rng.random_range(0..9)]),
        }
    }
    bytes
}

/// The template with hostile snippets inserted or a piece cut out.
fn mutate_template(rng: &mut impl Rng, template: &str) -> String {
    let mut t = template.to_owned();
    for _ in 0..rng.random_range(1..3) {
        let at = (0..=t.len())
            .filter(|&i| t.is_char_boundary(i))
            .nth(rng.random_range(0..=t.chars().count()))
            .unwrap_or(0);
        if rng.random_bool(0.8) {
            t.insert_str(at, SNIPPETS[rng.random_range(0..SNIPPETS.len())]);
        } else {
            let end = (at + rng.random_range(0..40)).min(t.len());
            let end = (end..=t.len()).find(|&i| t.is_char_boundary(i)).unwrap();
            t.replace_range(at..end, "");
        }
    }
    t
}

fn spec() -> ModelSpec {
    ModelSpec {
        architecture: "fuzz".into(),
        labels: vec!["score".into()],
        default_activation: Activation::Sigmoid,
        max_positions: 512,
        uses_token_types: true,
        vocab_size: i64::MAX,
        type_vocab_size: 2,
        pad_token_id: 0,
    }
}

/// Loads `dir`'s tokenizer and, if it loads, tokenizes a few pairs with a 2 s deadline. Returns
/// whether it loaded, and how long it all took.
fn exercise(dir: &Path) -> (Result<(), String>, Duration) {
    let start = Instant::now();
    let tokenizer = match PairTokenizer::load(&ModelDir::read(dir), &spec(), None) {
        Ok(t) => t,
        Err(e) => return (Err(e.to_string()), start.elapsed()),
    };
    let texts = Texts::Pairs(vec![
        ("what is a reranker?".into(), "it scores pairs".into()),
        ("".into(), "".into()),
        ("Zürich 日本語 🦀".into(), "a ".repeat(300)),
    ]);
    let ctl = Control {
        stop: StopSignal::at(Instant::now() + Duration::from_secs(2)),
        ..Default::default()
    };
    let out = tokenizer.encode_with(&texts, &ctl).map(drop);
    (out.map_err(|e| format!("{e:?}")), start.elapsed())
}

/// Every mutated tokenizer.json and chat template loads or fails cleanly within 5 s, and a loaded
/// one tokenizes (or fails cleanly) within its deadline; nothing panics.
#[test]
fn hostile_tokenizer_files_and_chat_templates_load_or_fail_cleanly_and_quickly() {
    let secs: u64 = std::env::var("CROSSRANK_FUZZ_TOKENIZER_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let seed: u64 = std::env::var("CROSSRANK_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed} (CROSSRANK_FUZZ_SEED), {secs} s");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let scratch = tempfile::tempdir().unwrap();
    let models: Vec<_> = ["bert", "roberta", "xlm_roberta", "causal"]
        .iter()
        .map(|name| {
            let dir = scratch.path().join(name);
            common::copy_dir(&common::fixtures().join(name), &dir);
            let tokenizer = std::fs::read(dir.join("tokenizer.json")).unwrap();
            (dir, tokenizer)
        })
        .collect();
    let causal = &models[3].0;
    let template_file = causal.join("chat_template.jinja");
    let had_file = template_file.is_file();
    let template = common::chat_template(causal);

    let (start, mut inputs, mut loaded, mut slowest) = (Instant::now(), 0, 0, Duration::ZERO);
    while start.elapsed() < Duration::from_secs(secs) {
        let (dir, original) = &models[rng.random_range(0..models.len())];
        let path = dir.join("tokenizer.json");
        let what = match rng.random_range(0..4) {
            0 => {
                let hostile = mutate_template(&mut rng, &template);
                std::fs::write(&template_file, &hostile).unwrap();
                exercise(causal)
            }
            1 => {
                std::fs::write(&path, mutate_bytes(&mut rng, original.clone())).unwrap();
                exercise(dir)
            }
            _ => {
                let mut json: Value = serde_json::from_slice(original).unwrap();
                for _ in 0..rng.random_range(1..4) {
                    mutate_json(&mut rng, &mut json);
                }
                std::fs::write(&path, json.to_string()).unwrap();
                exercise(dir)
            }
        };
        std::fs::write(&path, original).unwrap();
        if had_file {
            std::fs::write(&template_file, &template).unwrap();
        } else if template_file.is_file() {
            std::fs::remove_file(&template_file).unwrap();
        }
        let (result, took) = what;
        assert!(
            took < Duration::from_secs(5),
            "input {inputs} took {took:?}: {result:?}"
        );
        inputs += 1;
        loaded += usize::from(result.is_ok());
        slowest = slowest.max(took);
    }
    println!("{inputs} inputs, {loaded} loaded and tokenized, slowest {slowest:?}");
    assert!(inputs > 0);
}
