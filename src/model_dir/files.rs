//! The one declaration of the files a model directory may hold: for each, whether a model needs
//! it, the most bytes read of it and what it is for. The reader ([`super::ModelDir`]) and the
//! Hub's download list both come from [`FILES`]; the Hub fetches the `hub` files a repository
//! has, the module configs `modules.json` names and the safetensors weights (the single file, or
//! the index and the shards it names), never `pytorch_model.bin` and nothing else.

use std::collections::BTreeSet;
use std::path::Path;

/// Whether a model directory must hold a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Every model needs it (a TorchScript model has `crossrank.json` instead of `config.json`).
    Required,
    Optional,
}

/// What a file is read for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `config.json`: the architecture and its sizes.
    Architecture,
    /// `tokenizer.json`: the fast tokenizer.
    Tokenizer,
    /// `tokenizer_config.json`: the default maximum length, the chat template and its tokens.
    TokenizerConfig,
    /// Fetched for completeness; `tokenizer.json` already holds the special tokens.
    SpecialTokens,
    /// `config_sentence_transformers.json`: default activation and prompt.
    SentenceTransformers,
    /// `sentence_bert_config.json`: maximum length and message format.
    SentenceBert,
    /// `modules.json`: the sentence-transformers modules (a LogitScore head).
    Modules,
    /// `chat_template.jinja`.
    ChatTemplate,
    /// The single safetensors file.
    Weights,
    /// The index of safetensors shards.
    WeightsIndex,
    /// A TorchScript model and the spec beside it (not fetched from the Hub).
    TorchScript,
    TorchScriptSpec,
}

/// One file a model directory may hold.
#[derive(Debug, Clone, Copy)]
pub struct ModelFile {
    pub name: &'static str,
    pub need: Need,
    /// Most bytes read of it; `None` for files streamed or opened by another library.
    pub limit: Option<u64>,
    pub role: Role,
    /// Whether the Hub fetches it with the configs (weights are chosen separately).
    pub hub: bool,
}

/// Largest `tokenizer.json` read: 64 MiB (real ones reach ~30 MB: large vocabularies and merges).
pub const TOKENIZER_LIMIT: u64 = 64 << 20;
/// Largest small JSON file read (configs, indexes, module lists): 4 MiB. Real ones are a few
/// KiB, a chat template in `tokenizer_config.json` some tens of KiB.
pub const SMALL_LIMIT: u64 = 4 << 20;
/// The longest chat template accepted, in bytes. Real ones are a few KiB (Qwen3's ~4 KiB); a
/// template's constant expressions are evaluated when it is compiled, before any fuel applies,
/// so its length is bounded first.
pub const MAX_TEMPLATE_BYTES: usize = 256 * 1024;

pub const CONFIG: &str = "config.json";
pub const TOKENIZER: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
pub const SPECIAL_TOKENS: &str = "special_tokens_map.json";
pub const ST_CONFIG: &str = "config_sentence_transformers.json";
pub const SBERT_CONFIG: &str = "sentence_bert_config.json";
pub const MODULES: &str = "modules.json";
pub const CHAT_TEMPLATE: &str = "chat_template.jinja";
pub const SINGLE_WEIGHTS: &str = "model.safetensors";
pub const WEIGHTS_INDEX: &str = "model.safetensors.index.json";
pub const TORCHSCRIPT: &str = "model.pt";
pub const TORCHSCRIPT_SPEC: &str = "crossrank.json";
/// Not read: named in the error that says how to convert it.
pub const PICKLED_WEIGHTS: &str = "pytorch_model.bin";

const fn file(
    name: &'static str,
    need: Need,
    limit: Option<u64>,
    role: Role,
    hub: bool,
) -> ModelFile {
    ModelFile {
        name,
        need,
        limit,
        role,
        hub,
    }
}

const SMALL: Option<u64> = Some(SMALL_LIMIT);
const TEMPLATE: Option<u64> = Some(MAX_TEMPLATE_BYTES as u64);

/// Every file of a model directory crossrank reads or fetches.
pub const FILES: [ModelFile; 12] = [
    file(CONFIG, Need::Required, SMALL, Role::Architecture, true),
    file(
        TOKENIZER,
        Need::Required,
        Some(TOKENIZER_LIMIT),
        Role::Tokenizer,
        true,
    ),
    file(
        TOKENIZER_CONFIG,
        Need::Optional,
        SMALL,
        Role::TokenizerConfig,
        true,
    ),
    file(
        SPECIAL_TOKENS,
        Need::Optional,
        SMALL,
        Role::SpecialTokens,
        true,
    ),
    file(
        ST_CONFIG,
        Need::Optional,
        SMALL,
        Role::SentenceTransformers,
        true,
    ),
    file(
        SBERT_CONFIG,
        Need::Optional,
        SMALL,
        Role::SentenceBert,
        true,
    ),
    file(MODULES, Need::Optional, SMALL, Role::Modules, true),
    file(
        CHAT_TEMPLATE,
        Need::Optional,
        TEMPLATE,
        Role::ChatTemplate,
        true,
    ),
    file(SINGLE_WEIGHTS, Need::Optional, None, Role::Weights, false),
    file(
        WEIGHTS_INDEX,
        Need::Optional,
        SMALL,
        Role::WeightsIndex,
        false,
    ),
    file(TORCHSCRIPT, Need::Optional, None, Role::TorchScript, false),
    file(
        TORCHSCRIPT_SPEC,
        Need::Optional,
        SMALL,
        Role::TorchScriptSpec,
        false,
    ),
];

/// The declaration of `name`.
pub fn declared(name: &str) -> &'static ModelFile {
    FILES
        .iter()
        .find(|f| f.name == name)
        .expect("every file read is declared in FILES. This is a bug.")
}

/// The read limit of `name`.
pub fn limit(name: &str) -> u64 {
    declared(name)
        .limit
        .expect("every file read whole has a limit in FILES. This is a bug.")
}

/// The files every repository fetched must have.
pub fn required() -> impl Iterator<Item = &'static str> {
    FILES
        .iter()
        .filter(|f| f.hub && f.need == Need::Required)
        .map(|f| f.name)
}

/// The config and tokenizer files among `listed` (the repository's files).
pub fn configs(listed: &BTreeSet<String>) -> Vec<String> {
    FILES
        .iter()
        .filter(|f| f.hub && listed.contains(f.name))
        .map(|f| f.name.to_string())
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
        serde_json::from_str(modules_json).map_err(|e| format!("{MODULES}: {e}"))?;
    let mut out = Vec::new();
    for m in modules.into_iter().filter(|m| !m.path.is_empty()) {
        if !safe_relative(&m.path) {
            return Err(format!(
                "{MODULES} names the path {:?}, outside the model",
                m.path
            ));
        }
        let file = format!("{}/{CONFIG}", m.path.trim_end_matches('/'));
        if listed.contains(&file) {
            out.push(file);
        }
    }
    Ok(out)
}

/// Why a safetensors index cannot be used.
#[derive(Debug)]
pub enum IndexError {
    /// Not the JSON of an index.
    Parse(serde_json::Error),
    /// A shard name that is not a plain file name.
    NotPlain(String),
}

/// The shard names of a safetensors index (sorted, once each), each a plain file name.
pub fn index_shards(index_json: &str) -> Result<Vec<String>, IndexError> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: std::collections::HashMap<String, String>,
    }
    let index: Index = serde_json::from_str(index_json).map_err(IndexError::Parse)?;
    let names: BTreeSet<String> = index.weight_map.into_values().collect();
    match names.iter().find(|n| !plain_file_name(n)) {
        Some(bad) => Err(IndexError::NotPlain(bad.clone())),
        None => Ok(names.into_iter().collect()),
    }
}

/// The shard names of a safetensors index, for the Hub (errors as text).
pub fn shards(index_json: &str) -> Result<Vec<String>, String> {
    index_shards(index_json).map_err(|e| match e {
        IndexError::Parse(e) => format!("{WEIGHTS_INDEX}: {e}"),
        IndexError::NotPlain(bad) => {
            format!("{WEIGHTS_INDEX} names the shard {bad:?}, not a plain file name")
        }
    })
}

/// A shard name must name a file in the model directory itself: no separators, no `..`, not
/// absolute (the index is data, and must not make the server read other files).
pub fn plain_file_name(name: &str) -> bool {
    let p = Path::new(name);
    !name.is_empty()
        && !name.contains(['/', '\\'])
        && p.file_name().is_some_and(|f| f == name)
        && name != ".."
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

    /// The Hub fetches the declared config files a repository has, the module configs
    /// `modules.json` names and the shards of an index; paths leaving the model are refused.
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
        assert_eq!(
            required().collect::<Vec<_>>(),
            ["config.json", "tokenizer.json"]
        );
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

    #[test]
    fn shard_names_stay_in_the_model_directory() {
        for good in ["model-00001-of-00002.safetensors", "a..b.safetensors"] {
            assert!(plain_file_name(good), "{good}");
        }
        for bad in [
            "../x.safetensors",
            "/etc/passwd",
            "sub/x",
            "..",
            ".",
            "",
            "a\\b",
        ] {
            assert!(!plain_file_name(bad), "{bad}");
        }
    }
}
