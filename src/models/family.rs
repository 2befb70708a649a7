//! The architectures crossrank serves, in one table: each family's architecture names, its
//! loader and what it can do. Dispatch ([`super::load`]), the supported list of the unknown
//! architecture error and the dtype check come from here, so a new family is one row.

use super::{
    bert, deberta, decoder, distilbert, electra, fake, modernbert, roberta, torchscript, Loaded,
};
use crate::device::DType;
use crate::error::{Result, RuntimeError};
use crate::model_dir::ModelDir;
use tch::Device;

/// Builds a family's network from a model directory.
pub type Loader = fn(&ModelDir, Device, DType) -> Result<Loaded>;

/// How a family turns a pair into a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A bidirectional encoder with a classifier on the first token or the mean of the tokens.
    Encoder,
    /// A causal decoder scoring the last token (a `score` head, or a LogitScore over the
    /// language-model head).
    Decoder,
    /// A TorchScript module: whatever it computes.
    Script,
}

/// One family of architectures.
#[derive(Debug)]
pub struct Family {
    /// Its name in messages.
    pub name: &'static str,
    /// The `architectures` names of `config.json` it serves (none for TorchScript, chosen by
    /// the presence of `model.pt`).
    pub architectures: &'static [&'static str],
    pub load: Loader,
    /// Whether its linear layers can run quantized to int8 (CPU).
    pub int8: bool,
    pub kind: Kind,
    /// Whether a long document can be cut into chunks scored as separate pairs: true for
    /// encoders fed a pair layout, false for decoders (pairs rendered through a chat template).
    pub chunkable: bool,
}

const fn encoder(
    name: &'static str,
    architectures: &'static [&'static str],
    load: Loader,
    int8: bool,
) -> Family {
    Family {
        name,
        architectures,
        load,
        int8,
        kind: Kind::Encoder,
        chunkable: true,
    }
}

const fn decoder(
    name: &'static str,
    architectures: &'static [&'static str],
    load: Loader,
) -> Family {
    Family {
        name,
        architectures,
        load,
        int8: false,
        kind: Kind::Decoder,
        chunkable: false,
    }
}

/// Every family served from a `config.json`.
static FAMILIES: [Family; 10] = [
    encoder("BERT", &["BertForSequenceClassification"], bert::load, true),
    encoder(
        "RoBERTa",
        &[
            "RobertaForSequenceClassification",
            "XLMRobertaForSequenceClassification",
        ],
        roberta::load,
        true,
    ),
    encoder(
        "ELECTRA",
        &["ElectraForSequenceClassification"],
        electra::load,
        true,
    ),
    encoder(
        "DistilBERT",
        &["DistilBertForSequenceClassification"],
        distilbert::load,
        true,
    ),
    encoder(
        "ModernBERT",
        &["ModernBertForSequenceClassification"],
        modernbert::load,
        false,
    ),
    encoder(
        "DeBERTa",
        &["DebertaV2ForSequenceClassification"],
        deberta::load,
        false,
    ),
    decoder(
        "Qwen3",
        &["Qwen3ForSequenceClassification", "Qwen3ForCausalLM"],
        decoder::load_qwen3,
    ),
    decoder(
        "Qwen2",
        &["Qwen2ForSequenceClassification", "Qwen2ForCausalLM"],
        decoder::load_qwen2,
    ),
    decoder(
        "Llama",
        &["LlamaForSequenceClassification", "LlamaForCausalLM"],
        decoder::load_llama,
    ),
    // Weightless, for server tests that do not test numerics (see `fake.rs`).
    encoder("fake (tests)", &[fake::ARCHITECTURE], fake::load, false),
];

/// A TorchScript `model.pt` with `crossrank.json`: chosen by the file, not by a name.
pub static TORCHSCRIPT: Family = Family {
    name: "TorchScript",
    architectures: &[],
    load: torchscript::load,
    int8: false,
    kind: Kind::Script,
    chunkable: false,
};

/// Every family served from a `config.json`.
pub fn families() -> &'static [Family] {
    &FAMILIES
}

/// Every architecture name served, in the table's order.
pub fn supported_architectures() -> Vec<&'static str> {
    FAMILIES
        .iter()
        .flat_map(|f| f.architectures.iter().copied())
        .collect()
}

/// The family of `architecture` (an `architectures` name, or a family's name as a loaded
/// model's spec gives it for TorchScript).
pub fn family(architecture: &str) -> Option<&'static Family> {
    FAMILIES
        .iter()
        .chain(std::iter::once(&TORCHSCRIPT))
        .find(|f| f.name == architecture || f.architectures.contains(&architecture))
}

/// The family serving `architecture`, or an error listing the supported ones.
pub(super) fn of(architecture: &str) -> Result<&'static Family> {
    FAMILIES
        .iter()
        .find(|f| f.architectures.contains(&architecture))
        .ok_or_else(|| RuntimeError::UnknownArchitecture {
            given: architecture.to_owned(),
            supported: supported_architectures(),
        })
}

impl Family {
    /// Refuses a dtype the family cannot run.
    pub fn check_dtype(&self, dtype: DType) -> Result<()> {
        if dtype != DType::Int8 || self.int8 {
            return Ok(());
        }
        let with: Vec<&str> = FAMILIES.iter().filter(|f| f.int8).map(|f| f.name).collect();
        Err(RuntimeError::InvalidOption(format!(
            "dtype int8 is not available for {} models (only for {}); use f32 or bf16",
            self.name,
            with.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every architecture name belongs to one family; the list has the 13 names served and the
    /// fake one for tests.
    #[test]
    fn each_architecture_has_one_family() {
        let names = supported_architectures();
        assert_eq!(names.len(), 14);
        for name in &names {
            let owners = FAMILIES
                .iter()
                .filter(|f| f.architectures.contains(name))
                .count();
            assert_eq!(owners, 1, "{name}");
            assert!(of(name).is_ok());
        }
        let err = of("GPT2ForSequenceClassification").unwrap_err().to_string();
        assert!(err.contains("GPT2ForSequenceClassification"), "{err}");
        assert!(names.iter().all(|n| err.contains(n)), "{err}");
    }

    /// int8 is refused, from the table, for every family without it, naming the family and the
    /// families that have it; other dtypes pass.
    #[test]
    fn the_table_refuses_int8_for_families_without_it() {
        let deberta = family("DebertaV2ForSequenceClassification").unwrap();
        let err = deberta.check_dtype(DType::Int8).unwrap_err().to_string();
        assert!(
            err.contains("DeBERTa") && err.contains("BERT, RoBERTa, ELECTRA, DistilBERT"),
            "{err}"
        );
        assert!(deberta.check_dtype(DType::Bf16).is_ok());
        let err = TORCHSCRIPT
            .check_dtype(DType::Int8)
            .unwrap_err()
            .to_string();
        assert!(err.contains("TorchScript"), "{err}");
        for f in &FAMILIES {
            assert_eq!(f.check_dtype(DType::Int8).is_ok(), f.int8, "{}", f.name);
            assert_eq!(f.chunkable, f.kind == Kind::Encoder, "{}", f.name);
        }
        assert!(family("Qwen3ForCausalLM").is_some_and(|f| !f.int8 && !f.chunkable));
        assert!(family("TorchScript").is_some());
    }
}
