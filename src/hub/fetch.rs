//! Bringing a revision's model files into the cache: resolve the revision to a commit, pick the
//! files, download each missing blob (resumable, checked against its size and ETag) and link it
//! into the commit's snapshot. Offline, or when the Hub is unreachable, the cache alone serves.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::Digest;

use super::cache::RepoCache;
use super::files::{self, SINGLE_WEIGHTS, WEIGHTS_INDEX};
use super::http::{error_chain, invalid, resumes_at, FileMeta, Hub};
use super::pace::{Cancel, Pace};
use super::progress::Tracker;
use super::{HubConfig, HubError, Progress, RepoRef};

/// Attempts per file when the connection breaks mid-download (each resumes where the last
/// stopped).
const ATTEMPTS: usize = 4;
/// modules.json and the weights index are read up to this size.
const MAX_JSON_BYTES: u64 = 64 << 20;

/// The snapshot directory of `repo`, holding every file the model needs.
pub fn snapshot(
    repo: &RepoRef,
    config: &HubConfig,
    progress: Progress,
) -> Result<PathBuf, HubError> {
    snapshot_until(repo, config, progress, &Cancel::default())
}

/// [`snapshot`], stopping with [`HubError::Cancelled`] at the first check after `cancel` is
/// set (between reads and between files); a partial download stays for the next one to resume.
pub fn snapshot_until(
    repo: &RepoRef,
    config: &HubConfig,
    progress: Progress,
    cancel: &Cancel,
) -> Result<PathBuf, HubError> {
    let cache = RepoCache::new(&config.cache_dir, repo);
    if config.offline {
        return cached(repo, &cache, config, "offline (HF_HUB_OFFLINE)");
    }
    if repo.is_commit() {
        // a commit never changes: a complete snapshot needs no request (as in huggingface_hub)
        if let Ok(dir) = cached(repo, &cache, config, "") {
            return Ok(dir);
        }
    }
    let hub = Hub::new(config, repo, cancel)?;
    let revision = match hub.revision() {
        Ok(r) => r,
        Err(e) if cache_may_serve(&e) => {
            tracing::warn!(repo = %repo, error = %e,
                "the Hub did not answer the revision lookup; trying the cache");
            let why = format!("the revision lookup failed ({e})");
            return cached(repo, &cache, config, &why);
        }
        Err(e) => return Err(e),
    };
    let io = |path: &Path| {
        let path = path.to_owned();
        let repo = repo.to_string();
        move |source| HubError::Io { repo, path, source }
    };
    RepoCache::ensure_root(&config.cache_dir).map_err(io(&config.cache_dir))?;
    if !repo.is_commit() {
        cache
            .set_ref(&repo.revision, &revision.commit)
            .map_err(io(&config.cache_dir))?;
    }
    let mut fetcher = Fetcher {
        hub,
        cache: &cache,
        repo,
        commit: revision.commit.clone(),
        tracker: Tracker::new(progress, repo.to_string()),
        max_bytes: config.max_bytes,
        bytes: 0,
    };
    fetcher.model(&revision.files)?;
    fetcher.tracker.finish();
    Ok(cache.snapshot(&revision.commit))
}

/// No answer, a server error, a refused token or rate limiting: the cache may still serve what
/// was fetched before (huggingface_hub falls back in the same cases). A 404 may not: the id or
/// the revision is wrong.
fn cache_may_serve(e: &HubError) -> bool {
    matches!(e, HubError::Unreachable { .. } | HubError::TooSlow { .. })
        || matches!(e, HubError::Http { status, .. }
            if *status >= 500 || [401, 403, 429].contains(status))
}

/// The cached snapshot of `repo`, when it holds the required files.
fn cached(
    repo: &RepoRef,
    cache: &RepoCache,
    config: &HubConfig,
    why: &str,
) -> Result<PathBuf, HubError> {
    let missing = |what: String| HubError::NotCached {
        repo: repo.to_string(),
        why: why.to_owned(),
        what,
        cache: config.cache_dir.clone(),
    };
    let commit = cache
        .commit_of(repo)
        .ok_or_else(|| missing(format!("record of the revision {:?}", repo.revision)))?;
    let dir = cache.snapshot(&commit);
    for file in files::required() {
        if !dir.join(file).is_file() {
            return Err(missing(format!("{file} in the snapshot {commit}")));
        }
    }
    if !dir.join(SINGLE_WEIGHTS).is_file() {
        let shards = cached_shards(&dir.join(WEIGHTS_INDEX))
            .ok_or_else(|| missing(format!("safetensors weights in the snapshot {commit}")))?;
        if let Some(shard) = shards.iter().find(|s| !dir.join(s).is_file()) {
            return Err(missing(format!(
                "the shard {shard} in the snapshot {commit}"
            )));
        }
    }
    tracing::info!(repo = %repo, commit, "using the cached snapshot");
    Ok(dir)
}

/// The shards a cached weights index names; None without a readable index.
fn cached_shards(index: &Path) -> Option<Vec<String>> {
    files::shards(&read_small(index).ok()?).ok()
}

/// A small JSON file (modules.json, the weights index), read up to [`MAX_JSON_BYTES`].
fn read_small(path: &Path) -> std::io::Result<String> {
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_JSON_BYTES)
        .read_to_string(&mut text)?;
    Ok(text)
}

struct Fetcher<'a> {
    hub: Hub<'a>,
    cache: &'a RepoCache,
    repo: &'a RepoRef,
    commit: String,
    tracker: Tracker,
    /// The bound on the model's files, and the bytes of those described so far (files already
    /// in the snapshot are not described, so not counted).
    max_bytes: u64,
    bytes: u64,
}

impl Fetcher<'_> {
    /// Configs and tokenizer first, then the module configs `modules.json` names, then the
    /// weights (the index first when sharded).
    fn model(&mut self, listed: &BTreeSet<String>) -> Result<(), HubError> {
        if let Some(missing) = files::required().find(|f| !listed.contains(*f)) {
            return Err(invalid(
                self.repo,
                missing,
                "the repository has no such file".into(),
            ));
        }
        let weights = self.weights_file(listed)?;
        for file in files::configs(listed) {
            self.file(&file)?;
        }
        if listed.contains("modules.json") {
            let text = self.read("modules.json")?;
            let modules = files::module_configs(&text, listed)
                .map_err(|e| invalid(self.repo, "modules.json", e))?;
            for file in modules {
                self.file(&file)?;
            }
        }
        self.file(weights)?;
        if weights == WEIGHTS_INDEX {
            let text = self.read(WEIGHTS_INDEX)?;
            let shards = files::shards(&text).map_err(|e| invalid(self.repo, WEIGHTS_INDEX, e))?;
            for shard in shards {
                self.file(&shard)?;
            }
        }
        Ok(())
    }

    /// The single safetensors file or the index of shards, checked before anything is fetched.
    fn weights_file(&self, listed: &BTreeSet<String>) -> Result<&'static str, HubError> {
        if listed.contains(SINGLE_WEIGHTS) {
            return Ok(SINGLE_WEIGHTS);
        }
        if listed.contains(WEIGHTS_INDEX) {
            return Ok(WEIGHTS_INDEX);
        }
        let others: Vec<&str> = listed
            .iter()
            .filter(|f| f.ends_with(".bin") || f.ends_with(".pt") || f.ends_with(".pth"))
            .map(String::as_str)
            .collect();
        Err(invalid(
            self.repo,
            SINGLE_WEIGHTS,
            format!(
                "the repository has no {SINGLE_WEIGHTS} or {WEIGHTS_INDEX} (crossrank reads \
                 safetensors only; it has: {}); pick a revision with safetensors, or convert \
                 it and load the directory",
                if others.is_empty() {
                    "no weights".into()
                } else {
                    others.join(", ")
                }
            ),
        ))
    }

    /// A small JSON file of the snapshot (see [`read_small`]).
    fn read(&self, file: &str) -> Result<String, HubError> {
        let path = self.cache.snapshot(&self.commit).join(file);
        read_small(&path).map_err(|e| self.io(&path, e))
    }

    /// Brings one file into the snapshot, downloading its blob unless the cache has it.
    fn file(&mut self, file: &str) -> Result<(), HubError> {
        if !files::safe_relative(file) {
            return Err(invalid(self.repo, file, "not a plain relative path".into()));
        }
        if self.cache.snapshot(&self.commit).join(file).is_file() {
            return Ok(());
        }
        if self.hub.cancel.is_cancelled() {
            return Err(self.hub.stopped(file, super::pace::Stop::Cancelled));
        }
        let meta = self.hub.head(&self.commit, file)?;
        self.bytes = self.bytes.saturating_add(meta.size);
        if self.bytes > self.max_bytes {
            let reason = format!(
                "the model's files reach {} bytes here, beyond the bound of {} \
                 (CROSSRANK_HUB_MAX_GIB)",
                self.bytes, self.max_bytes
            );
            return Err(invalid(self.repo, file, reason));
        }
        let blob = self.cache.blob(&meta.etag);
        if !has_size(&blob, meta.size) {
            self.download(file, &meta)?;
        }
        self.cache
            .link(&self.commit, file, &meta.etag)
            .map_err(|source| self.io(&blob, source))
    }

    fn io(&self, path: &Path, source: std::io::Error) -> HubError {
        HubError::Io {
            repo: self.repo.to_string(),
            path: path.to_owned(),
            source,
        }
    }

    /// Downloads a blob under its lock, resuming a partial file (this or an earlier process's),
    /// checks it and moves it into place.
    fn download(&mut self, file: &str, meta: &FileMeta) -> Result<(), HubError> {
        let blob = self.cache.blob(&meta.etag);
        let lock = self.cache.lock(&meta.etag, self.hub.cancel);
        let Some(_lock) = lock.map_err(|e| self.io(&blob, e))? else {
            return Err(self.hub.stopped(file, super::pace::Stop::Cancelled));
        };
        if has_size(&blob, meta.size) {
            return Ok(()); // another process finished it while this one waited
        }
        let partial = self.cache.partial(&meta.etag);
        if let Some(dir) = partial.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.io(dir, e))?;
        }
        let kept = std::fs::metadata(&partial).map_or(0, |m| m.len().min(meta.size));
        self.tracker.file(file, meta.size - kept);
        let mut attempt = 1;
        while let Err(e) = self.transfer(file, meta, &partial) {
            let retry = matches!(
                e,
                HubError::Interrupted { .. } | HubError::Unreachable { .. }
            );
            if !retry || attempt == ATTEMPTS {
                return Err(e); // the partial file stays for the next run to resume
            }
            tracing::warn!(repo = %self.repo, file, attempt, error = %e, "download interrupted; resuming");
            std::thread::sleep(std::time::Duration::from_millis(250 * attempt as u64));
            attempt += 1;
        }
        if let Err(reason) = verify(&partial, meta) {
            let _ = std::fs::remove_file(&partial);
            return Err(invalid(self.repo, file, reason));
        }
        std::fs::rename(&partial, &blob).map_err(|e| self.io(&blob, e))
    }

    /// One GET into the partial file, from where it ends.
    fn transfer(&mut self, file: &str, meta: &FileMeta, partial: &Path) -> Result<(), HubError> {
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(partial)
            .map_err(|e| self.io(partial, e))?;
        let mut have = out.metadata().map_err(|e| self.io(partial, e))?.len();
        if have > meta.size {
            out.set_len(0).map_err(|e| self.io(partial, e))?;
            have = 0;
        }
        if have == meta.size {
            return Ok(());
        }
        // Paced for the whole file: a storage host that ignores Range sends all of it.
        let mut pace = self.hub.pace(Some(meta.size));
        let response = self.hub.get(&meta.url, file, have, &pace)?;
        if have > 0 && !resumes_at(&response, have) {
            out.set_len(0).map_err(|e| self.io(partial, e))?; // Range not honoured: restart
            self.tracker.rewind(have);
            have = 0;
        }
        let mut response = response.take(meta.size - have); // never past the announced size
        let mut buf = vec![0u8; 1 << 16];
        while have < meta.size {
            let n = match response.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    check(&self.hub, file, &pace)?; // reqwest's deadline, or a cancel
                    return Err(self.interrupted(file, have, meta, &error_chain(&e)));
                }
            };
            out.write_all(&buf[..n]).map_err(|e| self.io(partial, e))?;
            have += n as u64;
            self.tracker.advance(n as u64);
            pace.advance(n as u64)
                .map_err(|stop| self.hub.stopped(file, stop))?;
        }
        match have == meta.size {
            true => Ok(()),
            false => Err(self.interrupted(file, have, meta, "the connection closed early")),
        }
    }

    fn interrupted(&self, file: &str, have: u64, meta: &FileMeta, reason: &str) -> HubError {
        HubError::Interrupted {
            repo: self.repo.to_string(),
            what: file.to_owned(),
            reason: format!("{reason} after {have} of {} bytes", meta.size),
        }
    }
}

/// Err when `pace` says the transfer must stop.
fn check(hub: &Hub, file: &str, pace: &Pace) -> Result<(), HubError> {
    pace.check().map_err(|stop| hub.stopped(file, stop))
}

fn has_size(path: &Path, size: u64) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == size)
}

/// The blob's size, and its hash against the ETag: the sha256 of an LFS file (64 hex), the git
/// blob sha1 of a small one (40 hex); other ETags (some mirrors) are checked by size only.
fn verify(path: &Path, meta: &FileMeta) -> Result<(), String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len != meta.size {
        return Err(format!("downloaded {len} bytes, expected {}", meta.size));
    }
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let digest = match meta.etag.len() {
        64 => hex(&hash_file::<sha2::Sha256>(path, b"")?),
        40 => hex(&hash_file::<sha1::Sha1>(
            path,
            format!("blob {len}\0").as_bytes(),
        )?),
        _ => return Ok(()),
    };
    match digest.eq_ignore_ascii_case(&meta.etag) {
        true => Ok(()),
        false => Err(format!(
            "checksum {digest} does not match the ETag {}",
            meta.etag
        )),
    }
}

fn hash_file<D: Digest>(path: &Path, prefix: &[u8]) -> Result<Vec<u8>, String> {
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut hasher = D::new();
    hasher.update(prefix);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf).map_err(|e| e.to_string())? {
            0 => return Ok(hasher.finalize().to_vec()),
            n => hasher.update(&buf[..n]),
        }
    }
}
