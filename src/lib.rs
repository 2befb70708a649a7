//! crossrank: a serving backend for cross-encoder (reranker) models on libtorch.
//!
//! # Layout
//! One line per top-level module, in the order a request meets them:
//! - [`api`]: the transports (gRPC, the only module that knows tonic, and the REST dialects);
//! - [`engine`]: the serving core: validation, admission, tokenizing off the async threads;
//! - [`tokenize`]: pair tokenization with sentence-transformers' truncation rules and templates;
//! - [`scheduler`]: per-model queues and the micro-batcher (priorities, tenants, deadlines);
//! - [`runtime`]: a loaded model on its device threads (replicas), batch padding and splitting;
//! - [`models`]: the networks, one file per architecture, synchronous tch code.
//!
//! Beside the request path:
//! - [`registry`]: the models this process serves, by name; loading and unloading them;
//! - [`load_error`]: why a model failed to load, its causes kept to the API's message;
//! - [`model_dir`]: a model directory read once into typed parts; the file list the Hub downloads;
//! - [`hub`]: models by Hugging Face id, fetched into the Hugging Face cache;
//! - [`config`]: the server configuration from a TOML file and `--model` flags;
//! - [`telemetry`]: Prometheus metrics, logs and OpenTelemetry traces;
//! - [`error`]: errors of loading and running a model;
//! - [`activation`]: the function that turns logits into scores;
//! - [`pooling`]: a chunked long document's score from its windows' scores;
//! - [`device`]: device and precision names (`cpu`, `cuda:1`, `bf16`);
//! - `cli` (binary only): the `score`, `rerank`, `serve`, `bench`, `health` and `fetch` commands.
//!
//! A test below checks this list against `src/`: every module is listed, and every listed module
//! exists.

pub mod activation;
pub mod api;
pub mod config;
pub mod device;
pub mod engine;
pub mod error;
pub mod hub;
pub mod load_error;
pub mod model_dir;
pub mod models;
pub mod pooling;
pub mod registry;
pub mod runtime;
pub mod scheduler;
pub mod telemetry;
pub mod tokenize;

#[cfg(test)]
mod layout {
    use std::collections::BTreeSet;
    use std::path::Path;

    /// Top-level modules on disk: `src/NAME.rs` (but the crate roots) and `src/NAME/mod.rs`.
    fn on_disk() -> BTreeSet<String> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut names = BTreeSet::new();
        for entry in std::fs::read_dir(&src).expect("src/ is readable") {
            let path = entry.expect("src/ entries are readable").path();
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            let is_module = if path.is_dir() {
                path.join("mod.rs").is_file()
            } else {
                path.extension().is_some_and(|e| e == "rs") && !["lib", "main"].contains(&stem)
            };
            if is_module {
                names.insert(stem.to_string());
            }
        }
        names
    }

    /// Modules a crate root declares (`mod NAME;` or `pub mod NAME;`).
    fn declared(root: &str) -> BTreeSet<String> {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(root))
            .expect("the crate root is readable");
        text.lines()
            .filter_map(|l| l.trim().trim_start_matches("pub ").strip_prefix("mod "))
            .filter_map(|rest| rest.strip_suffix(';'))
            .map(str::to_string)
            .collect()
    }

    /// The module each bullet of `# Layout` names: "- [`name`]: ..." or "- `name` (binary only)".
    fn layout() -> Vec<String> {
        let docs = include_str!("lib.rs")
            .lines()
            .map_while(|l| l.strip_prefix("//!"));
        let section = docs.skip_while(|l| l.trim() != "# Layout").skip(1);
        let section = section.take_while(|l| !l.trim_start().starts_with('#'));
        section
            .filter_map(|l| l.trim().strip_prefix("- "))
            .filter_map(|bullet| bullet.trim_start_matches('[').strip_prefix('`'))
            .filter_map(|rest| rest.split('`').next())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn layout_lists_every_module_and_only_modules_that_exist() {
        let disk = on_disk();
        let (lib, bin) = (declared("src/lib.rs"), declared("src/main.rs"));
        let listed = layout();
        let listed_set: BTreeSet<String> = listed.iter().cloned().collect();
        assert_eq!(
            listed.len(),
            listed_set.len(),
            "a module is listed twice: {listed:?}"
        );
        for name in &disk {
            assert!(
                lib.contains(name) || bin.contains(name),
                "src/ has module `{name}` that neither lib.rs nor main.rs declares"
            );
        }
        for name in lib.union(&bin).chain(&disk) {
            assert!(
                listed_set.contains(name),
                "module `{name}` is missing from lib.rs's # Layout"
            );
        }
        for name in &listed_set {
            assert!(
                disk.contains(name),
                "lib.rs's # Layout lists `{name}`, which is not a module under src/"
            );
        }
        let text = include_str!("lib.rs");
        for name in &lib {
            assert!(
                text.contains(&format!("- [`{name}`]")),
                "`{name}` is public: its # Layout line links it as [`{name}`]"
            );
        }
    }
}
