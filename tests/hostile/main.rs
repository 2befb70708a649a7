//! Hostile clients, bodies, connections, model directories, templates, Hubs, and the fuzzers.
//!
//! One test binary (one link) for the files of this folder; each file is a module.

#[path = "../common/mod.rs"]
mod common;

mod bodies;
mod fuzz;
mod fuzz_tokenizer;
mod fuzz_weights;
mod http;
mod http_conns;
mod loads;
mod models;
mod requests;
mod streams;
mod templates;
mod tokenize_linear;
