//! Which vocabulary tokens a causal reranker scores with (sentence-transformers' `LogitScore`
//! module): `true_token_id` and `false_token_id` from the module's `config.json`, listed in
//! `modules.json`; a plain causal-LM directory without one scores "yes" against "no", as
//! sentence-transformers does.

use std::path::Path;

use serde::Deserialize;

use super::decoder::TrueFalse;
use super::json_file;
use crate::error::{Result, RuntimeError};

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

pub fn read(dir: &Path) -> Result<TrueFalse> {
    let modules_path = dir.join("modules.json");
    if let Some(text) = json_file::read_optional(&modules_path, json_file::SMALL_LIMIT)? {
        let modules: Vec<Module> = json_file::parse(&modules_path, &text)?;
        if let Some(m) = modules.iter().find(|m| m.kind.ends_with("LogitScore")) {
            if m.path.contains("..") || Path::new(&m.path).is_absolute() {
                return Err(RuntimeError::Config {
                    path: modules_path,
                    message: format!("module path {:?} leaves the model directory", m.path),
                });
            }
            let path = dir.join(&m.path).join("config.json");
            let c: Config = json_file::read_json(&path)?;
            return Ok(TrueFalse {
                true_id: c.true_token_id,
                false_id: c.false_token_id,
                source: path.display().to_string(),
            });
        }
    }
    yes_no(dir)
}

/// The ids of "yes" and "no" in the model's tokenizer.
fn yes_no(dir: &Path) -> Result<TrueFalse> {
    let path = dir.join("tokenizer.json");
    let text = json_file::read_text(&path, json_file::TOKENIZER_LIMIT)?;
    let tokenizer = text
        .parse::<tokenizers::Tokenizer>()
        .map_err(|e| RuntimeError::Tokenizer {
            path: path.clone(),
            message: e.to_string(),
        })?;
    let id = |token: &str| {
        tokenizer.token_to_id(token).map(i64::from).ok_or_else(|| RuntimeError::Tokenizer {
            path: path.clone(),
            message: format!(
                "a causal-LM reranker without a LogitScore module scores the token {token:?}, which the tokenizer does not have"
            ),
        })
    };
    Ok(TrueFalse {
        true_id: id("yes")?,
        false_id: Some(id("no")?),
        source: format!("\"yes\" and \"no\" in {}", path.display()),
    })
}
