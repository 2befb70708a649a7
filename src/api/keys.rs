//! Data-plane API keys (`--api-keys-file`): when set, every scoring call on either port must
//! present one of the file's keys in `authorization` (`Bearer <key>`, or the bare key, which
//! LlamaIndex's TEI client sends). The file holds one key per line, `KEY` or `NAME KEY`
//! (whitespace between); blank lines and lines starting with `#` are skipped. The name is the
//! tenant of the calls that present the key (`key-<N>` for a key without one, N its
//! [`KeyIndex`]); several keys may share a name, e.g. a tenant's old and new key during a
//! rotation. The file is read at start-up (a bad file stops the server, naming the line) and
//! again on SIGHUP (a bad file then keeps the old keys, and the log says why).
//!
//! Only the SHA-256 digest of each key is kept. A presented key is hashed and its digest
//! compared in full with every key's, without an early exit: the time a check takes depends on
//! the number of keys and on the length of what was presented, never on which key matched or
//! how much of one did. Neither keys nor digests are logged; a key's position in the file
//! ([`KeyIndex`]) and its name may be. Error messages name the line and the byte, never what
//! the line holds (a line written `KEY NAME` by mistake would otherwise show the key).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};

use crate::config::is_name_byte;
use crate::engine::request::MAX_TENANT_BYTES;
use crate::engine::ServeError;

/// Keys one file may hold.
pub const MAX_KEYS: usize = 10_000;
/// Bytes of one key.
pub const MAX_KEY_BYTES: usize = 256;
/// Bytes of the whole file.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// Which key a call presented: its position among the file's keys, from 0, in file order
/// (comments and blank lines are not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyIndex(pub usize);

/// The key a call presented, as it may be logged: its position and its name (the call's
/// tenant). Never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMatch {
    pub index: KeyIndex,
    /// The line's NAME, or `key-<index>` for a line with a key alone.
    pub name: Arc<str>,
}

impl KeyIndex {
    /// As a span field: an i64, which OpenTelemetry exports as an integer (tracing-opentelemetry
    /// turns unsigned fields into strings). Indexes are below [`MAX_KEYS`].
    pub fn field(self) -> i64 {
        self.0 as i64
    }
}

type KeyDigest = [u8; 32];

/// The keys of a file, as digests, in file order, with their names.
struct KeySet {
    digests: Vec<KeyDigest>,
    names: Vec<Arc<str>>,
}

/// The keys in force, and the file they came from.
pub struct ApiKeys {
    path: PathBuf,
    /// Replaced whole by a successful reload; a check works on the set it started with.
    current: RwLock<Arc<KeySet>>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("path", &self.path)
            .field("keys", &self.len())
            .finish()
    }
}

impl ApiKeys {
    /// Reads the keys of `path`; the error names the file, and the line when one is at fault.
    pub fn load(path: &Path) -> Result<Self, String> {
        let set = read_keys(path)?;
        Ok(Self {
            path: path.to_owned(),
            current: RwLock::new(Arc::new(set)),
        })
    }

    /// Reads the file again and puts its keys in force; on failure the old keys stay.
    /// Returns how many keys there are now.
    pub fn reload(&self) -> Result<usize, String> {
        let set = read_keys(&self.path)?;
        let n = set.digests.len();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        Ok(n)
    }

    pub fn len(&self) -> usize {
        self.set().digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn set(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The key that the `authorization` header (or metadata) value presents.
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<KeyMatch, ServeError> {
        let Some(value) = authorization else {
            return Err(ServeError::Unauthenticated(
                "this server requires an API key: send the header `authorization: Bearer <key>` \
                 with a key from its --api-keys-file"
                    .into(),
            ));
        };
        let digest: KeyDigest = Sha256::digest(presented(value)).into();
        let set = self.set();
        let found = set.find(&digest).map(|i| KeyMatch {
            index: KeyIndex(i),
            name: set.names[i].clone(),
        });
        found.ok_or_else(|| {
            ServeError::Unauthenticated(
                "the API key in `authorization` is not one of this server's keys".into(),
            )
        })
    }
}

/// The key in an `authorization` value: after `Bearer ` (any case), else the whole value.
fn presented(value: &[u8]) -> &[u8] {
    let value = value.trim_ascii();
    match value.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => value[7..].trim_ascii_start(),
        _ => value,
    }
}

impl KeySet {
    /// The position of the key whose digest is `digest`. Every digest is compared in full and
    /// the position is picked by masks, so no branch depends on the keys' bytes.
    fn find(&self, digest: &KeyDigest) -> Option<usize> {
        let mut found = usize::MAX;
        for (i, key) in self.digests.iter().enumerate() {
            let diff = key.iter().zip(digest).fold(0u8, |d, (a, b)| d | (a ^ b));
            let equal = usize::from(std::hint::black_box(diff) == 0);
            let mask = equal.wrapping_neg();
            found = (found & !mask) | (i & mask);
        }
        (found != usize::MAX).then_some(found)
    }
}

/// Reads and checks a keys file, at most [`MAX_FILE_BYTES`] of it.
fn read_keys(path: &Path) -> Result<KeySet, String> {
    let at = |e: String| format!("--api-keys-file {}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(|e| at(e.to_string()))?;
    let mut text = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| at(e.to_string()))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(at(format!(
            "the file is larger than {MAX_FILE_BYTES} bytes, the limit"
        )));
    }
    parse(&text).map_err(at)
}

/// The keys of a file's text: one per line, `KEY` or `NAME KEY`, surrounding whitespace
/// trimmed, blank lines and `#` comments skipped. A key is 1 to [`MAX_KEY_BYTES`] bytes of
/// visible ASCII, no two alike; a name 1 to [`MAX_TENANT_BYTES`] characters of
/// A-Z a-z 0-9 - _ . (names may repeat).
fn parse(text: &[u8]) -> Result<KeySet, String> {
    let mut set = KeySet {
        digests: Vec::new(),
        names: Vec::new(),
    };
    let mut lines_of: std::collections::HashMap<KeyDigest, usize> = Default::default();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        let line = line.trim_ascii();
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        let (name, key) = fields(line).map_err(|e| format!("line {n}: {e}"))?;
        if set.digests.len() == MAX_KEYS {
            return Err(format!(
                "line {n}: more than {MAX_KEYS} keys; the limit is {MAX_KEYS}"
            ));
        }
        let digest: KeyDigest = Sha256::digest(key).into();
        if let Some(first) = lines_of.insert(digest, n) {
            return Err(format!("line {n}: the same key as line {first}"));
        }
        let name = name.unwrap_or_else(|| format!("key-{}", set.digests.len()));
        set.digests.push(digest);
        set.names.push(Arc::from(name));
    }
    if set.digests.is_empty() {
        return Err("the file holds no keys (only blank lines and # comments)".into());
    }
    Ok(set)
}

/// A line's name, when it has one, and its key; each checked.
fn fields(line: &[u8]) -> Result<(Option<String>, &[u8]), String> {
    let mut parts = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|p| !p.is_empty());
    let (name, key) = match (parts.next(), parts.next(), parts.next()) {
        (Some(key), None, _) => (None, key),
        (Some(name), Some(key), None) => (Some(check_name(name)?), key),
        _ => {
            return Err(format!(
                "{} fields separated by whitespace; a line is KEY or NAME KEY (neither has spaces)",
                3 + parts.count()
            ))
        }
    };
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "the key is {} bytes; the limit is {MAX_KEY_BYTES}",
            key.len()
        ));
    }
    if let Some(col) = key.iter().position(|b| !b.is_ascii_graphic()) {
        return Err(format!(
            "the key has a control or non-ASCII byte at byte {} of the key; keys are visible \
             ASCII (they travel in an HTTP header)",
            col + 1
        ));
    }
    Ok((name, key))
}

/// A key's name: 1 to [`MAX_TENANT_BYTES`] characters of A-Z a-z 0-9 - _ . (a tenant's name,
/// and possibly a metric label).
fn check_name(name: &[u8]) -> Result<String, String> {
    if name.len() > MAX_TENANT_BYTES {
        return Err(format!(
            "the name (the first of two fields) is {} bytes; the limit is {MAX_TENANT_BYTES}",
            name.len()
        ));
    }
    if let Some(col) = name.iter().position(|&b| !is_name_byte(b)) {
        return Err(format!(
            "the name (the first of two fields) has a character other than A-Z a-z 0-9 - _ . \
             at byte {}",
            col + 1
        ));
    }
    Ok(String::from_utf8_lossy(name).into_owned())
}

/// Reloads `keys` on every SIGHUP, from a task of its own. The handler is installed before
/// this returns, so a SIGHUP sent after it cannot stop the process. (No-op off Unix.)
pub fn reload_on_hangup(keys: Arc<ApiKeys>) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                reload_logged(&keys).await;
            }
        });
    }
    #[cfg(not(unix))]
    drop(keys);
    Ok(())
}

/// One reload, on a blocking thread, with its outcome in the log.
async fn reload_logged(keys: &Arc<ApiKeys>) {
    let k = keys.clone();
    let file = keys.path().display().to_string();
    match tokio::task::spawn_blocking(move || k.reload()).await {
        Ok(Ok(n)) => tracing::info!(keys = n, %file, "SIGHUP: API keys reloaded"),
        Ok(Err(e)) => tracing::error!(
            error = %e,
            "SIGHUP: reloading the API keys failed; the old keys stay in force"
        ),
        Err(e) => tracing::error!(error = %e, "SIGHUP: the API key reload panicked"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> ApiKeys {
        ApiKeys {
            path: PathBuf::from("keys.txt"),
            current: RwLock::new(Arc::new(parse(text.as_bytes()).unwrap())),
        }
    }

    /// The position of the key `authorization` presents.
    fn index(k: &ApiKeys, authorization: &[u8]) -> Result<KeyIndex, ServeError> {
        k.check(Some(authorization)).map(|m| m.index)
    }

    /// The name of the key `authorization` presents.
    fn name(k: &ApiKeys, authorization: &[u8]) -> String {
        k.check(Some(authorization)).unwrap().name.to_string()
    }

    #[test]
    fn keys_are_found_by_position_with_or_without_bearer() {
        let k = keys("# staging\n\n  alpha-1 \r\nbeta/2==\n# old: gamma\ndelta\n");
        assert_eq!(k.len(), 3);
        assert_eq!(index(&k, b"Bearer alpha-1"), Ok(KeyIndex(0)));
        assert_eq!(index(&k, b"bearer  beta/2=="), Ok(KeyIndex(1)));
        assert_eq!(index(&k, b"delta"), Ok(KeyIndex(2)));
        assert_eq!(index(&k, b" BEARER delta "), Ok(KeyIndex(2)));
        for wrong in [
            &b"gamma"[..],
            b"Bearer alpha",
            b"Bearer alpha-12",
            b"",
            b"Bearer ",
        ] {
            assert!(matches!(
                k.check(Some(wrong)),
                Err(ServeError::Unauthenticated(_))
            ));
        }
        let missing = k.check(None).unwrap_err().to_string();
        assert!(missing.contains("authorization: Bearer <key>"), "{missing}");
    }

    #[test]
    fn bad_files_are_refused_naming_the_line() {
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        let cases = [
            (
                format!("a\n{long}\n"),
                "line 2: the key is 257 bytes; the limit is 256",
            ),
            (
                "a\nb c d\n".into(),
                "line 2: 3 fields separated by whitespace",
            ),
            ("a\nb c\td\te\n".into(), "line 2: 4 fields"),
            ("a\nkéy\n".into(), "non-ASCII byte at byte 2"),
            ("a\nname k\x01y\n".into(), "line 2: the key has a control"),
            (
                "a\nte/am key-b\n".into(),
                "line 2: the name (the first of two fields) has a character other than A-Z a-z \
                 0-9 - _ . at byte 3",
            ),
            (
                format!("a\n{} key-b\n", "n".repeat(129)),
                "line 2: the name (the first of two fields) is 129 bytes; the limit is 128",
            ),
            ("a\nb\n\na\n".into(), "line 4: the same key as line 1"),
            ("# nothing\n\n".into(), "holds no keys"),
        ];
        for (text, want) in cases {
            let e = parse(text.as_bytes()).err().unwrap();
            assert!(e.contains(want), "{e:?} lacks {want:?}");
            for part in ["kkkk", "b c", "k\x01y", "te/am", "key-b", "nnnn"] {
                assert!(!e.contains(part), "{part:?}, a part of a line, in {e:?}");
            }
        }
        let many: String = (0..=MAX_KEYS).map(|i| format!("key{i}\n")).collect();
        let e = parse(many.as_bytes()).err().unwrap();
        assert_eq!(e, "line 10001: more than 10000 keys; the limit is 10000");
        let longest = "k".repeat(MAX_KEY_BYTES);
        assert!(parse(longest.as_bytes()).is_ok());
        let named = format!("{} {longest}", "n".repeat(MAX_TENANT_BYTES));
        assert!(parse(named.as_bytes()).is_ok());
    }

    /// `NAME KEY` lines name their key (whitespace between: spaces or tabs); a key alone is
    /// `key-<N>`, N its position; keys may share a name; a named key is matched by its key
    /// alone (the name is not part of it).
    #[test]
    fn keys_have_names_given_or_by_position() {
        let k = keys("# team a, old and new\nteam-a sk-1\nteam-a\t sk-2\nsk-3\n\nb.2_x sk-4\n");
        assert_eq!(k.len(), 4);
        assert_eq!(name(&k, b"Bearer sk-1"), "team-a");
        assert_eq!(name(&k, b"sk-2"), "team-a");
        assert_eq!(index(&k, b"sk-2"), Ok(KeyIndex(1)));
        assert_eq!(
            name(&k, b"Bearer sk-3"),
            "key-2",
            "the third key is index 2"
        );
        assert_eq!(name(&k, b"sk-4"), "b.2_x");
        assert!(k.check(Some(b"team-a sk-1")).is_err());
        assert!(k.check(Some(b"team-a")).is_err());
        let e = parse(b"team-a k1\nteam-b k1\n").err().unwrap();
        assert_eq!(e, "line 2: the same key as line 1");
    }

    #[test]
    fn a_failed_reload_keeps_the_old_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, "one\n").unwrap();
        let k = ApiKeys::load(&path).unwrap();
        std::fs::write(&path, "two\nthree\n").unwrap();
        assert_eq!(k.reload(), Ok(2));
        assert_eq!(index(&k, b"three"), Ok(KeyIndex(1)));
        assert!(k.check(Some(b"one")).is_err());
        std::fs::write(&path, "").unwrap();
        assert!(k.reload().unwrap_err().contains("holds no keys"));
        assert_eq!(index(&k, b"two"), Ok(KeyIndex(0)));
        let big = vec![b'#'; MAX_FILE_BYTES as usize + 1];
        std::fs::write(&path, big).unwrap();
        let e = k.reload().unwrap_err();
        assert!(e.contains("larger than 4194304 bytes"), "{e}");
        let missing = ApiKeys::load(&dir.path().join("nope")).unwrap_err();
        assert!(missing.starts_with("--api-keys-file "), "{missing}");
    }
}
