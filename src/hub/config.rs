//! Where the Hub is, where its cache lives, the token and offline mode: the environment
//! variables `huggingface_hub` reads, with the same precedence.

use std::path::PathBuf;

use super::pace::{Transfer, DEFAULT_MIN_RATE_KIB, DEFAULT_TIMEOUT_SECS};

/// How to reach the Hub. `Debug` never shows the token.
#[derive(Clone)]
pub struct HubConfig {
    /// `HF_ENDPOINT`, without a trailing slash; default `https://huggingface.co`.
    pub endpoint: String,
    /// `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
    pub cache_dir: PathBuf,
    /// `HF_TOKEN`, else the file `HF_TOKEN_PATH`, else `$HF_HOME/token`.
    pub token: Option<String>,
    /// `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) is 1/ON/YES/TRUE: the cache only.
    pub offline: bool,
    /// `CROSSRANK_HUB_MAX_GIB`: the most one model may download, in bytes (default 100 GiB).
    pub max_bytes: u64,
    /// `CROSSRANK_HUB_TIMEOUT_SECS` and `CROSSRANK_HUB_MIN_RATE_KIB`: how long each transfer
    /// may take (see [`Transfer`]).
    pub transfer: Transfer,
}

/// Default bound of one model's download: above the largest rerankers served (an 8B LLM
/// reranker in f32 is 32 GB), below what a disk full of them would hold.
pub const DEFAULT_MAX_GIB: u64 = 100;

impl std::fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubConfig")
            .field("endpoint", &self.endpoint)
            .field("cache_dir", &self.cache_dir)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("offline", &self.offline)
            .field("max_bytes", &self.max_bytes)
            .field("transfer", &self.transfer)
            .finish()
    }
}

impl HubConfig {
    pub fn from_env() -> Self {
        Self::from_vars(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// The configuration from a variable lookup (the environment, or a test's map).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let home = var("HOME").map(PathBuf::from).unwrap_or_default();
        let hf_home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".cache"))
                .join("huggingface")
        });
        let cache_dir = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let token = var("HF_TOKEN").or_else(|| {
            let path = var("HF_TOKEN_PATH")
                .map(PathBuf::from)
                .unwrap_or_else(|| hf_home.join("token"));
            std::fs::read_to_string(path).ok()
        });
        let truthy = |k: &str| {
            var(k).is_some_and(|v| {
                ["1", "ON", "YES", "TRUE"].contains(&v.trim().to_ascii_uppercase().as_str())
            })
        };
        let number = |k: &str, default: u64| {
            var(k)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(default)
        };
        Self {
            endpoint: var("HF_ENDPOINT")
                .unwrap_or_else(|| "https://huggingface.co".into())
                .trim_end_matches('/')
                .to_owned(),
            cache_dir,
            token: token.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()),
            offline: truthy("HF_HUB_OFFLINE") || truthy("TRANSFORMERS_OFFLINE"),
            max_bytes: number("CROSSRANK_HUB_MAX_GIB", DEFAULT_MAX_GIB).saturating_mul(1 << 30),
            transfer: Transfer::new(
                number("CROSSRANK_HUB_TIMEOUT_SECS", DEFAULT_TIMEOUT_SECS),
                number("CROSSRANK_HUB_MIN_RATE_KIB", DEFAULT_MIN_RATE_KIB),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> HubConfig {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HubConfig::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn precedence_follows_huggingface_hub() {
        let c = config(&[("HOME", "/home/u")]);
        assert_eq!(c.cache_dir, PathBuf::from("/home/u/.cache/huggingface/hub"));
        assert_eq!(c.endpoint, "https://huggingface.co");
        assert!(!c.offline && c.token.is_none());
        let c = config(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")]);
        assert_eq!(c.cache_dir, PathBuf::from("/x/huggingface/hub"));
        let c = config(&[("HF_HOME", "/hf"), ("HUGGINGFACE_HUB_CACHE", "/old")]);
        assert_eq!(c.cache_dir, PathBuf::from("/old"));
        let c = config(&[
            ("HF_HOME", "/hf"),
            ("HF_HUB_CACHE", "/new"),
            ("HUGGINGFACE_HUB_CACHE", "/old"),
        ]);
        assert_eq!(c.cache_dir, PathBuf::from("/new"));
        let c = config(&[("HF_HOME", "/hf")]);
        assert_eq!(c.cache_dir, PathBuf::from("/hf/hub"));
        let c = config(&[
            ("HF_ENDPOINT", "http://mirror:8080/"),
            ("HF_HUB_OFFLINE", "yes"),
        ]);
        assert_eq!(c.endpoint, "http://mirror:8080");
        assert!(c.offline);
        assert!(!config(&[("HF_HUB_OFFLINE", "0")]).offline);
        assert!(config(&[("TRANSFORMERS_OFFLINE", "1")]).offline);
        assert_eq!(config(&[]).transfer, Transfer::new(30, 256));
        let c = config(&[
            ("CROSSRANK_HUB_TIMEOUT_SECS", "5"),
            ("CROSSRANK_HUB_MIN_RATE_KIB", "2"),
        ]);
        assert_eq!(c.transfer, Transfer::new(5, 2));
    }

    #[test]
    fn token_from_variable_or_file_and_never_in_debug() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "hf_file\n").unwrap();
        let home = dir.path().to_str().unwrap();
        let c = config(&[("HF_HOME", home)]);
        assert_eq!(c.token.as_deref(), Some("hf_file"));
        let c = config(&[("HF_HOME", home), ("HF_TOKEN", "hf_var")]);
        assert_eq!(c.token.as_deref(), Some("hf_var"));
        assert!(!format!("{c:?}").contains("hf_var"));
    }
}
