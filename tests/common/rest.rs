//! For tests of the REST port: a server process serving the tiny BERT fixture with it, request
//! bodies, and a raw HTTP/1.1 client over a TCP stream, for requests no library would send (a
//! 1 GiB `Content-Length` with no body, half a request line, several requests written at once)
//! and for reading the answers byte for byte.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::process::ServerProcess;

/// `crossrank serve` with model `ce` (the tiny BERT fixture, `model_opts` after its directory,
/// e.g. ",max_wait_ms=300"), the REST port on 127.0.0.1:0 and `extra` flags.
pub async fn serve_ce(model_opts: &str, extra: &[&str]) -> ServerProcess {
    let model = format!(
        "ce={}{model_opts}",
        super::fixtures().join("bert").display()
    );
    let mut args = vec!["--model", model.as_str(), "--http-port", "0"];
    args.extend_from_slice(extra);
    ServerProcess::start(&args).await
}

pub fn documents(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("document number {i}")).collect()
}

/// A Cohere rerank body for model `ce` with `n` documents.
pub fn rerank(n: usize) -> serde_json::Value {
    serde_json::json!({
        "model": "ce",
        "query": "what is a cross-encoder",
        "documents": documents(n),
    })
}

/// One answer, as read off the wire.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} with a body that is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `message` of a Cohere-dialect error body.
    pub fn message(&self) -> String {
        let body = self.json();
        body["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no message in {body}"))
            .to_owned()
    }
}

/// The bytes of one request; `Content-Length` is added when `body` is given.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(b) = body {
        out.push_str(&format!("content-length: {}\r\n", b.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    bytes
}

/// A JSON POST's bytes.
pub fn post_json(path: &str, headers: &[(&str, &str)], body: &serde_json::Value) -> Vec<u8> {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    request("POST", path, &all, Some(&serde_json::to_vec(body).unwrap()))
}

/// Sends `bytes` on a new connection to `addr` and reads one answer (30 s at most).
pub async fn call(addr: &str, bytes: &[u8]) -> Response {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(bytes).await.unwrap();
    let mut reader = Reader::default();
    tokio::time::timeout(Duration::from_secs(30), reader.response(&mut conn))
        .await
        .expect("no answer within 30 s")
        .expect("the connection closed before an answer")
}

/// Reads answers off one connection, keeping bytes that arrived ahead of them (pipelining).
#[derive(Default)]
pub struct Reader {
    buf: Vec<u8>,
}

impl Reader {
    /// The next answer, or `None` when the server closed the connection first.
    pub async fn response(&mut self, conn: &mut (impl AsyncRead + Unpin)) -> Option<Response> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if !self.fill(conn).await {
                return None;
            }
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec()).unwrap();
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        response.body = if response.header("transfer-encoding") == Some("chunked") {
            self.chunked(conn).await?
        } else {
            let n: usize = response
                .header("content-length")
                .map_or(0, |v| v.parse().unwrap());
            self.exactly(conn, n).await?
        };
        Some(response)
    }

    async fn chunked(&mut self, conn: &mut (impl AsyncRead + Unpin)) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n") {
                    break i;
                }
                if !self.fill(conn).await {
                    return None;
                }
            };
            let size_text = String::from_utf8(self.buf[..line_end].to_vec()).unwrap();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
            self.buf.drain(..line_end + 2);
            let chunk = self.exactly(conn, size + 2).await?;
            if size == 0 {
                return Some(body);
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }

    async fn exactly(&mut self, conn: &mut (impl AsyncRead + Unpin), n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill(conn).await {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// Reads more; false at the end of the stream (or a reset).
    async fn fill(&mut self, conn: &mut (impl AsyncRead + Unpin)) -> bool {
        let mut chunk = [0u8; 16 << 10];
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Waits until the server closes `conn` (end of stream or reset), returning the bytes it sent
/// before; panics after `limit`.
pub async fn closed_within(conn: &mut (impl AsyncRead + Unpin), limit: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let read_all = async {
        let mut chunk = [0u8; 4096];
        loop {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read_all)
        .await
        .unwrap_or_else(|_| panic!("the connection was still open after {limit:?}"));
    got
}
