//! Hostile connections to the REST port, against a real `crossrank serve --http-port 0` process
//! over raw TCP (and HTTP/2): 10,000 idle connections, connections past the limit, headers that
//! stall, pipelined requests and h2c. The server's RSS (from /proc) stays bounded, its slots
//! come back, and gRPC keeps serving.

use crate::common;

use std::time::{Duration, Instant};

use common::process::ServerProcess;
use common::rest::{
    call, closed_within, documents, post_json, request, rerank, serve_ce, Reader, Response,
};
use crossrank::api::pb;
use crossrank::api::pb::cross_encoder_client::CrossEncoderClient;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn start(extra: &[&str]) -> ServerProcess {
    serve_ce("", extra).await
}

const JSON: (&str, &str) = ("content-type", "application/json");

/// Raises this process's soft limit on open files to at least `n` (the server, a child,
/// inherits it) and returns it.
fn raise_open_files(n: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write only the struct they are given.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if lim.rlim_cur < n {
        assert!(
            lim.rlim_max >= n,
            "the hard limit on open files ({}) is below the {n} this test needs",
            lim.rlim_max
        );
        lim.rlim_cur = n;
        // SAFETY: as above.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    }
    lim.rlim_cur
}

/// The server's "Max open files" line of /proc/PID/limits.
fn server_open_file_limit(server: &ServerProcess) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.child.id())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files"));
    line.unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// 10,000 idle connections (never sending a byte) held by a server allowed 10,240: its RSS
/// grows by a bounded amount per connection, and a gRPC call and an HTTP call on a new
/// connection succeed while they are open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections() {
    const IDLE: usize = 10_000;
    let limit = raise_open_files(IDLE as u64 + 2048);
    let server = start(&[
        "--http-max-connections",
        "10240",
        "--http-header-timeout-secs",
        "300",
    ])
    .await;
    println!(
        "test process open-file limit {limit}; server: {}",
        server_open_file_limit(&server)
    );
    let addr = server.http().to_owned();
    let mut grpc = CrossEncoderClient::new(server.channel.clone());
    let grpc_rerank = pb::RerankRequest {
        model: "ce".into(),
        query: "q".into(),
        documents: vec![pb::Document {
            id: "0".into(),
            text: "a document".into(),
        }],
        ..Default::default()
    };
    let http_rerank = post_json("/v2/rerank", &[], &rerank(3));
    grpc.rerank(grpc_rerank.clone()).await.unwrap();
    assert_eq!(call(&addr, &http_rerank).await.status, 200);

    let fds = server.open_fds();
    let before = server.rss_mib();
    server.reset_peak();
    let opened = Instant::now();
    let mut idle = Vec::with_capacity(IDLE);
    while idle.len() < IDLE {
        let batch = (0..250).map(|_| TcpStream::connect(&addr));
        for conn in futures::future::join_all(batch).await {
            idle.push(conn.expect("connect"));
        }
        // The kernel completes a connection before the server accepts it, and one completed
        // while the accept queue (1,024) is full may be dropped on the server's side: wait for
        // the server's sockets before opening more (less a few: the warm-up call's connection
        // may have been among those counted before).
        while server.open_fds() + 4 < fds + idle.len() {
            assert!(
                opened.elapsed() < Duration::from_secs(120),
                "the server holds {} of the {} connections",
                server.open_fds() - fds,
                idle.len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let held = server.rss_mib();
    println!(
        "{IDLE} idle connections accepted in {:?}: RSS {before:.1} -> {held:.1} MiB \
         ({:.1} KiB per connection)",
        opened.elapsed(),
        (held - before) * 1024.0 / IDLE as f64
    );

    let served = Instant::now();
    grpc.rerank(grpc_rerank).await.unwrap();
    let r = call(&addr, &http_rerank).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["results"].as_array().unwrap().len(), 3);
    println!(
        "with them open, a gRPC and an HTTP call took {:?}",
        served.elapsed()
    );
    let peak = server.peak_mib() - before;
    println!("10,000 idle connections: RSS {before:.1} MiB before, peak +{peak:.1} MiB");
    assert!(peak < 100.0, "peak RSS grew by {peak:.1} MiB");
    assert!(
        server.open_fds() + 4 >= fds + IDLE,
        "connections were dropped"
    );
    drop(idle);
}

/// Connections past --http-max-connections wait in the listen backlog, unanswered, until a
/// served one closes; then they are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_wait() {
    let server = start(&[
        "--http-max-connections",
        "4",
        "--http-header-timeout-secs",
        "60",
    ])
    .await;
    let addr = server.http();
    let health = request("GET", "/health", &[], None);
    let mut served = Vec::new();
    for _ in 0..4 {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(&health).await.unwrap();
        let r = Reader::default().response(&mut conn).await.unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        served.push(conn);
    }
    let mut fifth = TcpStream::connect(addr).await.unwrap();
    fifth.write_all(&health).await.unwrap();
    let mut reader = Reader::default();
    let early = tokio::time::timeout(Duration::from_millis(500), reader.response(&mut fifth));
    assert!(
        early.await.is_err(),
        "a fifth connection was served while four were open"
    );
    let closed = Instant::now();
    drop(served.pop());
    let r = tokio::time::timeout(Duration::from_secs(5), reader.response(&mut fifth))
        .await
        .expect("the fifth connection was not served after one closed")
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    println!(
        "the fifth connection was served {:?} after one of the four closed",
        closed.elapsed()
    );
}

/// Connections that do not send a request's headers in time are closed at
/// --http-header-timeout-secs: half a request line, nothing at all, half of HTTP/2's preface,
/// headers without their end. Their slots (--http-max-connections 4) come back: a fifth
/// connection waiting behind them is served once they are closed. Headers that come slowly but
/// in time are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off() {
    let server = start(&[
        "--http-header-timeout-secs",
        "1",
        "--http-max-connections",
        "4",
    ])
    .await;
    let addr = server.http().to_owned();
    let stalls: [(&str, &[u8]); 4] = [
        ("half a request line", b"POST /v2/rer"),
        ("nothing", b""),
        ("half the HTTP/2 preface", b"PRI * HTTP/2.0\r\n"),
        (
            "headers without their end",
            b"GET /health HTTP/1.1\r\nhost: localhost\r\n",
        ),
    ];
    let mut stalled = Vec::new();
    for (name, bytes) in stalls {
        let mut conn = TcpStream::connect(&addr).await.unwrap();
        conn.write_all(bytes).await.unwrap();
        stalled.push((name, conn, Instant::now()));
    }
    let waiting = {
        let addr = addr.clone();
        tokio::spawn(async move { call(&addr, &request("GET", "/health", &[], None)).await })
    };
    for (name, mut conn, since) in stalled {
        let sent = closed_within(&mut conn, Duration::from_secs(5)).await;
        let after = since.elapsed();
        let head = String::from_utf8_lossy(&sent);
        println!("{name}: closed after {after:?}, having sent {head:?}");
        assert!(
            (900..3000).contains(&after.as_millis()),
            "{name}: closed after {after:?}"
        );
    }
    assert_eq!(waiting.await.unwrap().status, 200);

    let mut conn = TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"GET /health HT").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.write_all(b"TP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let r = Reader::default().response(&mut conn).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
}

/// Several requests written at once on one connection (HTTP/1.1 pipelining) are answered in
/// the order sent, each with its own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let server = start(&[]).await;
    let mut all = Vec::new();
    all.extend(post_json(
        "/v2/rerank",
        &[("x-request-id", "one")],
        &rerank(3),
    ));
    all.extend(request("GET", "/health", &[("x-request-id", "two")], None));
    all.extend(post_json(
        "/v1/rerank",
        &[("x-request-id", "three")],
        &rerank(2),
    ));
    all.extend(request(
        "POST",
        "/v2/rerank",
        &[JSON, ("x-request-id", "four")],
        Some(b"{"),
    ));
    all.extend(post_json(
        "/v2/rerank",
        &[("x-request-id", "five")],
        &rerank(1),
    ));
    let mut conn = TcpStream::connect(server.http()).await.unwrap();
    conn.write_all(&all).await.unwrap();
    let mut reader = Reader::default();
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(reader.response(&mut conn).await.expect("an answer"));
    }
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 200, 400, 200]);
    let count = |r: &Response| r.json()["results"].as_array().unwrap().len();
    assert_eq!(answers[0].header("x-request-id"), Some("one"));
    assert_eq!(count(&answers[0]), 3);
    assert_eq!(answers[1].json()["status"], "ok");
    assert_eq!(answers[2].header("x-request-id"), Some("three"));
    assert_eq!(count(&answers[2]), 2);
    let document = &answers[2].json()["results"][0]["document"];
    assert!(document["text"].is_string(), "{document}");
    assert_eq!(answers[3].header("x-request-id"), Some("four"));
    assert_eq!(answers[4].header("x-request-id"), Some("five"));
    assert_eq!(count(&answers[4]), 1);
}

/// Sends `body` as a POST to `path` on an HTTP/2 connection; the status and the body.
async fn h2_post(
    client: &mut h2::client::SendRequest<bytes::Bytes>,
    path: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let req = http::Request::post(format!("http://localhost{path}"))
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let (response, mut stream) = client.send_request(req, false).unwrap();
    stream.send_data(body.into(), true).unwrap();
    let response = response.await.unwrap();
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// h2c with prior knowledge (HTTP/2 without TLS or upgrade) serves the same routes, several
/// calls at once on one connection, with the scores of the gRPC Rerank.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_with_prior_knowledge() {
    let server = start(&[]).await;
    let tcp = TcpStream::connect(server.http()).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let calls = (1..=4).map(|n| {
        let mut client = client.clone();
        async move {
            h2_post(
                &mut client,
                "/v2/rerank",
                serde_json::to_vec(&rerank(n)).unwrap(),
            )
            .await
        }
    });
    let answers = futures::future::join_all(calls).await;
    for (n, (status, body)) in (1..=4).zip(&answers) {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["results"].as_array().unwrap().len(), n);
    }
    let (status, body) = h2_post(&mut client, "/v2/rerank", b"{\"query\": 1}".to_vec()).await;
    assert_eq!(status, 400, "{body}");

    let mut grpc = CrossEncoderClient::new(server.channel.clone());
    let req = pb::RerankRequest {
        model: "ce".into(),
        query: "what is a cross-encoder".into(),
        documents: documents(4)
            .into_iter()
            .map(|text| pb::Document {
                id: String::new(),
                text,
            })
            .collect(),
        ..Default::default()
    };
    let expected = grpc.rerank(req).await.unwrap().into_inner().results;
    let got = answers[3].1["results"].as_array().unwrap();
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g["index"].as_u64().unwrap(), u64::from(e.index));
        // The four HTTP calls may share a batch (other padding), so the last bits may differ.
        let score = g["relevance_score"].as_f64().unwrap() as f32;
        assert!((score - e.score).abs() <= 1e-5, "{score} vs {}", e.score);
    }
}
