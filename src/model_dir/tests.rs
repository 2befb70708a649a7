use super::*;

/// Writes `files` (name, content) into a fresh directory.
fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// Every part is read when the directory is: deleting the files afterwards changes nothing.
#[test]
fn each_file_is_read_once_when_the_directory_is() {
    let dir = dir_with(&[
        (
            CONFIG,
            r#"{"architectures": ["BertForSequenceClassification"], "hidden_size": 8}"#,
        ),
        (TOKENIZER, "{}"),
        (TOKENIZER_CONFIG, r#"{"model_max_length": 128}"#),
        (ST_CONFIG, r#"{"activation_fn": "torch.nn.Identity"}"#),
        (SBERT_CONFIG, r#"{"max_seq_length": 64}"#),
        (
            MODULES,
            r#"[{"type": "x.LogitScore", "path": "1_LogitScore"}]"#,
        ),
        (
            "1_LogitScore/config.json",
            r#"{"true_token_id": 7, "false_token_id": 9}"#,
        ),
        (CHAT_TEMPLATE, "{{ messages }}"),
        (
            WEIGHTS_INDEX,
            r#"{"weight_map": {"a": "m-2.safetensors", "b": "m-1.safetensors"}}"#,
        ),
    ]);
    let model = ModelDir::read(dir.path());
    std::fs::remove_dir_all(dir.path()).unwrap();
    let config = model.config().unwrap().unwrap();
    assert_eq!(config.architecture(), "BertForSequenceClassification");
    assert_eq!(config.raw.hidden_size, Some(8));
    #[derive(Deserialize)]
    struct Own {
        hidden_size: i64,
    }
    assert_eq!(config.fields::<Own>().unwrap().hidden_size, 8);
    assert_eq!(model.tokenizer_json().unwrap(), Some("{}"));
    assert_eq!(
        model.tokenizer_config().unwrap().unwrap()["model_max_length"],
        128
    );
    assert_eq!(model.sbert_config().unwrap().unwrap()["max_seq_length"], 64);
    assert!(model.st_config().unwrap().is_some() && model.has_modules());
    let head = model.logit_head().unwrap().unwrap();
    assert_eq!((head.true_token_id, head.false_token_id), (7, Some(9)));
    assert_eq!(model.chat_template().unwrap().unwrap().0, "{{ messages }}");
    let shards: Vec<_> = model
        .weight_files()
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(shards, ["m-1.safetensors", "m-2.safetensors"]);
    assert!(!model.is_torchscript() && model.script_spec().is_none());
}

/// A file that cannot be read fails the part that asks for it, every time it asks, with the
/// same message naming the file, the size and the limit; the other parts are unaffected.
#[test]
fn a_failed_read_is_given_to_each_part_that_asks() {
    let dir = dir_with(&[(TOKENIZER, "{}")]);
    std::fs::File::create(dir.path().join(SBERT_CONFIG))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    std::fs::write(dir.path().join(MODULES), "[{").unwrap();
    let model = ModelDir::read(dir.path());
    let first = model.sbert_config().unwrap_err().to_string();
    let again = model.sbert_config().unwrap_err().to_string();
    assert_eq!(first, again);
    assert!(
        first.contains(SBERT_CONFIG) && first.contains("1073741824") && first.contains("4194304"),
        "{first}"
    );
    assert!(model
        .logit_head()
        .unwrap_err()
        .to_string()
        .contains(MODULES));
    assert!(model.config().unwrap().is_none());
    assert!(model.tokenizer_json().unwrap().is_some());
    let weights = model.weight_files().unwrap_err().to_string();
    assert!(weights.contains("no model.safetensors"), "{weights}");
}

/// An index naming a shard outside the directory is refused; a module path leaving the
/// directory too.
#[test]
fn paths_from_files_stay_in_the_directory() {
    let dir = dir_with(&[
        (
            WEIGHTS_INDEX,
            r#"{"weight_map": {"w": "../../etc/passwd"}}"#,
        ),
        (MODULES, r#"[{"type": "LogitScore", "path": "../x"}]"#),
    ]);
    let model = ModelDir::read(dir.path());
    let err = model.weight_files().unwrap_err().to_string();
    assert!(err.contains("not a plain file name"), "{err}");
    let err = model.logit_head().unwrap_err().to_string();
    assert!(err.contains("leaves the model directory"), "{err}");
}

/// An I/O error given again keeps its kind and message.
#[test]
fn replayed_io_errors_read_the_same() {
    let e = RuntimeError::Io {
        path: "x".into(),
        source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
    };
    let again = read::replay(&e);
    assert_eq!(e.to_string(), again.to_string());
    assert!(
        matches!(again, RuntimeError::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied)
    );
}
