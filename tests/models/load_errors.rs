//! Broken model directories are refused with an error that says what is wrong and where.

use crate::common;

use std::path::{Path, PathBuf};

use crossrank::error::RuntimeError;
use crossrank::runtime::{CrossEncoder, LoadOptions};

/// A copy of the tiny BERT fixture that a test may break.
fn copy_of_bert() -> (tempfile::TempDir, PathBuf) {
    copy_of("bert")
}

/// A copy of fixture `name` that a test may break.
fn copy_of(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(common::fixtures().join(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    (tmp, dir)
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(path, config.to_string()).unwrap();
}

fn load_err(dir: &Path) -> RuntimeError {
    match CrossEncoder::load(dir, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded although it is broken", dir.display()),
        Err(e) => e,
    }
}

#[test]
fn missing_tokenizer_is_named() {
    let (_tmp, dir) = copy_of_bert();
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let err = load_err(&dir);
    assert!(
        matches!(err, RuntimeError::MissingFile { .. })
            && err.to_string().contains("tokenizer.json"),
        "{err}"
    );
}

#[test]
fn missing_config_is_named() {
    let (_tmp, dir) = copy_of_bert();
    std::fs::remove_file(dir.join("config.json")).unwrap();
    assert!(load_err(&dir).to_string().contains("no config.json"));
}

#[test]
fn corrupt_safetensors_names_the_file() {
    let (_tmp, dir) = copy_of_bert();
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_err(&dir);
    assert!(matches!(err, RuntimeError::Weights { .. }), "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

/// A config that disagrees with the weights: the error names the tensor and both shapes.
#[test]
fn wrong_shape_names_tensor_and_shapes() {
    let (_tmp, dir) = copy_of_bert();
    edit_config(&dir, |c| c["intermediate_size"] = 38.into());
    let err = load_err(&dir).to_string();
    assert!(
        err.contains("bert.encoder.layer.0.intermediate.dense.weight"),
        "{err}"
    );
    assert!(
        err.contains("[37, 32]") && err.contains("[38, 32]"),
        "{err}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let (_tmp, dir) = copy_of_bert();
    edit_config(&dir, |c| c["num_hidden_layers"] = 3.into());
    let err = load_err(&dir);
    assert!(matches!(err, RuntimeError::MissingTensor { .. }), "{err}");
    assert!(err.to_string().contains("bert.encoder.layer.2."), "{err}");
}

#[test]
fn unknown_architecture_lists_supported_ones() {
    let (_tmp, dir) = copy_of_bert();
    edit_config(&dir, |c| {
        c["architectures"] = serde_json::json!(["GPT2ForSequenceClassification"])
    });
    let err = load_err(&dir).to_string();
    assert!(err.contains("GPT2ForSequenceClassification"), "{err}");
    for arch in crossrank::models::supported_architectures() {
        assert!(err.contains(arch), "{err} does not list {arch}");
    }
}

#[test]
fn bin_only_weights_say_how_to_convert() {
    let (_tmp, dir) = copy_of_bert();
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("pytorch_model.bin"), b"pickle").unwrap();
    let err = load_err(&dir).to_string();
    assert!(
        err.contains("pytorch_model.bin") && err.contains("safe_serialization=True"),
        "{err}"
    );
}

#[test]
fn unsupported_hidden_act_lists_supported_ones() {
    let (_tmp, dir) = copy_of_bert();
    edit_config(&dir, |c| c["hidden_act"] = "mish".into());
    let err = load_err(&dir).to_string();
    assert!(
        err.contains("\"mish\"") && err.contains("gelu_new"),
        "{err}"
    );
}

#[test]
fn invalid_config_json_names_the_file() {
    let (_tmp, dir) = copy_of_bert();
    std::fs::write(dir.join("config.json"), "{ not json").unwrap();
    let err = load_err(&dir);
    assert!(
        matches!(err, RuntimeError::Config { .. }) && err.to_string().contains("config.json"),
        "{err}"
    );
}

/// A tokenizer that does not match the model (ids beyond its vocabulary) fails the batch with an
/// error instead of crashing the process (on CUDA it would poison the device).
#[test]
fn mismatched_tokenizer_fails_the_batch_not_the_process() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("roberta");
    std::fs::create_dir(&dir).unwrap();
    let fixtures = common::fixtures();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixtures.join("roberta").join(file), dir.join(file)).unwrap();
    }
    std::fs::copy(
        fixtures.join("bert/tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    let model = CrossEncoder::load(&dir, &LoadOptions::default()).unwrap();
    let choice = crossrank::activation::ActivationChoice::Default;
    let err = model
        .predict(&[("zebra quantum", "xylophone")], choice, 1, |_| {})
        .unwrap_err();
    assert!(
        err.to_string().contains("outside the model's table of 600"),
        "{err}"
    );
}

/// Variants of the newer architectures that crossrank does not compute are refused by name, not
/// served with wrong numbers.
#[test]
fn unsupported_variants_of_new_architectures_are_named() {
    let (_tmp, dir) = copy_of("qwen3");
    std::fs::write(dir.join("chat_template.jinja"), "{% if %}never closed").unwrap();
    let err = load_err(&dir).to_string();
    assert!(
        err.contains("chat_template.jinja") && err.contains("does not parse"),
        "{err}"
    );

    // A generic chat template (user/assistant only) drops the query and the document.
    let (_tmp, dir) = copy_of("qwen3");
    let generic =
        "{% for m in messages %}{% if m.role == 'user' %}{{ m.content }}{% endif %}{% endfor %}";
    std::fs::write(dir.join("chat_template.jinja"), generic).unwrap();
    let err = load_err(&dir).to_string();
    assert!(err.contains("ignores the \"query\" message"), "{err}");

    // sentence-transformers prepends a default prompt to every query of a model without a
    // chat template; crossrank does not, so it refuses rather than score differently.
    let (_tmp, dir) = copy_of_bert();
    let st = r#"{"prompts": {"q": "query: "}, "default_prompt_name": "q"}"#;
    std::fs::write(dir.join("config_sentence_transformers.json"), st).unwrap();
    let err = load_err(&dir).to_string();
    assert!(
        err.contains("default prompt") && err.contains("query: "),
        "{err}"
    );

    let (_tmp, dir) = copy_of("qwen2");
    edit_config(&dir, |c| {
        c["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "factor": 4.0})
    });
    let err = load_err(&dir).to_string();
    assert!(err.contains("rope_scaling"), "{err}");

    let (_tmp, dir) = copy_of("modernbert");
    edit_config(&dir, |c| c["classifier_pooling"] = "max".into());
    let err = load_err(&dir).to_string();
    assert!(
        err.contains("classifier_pooling") && err.contains("\"max\""),
        "{err}"
    );

    let (_tmp, dir) = copy_of("deberta_v2");
    edit_config(&dir, |c| c["conv_kernel_size"] = 3.into());
    let err = load_err(&dir).to_string();
    assert!(err.contains("conv_kernel_size"), "{err}");

    let (_tmp, dir) = copy_of("deberta_v3");
    edit_config(&dir, |c| {
        c["pos_att_type"] = serde_json::json!(["c2p", "p2p"])
    });
    let err = load_err(&dir).to_string();
    assert!(err.contains("\"p2p\""), "{err}");
}
