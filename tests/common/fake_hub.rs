//! A Hugging Face Hub on 127.0.0.1:0, speaking the URL layout and headers of the real one (as
//! `huggingface_hub` expects them): the revision API, `resolve` with ETag / X-Repo-Commit, LFS
//! files as redirects to a storage host (`localhost`, another host name for the same server),
//! ranged GETs, gated repositories and the Hub's error codes. It records every request. A
//! hostile hub too: it can trickle the revision lookup or the weights, a byte at a time.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use sha1::Digest as _;

#[derive(Default)]
struct Repo {
    /// commit -> files
    commits: HashMap<String, BTreeMap<String, Vec<u8>>>,
    /// branch or tag -> commit
    refs: HashMap<String, String>,
    token: Option<String>,
}

#[derive(Default)]
struct State {
    repos: HashMap<String, Repo>,
    /// sha256 -> contents, for the storage host.
    blobs: HashMap<String, Vec<u8>>,
    /// Files whose next storage GET sends half the body and then breaks the connection.
    cut: HashSet<String>,
    /// Files listed but answered with 404 on resolve.
    hidden: HashSet<String>,
    /// The storage host answers every GET whole, ignoring Range.
    ignore_range: bool,
    /// What is sent one byte at a time, and the pause between bytes.
    trickle: Option<(Trickle, Duration)>,
    log: Vec<Logged>,
}

/// Which answers a trickling hub sends one byte at a time (headers at once, then a byte every
/// pause).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trickle {
    /// The revision lookup (`/api/models/{id}/revision/{rev}`).
    Revision,
    /// The storage host's blobs (the weights).
    Weights,
}

/// One request as the hub saw it.
#[derive(Clone, Debug)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub host: String,
    pub range: Option<String>,
    pub authorized: bool,
}

pub struct FakeHub {
    pub url: String,
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakeHub {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let app =
            axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
                let state = shared.clone();
                async move { handle(&state, port, method, uri, headers) }
            });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            url: format!("http://127.0.0.1:{port}"),
            port,
            state,
            stop: Some(stop),
        }
    }

    /// Publishes `files` as a new commit of `id`, pointed to by each of `refs`; returns the
    /// commit (40 hex, from the contents).
    pub fn publish(&self, id: &str, refs: &[&str], files: BTreeMap<String, Vec<u8>>) -> String {
        let mut h = sha1::Sha1::new();
        h.update(id);
        for (name, data) in &files {
            h.update(name);
            h.update(data);
        }
        let commit = hex(&h.finalize());
        let mut s = self.state.lock().unwrap();
        for (name, data) in &files {
            if lfs(name) {
                s.blobs
                    .insert(hex(&sha2::Sha256::digest(data)), data.clone());
            }
        }
        let repo = s.repos.entry(id.to_owned()).or_default();
        repo.commits.insert(commit.clone(), files);
        for r in refs {
            repo.refs.insert(r.to_string(), commit.clone());
        }
        commit
    }

    /// Makes `id` gated: only `Bearer token` gets in.
    pub fn gate(&self, id: &str, token: &str) {
        let mut s = self.state.lock().unwrap();
        s.repos.get_mut(id).unwrap().token = Some(token.to_owned());
    }

    /// The next storage GET of `file` breaks off halfway.
    pub fn cut_next_download(&self, file: &str) {
        self.state.lock().unwrap().cut.insert(file.to_owned());
    }

    /// `file` stays listed, but resolving it answers 404.
    pub fn hide(&self, file: &str) {
        self.state.lock().unwrap().hidden.insert(file.to_owned());
    }

    /// The storage host ignores Range from now on (200 with the whole file).
    pub fn ignore_range(&self) {
        self.state.lock().unwrap().ignore_range = true;
    }

    /// From now on, `what` is sent one byte every `every`.
    pub fn trickle(&self, what: Trickle, every: Duration) {
        self.state.lock().unwrap().trickle = Some((what, every));
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// The storage URL of a blob (what an LFS redirect points to).
    pub fn storage_url(&self, sha256: &str) -> String {
        format!("http://localhost:{}/cdn/{sha256}", self.port)
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The files of a model directory, as a commit's contents.
pub fn model_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap().to_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// Weights travel through LFS (sha256 ETag, redirect to storage); other files are small git
/// objects (git blob sha1 ETag).
fn lfs(name: &str) -> bool {
    name.ends_with(".safetensors") || name.ends_with(".bin")
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn git_sha1(data: &[u8]) -> String {
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", data.len()));
    h.update(data);
    hex(&h.finalize())
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .unwrap()
        .into_owned()
}

fn handle(
    state: &Mutex<State>,
    port: u16,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let header = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut s = state.lock().unwrap();
    s.log.push(Logged {
        method: method.to_string(),
        path: uri.path().to_owned(),
        host: header("host").unwrap_or_default(),
        range: header("range"),
        authorized: headers.contains_key("authorization"),
    });
    let token = header("authorization").and_then(|a| a.strip_prefix("Bearer ").map(str::to_owned));
    let parts: Vec<&str> = uri.path().trim_start_matches('/').splitn(5, '/').collect();
    match parts.as_slice() {
        ["cdn", sha] => trickled(storage(&mut s, sha, header("range")), &s, Trickle::Weights),
        ["api", "models", org, name, rest] if rest.starts_with("revision/") => {
            let rev = decode(&rest["revision/".len()..]);
            let r = revision(&s, &format!("{org}/{name}"), &rev, token);
            trickled(r, &s, Trickle::Revision)
        }
        [org, name, "resolve", rev, path] => {
            let id = format!("{org}/{name}");
            resolve(&s, port, &method, &id, &decode(rev), &decode(path), token)
        }
        _ => error(StatusCode::NOT_FOUND, "RepoNotFound", "no such route", None),
    }
}

/// `response`, its body sent a byte at a time when the hub trickles `what`.
fn trickled(response: Response, s: &State, what: Trickle) -> Response {
    use futures::StreamExt;
    let every = match s.trickle {
        Some((w, every)) if w == what => every,
        _ => return response,
    };
    let (parts, body) = response.into_parts();
    let bytes = futures::stream::once(axum::body::to_bytes(body, usize::MAX))
        .flat_map(|all| futures::stream::iter(all.map(|b| b.to_vec()).unwrap_or_default()));
    let slow = bytes.enumerate().then(move |(i, byte)| async move {
        if i > 0 {
            tokio::time::sleep(every).await;
        }
        Ok::<_, std::io::Error>(vec![byte])
    });
    Response::from_parts(parts, Body::from_stream(slow))
}

fn error(status: StatusCode, code: &str, message: &str, commit: Option<&str>) -> Response {
    let mut r = Response::builder()
        .status(status)
        .header("x-error-code", code)
        .header("x-error-message", message);
    if let Some(c) = commit {
        r = r.header("x-repo-commit", c);
    }
    r.body(Body::empty()).unwrap()
}

/// The repository and the commit a revision names, after the access check of a gated
/// repository's files (`files`): like the Hub, anyone may see a gated model's description.
fn find<'a>(
    s: &'a State,
    id: &str,
    rev: &str,
    token: Option<String>,
    files: bool,
) -> Result<(&'a Repo, String), Box<Response>> {
    let Some(repo) = s.repos.get(id) else {
        let msg = "Repository not found";
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "RepoNotFound",
            msg,
            None,
        )));
    };
    match (&repo.token, token) {
        _ if !files => {}
        (Some(_), None) => {
            let msg = format!("Access to model {id} is restricted. You must have access to it and be authenticated to access it. Please log in.");
            return Err(Box::new(error(
                StatusCode::UNAUTHORIZED,
                "GatedRepo",
                &msg,
                None,
            )));
        }
        (Some(want), Some(given)) if *want != given => {
            let msg = format!(
                "Access to model {id} is restricted and you are not in the authorized list."
            );
            return Err(Box::new(error(
                StatusCode::FORBIDDEN,
                "GatedRepo",
                &msg,
                None,
            )));
        }
        _ => {}
    }
    let commit = match repo.commits.contains_key(rev) {
        true => rev.to_owned(),
        false => match repo.refs.get(rev) {
            Some(c) => c.clone(),
            None => {
                let msg = format!("Invalid rev id: {rev}");
                return Err(Box::new(error(
                    StatusCode::NOT_FOUND,
                    "RevisionNotFound",
                    &msg,
                    None,
                )));
            }
        },
    };
    Ok((repo, commit))
}

fn revision(s: &State, id: &str, rev: &str, token: Option<String>) -> Response {
    let (repo, commit) = match find(s, id, rev, token, false) {
        Ok(found) => found,
        Err(r) => return *r,
    };
    let siblings: Vec<_> = repo.commits[&commit]
        .keys()
        .map(|f| serde_json::json!({ "rfilename": f }))
        .collect();
    let body = serde_json::json!({ "id": id, "sha": commit, "siblings": siblings });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn resolve(
    s: &State,
    port: u16,
    method: &Method,
    id: &str,
    rev: &str,
    path: &str,
    token: Option<String>,
) -> Response {
    let (repo, commit) = match find(s, id, rev, token, true) {
        Ok(found) => found,
        Err(r) => return *r,
    };
    let data = match repo.commits[&commit].get(path) {
        Some(d) if !s.hidden.contains(path) => d,
        _ => {
            let msg = format!("Entry not found: {path}");
            return error(StatusCode::NOT_FOUND, "EntryNotFound", &msg, Some(&commit));
        }
    };
    let r = Response::builder().header("x-repo-commit", &commit);
    if lfs(path) {
        let sha = hex(&sha2::Sha256::digest(data));
        return r
            .status(StatusCode::FOUND)
            .header("location", format!("http://localhost:{port}/cdn/{sha}"))
            .header("x-linked-etag", format!("\"{sha}\""))
            .header("x-linked-size", data.len())
            .body(Body::empty())
            .unwrap();
    }
    let r = r
        .header("etag", format!("\"{}\"", git_sha1(data)))
        .header("content-length", data.len());
    match *method == Method::HEAD {
        true => r.body(Body::empty()).unwrap(),
        false => r.body(Body::from(data.clone())).unwrap(),
    }
}

/// The storage host: a blob by sha256, honouring `Range: bytes=N-`.
fn storage(s: &mut State, sha: &str, range: Option<String>) -> Response {
    let Some(data) = s.blobs.get(sha).cloned() else {
        return error(StatusCode::NOT_FOUND, "NotFound", "no such object", None);
    };
    let name = s
        .repos
        .values()
        .flat_map(|r| r.commits.values())
        .flat_map(|files| files.iter())
        .find(|(_, d)| hex(&sha2::Sha256::digest(d)) == sha)
        .map(|(n, _)| n.clone())
        .unwrap_or_default();
    if s.cut.remove(&name) {
        let half = data[..data.len() / 2].to_vec();
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
            Ok(half),
            Err(std::io::Error::other("connection cut by the fake hub")),
        ];
        return Response::builder()
            .header("content-length", data.len())
            .body(Body::from_stream(futures::stream::iter(chunks)))
            .unwrap();
    }
    let range = range.filter(|_| !s.ignore_range);
    let from = range.as_deref().and_then(|r| {
        r.strip_prefix("bytes=")?
            .strip_suffix('-')?
            .parse::<usize>()
            .ok()
    });
    match from {
        Some(from) if from < data.len() => Response::builder()
            .status(StatusCode::PARTIAL_CONTENT)
            .header(
                "content-range",
                format!("bytes {from}-{}/{}", data.len() - 1, data.len()),
            )
            .header("content-length", data.len() - from)
            .body(Body::from(data[from..].to_vec()))
            .unwrap(),
        _ => Response::builder()
            .header("content-length", data.len())
            .body(Body::from(data))
            .unwrap(),
    }
}
