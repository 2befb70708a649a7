//! The Hub's HTTP interface, as `huggingface_hub` speaks it:
//! - `GET {endpoint}/api/models/{id}/revision/{rev}`: the commit a revision names, and its files;
//! - `HEAD {endpoint}/{id}/resolve/{commit}/{path}`: a file's ETag and size (from `X-Linked-*`
//!   on an LFS file's redirect to storage), following redirects within the Hub only;
//! - `GET` of the same URL (or the storage URL), with `Range: bytes=N-` to resume.

use std::collections::BTreeSet;
use std::io::Read;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};

use super::pace::{Cancel, Pace, Stop};
use super::{HubConfig, HubError, RepoRef};

/// Characters kept as they are in a URL segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// The most a connection may take to open (less when `--hub-timeout-secs` is less).
const CONNECT: Duration = Duration::from_secs(10);
const MAX_REDIRECTS: usize = 5;
/// A revision's description (its file list) is read up to this size.
const MAX_LISTING_BYTES: u64 = 32 << 20;

/// What a revision lookup returns.
pub struct Revision {
    pub commit: String,
    pub files: BTreeSet<String>,
}

/// A file as the Hub describes it.
pub struct FileMeta {
    pub etag: String,
    pub size: u64,
    /// Where to GET it: the storage URL of an LFS file, else the resolve URL.
    pub url: String,
}

pub struct Hub<'a> {
    client: Client,
    config: &'a HubConfig,
    repo: &'a RepoRef,
    /// The load's cancel flag, checked between reads.
    pub cancel: &'a Cancel,
}

impl<'a> Hub<'a> {
    pub fn new(
        config: &'a HubConfig,
        repo: &'a RepoRef,
        cancel: &'a Cancel,
    ) -> Result<Self, HubError> {
        let wait = config.transfer.timeout;
        // `timeout` here bounds each wait: for the answer's headers, and between body reads;
        // each request's overall deadline is its own (see `send`).
        let client = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT.min(wait))
            .timeout(wait)
            .user_agent(concat!("crossrank/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| invalid(repo, "the HTTP client", e.to_string()))?;
        Ok(Self {
            client,
            config,
            repo,
            cancel,
        })
    }

    /// The clock of one transfer of `size` bytes (None: a small answer), see [`Pace`].
    pub fn pace(&self, size: Option<u64>) -> Pace<'a> {
        Pace::start(self.config.transfer, self.cancel, size)
    }

    /// The error for a transfer stopped by its [`Pace`].
    pub fn stopped(&self, what: &str, stop: Stop) -> HubError {
        match stop {
            Stop::Cancelled => HubError::Cancelled {
                repo: self.repo.to_string(),
                what: what.to_owned(),
            },
            Stop::Slow(reason) => HubError::TooSlow {
                repo: self.repo.to_string(),
                what: what.to_owned(),
                reason,
            },
        }
    }

    /// The commit that the revision names now, and the repository's files at that commit.
    pub fn revision(&self) -> Result<Revision, HubError> {
        #[derive(serde::Deserialize)]
        struct Info {
            sha: String,
            #[serde(default)]
            siblings: Vec<Sibling>,
        }
        #[derive(serde::Deserialize)]
        struct Sibling {
            rfilename: String,
        }
        let url = format!(
            "{}/api/models/{}/revision/{}",
            self.config.endpoint,
            self.repo.id,
            encode(&self.repo.revision)
        );
        let what = "the revision";
        let mut pace = self.pace(None);
        let (response, _) = self.follow(Method::GET, &url, what, None, false, &pace)?;
        if response.status().is_redirection() {
            let reason = "the revision lookup was redirected to another host".into();
            return Err(invalid(self.repo, what, reason));
        }
        let body = self.read_small(response, what, &url, &mut pace)?;
        let info: Info = serde_json::from_slice(&body).map_err(|e| {
            invalid(
                self.repo,
                what,
                format!("unreadable answer from {url}: {e}"),
            )
        })?;
        if !super::is_commit(&info.sha) {
            return Err(invalid(
                self.repo,
                what,
                format!("{url} gave the commit {:?}", info.sha),
            ));
        }
        Ok(Revision {
            commit: info.sha,
            files: info.siblings.into_iter().map(|s| s.rfilename).collect(),
        })
    }

    /// An answer's body, up to [`MAX_LISTING_BYTES`], within `pace`.
    fn read_small(
        &self,
        response: Response,
        what: &str,
        url: &str,
        pace: &mut Pace,
    ) -> Result<Vec<u8>, HubError> {
        let mut body = Vec::new();
        let mut response = response.take(MAX_LISTING_BYTES);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match response.read(&mut buf) {
                Ok(0) => return Ok(body),
                Ok(n) => n,
                Err(e) => {
                    pace.check().map_err(|stop| self.stopped(what, stop))?;
                    let reason = format!("reading {url}: {}", error_chain(&e));
                    return Err(invalid(self.repo, what, reason));
                }
            };
            body.extend_from_slice(&buf[..n]);
            pace.advance(n as u64)
                .map_err(|stop| self.stopped(what, stop))?;
        }
    }

    /// A file's ETag, size and download URL at `commit`. Redirects within the Hub are
    /// followed; a redirect to another host (an LFS file's storage) is where the file is got,
    /// its ETag and size taken from the redirect's `X-Linked-*` headers.
    pub fn head(&self, commit: &str, file: &str) -> Result<FileMeta, HubError> {
        let (response, url) = self.follow(
            Method::HEAD,
            &self.resolve_url(commit, file),
            file,
            None,
            false,
            &self.pace(None),
        )?;
        let h = response.headers();
        let redirected = response.status().is_redirection();
        let etag = header_str(h, "x-linked-etag").or_else(|| header_str(h, "etag"));
        // a redirect's own Content-Length describes the redirect, not the file
        let length = (!redirected)
            .then(|| header_str(h, header::CONTENT_LENGTH.as_str()))
            .flatten();
        let size = header_str(h, "x-linked-size")
            .or(length)
            .and_then(|s| s.parse::<u64>().ok());
        let (Some(etag), Some(size)) = (etag, size) else {
            return Err(invalid(
                self.repo,
                file,
                format!("{} gave no ETag or size", redact(&url)),
            ));
        };
        let etag = etag.trim_start_matches("W/").trim_matches('"').to_owned();
        if etag.is_empty() || !etag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(invalid(
                self.repo,
                file,
                format!("the ETag {etag:?} is not a plain name"),
            ));
        }
        let url = match redirected {
            true => location(&response, &url).ok_or_else(|| {
                invalid(
                    self.repo,
                    file,
                    "a redirect without a usable Location".into(),
                )
            })?,
            false => url,
        };
        Ok(FileMeta { etag, size, url })
    }

    /// GETs `url` from byte `from` on (the whole file when 0), following redirects anywhere,
    /// within `pace`; the token goes only to the endpoint's own host.
    pub fn get(&self, url: &str, file: &str, from: u64, pace: &Pace) -> Result<Response, HubError> {
        let range = (from > 0).then(|| format!("bytes={from}-"));
        let (response, _) = self.follow(Method::GET, url, file, range.as_deref(), true, pace)?;
        match response.status().is_redirection() {
            true => Err(invalid(
                self.repo,
                file,
                "a redirect without a usable Location".into(),
            )),
            false => Ok(response),
        }
    }

    /// Sends `method` to `url` and follows redirects (to other hosts only with `anywhere`), at
    /// most [`MAX_REDIRECTS`], all within `pace`; returns the last answer and its URL.
    fn follow(
        &self,
        method: Method,
        url: &str,
        what: &str,
        range: Option<&str>,
        anywhere: bool,
        pace: &Pace,
    ) -> Result<(Response, String), HubError> {
        let mut url = url.to_owned();
        for _ in 0..=MAX_REDIRECTS {
            let response = self.send(method.clone(), &url, what, range, pace)?;
            if !response.status().is_redirection() {
                return Ok((response, url));
            }
            match location(&response, &url) {
                Some(next) if anywhere || same_origin(&next, &url) => url = next,
                _ => return Ok((response, url)),
            }
        }
        Err(invalid(
            self.repo,
            what,
            format!("more than {MAX_REDIRECTS} redirects"),
        ))
    }

    fn resolve_url(&self, commit: &str, file: &str) -> String {
        let path: Vec<String> = file.split('/').map(encode).collect();
        format!(
            "{}/{}/resolve/{commit}/{}",
            self.config.endpoint,
            self.repo.id,
            path.join("/")
        )
    }

    /// Sends one request, bounded by what is left of `pace` (its body included); a status of
    /// 400 or more becomes [`HubError::Http`], the deadline or a cancel
    /// [`HubError::TooSlow`] or [`HubError::Cancelled`], another failure to get an answer
    /// [`HubError::Unreachable`].
    fn send(
        &self,
        method: Method,
        url: &str,
        what: &str,
        range: Option<&str>,
        pace: &Pace,
    ) -> Result<Response, HubError> {
        pace.check().map_err(|stop| self.stopped(what, stop))?;
        let mut request: RequestBuilder =
            self.client.request(method, url).timeout(pace.remaining());
        if let (Some(token), true) = (&self.config.token, same_origin(url, &self.config.endpoint)) {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                invalid(
                    self.repo,
                    what,
                    "HF_TOKEN is not a valid header value".into(),
                )
            })?;
            value.set_sensitive(true);
            request = request.header(header::AUTHORIZATION, value);
        }
        if let Some(range) = range {
            request = request.header(header::RANGE, range);
        }
        let response = request
            .header(header::ACCEPT_ENCODING, "identity")
            .send()
            .map_err(|e| match (pace.check(), e.is_timeout()) {
                (Err(stop), _) => self.stopped(what, stop),
                (Ok(()), true) => HubError::TooSlow {
                    repo: self.repo.to_string(),
                    what: what.to_owned(),
                    reason: format!(
                        "{} sent no answer within {} s (--hub-timeout-secs, \
                         CROSSRANK_HUB_TIMEOUT_SECS)",
                        origin(url),
                        self.config.transfer.timeout.as_secs()
                    ),
                },
                (Ok(()), false) => HubError::Unreachable {
                    repo: self.repo.to_string(),
                    what: what.to_owned(),
                    endpoint: origin(url),
                    reason: error_chain(&e.without_url()),
                },
            })?;
        if response.status().as_u16() >= 400 {
            return Err(status_error(self.repo, what, &response));
        }
        Ok(response)
    }
}

fn status_error(repo: &RepoRef, what: &str, response: &Response) -> HubError {
    let h = response.headers();
    let status = response.status();
    HubError::Http {
        repo: repo.to_string(),
        what: what.to_owned(),
        status: status.as_u16(),
        code: header_str(h, "x-error-code"),
        message: header_str(h, "x-error-message"),
    }
}

pub fn invalid(repo: &RepoRef, what: &str, reason: String) -> HubError {
    HubError::Invalid {
        repo: repo.to_string(),
        what: what.to_owned(),
        reason,
    }
}

/// A header as text, at most 300 characters (it ends up in error messages and logs).
fn header_str(h: &HeaderMap, name: &str) -> Option<String> {
    let v = h.get(name)?.to_str().ok()?;
    Some(v.chars().take(300).collect())
}

/// `scheme://host[:port]` of a URL (the URL itself when it does not parse).
fn origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => url.to_owned(),
    }
}

/// Same scheme, host and port: where the token may go, and where redirects are followed
/// without leaving the Hub.
fn same_origin(a: &str, b: &str) -> bool {
    match (reqwest::Url::parse(a), reqwest::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

/// A redirect's target, relative ones resolved against `url`.
fn location(response: &Response, url: &str) -> Option<String> {
    let target = header_str(response.headers(), header::LOCATION.as_str())?;
    let next = reqwest::Url::parse(url).ok()?.join(&target).ok()?;
    matches!(next.scheme(), "http" | "https").then(|| next.to_string())
}

/// A URL without its query (where storage hosts put signatures), for messages.
fn redact(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_owned()
}

fn encode(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

/// An error with its causes ("error sending request: connection refused"), without the URLs
/// reqwest puts in them (" for url (…)"): a storage URL carries a signature.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = without_urls(&e.to_string());
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&without_urls(&s.to_string()));
        source = s.source();
    }
    text
}

fn without_urls(text: &str) -> String {
    match text.find(" for url (") {
        Some(i) => {
            let rest = &text[i..];
            let end = rest.find(')').map_or(rest.len(), |j| j + 1);
            format!("{}{}", &text[..i], without_urls(&rest[end..]))
        }
        None => text.to_owned(),
    }
}

/// True for a 206 whose `Content-Range` starts at `from`.
pub fn resumes_at(response: &Response, from: u64) -> bool {
    response.status() == StatusCode::PARTIAL_CONTENT
        && header_str(response.headers(), header::CONTENT_RANGE.as_str()).and_then(|r| {
            r.strip_prefix("bytes ")?
                .split('-')
                .next()?
                .parse::<u64>()
                .ok()
        }) == Some(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(origin("http://127.0.0.1:8/a/b"), "http://127.0.0.1:8");
        assert_eq!(origin("https://h"), "https://h");
        let hub = "https://huggingface.co";
        assert!(same_origin("https://huggingface.co/a/resolve/x", hub));
        for other in [
            "https://huggingface.co.evil.net/a",
            "https://huggingface.co@evil.net/a",
            "http://huggingface.co/a",
            "https://huggingface.co:8443/a",
        ] {
            assert!(!same_origin(other, hub), "{other}");
        }
        assert_eq!(
            without_urls("error decoding response body for url (https://cdn/x?sig=s): eof"),
            "error decoding response body: eof"
        );
        assert_eq!(encode("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(encode("v1.0-rc_2~"), "v1.0-rc_2~");
    }
}
