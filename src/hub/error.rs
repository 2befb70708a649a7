//! Hub failures; every message names the id and revision, and the file when there is one. The
//! token never appears in them.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The Hub answered with an error status.
    #[error("{repo}: {what}: HTTP {status}{detail}{hint}", detail = detail(code, message), hint = hint(*status))]
    Http {
        repo: String,
        /// The file, or "the revision" for the revision lookup.
        what: String,
        status: u16,
        /// `X-Error-Code` / `X-Error-Message` when the Hub sent them.
        code: Option<String>,
        message: Option<String>,
    },
    /// No answer from the Hub (connection refused, DNS, timeout).
    #[error("{repo}: {what}: cannot reach {endpoint}: {reason}")]
    Unreachable {
        repo: String,
        what: String,
        endpoint: String,
        reason: String,
    },
    /// A download broke off; the partial file is kept for the next attempt to resume.
    #[error("{repo}: {what}: download interrupted: {reason}")]
    Interrupted {
        repo: String,
        what: String,
        reason: String,
    },
    /// A transfer missed its deadline or fell below the minimum rate (see
    /// [`Transfer`](super::Transfer)); the reason gives the figures and the flags.
    #[error("{repo}: {what}: {reason}")]
    TooSlow {
        repo: String,
        what: String,
        reason: String,
    },
    /// The load was abandoned (UnloadModel, shutdown) while this transfer ran.
    #[error("{repo}: {what}: cancelled (the model was unloaded or the server is stopping)")]
    Cancelled { repo: String, what: String },
    /// Offline or unreachable, and the cache does not hold what is needed.
    #[error("{repo}: {why}, and the cache {cache} has no {what}")]
    NotCached {
        repo: String,
        why: String,
        what: String,
        cache: PathBuf,
    },
    /// The download went wrong or the Hub's answer does not make sense.
    #[error("{repo}: {what}: {reason}")]
    Invalid {
        repo: String,
        what: String,
        reason: String,
    },
    #[error("{repo}: {path}: {source}")]
    Io {
        repo: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn detail(code: &Option<String>, message: &Option<String>) -> String {
    match (code, message) {
        (Some(c), Some(m)) => format!(" ({c}: {m})"),
        (Some(c), None) => format!(" ({c})"),
        (None, Some(m)) => format!(" ({m})"),
        (None, None) => String::new(),
    }
}

fn hint(status: u16) -> &'static str {
    match status {
        401 | 403 => "; a gated or private model needs HF_TOKEN set to a token with access to it",
        404 => "; check the id, the revision and the file name",
        429 => "; rate limited by the Hub, retry later (a token raises the limit)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_repo_file_and_status() {
        let e = HubError::Http {
            repo: "org/gated@main".into(),
            what: "config.json".into(),
            status: 401,
            code: Some("GatedRepo".into()),
            message: Some("Access to model org/gated is restricted".into()),
        };
        let text = e.to_string();
        for part in [
            "org/gated@main",
            "config.json",
            "HTTP 401",
            "GatedRepo",
            "HF_TOKEN",
        ] {
            assert!(text.contains(part), "{text}");
        }
    }
}
