//! Numerical parity with sentence-transformers, load errors, and models by Hugging Face id.
//!
//! One test binary (one link) for the files of this folder; each file is a module.

#[path = "../common/mod.rs"]
mod common;

mod hub;
mod intake;
mod load_errors;
mod parity;
mod parity_causal;
mod parity_chunks;
mod parity_truncation;
