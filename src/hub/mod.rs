//! Models by Hugging Face id: `org/name[@revision]` wherever a model directory is accepted.
//!
//! The files a model needs are fetched into the standard Hugging Face cache (the layout
//! `huggingface_hub` writes, so caches filled by Python tools are reused and vice versa) and the
//! snapshot directory is handed to the loader like any local directory. An existing local
//! directory of the same name wins ([`ModelSource::resolve`], the one rule). Environment: `HF_ENDPOINT`, `HF_HUB_CACHE` / `HF_HOME`,
//! `HF_TOKEN`, `HF_HUB_OFFLINE` (see [`HubConfig::from_env`]), and crossrank's bounds:
//! `CROSSRANK_HUB_MAX_GIB`, `CROSSRANK_HUB_TIMEOUT_SECS`, `CROSSRANK_HUB_MIN_RATE_KIB` (every
//! transfer ends: see [`Transfer`]).

mod cache;
mod config;
mod error;
mod fetch;
mod files;
mod http;
mod pace;
mod progress;
mod source;

use std::path::Path;

pub use config::HubConfig;
pub use error::HubError;
pub use fetch::{snapshot, snapshot_until};
pub use pace::{Cancel, Transfer, DEFAULT_MIN_RATE_KIB, DEFAULT_TIMEOUT_SECS};
pub use progress::Progress;
pub use source::ModelSource;

/// The branch used when an id names no revision.
pub const DEFAULT_REVISION: &str = "main";

/// A model repository on the Hub and the revision (branch, tag or commit) wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRef {
    /// `org/name`.
    pub id: String,
    pub revision: String,
}

impl RepoRef {
    /// `org/name` or `org/name@revision`; None for anything else (a path, say). Each part is
    /// 1-96 of `[A-Za-z0-9_.-]`, not starting or ending with `.` or `-`, without `--` or `..`
    /// (the Hub's own rules, which also keep ids from reaching outside the cache).
    pub fn parse(s: &str) -> Option<Self> {
        let (id, revision) = match s.split_once('@') {
            Some((id, rev)) => (id, rev),
            None => (s, DEFAULT_REVISION),
        };
        let (org, name) = id.split_once('/')?;
        if !valid_part(org) || !valid_part(name) || !valid_revision(revision) {
            return None;
        }
        // a commit names its snapshot folder in lower case, as the Hub writes it
        let revision = match is_commit(revision) {
            true => revision.to_ascii_lowercase(),
            false => revision.to_owned(),
        };
        Some(Self {
            id: id.to_owned(),
            revision,
        })
    }

    /// [`RepoRef::parse`] of a path given as a model directory.
    pub fn parse_path(path: &Path) -> Option<Self> {
        path.to_str().and_then(Self::parse)
    }

    /// A 40-hex revision is a commit: it needs no resolving and names its snapshot.
    pub fn is_commit(&self) -> bool {
        is_commit(&self.revision)
    }
}

impl std::fmt::Display for RepoRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.id, self.revision)
    }
}

fn valid_part(p: &str) -> bool {
    (1..=96).contains(&p.len())
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && !p.starts_with(['.', '-'])
        && !p.ends_with(['.', '-'])
        && !p.contains("--")
        && !p.contains("..")
}

/// Branch and tag names as git allows them, within what is safe as a file name under `refs/`
/// (`refs/pr/N` included): no `..`, no empty segment, no control or shell-hostile characters.
fn valid_revision(r: &str) -> bool {
    (1..=256).contains(&r.len())
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-/+".contains(&b))
        && !r.contains("..")
        && r.split('/').all(|s| !s.is_empty() && s != ".")
}

fn is_commit(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_revisions() {
        let r = RepoRef::parse("BAAI/bge-reranker-base").unwrap();
        assert_eq!(
            (r.id.as_str(), r.revision.as_str()),
            ("BAAI/bge-reranker-base", "main")
        );
        let r = RepoRef::parse("cross-encoder/ms-marco-MiniLM-L-6-v2@v1.0").unwrap();
        assert_eq!(r.revision, "v1.0");
        assert!(RepoRef::parse("a/b@refs/pr/3").is_some());
        let c = RepoRef::parse(&format!(
            "a/b@{}",
            "0123456789abcdef".repeat(3)[..40].to_owned()
        ));
        assert!(c.unwrap().is_commit());
        for bad in [
            "models/minilm-ce/x",
            "minilm",
            "/abs/path",
            "./a",
            "a/",
            "/b",
            "a/b@",
            "a/b@../x",
            "a/b@x//y",
            "a--b/c",
            "a/..b",
            "a/b c",
            "-a/b",
            "a/b.",
        ] {
            assert_eq!(RepoRef::parse(bad), None, "{bad}");
        }
    }
}
