//! Pairs rendered through the model's chat template, as sentence-transformers 6 does for every
//! model whose tokenizer has one (LLM rerankers): the pair becomes the messages
//! `[system?, {role: query}, {role: document}]`, the template renders them (Jinja with
//! `trim_blocks`, `lstrip_blocks`, no generation prompt), and the text is tokenized without added
//! special tokens. A row cut at the maximum length gets the template's fixed tail written back
//! over its last tokens, so the model still reads the end of the prompt it was trained on.
//! docs/research/st-causal-reranker.md has the reference behaviour, with sources.

use std::path::{Path, PathBuf};

use minijinja::{context, Environment, Value};
use tokenizers::Tokenizer;

use super::render::{self, Failure, StepBudget};
use super::{Encoded, Stop, StopSignal};
use crate::error::{Result, RuntimeError};
use crate::model_dir::files::{ST_CONFIG, TOKENIZER_CONFIG};
use crate::model_dir::read::check_template_len;
use crate::model_dir::ModelDir;

/// A model's chat template with what rendering a pair needs.
pub struct ChatPairs {
    env: Environment<'static>,
    /// Message content as a list of `{type: text, text}` parts instead of a string.
    structured: bool,
    /// Cut from the left (`truncation_side: left`) instead of the right.
    cut_left: bool,
    /// The system message and template tail of the model's default prompt.
    default: Prompt,
    /// Special-token strings the template may use (`bos_token`, `eos_token`, …).
    specials: Value,
    /// The template's length in bytes: what rendering adds to each pair, for admission.
    template_bytes: usize,
    /// Where the template was read (load errors name it).
    origin: PathBuf,
}

/// The system message of one call and the template tail that goes with it.
#[derive(Clone)]
pub struct Prompt {
    /// The system message's content, if any.
    system: Option<String>,
    /// The template's tail after the document, in token ids (empty: nothing to restore).
    tail: Vec<u32>,
}

impl ChatPairs {
    /// The chat template of the model in `dir` (`chat_template.jinja`, else `tokenizer_config.json`
    /// `chat_template`), or `None` when it has none.
    pub fn load(dir: &ModelDir, tokenizer: &Tokenizer) -> Result<Option<Self>> {
        let tokenizer_config = dir.tokenizer_config()?;
        let Some((source, origin)) = template_source(dir, tokenizer_config)? else {
            return Ok(None);
        };
        let Some(structured) = message_format(dir, &source)? else {
            return Ok(None);
        };
        let cut_left =
            tokenizer_config.and_then(|c| c.get("truncation_side")?.as_str()) == Some("left");
        let mut env = render::environment();
        let template_bytes = source.len();
        env.add_template_owned("chat", source)
            .map_err(|e| template_error(&origin, &e))?;
        let mut chat = Self {
            env,
            structured,
            cut_left,
            default: Prompt {
                system: default_prompt(dir)?,
                tail: Vec::new(),
            },
            specials: specials(tokenizer_config),
            template_bytes,
            origin,
        };
        chat.check_roles()?;
        let system = chat.default.system.clone();
        chat.default.tail = chat
            .learn_tail(tokenizer, system.as_deref(), &StopSignal::default(), &|f| {
                Stop::Failed(chat.load_failure(f))
            })
            .map_err(|stop| chat.load_error(stop))?;
        Ok(Some(chat))
    }

    /// A render that failed while loading, as an error naming the template file.
    fn load_failure(&self, failure: Failure) -> RuntimeError {
        RuntimeError::Config {
            path: self.origin.clone(),
            message: format!("chat template: {failure}"),
        }
    }

    /// A render or tokenization that failed while loading, as an error naming the template.
    fn load_error(&self, stop: Stop) -> RuntimeError {
        match stop {
            Stop::Failed(RuntimeError::Tokenize(message)) => RuntimeError::Config {
                path: self.origin.clone(),
                message,
            },
            Stop::Failed(other) => other,
            Stop::Truncated(_) | Stop::Cancelled | Stop::Chunk(_) => {
                self.load_failure(Failure::Stopped)
            }
        }
    }

    /// A failed render of a request's pair: stopped (the request is cancelled), or an error
    /// naming the template and what ran out.
    fn request_error(&self, failure: Failure) -> Stop {
        if let Failure::Stopped = failure {
            return Stop::Cancelled;
        }
        let name = self
            .origin
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        Stop::Failed(RuntimeError::Tokenize(format!(
            "the model's chat template ({name}): {failure}"
        )))
    }

    /// Bytes a call's tokenization handles per pair besides the pair's own texts.
    pub fn overhead_bytes(&self, instruction: Option<&str>) -> usize {
        self.template_bytes + instruction.map_or(0, str::len)
    }

    /// sentence-transformers refuses a template that ignores the query or the document (e.g. a
    /// generic chat template that prints only user/assistant messages): every pair would render
    /// the same. So does crossrank, naming the role.
    fn check_roles(&self) -> Result<()> {
        let system = self.default.system.as_deref();
        let render = |q: &str, d: &str| {
            self.render(system, q, d, &StopSignal::default(), None)
                .map_err(|f| self.load_failure(f))
        };
        let base = render("alpha", "bravo")?;
        for (role, q, d) in [
            ("query", "charlie", "bravo"),
            ("document", "alpha", "foxtrot"),
        ] {
            if render(q, d)? == base {
                return Err(RuntimeError::Config {
                    path: self.origin.clone(),
                    message: format!(
                        "the chat template ignores the {role:?} message: it does not render \
                         pairs (a reranker's template reads roles \"query\" and \"document\")"
                    ),
                });
            }
        }
        Ok(())
    }

    /// The prompt of a call: the model's default (`None`), no system message (`Some("")`), or
    /// `instruction` as the system message, with its template tail.
    pub fn prompt(
        &self,
        tokenizer: &Tokenizer,
        instruction: Option<&str>,
        signal: &StopSignal,
    ) -> Result<Prompt, Stop> {
        let system = match instruction {
            None => return Ok(self.default.clone()),
            Some("") => None,
            Some(text) => Some(text.to_owned()),
        };
        if system == self.default.system {
            return Ok(self.default.clone());
        }
        let tail = self.learn_tail(tokenizer, system.as_deref(), signal, &|f| {
            self.request_error(f)
        })?;
        Ok(Prompt { system, tail })
    }

    /// One pair's tokens, cut at `max_length` with the template tail restored; from the left
    /// when the tokenizer config says so or `left` is set (sentence-transformers with the
    /// tokenizer's `truncation_side` set to left).
    pub fn encode(
        &self,
        tokenizer: &Tokenizer,
        prompt: &Prompt,
        (query, document): (&str, &str),
        (max_length, left): (usize, bool),
        (signal, budget): (&StopSignal, &StepBudget),
    ) -> Result<Encoded, Stop> {
        let text = self
            .render(
                prompt.system.as_deref(),
                query,
                document,
                signal,
                Some(budget),
            )
            .map_err(|f| self.request_error(f))?;
        if signal.is_raised() {
            return Err(Stop::Cancelled);
        }
        let mut ids = ids_of(tokenizer, &text).map_err(Stop::Failed)?;
        let truncated = ids.len() > max_length;
        if truncated && (self.cut_left || left) {
            ids.drain(..ids.len() - max_length);
        }
        ids.truncate(max_length);
        if ids.len() == max_length {
            let tail = &prompt.tail;
            let keep = tail.len().min(ids.len());
            let at = ids.len() - keep;
            ids[at..].copy_from_slice(&tail[tail.len() - keep..]);
        }
        Ok(Encoded {
            type_ids: vec![0; ids.len()],
            ids,
            truncated,
        })
    }

    /// The pair's prompt text, within the template's fuel and this pair's output bound.
    fn render(
        &self,
        system: Option<&str>,
        query: &str,
        document: &str,
        signal: &StopSignal,
        budget: Option<&StepBudget>,
    ) -> Result<String, Failure> {
        let content = |text: &str| match self.structured {
            true => Value::from_serialize([[("type", "text"), ("text", text)]
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>()]),
            false => Value::from(text),
        };
        let mut messages = Vec::with_capacity(3);
        if let Some(system) = system {
            messages.push(context! { role => "system", content => content(system) });
        }
        messages.push(context! { role => "query", content => content(query) });
        messages.push(context! { role => "document", content => content(document) });
        let ctx = context! {
            messages => messages,
            add_generation_prompt => false,
            tools => (),
            documents => (),
            ..self.specials.clone()
        };
        let inputs = system.map_or(0, str::len) + query.len() + document.len();
        let limit = render::output_limit(self.template_bytes, inputs);
        render::render(&self.env, "chat", ctx, (limit, budget), signal)
    }

    /// The longest common token suffix of the conversation rendered with two different fillers
    /// for the query and the document (sentence-transformers' rule); empty when the renders
    /// share nothing or one is all suffix.
    /// `fail` turns a failed render into the caller's error (load or request).
    fn learn_tail(
        &self,
        tokenizer: &Tokenizer,
        system: Option<&str>,
        signal: &StopSignal,
        fail: &dyn Fn(Failure) -> Stop,
    ) -> Result<Vec<u32>, Stop> {
        let ids = |q: &str, d: &str| {
            let text = self.render(system, q, d, signal, None).map_err(fail)?;
            ids_of(tokenizer, &text).map_err(Stop::Failed)
        };
        let (first, second) = (ids("0", "0")?, ids("1 2 3 4", "1 2 3 4")?);
        let common = first
            .iter()
            .rev()
            .zip(second.iter().rev())
            .take_while(|(a, b)| a == b)
            .count();
        if common == 0 || common >= first.len().min(second.len()) {
            return Ok(Vec::new());
        }
        Ok(first[first.len() - common..].to_vec())
    }
}

/// Token ids of `text` without added special tokens (special tokens written in the text are
/// still recognized, as transformers does).
fn ids_of(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    Ok(tokenizer
        .encode(text, false)
        .map_err(|e| RuntimeError::Tokenize(e.to_string()))?
        .get_ids()
        .to_vec())
}

/// Template text that shows content read as a list of typed parts (sentence-transformers'
/// `_infer_format`).
const STRUCTURED_MARKERS: [&str; 6] = [
    "content[0]",
    ".type",
    "'type'",
    "\"type\"",
    "item.type",
    "message.content[",
];

/// Whether pairs go through the template, and how (sentence-transformers' rule): a model saved
/// by sentence-transformers (`modules.json`) uses messages only if its `sentence_bert_config.json`
/// lists a `message` modality (with its `format`); a plain Hugging Face directory always does.
/// The format, when not saved, is structured if the template reads content as a list of typed
/// parts, else flat. `None`: pairs are tokenized as text pairs.
fn message_format(dir: &ModelDir, source: &str) -> Result<Option<bool>> {
    let inferred = STRUCTURED_MARKERS.iter().any(|p| source.contains(p));
    if !dir.has_modules() {
        return Ok(Some(inferred));
    }
    let message = dir
        .sbert_config()?
        .and_then(|c| c.get("modality_config")?.get("message"));
    Ok(
        message.map(|m| match m.get("format").and_then(|f| f.as_str()) {
            Some("structured") => true,
            Some("flat") => false,
            _ => inferred,
        }),
    )
}

/// The template text: `chat_template.jinja`, else a string `chat_template` in the tokenizer
/// config. A list of named templates is refused (which one sentence-transformers uses depends
/// on the call).
fn template_source(
    dir: &ModelDir,
    config: Option<&serde_json::Value>,
) -> Result<Option<(String, PathBuf)>> {
    if let Some(file) = dir.chat_template()? {
        return Ok(Some(file.clone()));
    }
    let path = || dir.path(TOKENIZER_CONFIG);
    match config.and_then(|c| c.get("chat_template")) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => {
            check_template_len(&path(), s.len())?;
            Ok(Some((s.clone(), path())))
        }
        Some(_) => Err(RuntimeError::Config {
            path: path(),
            message: "`chat_template` is not a single template string (named templates are not supported)".into(),
        }),
    }
}

/// The prompt sentence-transformers sends as the system message by default:
/// `prompts[default_prompt_name]` of `config_sentence_transformers.json`.
pub fn default_prompt(dir: &ModelDir) -> Result<Option<String>> {
    let path = dir.path(ST_CONFIG);
    let Some(config) = dir.st_config()? else {
        return Ok(None);
    };
    let Some(name) = config.get("default_prompt_name").and_then(|n| n.as_str()) else {
        return Ok(None);
    };
    match config
        .get("prompts")
        .and_then(|p| p.get(name))
        .and_then(|p| p.as_str())
    {
        Some(prompt) if !prompt.is_empty() => Ok(Some(prompt.to_owned())),
        Some(_) => Ok(None),
        None => Err(RuntimeError::Config {
            path,
            message: format!("default_prompt_name {name:?} is not in `prompts`"),
        }),
    }
}

/// `bos_token`, `eos_token`, … as strings, from the tokenizer config (plain strings or
/// `{"content": …}` objects).
fn specials(config: Option<&serde_json::Value>) -> Value {
    let mut out = std::collections::BTreeMap::new();
    for key in [
        "bos_token",
        "eos_token",
        "pad_token",
        "unk_token",
        "sep_token",
        "cls_token",
    ] {
        let value = config.and_then(|c| c.get(key));
        let text = match value {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(v) => v.get("content").and_then(|c| c.as_str()).map(str::to_owned),
            None => None,
        };
        if let Some(text) = text {
            out.insert(key, text);
        }
    }
    Value::from_serialize(&out)
}

fn template_error(origin: &Path, e: &minijinja::Error) -> RuntimeError {
    RuntimeError::Config {
        path: origin.to_owned(),
        message: format!("chat template does not parse: {e:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_dir::files::{CHAT_TEMPLATE, MAX_TEMPLATE_BYTES};

    fn chat(source: &str, structured: bool, system: Option<&str>) -> ChatPairs {
        let mut env = render::environment();
        env.add_template_owned("chat", source.to_owned()).unwrap();
        ChatPairs {
            env,
            structured,
            cut_left: false,
            default: Prompt {
                system: system.map(str::to_owned),
                tail: Vec::new(),
            },
            specials: specials(Some(&serde_json::json!({"eos_token": {"content": "</s>"}}))),
            template_bytes: source.len(),
            origin: PathBuf::from(CHAT_TEMPLATE),
        }
    }

    /// Flat content is a string, structured content a list of typed parts; the system message
    /// comes first when there is one; Python string methods and special-token variables work;
    /// one trailing newline of the template is dropped, as Jinja does.
    #[test]
    fn pairs_render_as_sentence_transformers_messages() {
        let flat = "{% for m in messages %}{{ m.role }}={{ m.content.strip() }};{% endfor %}{{ eos_token }}\n\n";
        let c = chat(flat, false, Some("judge"));
        let text = c
            .render(Some("judge"), " q ", "d", &StopSignal::default(), None)
            .unwrap();
        assert_eq!(text, "system=judge;query=q;document=d;</s>\n");
        let structured = "{% for m in messages %}{{ m.role }}={{ m.content[0].text }}/{{ m.content[0].type }};{% endfor %}";
        assert!(STRUCTURED_MARKERS.iter().any(|p| structured.contains(p)));
        assert!(!STRUCTURED_MARKERS.iter().any(|p| flat.contains(p)));
        let c = chat(structured, true, None);
        assert_eq!(
            c.render(None, "q", "d", &StopSignal::default(), None)
                .unwrap(),
            "query=q/text;document=d/text;"
        );
    }

    /// A chat template past the size limit is refused before it is compiled, naming the file,
    /// its size and the limit.
    #[test]
    fn an_oversized_template_is_refused_before_it_is_compiled() {
        let dir = tempfile::tempdir().unwrap();
        let big = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        std::fs::write(dir.path().join(CHAT_TEMPLATE), &big).unwrap();
        let model = ModelDir::read(dir.path());
        let err = template_source(&model, None).unwrap_err().to_string();
        assert!(err.contains(CHAT_TEMPLATE), "{err}");
        assert!(
            err.contains(&format!("{} bytes", MAX_TEMPLATE_BYTES + 1)),
            "{err}"
        );
        std::fs::remove_file(dir.path().join(CHAT_TEMPLATE)).unwrap();
        let config = serde_json::json!({ "chat_template": big });
        let model = ModelDir::read(dir.path());
        let err = template_source(&model, Some(&config))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tokenizer_config.json"), "{err}");
    }
}
