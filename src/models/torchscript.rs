//! Escape hatch for architectures crossrank does not implement: a TorchScript `model.pt` taking
//! (input_ids, attention_mask[, token_type_ids]) and returning logits, a tuple whose first
//! element is the logits, or a dict with a `logits` entry. `crossrank.json` beside it names what the config would have said:
//!
//! ```json
//! {"num_labels": 1, "max_length": 512, "token_type_ids": true,
//!  "activation_fn": "torch.nn.modules.activation.Sigmoid", "labels": ["relevance"]}
//! ```

use serde::Deserialize;
use tch::{CModule, Device, IValue, Kind, Tensor};

use super::{config::invalid, Inputs, Loaded, ModelSpec, SequenceClassifier};
use crate::activation::Activation;
use crate::device::DType;
use crate::error::{Result, RuntimeError};
use crate::model_dir::arch::deserialize;
use crate::model_dir::files::{TORCHSCRIPT, TORCHSCRIPT_SPEC};
use crate::model_dir::ModelDir;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptSpec {
    num_labels: usize,
    max_length: usize,
    #[serde(default = "yes")]
    token_type_ids: bool,
    activation_fn: Option<String>,
    labels: Option<Vec<String>>,
    #[serde(default)]
    pad_token_id: i64,
}

fn yes() -> bool {
    true
}

struct Script {
    module: CModule,
    token_types: bool,
}

pub fn load(dir: &ModelDir, device: Device, dtype: DType) -> Result<Loaded> {
    let path = dir.path(TORCHSCRIPT_SPEC);
    let value = dir
        .script_spec()
        .ok_or_else(|| RuntimeError::MissingFile {
            dir: dir.dir().to_owned(),
            what: "no TorchScript model.pt".into(),
        })??;
    let s: ScriptSpec = deserialize(&path, value)?;
    let kind = dtype.kind();
    let num_labels = i64::try_from(s.num_labels).unwrap_or(i64::MAX);
    super::config::bounded(&path, "num_labels", "labels", num_labels)?;
    let labels = s
        .labels
        .unwrap_or_else(|| (0..s.num_labels).map(|i| format!("LABEL_{i}")).collect());
    if labels.len() != s.num_labels || s.num_labels == 0 {
        return Err(invalid(
            &path,
            format!(
                "num_labels is {} but {} labels are named",
                s.num_labels,
                labels.len()
            ),
        ));
    }
    let named = match &s.activation_fn {
        Some(name) => Activation::from_class_path(name).map_err(|m| invalid(&path, m))?,
        None => None,
    };
    let default_activation = named.unwrap_or(Activation::default_for(s.num_labels));
    let mut module = CModule::load_on_device(dir.path(TORCHSCRIPT), device)?;
    module.f_set_eval()?;
    if kind != Kind::Float {
        // CModule::to has no fallible form; a failure there must not take the process down.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            module.to(device, kind, false)
        }))
        .map_err(|_| RuntimeError::Panicked {
            during: "converting the TorchScript model to the requested dtype",
        })?;
    }
    let spec = ModelSpec {
        architecture: "TorchScript".into(),
        labels,
        default_activation,
        max_positions: super::serving_positions(i64::try_from(s.max_length).unwrap_or(i64::MAX)),
        uses_token_types: s.token_type_ids,
        vocab_size: i64::MAX,
        type_vocab_size: i64::MAX,
        pad_token_id: s.pad_token_id,
    };
    Ok((
        Box::new(Script {
            module,
            token_types: s.token_type_ids,
        }),
        spec,
    ))
}

impl SequenceClassifier for Script {
    fn logits(&self, inputs: &Inputs) -> Result<Tensor> {
        let mut args = vec![
            IValue::Tensor(inputs.input_ids.shallow_clone()),
            IValue::Tensor(inputs.attention_mask.shallow_clone()),
        ];
        if self.token_types {
            args.push(IValue::Tensor(inputs.token_type_ids.shallow_clone()));
        }
        match self.module.forward_is(&args)? {
            IValue::Tensor(t) => Ok(t),
            IValue::Tuple(mut items) if !items.is_empty() => match items.swap_remove(0) {
                IValue::Tensor(t) => Ok(t),
                other => Err(unexpected(&other)),
            },
            // transformers models traced with return_dict=True give {"logits": …}.
            IValue::GenericDict(entries) => entries
                .into_iter()
                .find_map(|(k, v)| match (k, v) {
                    (IValue::String(k), IValue::Tensor(t)) if k == "logits" => Some(t),
                    _ => None,
                })
                .ok_or_else(|| {
                    unexpected(&IValue::String("a dict without a \"logits\" tensor".into()))
                }),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(value: &IValue) -> RuntimeError {
    let what = match value {
        IValue::String(s) => s.clone(),
        IValue::Tensor(t) => format!("a tensor of shape {:?}", t.size()),
        other => format!("{:.80}", format!("{other:?}")),
    };
    RuntimeError::Mismatch(format!(
        "the TorchScript model returned {what}; expected logits, a tuple starting with logits, or {{\"logits\": …}}"
    ))
}
