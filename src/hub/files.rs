//! Which files of a repository crossrank fetches: those the model directory declares
//! ([`crate::model_dir::files`]), selected from the repository's listing.

pub use crate::model_dir::files::{
    configs, module_configs, required, safe_relative, shards, SINGLE_WEIGHTS, WEIGHTS_INDEX,
};
