//! Hostile request bodies on the REST port, against a real `crossrank serve --http-port 0`
//! process over raw TCP: bodies declared huge, bodies that never end, bytes that are not the
//! JSON they claim to be, and every refusal a client can act on. Each is answered with a
//! precise status and message naming the field, the limit and the size, in bounded time, with
//! the server's peak RSS (from /proc) bounded. Every case prints its RSS figures.
//! Connections (idle, slow, pipelined, h2c) are in hostile_http_conns.rs.

use crate::common;

use std::time::{Duration, Instant};

use common::process::ServerProcess;
use common::rest::{
    call, closed_within, documents, post_json, request, rerank, serve_ce, Reader, Response,
};
use crossrank::api::pb;
use crossrank::api::pb::cross_encoder_client::CrossEncoderClient;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn start(extra: &[&str]) -> ServerProcess {
    serve_ce("", extra).await
}

const JSON: (&str, &str) = ("content-type", "application/json");

/// Prints a case's memory: RSS before and the peak above it.
fn rss(case: &str, before: f64, extra: f64, took: Duration) {
    println!("{case}: RSS {before:.1} MiB before, peak +{extra:.1} MiB, answered in {took:?}");
}

/// A 1 GiB `Content-Length` is refused 413 from the header alone: the answer comes before any
/// byte of the body is sent, the connection is closed, and the server's memory does not move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_content_length_is_refused_unread() {
    let server = start(&[]).await;
    let head = request(
        "POST",
        "/v2/rerank",
        &[JSON, ("content-length", "1073741824")],
        None,
    );
    let before = server.rss_mib();
    let exchange = async {
        let mut conn = TcpStream::connect(server.http()).await.unwrap();
        conn.write_all(&head).await.unwrap();
        let r = Reader::default()
            .response(&mut conn)
            .await
            .expect("an answer");
        closed_within(&mut conn, Duration::from_secs(5)).await;
        r
    };
    let (r, took, extra) = server.measured(exchange).await;
    rss("1 GiB Content-Length", before, extra, took);
    assert_eq!(r.status, 413, "{r:?}");
    let m = r.message();
    assert!(
        m.contains("1073741824 bytes") && m.contains("the limit is 67108864"),
        "{m}"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(extra < 16.0, "peak RSS grew by {extra:.1} MiB");
}

/// Opens a POST /v2/rerank with `headers`, sends `first` bytes of body at once and then one byte
/// every 50 ms until the server answers; returns the answer and how long it took from the
/// headers.
async fn trickle(addr: &str, headers: &[(&str, &str)], first: usize) -> (Response, Duration) {
    let conn = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = conn.into_split();
    let head = request("POST", "/v2/rerank", headers, None);
    wr.write_all(&head).await.unwrap();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let mut chunk = vec![b' '; first];
        loop {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
            chunk = vec![b' '];
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let r = Reader::default()
        .response(&mut rd)
        .await
        .expect("an answer");
    let took = start.elapsed();
    writer.abort();
    (r, took)
}

/// Bodies that never end: declared and trickled, they end 504 at the call's deadline
/// (`x-request-timeout`, else --default-timeout-secs), naming it and the bytes that came; sent
/// chunked without end, they end 413 once past the size limit; bodies declared while others
/// are held are refused 429 past --max-receiving-mib. Memory stays within the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_ends_is_cut_off() {
    let server = start(&[
        "--default-timeout-secs",
        "3",
        "--max-message-bytes",
        "8388608",
        "--max-receiving-mib",
        "16",
    ])
    .await;
    let addr = server.http();
    let before = server.rss_mib();
    server.reset_peak();

    let declared = [
        JSON,
        ("content-length", "4194304"),
        ("x-request-timeout", "1.5"),
    ];
    let (r, took) = trickle(addr, &declared, 1 << 20).await;
    println!(
        "declared 4 MiB, trickled, x-request-timeout 1.5: {} after {took:?}",
        r.status
    );
    assert_eq!(r.status, 504, "{r:?}");
    let m = r.message();
    assert!(
        m.contains("(x-request-timeout 1.500 s)") && m.contains(" of its 4194304 bytes arrived"),
        "{m}"
    );
    assert!((1200..2500).contains(&took.as_millis()), "took {took:?}");

    let (r, took) = trickle(addr, &declared[..2], 1 << 20).await;
    println!(
        "declared 4 MiB, trickled, default timeout 3 s: {} after {took:?}",
        r.status
    );
    assert_eq!(r.status, 504, "{r:?}");
    assert!(r.message().contains("(--default-timeout-secs 3)"), "{r:?}");
    assert!((2500..4000).contains(&took.as_millis()), "took {took:?}");

    // Chunked, 1 MiB chunks without end.
    let exchange = async {
        let conn = TcpStream::connect(addr).await.unwrap();
        let (mut rd, mut wr) = conn.into_split();
        let head = request(
            "POST",
            "/v2/rerank",
            &[JSON, ("transfer-encoding", "chunked")],
            None,
        );
        wr.write_all(&head).await.unwrap();
        let writer = tokio::spawn(async move {
            let mut chunk = format!("{:x}\r\n", 1 << 20).into_bytes();
            chunk.extend(vec![b' '; 1 << 20]);
            chunk.extend(b"\r\n");
            while wr.write_all(&chunk).await.is_ok() {}
        });
        let r = Reader::default()
            .response(&mut rd)
            .await
            .expect("an answer");
        writer.abort();
        r
    };
    let (r, took, _) = server.measured(exchange).await;
    println!("chunked without end: {} after {took:?}", r.status);
    assert_eq!(r.status, 413, "{r:?}");
    assert!(r.message().contains("the limit is 8388608"), "{r:?}");

    // Three bodies of a declared 6 MiB at once, held open for 60 s: whichever comes third
    // would pass 16 MiB and is refused at once; the other two wait for their bodies.
    let (tx, mut answers) = tokio::sync::mpsc::unbounded_channel();
    let head = request(
        "POST",
        "/v2/rerank",
        &[
            JSON,
            ("content-length", "6291456"),
            ("x-request-timeout", "60"),
        ],
        None,
    );
    let mut held = Vec::new();
    for _ in 0..3 {
        let (tx, head, addr) = (tx.clone(), head.clone(), addr.to_owned());
        held.push(tokio::spawn(async move {
            let mut conn = TcpStream::connect(addr).await.unwrap();
            conn.write_all(&head).await.unwrap();
            conn.write_all(&[b' '; 1024]).await.unwrap();
            let r = Reader::default().response(&mut conn).await;
            let _ = tx.send(r);
            std::future::pending::<()>().await;
        }));
    }
    let refused = tokio::time::timeout(Duration::from_secs(10), answers.recv())
        .await
        .expect("none of three bodies of 6 MiB was refused")
        .unwrap()
        .expect("an answer");
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(refused.header("retry-after"), Some("1"), "{refused:?}");
    let m = refused.message();
    assert!(
        m.contains(
            "the server is receiving 12582912 bytes of other requests; 6291456 more \
             exceeds --max-receiving-mib (16777216 bytes)"
        ),
        "{m}"
    );
    let other = tokio::time::timeout(Duration::from_millis(500), answers.recv()).await;
    assert!(other.is_err(), "a second body was answered: {other:?}");
    held.iter().for_each(|h| h.abort());
    let peak = server.peak_mib() - before;
    println!("never-ending bodies: RSS {before:.1} MiB before, peak +{peak:.1} MiB");
    assert!(peak < 16.0 + 40.0, "peak RSS grew by {peak:.1} MiB");
}

/// A POST of raw `body` bytes to /v2/rerank.
fn post_bytes(body: &[u8]) -> Vec<u8> {
    request("POST", "/v2/rerank", &[JSON], Some(body))
}

/// Bytes that are not the JSON they claim to be, each refused 400 before the model sees them,
/// naming what is wrong and where: invalid UTF-8 in a string, 10^5 `[` (refused by the scan at
/// the 33rd, without recursion), a 10^6-element array (refused by the scan, memory flat), 2,049
/// documents (named with the count and the limit), a million keys in one document (refused by
/// the scan's count of values, which a full request of documents with a few keys passes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_are_not_the_json_they_claim() {
    let server = start(&[]).await;
    let addr = server.http();

    let mut body = br#"{"model": "ce", "query": "caf"#.to_vec();
    let bad = body.len(); // the offset of the first invalid byte
    body.extend_from_slice(b"\xff\xfe\", \"documents\": [\"a\"]}");
    let r = call(addr, &post_bytes(&body)).await;
    assert_eq!(r.status, 400, "{r:?}");
    let m = r.message();
    println!("invalid UTF-8 at byte {bad}: {m}");
    let at = format!("not UTF-8 at byte {bad} (line 1 column {})", bad + 1);
    assert!(m.contains(&at), "{m}");

    let deep = "[".repeat(100_000);
    let before = server.rss_mib();
    let (r, took, extra) = server
        .measured(call(addr, &post_bytes(deep.as_bytes())))
        .await;
    rss("10^5 nested [", before, extra, took);
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        r.message(),
        "JSON nesting reaches 33 levels at byte 32; the limit is 32 levels"
    );
    assert!(extra < 16.0, "peak RSS grew by {extra:.1} MiB");

    let mut big = br#"{"model": "ce", "query": "q", "documents": ["#.to_vec();
    let first = big.len();
    big.extend_from_slice("\"a\",".repeat(1_000_000).as_bytes());
    big.pop();
    big.extend_from_slice(b"]}");
    let before = server.rss_mib();
    let (r, took, extra) = server.measured(call(addr, &post_bytes(&big))).await;
    rss("a 10^6-element array (4 MB)", before, extra, took);
    assert_eq!(r.status, 400, "{r:?}");
    // The 2,049th comma ends the 2,049th element: a 2,050th follows.
    let comma = first + 4 * 2048 + 3;
    assert_eq!(
        r.message(),
        format!(
            "`documents` has more than 2049 entries (at byte {comma}); the limit is 2048 \
             (max_pairs_per_request); the body was refused before parsing"
        )
    );
    assert!(extra < 24.0, "peak RSS grew by {extra:.1} MiB");

    let r = call(addr, &post_json("/v2/rerank", &[], &rerank(2049))).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        r.message(),
        "`documents` has 2049 entries; the limit is 2048 (max_pairs_per_request)"
    );

    // 16 MB of keys in one document object: parsed, they took +440 MiB and 11 s (a parsed
    // value costs ~100 bytes however short it was sent); the scan now counts values.
    let mut keys = br#"{"model": "ce", "query": "q", "documents": [{"text": "a""#.to_vec();
    let mut n = 0;
    while keys.len() < 16 << 20 {
        keys.extend_from_slice(format!(", \"k{n:07}\": 0").as_bytes());
        n += 1;
    }
    keys.extend_from_slice(b"}]}");
    let request = request("POST", "/v1/rerank", &[JSON], Some(&keys));
    let before = server.rss_mib();
    let (r, took, extra) = server.measured(call(addr, &request)).await;
    rss(
        "a document object with 1.3 million keys (16 MB)",
        before,
        extra,
        took,
    );
    assert_eq!(r.status, 400, "{r:?}");
    let m = r.message();
    assert!(
        m.starts_with("the body holds more than 32768 JSON values")
            && m.contains("the limit is 32768 (16 for each of max_pairs_per_request's 2048"),
        "{m}"
    );
    assert!(extra < 40.0, "peak RSS grew by {extra:.1} MiB");

    // A full request of documents as objects with a few keys each is within the count.
    let docs: Vec<Value> = (0..2048)
        .map(|i| json!({"text": format!("document {i}"), "id": i, "title": "t", "url": "u"}))
        .collect();
    let body = json!({"model": "ce", "query": "q", "documents": docs, "top_n": 2});
    let r = call(addr, &post_json("/v1/rerank", &[], &body)).await;
    assert_eq!(r.status, 200, "{r:?}");
    let best = &r.json()["results"][0];
    let i = best["index"].as_u64().unwrap();
    assert_eq!(best["document"]["id"], i, "{best}");
    assert_eq!(best["document"]["title"], "t", "{best}");
}

/// A Rerank through gRPC of `query` and `docs`: its error message.
async fn grpc_refusal(server: &ServerProcess, model: &str, query: &str, docs: &[String]) -> String {
    let mut grpc = CrossEncoderClient::new(server.channel.clone());
    let req = pb::RerankRequest {
        model: model.into(),
        query: query.into(),
        documents: docs
            .iter()
            .map(|t| pb::Document {
                id: String::new(),
                text: t.clone(),
            })
            .collect(),
        ..Default::default()
    };
    grpc.rerank(req).await.unwrap_err().message().to_owned()
}

/// Every refusal a client can act on, with its status and the parts of its message: wrong
/// method 405, unknown route 404, not JSON 415, malformed JSON 400 at the parser's position,
/// unknown model 404, and the gRPC API's limits with the same numbers (bytes per text,
/// documents per request, model name), naming the field, the limit and the size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_names_its_cause() {
    let server = start(&[]).await;
    let addr = server.http();
    let check = |r: &Response, status: u16, parts: &[&str]| {
        assert_eq!(r.status, status, "{r:?}");
        let m = r.message();
        for part in parts {
            assert!(m.contains(part), "{part:?} is not in {m:?}");
        }
        m
    };

    let r = call(addr, &request("GET", "/v2/rerank", &[], None)).await;
    check(&r, 405, &["GET is not allowed on \"/v2/rerank\""]);
    assert_eq!(r.header("allow"), Some("POST"));
    let r = call(addr, &post_json("/health", &[], &json!({}))).await;
    check(&r, 405, &["POST is not allowed on \"/health\""]);
    let r = call(addr, &post_json("/v3/rerank", &[], &rerank(1))).await;
    check(&r, 404, &["no route \"/v3/rerank\"", "/v2/rerank"]);

    let body = serde_json::to_vec(&rerank(1)).unwrap();
    let plain = request(
        "POST",
        "/v2/rerank",
        &[("content-type", "text/plain")],
        Some(&body),
    );
    check(
        &call(addr, &plain).await,
        415,
        &["\"text/plain\"", "application/json"],
    );

    let text = r#"{"model": "ce", "query": "q", "documents": ["a"] "top_n": 1}"#;
    let column = text.find("\"top_n\"").unwrap() + 1;
    let r = call(addr, &post_bytes(text.as_bytes())).await;
    check(&r, 400, &[&format!("line 1 column {column}")]);
    let text = r#"{"model": "ce", "query": 5, "documents": ["a"]}"#;
    let column = text.find('5').unwrap() + 1;
    let r = call(addr, &post_bytes(text.as_bytes())).await;
    check(
        &r,
        400,
        &[
            "invalid type: integer `5`",
            &format!("line 1 column {column}"),
        ],
    );
    let r = call(addr, &post_bytes(b"")).await;
    check(&r, 400, &["the request body is empty"]);

    let unknown = json!({"model": "nope", "query": "q", "documents": ["a"]});
    let r = call(addr, &post_json("/v2/rerank", &[], &unknown)).await;
    let m = check(&r, 404, &["\"nope\""]);
    assert_eq!(m, grpc_refusal(&server, "nope", "q", &documents(1)).await);

    // The limits of the gRPC API, with its numbers.
    let long = "x".repeat(65537);
    let body = json!({"model": "ce", "query": long, "documents": ["a"]});
    let r = call(addr, &post_json("/v2/rerank", &[], &body)).await;
    let m = check(
        &r,
        400,
        &["`query` is 65537 bytes; the limit is 65536 (max_text_bytes)"],
    );
    assert_eq!(m, grpc_refusal(&server, "ce", &long, &documents(1)).await);
    let docs = vec!["a".to_owned(), long.clone()];
    let body = json!({"model": "ce", "query": "q", "documents": docs});
    let r = call(addr, &post_json("/v1/rerank", &[], &body)).await;
    let m = check(
        &r,
        400,
        &[
            "documents",
            "65537 bytes; the limit is 65536 (max_text_bytes)",
        ],
    );
    assert_eq!(m, grpc_refusal(&server, "ce", "q", &docs).await);
    let name = "m".repeat(300);
    let body = json!({"model": name, "query": "q", "documents": ["a"]});
    let r = call(addr, &post_json("/v2/rerank", &[], &body)).await;
    let m = check(&r, 400, &["`model` is 300 bytes; the limit is"]);
    assert_eq!(m, grpc_refusal(&server, &name, "q", &documents(1)).await);
    let grpc = grpc_refusal(&server, "ce", "q", &documents(2049)).await;
    for m in [
        grpc,
        call(addr, &post_json("/v2/rerank", &[], &rerank(2049)))
            .await
            .message(),
    ] {
        assert!(
            m.starts_with("`documents` has ")
                && m.contains("2048")
                && m.contains("(max_pairs_per_request)"),
            "{m}"
        );
    }
    let r = call(
        addr,
        &post_json("/v2/rerank", &[], &json!({"query": "q", "documents": []})),
    )
    .await;
    check(&r, 400, &["`documents` is empty"]);
    let body = json!({"model": "ce", "query": "q", "documents": ["a"], "top_n": 0});
    let r = call(addr, &post_json("/v2/rerank", &[], &body)).await;
    check(&r, 400, &["`top_n` is 0"]);
}
