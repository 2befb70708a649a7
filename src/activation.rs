//! The function applied to logits to produce scores, as sentence-transformers' CrossEncoder does.

use std::fmt;
use std::str::FromStr;

/// A score activation, applied to logits already upcast to f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Identity,
    Sigmoid,
    Tanh,
    Softmax,
}

/// What a caller asks for: the model's default, or a specific activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ActivationChoice {
    #[default]
    Default,
    /// Raw logits.
    None,
    Sigmoid,
    Softmax,
}

impl Activation {
    /// sentence-transformers' default when the config names none.
    pub fn default_for(num_labels: usize) -> Self {
        if num_labels == 1 {
            Self::Sigmoid
        } else {
            Self::Identity
        }
    }

    /// From the class path stored in `config.json` (e.g. `torch.nn.modules.activation.Sigmoid`).
    /// Only `torch.*` paths are trusted: like sentence-transformers, anything else means "use the
    /// default" (`Ok(None)`, with a warning).
    pub fn from_class_path(path: &str) -> Result<Option<Self>, String> {
        if !path.starts_with("torch.") {
            tracing::warn!(
                activation_fn = path,
                "activation_fn is not a torch.* class; using the default"
            );
            return Ok(None);
        }
        match path.rsplit('.').next().unwrap_or_default() {
            "Identity" => Ok(Some(Self::Identity)),
            "Sigmoid" => Ok(Some(Self::Sigmoid)),
            "Tanh" => Ok(Some(Self::Tanh)),
            "Softmax" => Ok(Some(Self::Softmax)),
            _ => Err(format!("activation_fn {path:?} is not supported; supported: Identity, Sigmoid, Tanh, Softmax")),
        }
    }

    /// Applies the activation to one pair's f32 logits (one per label).
    pub fn apply(self, logits: &[f32]) -> Vec<f32> {
        match self {
            Self::Identity => logits.to_vec(),
            Self::Sigmoid => logits.iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect(),
            Self::Tanh => logits.iter().map(|x| x.tanh()).collect(),
            Self::Softmax => {
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let exps: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
                let sum: f32 = exps.iter().sum();
                exps.into_iter().map(|e| e / sum).collect()
            }
        }
    }
}

impl ActivationChoice {
    /// The activation to apply for a model with `num_labels` outputs. Softmax over a single
    /// label is always 1.0, so it is refused rather than silently returning constants.
    pub fn resolve(
        self,
        model_default: Activation,
        num_labels: usize,
    ) -> Result<Activation, String> {
        Ok(match self {
            Self::Default => model_default,
            Self::None => Activation::Identity,
            Self::Sigmoid => Activation::Sigmoid,
            Self::Softmax if num_labels < 2 => {
                return Err(format!(
                    "activation softmax needs a model with at least 2 labels; this model has {num_labels}"
                ))
            }
            Self::Softmax => Activation::Softmax,
        })
    }
}

impl FromStr for ActivationChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "default" => Ok(Self::Default),
            "none" => Ok(Self::None),
            "sigmoid" => Ok(Self::Sigmoid),
            "softmax" => Ok(Self::Softmax),
            _ => Err(format!(
                "activation {s:?} is not one of: default, none, sigmoid, softmax"
            )),
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Identity => "identity",
            Self::Sigmoid => "sigmoid",
            Self::Tanh => "tanh",
            Self::Softmax => "softmax",
        })
    }
}
