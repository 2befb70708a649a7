//! crossrank: a serving backend for cross-encoder (reranker) models on libtorch.
//!
//! # Layout
//! The code follows the path of a request:
//! - [`tokenize`]: pair tokenization with sentence-transformers' truncation rules;
//! - [`runtime`]: a loaded model (tokenizer + network + scoring rules) and batch padding;
//! - [`models`]: the networks, one file per architecture, synchronous tch code;
//! - [`activation`], [`device`]: score activations, devices and precisions;
//! - [`hub`]: models by Hugging Face id, fetched into the Hugging Face cache;
//! - `cli` (binary only): the `score`, `rerank`, `serve`, `bench`, `health` and `fetch` commands.

pub mod activation;
pub mod api;
pub mod config;
pub mod device;
pub mod engine;
pub mod error;
pub mod hub;
pub mod load_error;
pub mod models;
pub mod registry;
pub mod runtime;
pub mod scheduler;
pub mod telemetry;
pub mod tokenize;
