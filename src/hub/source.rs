//! Where a model comes from: a local directory or a Hugging Face id, decided by one rule for
//! every entry point (`--model`, the TOML file, LoadModel under `--model-root`, the CLI's
//! `score` and `rerank`).

use std::path::{Path, PathBuf};

use super::{fetch, Cancel, HubConfig, HubError, Progress, RepoRef};

/// A model's files: a directory, or a Hugging Face repository fetched into the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A directory (it may not exist: the loader says so). `shadows_id`: its name as given is
    /// also a valid Hugging Face id, which the directory wins over (said in the log).
    Local { dir: PathBuf, shadows_id: bool },
    /// A Hugging Face id, fetched when the model loads.
    Hub(RepoRef),
}

impl ModelSource {
    /// The one rule: `given` is the directory `base/given` when that exists or when `given` is
    /// no Hugging Face id (`org/name[@revision]`), else the id. Without a `base` (LoadModel with
    /// no `--model-root`) no directory can be meant, so an id is always the id.
    pub fn resolve(given: &Path, base: Option<&Path>) -> Self {
        let local = base.map(|b| b.join(given));
        let exists = local.as_ref().is_some_and(|dir| dir.exists());
        match RepoRef::parse_path(given) {
            Some(repo) if !exists => Self::Hub(repo),
            id => Self::Local {
                dir: local.unwrap_or_else(|| given.to_owned()),
                shadows_id: id.is_some(),
            },
        }
    }

    /// The directory to load: the local one, or the id's snapshot, fetched as needed (until
    /// `cancel` is set). `model` names the model in logs.
    pub fn dir(
        &self,
        model: &str,
        config: &HubConfig,
        progress: Progress,
        cancel: &Cancel,
    ) -> Result<PathBuf, HubError> {
        match self {
            Self::Local { dir, shadows_id } => {
                if *shadows_id {
                    tracing::info!(model, dir = %dir.display(),
                        "using the local directory, not the Hugging Face id of the same name");
                }
                Ok(dir.clone())
            }
            Self::Hub(repo) => {
                let dir = fetch::snapshot_until(repo, config, progress, cancel)?;
                tracing::info!(model, repo = %repo, dir = %dir.display(), "using the Hugging Face model");
                Ok(dir)
            }
        }
    }

    /// The id's snapshot in the cache, or the directory, without any network access; None for
    /// an id whose revision the cache has not seen.
    pub fn cached_dir(&self, config: &HubConfig) -> Option<PathBuf> {
        match self {
            Self::Local { dir, .. } => Some(dir.clone()),
            Self::Hub(repo) => {
                let cache = super::cache::RepoCache::new(&config.cache_dir, repo);
                Some(cache.snapshot(&cache.commit_of(repo)?))
            }
        }
    }
}

impl std::fmt::Display for ModelSource {
    /// The directory, or the id with its revision.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local { dir, .. } => write!(f, "{}", dir.display()),
            Self::Hub(repo) => write!(f, "{repo}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An id stays an id unless a directory of that name exists under the base; without a
    /// base it is always the id; a path that is no id is a directory either way.
    #[test]
    fn one_rule_for_ids_and_directories() {
        let base = tempfile::tempdir().unwrap();
        let id = Path::new("org/name@v1");
        let repo = RepoRef::parse("org/name@v1").unwrap();
        assert_eq!(
            ModelSource::resolve(id, Some(base.path())),
            ModelSource::Hub(repo.clone())
        );
        assert_eq!(ModelSource::resolve(id, None), ModelSource::Hub(repo));
        std::fs::create_dir_all(base.path().join(id)).unwrap();
        assert_eq!(
            ModelSource::resolve(id, Some(base.path())),
            ModelSource::Local {
                dir: base.path().join(id),
                shadows_id: true
            }
        );
        assert_eq!(
            ModelSource::resolve(Path::new("models/x/y"), Some(Path::new("/b"))),
            ModelSource::Local {
                dir: PathBuf::from("/b/models/x/y"),
                shadows_id: false
            }
        );
    }
}
