//! Which vocabulary tokens a causal reranker scores with (sentence-transformers' `LogitScore`
//! module): `true_token_id` and `false_token_id` from the module's `config.json`, listed in
//! `modules.json` (both read by the model directory); a plain causal-LM directory without one
//! scores "yes" against "no", as sentence-transformers does.

use crate::error::{Result, RuntimeError};
use crate::model_dir::{files::TOKENIZER, ModelDir};

/// A causal reranker's token ids (sentence-transformers' `LogitScore`).
pub struct TrueFalse {
    pub true_id: i64,
    pub false_id: Option<i64>,
    /// Where the ids come from, for messages.
    pub source: String,
}

pub fn read(dir: &ModelDir) -> Result<TrueFalse> {
    match dir.logit_head()? {
        Some(head) => Ok(TrueFalse {
            true_id: head.true_token_id,
            false_id: head.false_token_id,
            source: head.path.display().to_string(),
        }),
        None => yes_no(dir),
    }
}

/// The ids of "yes" and "no" in the model's tokenizer.
fn yes_no(dir: &ModelDir) -> Result<TrueFalse> {
    let path = dir.path(TOKENIZER);
    let text = dir
        .tokenizer_json()?
        .ok_or_else(|| RuntimeError::MissingFile {
            dir: dir.dir().to_owned(),
            what: "no tokenizer.json (crossrank needs a fast tokenizer file)".into(),
        })?;
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
