//! Mutation fuzzing of model files, each for a bounded time (`CROSSRANK_FUZZ_MODEL_SECS`,
//! default 10; `CROSSRANK_FUZZ_SEED` replays a run): `config.json` of five families and the
//! safetensors header of the BERT fixture are mutated (hostile values in well-formed JSON, and
//! byte-level damage) and loaded in-process with the library's loader, then, when the load
//! succeeds, run on one pair. Every input must give Ok or a clean error (one line, no libtorch
//! backtrace) within 10 s, and nothing may panic.

use crate::common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossrank::activation::Activation;
use crossrank::runtime::{CrossEncoder, LoadOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

const PER_INPUT: Duration = Duration::from_secs(10);
const FAMILIES: [&str; 5] = ["bert", "distilbert", "modernbert", "deberta_v3", "qwen3"];

fn budget() -> (Duration, u64) {
    let secs: u64 = std::env::var("CROSSRANK_FUZZ_MODEL_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let seed: u64 = std::env::var("CROSSRANK_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("fuzzing for {secs} s with CROSSRANK_FUZZ_SEED={seed}");
    (Duration::from_secs(secs), seed)
}

/// A copy of fixture `name` under `root`.
fn copy_of(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(common::fixtures().join(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

/// Loads `dir` and, if it loads, scores one pair; panics (failing the test) on a panic, a slow
/// input or an error message that is not one clean line.
fn try_load(dir: &Path, what: &str) {
    let start = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let model = CrossEncoder::load(dir, &LoadOptions::default())?;
        let pairs = model.tokenizer.encode(&[("a query", "a document")])?;
        let refs: Vec<_> = pairs.iter().collect();
        model.forward(&refs, Activation::Identity).map(drop)
    }));
    let took = start.elapsed();
    let result = outcome.unwrap_or_else(|_| panic!("a panic on {what}"));
    assert!(took < PER_INPUT, "{what} took {took:?}");
    if let Err(e) = result {
        let message = e.to_string();
        assert!(
            !message.contains('\n') && !message.contains("Exception raised from"),
            "{what}: {message}"
        );
    }
}

fn interesting(rng: &mut impl Rng, around: &Value) -> Value {
    let n = around.as_i64().unwrap_or(1);
    match rng.random_range(0..12) {
        0 => json!(0),
        1 => json!(-1),
        2 => json!(n.saturating_add(1)),
        3 => json!(n.saturating_mul(2)),
        4 => json!(1i64 << 31),
        5 => json!(1i64 << 40),
        6 => json!(i64::MAX),
        7 => json!(i64::MIN),
        8 => json!(1e300),
        9 => json!("12"),
        10 => Value::Null,
        _ => json!(rng.random_range(0..70_000)),
    }
}

/// One hostile edit of a config object.
fn mutate_config(rng: &mut impl Rng, config: &mut serde_json::Map<String, Value>) {
    let keys: Vec<String> = config.keys().cloned().collect();
    let key = keys[rng.random_range(0..keys.len())].clone();
    match rng.random_range(0..6) {
        0 => {
            config.remove(&key);
        }
        1 => {
            let labels: serde_json::Map<String, Value> = (0..rng.random_range(0..70_000))
                .map(|i| (i.to_string(), json!(format!("L{i}"))))
                .collect();
            config.insert("id2label".into(), Value::Object(labels));
        }
        2 => {
            config.insert(key, json!([1, 2, {"x": null}]));
        }
        _ => {
            let numeric: Vec<&String> = keys.iter().filter(|k| config[*k].is_number()).collect();
            let key = numeric[rng.random_range(0..numeric.len())].clone();
            let value = interesting(rng, &config[&key]);
            config.insert(key, value);
        }
    }
}

/// Bit flips, deletions and insertions of JSON punctuation.
fn damage(rng: &mut impl Rng, bytes: &mut Vec<u8>) {
    for _ in 0..rng.random_range(1..4) {
        if bytes.is_empty() {
            return;
        }
        let at = rng.random_range(0..bytes.len());
        match rng.random_range(0..3) {
            0 => bytes[at] ^= 1 << rng.random_range(0..8),
            1 => drop(bytes.remove(at)),
            _ => bytes.insert(at, b"{}[],:\"9-"[rng.random_range(0..9)]),
        }
    }
}

/// Mutated `config.json` of five families: hostile values (huge, negative, wrong types, 70,000
/// labels), deleted keys and byte-level damage.
#[test]
fn fuzz_config_json() {
    let (budget, seed) = budget();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<(PathBuf, Value)> = FAMILIES
        .iter()
        .map(|name| {
            let dir = copy_of(root.path(), name);
            let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
            (dir, serde_json::from_str(&text).unwrap())
        })
        .collect();
    let (start, mut inputs) = (Instant::now(), 0);
    while start.elapsed() < budget {
        let (dir, seed_config) = &dirs[rng.random_range(0..dirs.len())];
        let mut config = seed_config.clone();
        for _ in 0..rng.random_range(1..4) {
            mutate_config(&mut rng, config.as_object_mut().unwrap());
        }
        let mut bytes = config.to_string().into_bytes();
        if rng.random_bool(0.3) {
            damage(&mut rng, &mut bytes);
        }
        std::fs::write(dir.join("config.json"), &bytes).unwrap();
        let what = format!(
            "{} config {}",
            dir.display(),
            String::from_utf8_lossy(&bytes)
        );
        try_load(dir, &what.chars().take(2000).collect::<String>());
        inputs += 1;
    }
    println!("{inputs} configs (seed {seed})");
}

/// One hostile edit of a safetensors header.
fn mutate_header(rng: &mut impl Rng, header: &mut serde_json::Map<String, Value>, data_len: u64) {
    let names: Vec<String> = header
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect();
    let name = names[rng.random_range(0..names.len())].clone();
    let entry = header[&name].as_object().unwrap().clone();
    let mut edited = entry.clone();
    match rng.random_range(0..6) {
        0 => {
            let other = &header[&names[rng.random_range(0..names.len())]]["data_offsets"];
            let values = [
                json!(0),
                json!(data_len),
                json!(u64::MAX),
                json!(1u64 << 40),
                other[0].clone(),
                other[1].clone(),
                json!(-1),
            ];
            let which = rng.random_range(0..2);
            edited["data_offsets"][which] = values[rng.random_range(0..values.len())].clone();
        }
        1 => {
            let dtypes = [
                "F32", "F16", "BF16", "F64", "I8", "U8", "BOOL", "I64", "F8_E4M3", "",
            ];
            edited["dtype"] = json!(dtypes[rng.random_range(0..dtypes.len())]);
        }
        2 => {
            let shapes = [
                json!([]),
                json!([-1]),
                json!([0]),
                json!([1i64 << 40, 1i64 << 40]),
                json!(vec![1; 9]),
                json!("x"),
            ];
            edited["shape"] = shapes[rng.random_range(0..shapes.len())].clone();
        }
        3 => {
            // An alias: the same bytes under a second name.
            header.insert(format!("{name}.alias"), Value::Object(entry));
        }
        4 => {
            header.remove(&name);
        }
        _ => {
            header.insert("__metadata__".into(), json!({"format": ["pt"], "n": 1}));
        }
    }
    if header.contains_key(&name) {
        header.insert(name, Value::Object(edited));
    }
}

/// Mutated safetensors headers of the BERT fixture: moved, aliased, dropped and overflowing
/// offsets, wrong dtypes and shapes, odd metadata, byte-level damage and a wrong length prefix.
#[test]
fn fuzz_safetensors_header() {
    let (budget, seed) = budget();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let root = tempfile::tempdir().unwrap();
    let dir = copy_of(root.path(), "bert");
    let path = dir.join("model.safetensors");
    let original = std::fs::read(&path).unwrap();
    let header_len = u64::from_le_bytes(original[..8].try_into().unwrap()) as usize;
    let data = &original[8 + header_len..];
    let seed_header: Value = serde_json::from_slice(&original[8..8 + header_len]).unwrap();
    let (start, mut inputs) = (Instant::now(), 0);
    while start.elapsed() < budget {
        let mut header = seed_header.clone();
        for _ in 0..rng.random_range(1..4) {
            mutate_header(&mut rng, header.as_object_mut().unwrap(), data.len() as u64);
        }
        let mut bytes = header.to_string().into_bytes();
        if rng.random_bool(0.3) {
            damage(&mut rng, &mut bytes);
        }
        let declared = match rng.random_range(0..10) {
            0 => (bytes.len() as u64)
                .wrapping_add(rng.random_range(0..3))
                .wrapping_sub(1),
            1 => u64::MAX - rng.random_range(0..8),
            _ => bytes.len() as u64,
        };
        let mut file = declared.to_le_bytes().to_vec();
        file.extend_from_slice(&bytes);
        file.extend_from_slice(data);
        std::fs::write(&path, &file).unwrap();
        let what = format!("header {}", String::from_utf8_lossy(&bytes));
        try_load(&dir, &what.chars().take(4000).collect::<String>());
        inputs += 1;
    }
    println!("{inputs} headers (seed {seed})");
}
