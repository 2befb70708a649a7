//! Which files of a repository crossrank needs: configs, tokenizer and safetensors weights (the
//! single file, or the index and the shards it names), never `pytorch_model.bin` and nothing else.

use std::collections::BTreeSet;
use std::path::Path;

/// Fetched when the repository has them; `config.json` and `tokenizer.json` are required.
const CONFIG_FILES: &[&str] = &[
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "config_sentence_transformers.json",
    "sentence_bert_config.json",
    "modules.json",
    "chat_template.jinja",
];

pub const REQUIRED: &[&str] = &["config.json", "tokenizer.json"];
pub const SINGLE_WEIGHTS: &str = "model.safetensors";
pub const WEIGHTS_INDEX: &str = "model.safetensors.index.json";

/// The config and tokenizer files among `listed` (the repository's files).
pub fn configs(listed: &BTreeSet<String>) -> Vec<String> {
    CONFIG_FILES
        .iter()
        .filter(|f| listed.contains(**f))
        .map(|f| f.to_string())
        .collect()
}

/// The `config.json` of each sentence-transformers module folder that `modules.json` names
/// (a LogitScore head keeps its token ids there), when the repository has it.
pub fn module_configs(
    modules_json: &str,
    listed: &BTreeSet<String>,
) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct Module {
        path: String,
    }
    let modules: Vec<Module> =
        serde_json::from_str(modules_json).map_err(|e| format!("modules.json: {e}"))?;
    let mut out = Vec::new();
    for m in modules.into_iter().filter(|m| !m.path.is_empty()) {
        if !safe_relative(&m.path) {
            return Err(format!(
                "modules.json names the path {:?}, outside the model",
                m.path
            ));
        }
        let file = format!("{}/config.json", m.path.trim_end_matches('/'));
        if listed.contains(&file) {
            out.push(file);
        }
    }
    Ok(out)
}

/// The shard names of a safetensors index, each a plain file name.
pub fn shards(index_json: &str) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: std::collections::HashMap<String, String>,
    }
    let index: Index =
        serde_json::from_str(index_json).map_err(|e| format!("{WEIGHTS_INDEX}: {e}"))?;
    let names: BTreeSet<String> = index.weight_map.into_values().collect();
    match names
        .iter()
        .find(|n| !crate::models::weights::plain_file_name(n))
    {
        Some(bad) => Err(format!(
            "{WEIGHTS_INDEX} names the shard {bad:?}, not a plain file name"
        )),
        None => Ok(names.into_iter().collect()),
    }
}

/// A relative path of plain segments: no `..`, `.`, empty segment or absolute start.
pub fn safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !Path::new(path).is_absolute()
        && path
            .trim_end_matches('/')
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains('\\'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection() {
        let listed: BTreeSet<String> = [
            "config.json",
            "tokenizer.json",
            "pytorch_model.bin",
            "README.md",
            "1_LogitScore/config.json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(configs(&listed), ["config.json", "tokenizer.json"]);
        let modules = r#"[{"idx":0,"name":"0","path":"","type":"T"},{"idx":1,"name":"1","path":"1_LogitScore","type":"L"}]"#;
        assert_eq!(
            module_configs(modules, &listed).unwrap(),
            ["1_LogitScore/config.json"]
        );
        assert!(module_configs(r#"[{"path":"../etc"}]"#, &listed).is_err());
        let index = r#"{"weight_map":{"a":"model-1.safetensors","b":"model-2.safetensors","c":"model-1.safetensors"}}"#;
        assert_eq!(
            shards(index).unwrap(),
            ["model-1.safetensors", "model-2.safetensors"]
        );
        assert!(shards(r#"{"weight_map":{"a":"../x.safetensors"}}"#).is_err());
        assert!(!safe_relative("/etc") && !safe_relative("a/../b") && safe_relative("1_Dense"));
    }
}
