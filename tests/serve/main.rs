//! The server end to end: RPCs, streams, batching, priorities, tenants, metrics, TLS, the CLI and the deployment bundle.
//!
//! One test binary (one link) for the files of this folder; each file is a module.

#[path = "../common/mod.rs"]
mod common;

mod admin;
mod batching;
mod bench;
mod binary;
mod chunks;
mod cli;
mod deploy;
mod fake;
mod faults;
mod image;
mod llm;
mod metrics;
mod overload;
mod priority;
mod rpc;
mod streams;
mod tenants;
mod tls;
