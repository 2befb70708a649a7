//! Models by Hugging Face id: `org/name[@revision]` wherever a model directory is accepted.
//!
//! The files a model needs are fetched into the standard Hugging Face cache (the layout
//! `huggingface_hub` writes, so caches filled by Python tools are reused and vice versa) and the
//! snapshot directory is handed to the loader like any local directory. An existing local
//! directory of the same name wins. Environment: `HF_ENDPOINT`, `HF_HUB_CACHE` / `HF_HOME`,
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

use std::path::{Path, PathBuf};

pub use config::HubConfig;
pub use error::HubError;
pub use fetch::{snapshot, snapshot_until};
pub use pace::{Cancel, Transfer, DEFAULT_MIN_RATE_KIB, DEFAULT_TIMEOUT_SECS};
pub use progress::Progress;

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

/// The directory to load for a model given as `path` (relative to the working directory):
/// `path` itself when it exists (or is no Hugging Face id, for the loader to report), else the
/// id's snapshot, fetched as needed. `model` names the model in logs.
pub fn model_dir(
    model: &str,
    path: &Path,
    config: &HubConfig,
    progress: Progress,
) -> Result<PathBuf, String> {
    match RepoRef::parse_path(path) {
        Some(_) if path.exists() => {
            tracing::info!(model, dir = %path.display(),
                "using the local directory, not the Hugging Face id of the same name");
            Ok(path.to_owned())
        }
        Some(repo) => fetch_model(model, &repo, config, progress, &Cancel::default()),
        None => Ok(path.to_owned()),
    }
}

/// The snapshot of `repo`, fetched as needed (until `cancel` is set); the error also says that
/// no local directory of that name exists (the id may be a mistyped path).
pub fn fetch_model(
    model: &str,
    repo: &RepoRef,
    config: &HubConfig,
    progress: Progress,
    cancel: &Cancel,
) -> Result<PathBuf, String> {
    let dir = fetch::snapshot_until(repo, config, progress, cancel).map_err(|e| {
        format!(
            "{e} (taken as a Hugging Face id: there is no local directory {:?})",
            repo.id
        )
    })?;
    tracing::info!(model, repo = %repo, dir = %dir.display(), "using the Hugging Face model");
    Ok(dir)
}

/// The cached snapshot of `repo`, without any network access; None when the cache has not seen
/// its revision.
pub fn cached_snapshot(repo: &RepoRef) -> Option<PathBuf> {
    let config = HubConfig::from_env();
    let cache = cache::RepoCache::new(&config.cache_dir, repo);
    Some(cache.snapshot(&cache.commit_of(repo)?))
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
