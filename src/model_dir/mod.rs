//! A model directory read once into typed parts: the architecture config, the tokenizer, the
//! sentence-transformers configs, the chat template, the LogitScore head, the safetensors files
//! to stream and the TorchScript spec. Each file is read once, bounded by the limit declared in
//! [`files::FILES`]; the network (`models::load`) and the tokenizer (`PairTokenizer::load`) take
//! their parts from here.
//!
//! A file that cannot be read or parsed is not an error of [`ModelDir::read`]: its error is kept
//! and given by the part that needs the file, when it asks. So a load fails at the same step,
//! with the same message naming the file, the limit and the value, as when each part read its
//! own files, and a file only one lenient part reads (a length setting) does not fail a load.

pub mod arch;
pub mod files;
pub mod read;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Result, RuntimeError};
pub use arch::{ArchConfig, RawConfig};
use files::{
    CHAT_TEMPLATE, CONFIG, MODULES, PICKLED_WEIGHTS, SBERT_CONFIG, SINGLE_WEIGHTS, ST_CONFIG,
    TOKENIZER, TOKENIZER_CONFIG, TORCHSCRIPT, TORCHSCRIPT_SPEC, WEIGHTS_INDEX,
};

/// A part of the directory: absent (`Ok(None)`), read, or the error reading it gave.
type Slot<T> = Result<Option<T>>;

/// The token ids a causal reranker's LogitScore module scores with, from the module's config.
#[derive(Debug, Clone)]
pub struct LogitHead {
    pub true_token_id: i64,
    pub false_token_id: Option<i64>,
    /// The module's `config.json`.
    pub path: PathBuf,
}

/// The files of one model directory, each read once.
#[derive(Debug)]
pub struct ModelDir {
    dir: PathBuf,
    /// `config.json`, when it is a regular file.
    config: Slot<ArchConfig>,
    /// `tokenizer.json`'s text, when it is a regular file.
    tokenizer: Slot<String>,
    tokenizer_config: Slot<Value>,
    st_config: Slot<Value>,
    sbert_config: Slot<Value>,
    /// Whether `modules.json` is a regular file (a sentence-transformers save).
    modules_file: bool,
    /// The LogitScore module `modules.json` names, if any.
    head: Slot<LogitHead>,
    /// `chat_template.jinja` and its path.
    chat_template: Slot<(String, PathBuf)>,
    /// The safetensors files to stream, or why there are none.
    weights: Result<Vec<PathBuf>>,
    /// `crossrank.json`, read when a TorchScript `model.pt` is present.
    script_spec: Option<Result<Value>>,
}

impl ModelDir {
    /// Reads every file of `dir` crossrank uses, each once and bounded.
    pub fn read(dir: &Path) -> Self {
        let path = |name: &str| dir.join(name);
        let small = |name: &str| read_value(&path(name));
        Self {
            dir: dir.to_owned(),
            config: regular(&path(CONFIG), |p, text| ArchConfig::parse(p, &text)),
            tokenizer: regular(&path(TOKENIZER), |_, text| Ok(text)),
            tokenizer_config: small(TOKENIZER_CONFIG),
            st_config: small(ST_CONFIG),
            sbert_config: small(SBERT_CONFIG),
            modules_file: path(MODULES).is_file(),
            head: logit_head(dir),
            chat_template: read::read_template(path(CHAT_TEMPLATE)),
            weights: weight_files(dir),
            script_spec: path(TORCHSCRIPT)
                .is_file()
                .then(|| read::read_json(&path(TORCHSCRIPT_SPEC))),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `name` in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `config.json`; `None` when the directory has none.
    pub fn config(&self) -> Result<Option<&ArchConfig>> {
        get(&self.config)
    }

    /// `tokenizer.json`'s text; `None` when the directory has none.
    pub fn tokenizer_json(&self) -> Result<Option<&str>> {
        Ok(get(&self.tokenizer)?.map(String::as_str))
    }

    /// `tokenizer_config.json`, parsed.
    pub fn tokenizer_config(&self) -> Result<Option<&Value>> {
        get(&self.tokenizer_config)
    }

    /// `config_sentence_transformers.json`, parsed.
    pub fn st_config(&self) -> Result<Option<&Value>> {
        get(&self.st_config)
    }

    /// `sentence_bert_config.json`, parsed.
    pub fn sbert_config(&self) -> Result<Option<&Value>> {
        get(&self.sbert_config)
    }

    /// Whether the directory is a sentence-transformers save (it has `modules.json`).
    pub fn has_modules(&self) -> bool {
        self.modules_file
    }

    /// The LogitScore module `modules.json` names; `None` without one.
    pub fn logit_head(&self) -> Result<Option<&LogitHead>> {
        get(&self.head)
    }

    /// `chat_template.jinja`'s text and path; `None` when there is no such file.
    pub fn chat_template(&self) -> Result<Option<&(String, PathBuf)>> {
        get(&self.chat_template)
    }

    /// The safetensors files: `model.safetensors`, or the shards its index names.
    pub fn weight_files(&self) -> Result<&[PathBuf]> {
        match &self.weights {
            Ok(files) => Ok(files),
            Err(e) => Err(read::replay(e)),
        }
    }

    /// Whether the model is a TorchScript `model.pt`.
    pub fn is_torchscript(&self) -> bool {
        self.script_spec.is_some()
    }

    /// `crossrank.json` of a TorchScript model; `None` when the model is not one.
    pub fn script_spec(&self) -> Option<Result<&Value>> {
        self.script_spec.as_ref().map(|spec| match spec {
            Ok(value) => Ok(value),
            Err(e) => Err(read::replay(e)),
        })
    }
}

fn get<T>(slot: &Slot<T>) -> Result<Option<&T>> {
    match slot {
        Ok(part) => Ok(part.as_ref()),
        Err(e) => Err(read::replay(e)),
    }
}

/// `path` made into a part by `make` when it is a regular file; `None` otherwise.
fn regular<T>(path: &Path, make: impl FnOnce(&Path, String) -> Result<T>) -> Slot<T> {
    if !path.is_file() {
        return Ok(None);
    }
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let text = read::read_text(path, files::limit(&name))?;
    make(path, text).map(Some)
}

/// A small JSON file, parsed; `None` when there is no such file.
fn read_value(path: &Path) -> Slot<Value> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    match read::read_optional(path, files::limit(&name))? {
        Some(text) => read::parse(path, &text).map(Some),
        None => Ok(None),
    }
}

/// The LogitScore module that `modules.json` names, with its token ids.
fn logit_head(dir: &Path) -> Slot<LogitHead> {
    #[derive(Deserialize)]
    struct Module {
        #[serde(rename = "type", default)]
        kind: String,
        #[serde(default)]
        path: String,
    }
    #[derive(Deserialize)]
    struct Config {
        true_token_id: i64,
        false_token_id: Option<i64>,
    }
    let modules_path = dir.join(MODULES);
    let Some(text) = read::read_optional(&modules_path, files::limit(MODULES))? else {
        return Ok(None);
    };
    let modules: Vec<Module> = read::parse(&modules_path, &text)?;
    let Some(m) = modules.iter().find(|m| m.kind.ends_with("LogitScore")) else {
        return Ok(None);
    };
    if m.path.contains("..") || Path::new(&m.path).is_absolute() {
        return Err(RuntimeError::Config {
            path: modules_path,
            message: format!("module path {:?} leaves the model directory", m.path),
        });
    }
    let path = dir.join(&m.path).join(CONFIG);
    let c: Config = read::read_json(&path)?;
    Ok(Some(LogitHead {
        true_token_id: c.true_token_id,
        false_token_id: c.false_token_id,
        path,
    }))
}

/// The safetensors files of a model directory, or an error naming what is there instead.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join(SINGLE_WEIGHTS);
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join(WEIGHTS_INDEX);
    if index.is_file() {
        return shard_files(dir, &index);
    }
    let what = if dir.join(PICKLED_WEIGHTS).is_file() {
        "only pytorch_model.bin is present; crossrank reads safetensors. Convert it with: python -c \
         \"from transformers import AutoModelForSequenceClassification as M; \
         M.from_pretrained('DIR').save_pretrained('DIR', safe_serialization=True)\""
            .replace("DIR", &dir.display().to_string())
    } else {
        "no model.safetensors or model.safetensors.index.json".to_owned()
    };
    Err(RuntimeError::MissingFile {
        dir: dir.to_owned(),
        what,
    })
}

/// The shards a safetensors index names, each in the model directory itself.
fn shard_files(dir: &Path, index: &Path) -> Result<Vec<PathBuf>> {
    let text = read::read_text(index, files::limit(WEIGHTS_INDEX))?;
    match files::index_shards(&text) {
        Ok(names) => Ok(names.into_iter().map(|s| dir.join(s)).collect()),
        Err(files::IndexError::Parse(e)) => Err(RuntimeError::Config {
            path: index.to_owned(),
            message: e.to_string(),
        }),
        Err(files::IndexError::NotPlain(s)) => Err(RuntimeError::Weights {
            path: index.to_owned(),
            message: format!("shard name {s:?} is not a plain file name in the model directory"),
        }),
    }
}

#[cfg(test)]
mod tests;
