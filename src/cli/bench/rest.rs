//! The HTTP mode's client: Rerank requests as Cohere v2 bodies (`POST /v2/rerank`) over one
//! keep-alive HTTP/1.1 connection per bench client, the REST twin of a gRPC client's channel.
//!
//! It is hyper's connection-level client (`client::conn::http1`): no pool, no connector or
//! middleware stack, one request in flight on one socket, so the bench's own CPU per request
//! stays near the cost of writing the body and parsing the answer. (reqwest would add a
//! connection pool, its redirect and decompression layers and a second runtime hop per request,
//! all CPU taken from the server on a small machine.) A connection that failed or timed out is
//! dropped and the next request opens a new one.

use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};

use super::plan::Plan;
use super::report::Failure;

/// The route every HTTP-mode request is sent to.
pub const RERANK_PATH: &str = "/v2/rerank";

/// Longest error body kept as a report's example message.
const MAX_EXAMPLE_BYTES: usize = 400;

/// The REST port: `host:port` of an `http://` URL.
#[derive(Clone, Debug)]
pub struct Target {
    authority: String,
}

impl Target {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let uri: http::Uri = url
            .parse()
            .with_context(|| format!("--http-url {url:?} is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            bail!("--http-url {url:?}: give an http:// URL (the bench speaks no TLS)");
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            bail!("--http-url {url:?}: give the server's root; the bench posts to {RERANK_PATH}");
        }
        let authority = uri
            .authority()
            .with_context(|| format!("--http-url {url:?} has no host"))?;
        Ok(Self {
            authority: authority.as_str().to_owned(),
        })
    }
}

/// One client's connection to the REST port.
pub struct Rest {
    target: Target,
    /// `None` after a failure: the next request connects again.
    conn: Option<SendRequest<Full<Bytes>>>,
}

#[derive(Serialize)]
struct V2Request<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    model: &'a str,
    query: &'a str,
    documents: Vec<&'a str>,
}

#[derive(Deserialize)]
struct V2Response {
    results: Vec<Ranked>,
}

#[derive(Deserialize)]
struct Ranked {
    index: usize,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: String,
}

impl Rest {
    /// Connects to `target`; fails when nothing listens there.
    pub async fn connect(target: Target) -> anyhow::Result<Self> {
        let conn = open(&target).await.map_err(|f| {
            anyhow::anyhow!("connecting to http://{}: {}", target.authority, f.message)
        })?;
        Ok(Self {
            target,
            conn: Some(conn),
        })
    }

    /// Sends request number `k` as a Rerank of `plan.size` documents with deadline `timeout`
    /// (also sent to the server as `x-request-timeout`).
    pub async fn send(&mut self, plan: &Plan, k: u64, timeout: Duration) -> Result<(), Failure> {
        let request = request(plan, k, &self.target, timeout)?;
        let answer = tokio::time::timeout(timeout, self.exchange(request)).await;
        let (status, body) = match answer {
            Ok(answer) => answer?,
            Err(_) => {
                let ms = timeout.as_millis();
                return Err(Failure::new("TIMEOUT", format!("no answer within {ms} ms")));
            }
        };
        if status != http::StatusCode::OK {
            return Err(Failure::new(
                &format!("HTTP {}", status.as_u16()),
                example(&body),
            ));
        }
        check_ranking(&body, plan.size)
    }

    /// One request and its whole answer, on the open connection or a new one; the connection
    /// is kept only when the whole answer arrived (a failed or abandoned exchange drops it).
    async fn exchange(
        &mut self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<(http::StatusCode, Bytes), Failure> {
        let idle = match self.conn.take() {
            Some(mut c) => c.ready().await.ok().map(|()| c),
            None => None,
        };
        let mut conn = match idle {
            Some(c) => c,
            None => open(&self.target).await?,
        };
        let response = conn.send_request(request).await.map_err(connection)?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(connection)?;
        self.conn = Some(conn);
        Ok((status, body.to_bytes()))
    }
}

/// A new connection, its I/O driven by a task of its own.
async fn open(target: &Target) -> Result<SendRequest<Full<Bytes>>, Failure> {
    let stream = tokio::net::TcpStream::connect(&target.authority)
        .await
        .map_err(connection)?;
    let _ = stream.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(connection)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

fn connection(e: impl std::fmt::Display) -> Failure {
    Failure::new("CONNECTION", e.to_string())
}

/// The Cohere v2 body of request number `k`: the same query and documents as gRPC's Rerank.
fn request(
    plan: &Plan,
    k: u64,
    target: &Target,
    timeout: Duration,
) -> Result<http::Request<Full<Bytes>>, Failure> {
    let indices = plan.slice(k);
    let body = V2Request {
        model: &plan.model,
        query: &plan.corpus[indices[0]].0,
        documents: indices.iter().map(|&i| plan.corpus[i].1.as_str()).collect(),
    };
    let body = serde_json::to_vec(&body).map_err(|e| Failure::new("BAD_REQUEST", e.to_string()))?;
    http::Request::post(RERANK_PATH)
        .header(http::header::HOST, &target.authority)
        .header(http::header::CONTENT_TYPE, "application/json")
        // grpc-timeout's form in milliseconds, as tonic sends a gRPC deadline.
        .header(
            "x-request-timeout",
            format!("{}m", timeout.as_millis().max(1)),
        )
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| Failure::new("BAD_REQUEST", e.to_string()))
}

/// A 200 answer must rank every document once.
fn check_ranking(body: &[u8], size: usize) -> Result<(), Failure> {
    let bad = |m: String| Failure::new("BAD_ANSWER", m);
    let answer: V2Response =
        serde_json::from_slice(body).map_err(|e| bad(format!("not a /v2/rerank answer: {e}")))?;
    let mut seen = vec![false; size];
    for r in &answer.results {
        match seen.get_mut(r.index) {
            Some(s) if !*s => *s = true,
            _ => {
                return Err(bad(format!(
                    "result index {} is repeated or past {size}",
                    r.index
                )))
            }
        }
    }
    if answer.results.len() != size {
        return Err(bad(format!(
            "{} results for {size} documents",
            answer.results.len()
        )));
    }
    Ok(())
}

/// The `message` of a Cohere error body, else the body's start as text.
fn example(body: &[u8]) -> String {
    if let Ok(e) = serde_json::from_slice::<ErrorBody>(body) {
        return e.message;
    }
    let cut = &body[..body.len().min(MAX_EXAMPLE_BYTES)];
    String::from_utf8_lossy(cut).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_plain_http_roots() {
        assert_eq!(
            Target::parse("http://127.0.0.1:8080").unwrap().authority,
            "127.0.0.1:8080"
        );
        assert!(Target::parse("http://localhost:80/").is_ok());
        assert!(Target::parse("https://localhost:80").is_err());
        assert!(Target::parse("http://localhost:80/v2/rerank").is_err());
        assert!(Target::parse("not a url").is_err());
    }

    #[test]
    fn a_ranking_must_cover_every_document_once() {
        assert!(check_ranking(br#"{"results":[{"index":1},{"index":0}]}"#, 2).is_ok());
        let repeated = check_ranking(br#"{"results":[{"index":1},{"index":1}]}"#, 2);
        assert_eq!(repeated.unwrap_err().code, "BAD_ANSWER");
        assert!(check_ranking(br#"{"results":[{"index":0}]}"#, 2).is_err());
        assert!(check_ranking(br#"{"results":[{"index":2}]}"#, 2).is_err());
        assert!(check_ranking(b"[]", 2).is_err());
    }

    #[test]
    fn error_examples_prefer_the_message() {
        assert_eq!(
            example(br#"{"message":"too big","detail":"too big"}"#),
            "too big"
        );
        assert_eq!(example(b"plain"), "plain");
    }
}
