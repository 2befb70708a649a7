//! The REST dialects (Cohere, Jina, TEI): real SDK clients, the OpenAPI schema, serving over HTTP/1.1 and h2c.
//!
//! One test binary (one link) for the files of this folder; each file is a module.

#[path = "../common/mod.rs"]
mod common;

mod clients;
mod cohere;
mod schema;
mod serving;
mod tei;
