//! The Hugging Face cache layout, as `huggingface_hub` writes it:
//!
//! ```text
//! <cache>/models--org--name/refs/<revision>              the commit, no trailing newline
//! <cache>/models--org--name/blobs/<etag>                 file contents, by ETag
//! <cache>/models--org--name/snapshots/<commit>/<path>    relative symlink to ../../blobs/<etag>
//! <cache>/.locks/models--org--name/<etag>.lock           held while a blob is downloaded
//! ```

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::pace::Cancel;
use super::RepoRef;

/// One repository's folder in the cache.
pub struct RepoCache {
    root: PathBuf,
    locks: PathBuf,
}

impl RepoCache {
    pub fn new(cache_dir: &Path, repo: &RepoRef) -> Self {
        let folder = format!("models--{}", repo.id.replace('/', "--"));
        Self {
            root: cache_dir.join(&folder),
            locks: cache_dir.join(".locks").join(folder),
        }
    }

    /// The commit a revision was last resolved to, when known.
    pub fn commit_of(&self, repo: &RepoRef) -> Option<String> {
        if repo.is_commit() {
            return Some(repo.revision.clone());
        }
        let text = std::fs::read_to_string(self.root.join("refs").join(&repo.revision)).ok()?;
        Some(text.trim().to_owned()).filter(|c| super::is_commit(c))
    }

    /// Records `commit` as the revision's target; written whole (temporary file and rename) and
    /// without a trailing newline, which Python readers would take as part of the commit.
    pub fn set_ref(&self, revision: &str, commit: &str) -> io::Result<()> {
        let path = self.root.join("refs").join(revision);
        create_parent(&path)?;
        // unique per process and call: two loads of one repository may write refs at once
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("ref");
        let tmp = path.with_file_name(format!(".{name}.{}.{seq}.tmp", std::process::id()));
        std::fs::write(&tmp, commit)?;
        std::fs::rename(&tmp, &path)
    }

    pub fn snapshot(&self, commit: &str) -> PathBuf {
        self.root.join("snapshots").join(commit)
    }

    pub fn blob(&self, etag: &str) -> PathBuf {
        self.root.join("blobs").join(etag)
    }

    /// Where a blob is downloaded before it is complete and checked; kept on failure so that
    /// the next attempt resumes it.
    pub fn partial(&self, etag: &str) -> PathBuf {
        self.root.join("blobs").join(format!("{etag}.incomplete"))
    }

    /// An exclusive lock on one blob, across processes (flock, as Python's filelock takes it);
    /// None when `cancel` is set while another holds it (checked every 100 ms).
    pub fn lock(&self, etag: &str, cancel: &Cancel) -> io::Result<Option<File>> {
        std::fs::create_dir_all(&self.locks)?;
        let path = self.locks.join(format!("{etag}.lock"));
        // group-writable like huggingface_hub's, for a cache shared by several users
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o664)
            .open(&path)?;
        let mut logged = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(file)),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
            if cancel.is_cancelled() {
                return Ok(None);
            }
            if !logged {
                tracing::info!(lock = %path.display(), "waiting for another download of the file");
                logged = true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Makes `snapshots/<commit>/<file>` a relative link to the blob.
    pub fn link(&self, commit: &str, file: &str, etag: &str) -> io::Result<()> {
        let link = self.snapshot(commit).join(file);
        create_parent(&link)?;
        let depth = file.matches('/').count();
        let target = format!("{}../../blobs/{etag}", "../".repeat(depth));
        match std::os::unix::fs::symlink(target, &link) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            r => r,
        }
    }

    /// Creates the cache folder with the CACHEDIR.TAG that tells backup tools to skip it.
    pub fn ensure_root(cache_dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(cache_dir)?;
        let tag = cache_dir.join("CACHEDIR.TAG");
        if !tag.exists() {
            std::fs::write(
                tag,
                "Signature: 8a477f597d28d172789f06886806bc55\n\
                 # This file is a cache directory tag created by crossrank (Hugging Face cache).\n",
            )?;
        }
        Ok(())
    }
}

fn create_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(p) => std::fs::create_dir_all(p),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_huggingface_hub() {
        let dir = tempfile::tempdir().unwrap();
        let repo = RepoRef::parse("org/name@v1").unwrap();
        let cache = RepoCache::new(dir.path(), &repo);
        let commit = "a".repeat(40);
        cache.set_ref("v1", &commit).unwrap();
        let refs = dir.path().join("models--org--name/refs/v1");
        assert_eq!(std::fs::read_to_string(refs).unwrap(), commit);
        assert_eq!(cache.commit_of(&repo), Some(commit.clone()));

        std::fs::create_dir_all(dir.path().join("models--org--name/blobs")).unwrap();
        std::fs::write(cache.blob("e1"), "x").unwrap();
        cache.link(&commit, "1_Dense/config.json", "e1").unwrap();
        cache.link(&commit, "1_Dense/config.json", "e1").unwrap();
        let link = cache.snapshot(&commit).join("1_Dense/config.json");
        let target = std::fs::read_link(&link).unwrap();
        assert_eq!(target, PathBuf::from("../../../blobs/e1"));
        assert_eq!(std::fs::read_to_string(link).unwrap(), "x");
    }
}
