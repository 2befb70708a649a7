//! Priorities and tenants from the wire to the scheduler, through a real server on 127.0.0.1:0:
//! a priority beyond `max_priority` is INVALID_ARGUMENT on every RPC (and the dialect's error on
//! REST), a bad `x-crossrank-tenant` header is refused on both ports naming the header, and a
//! displacement shows in the metrics by priority and by tenant.

use crate::common;

use std::time::Duration;

use common::server::{fake, TestServer};
use crossrank::api::pb;
use crossrank::api::ServerOptions;
use crossrank::config::RequestLimits;
use crossrank::telemetry::metrics::metrics;
use pb::rerank_stream_request::Kind as In;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

fn pairs(n: usize) -> Vec<pb::Pair> {
    (0..n)
        .map(|i| pb::Pair {
            text_a: format!("query {i}"),
            text_b: "a document".into(),
        })
        .collect()
}

fn score(model: &str, n: usize, priority: u32) -> pb::ScoreRequest {
    pb::ScoreRequest {
        model: model.into(),
        pairs: pairs(n),
        priority,
        ..Default::default()
    }
}

fn documents(n: usize) -> Vec<pb::Document> {
    (0..n)
        .map(|i| pb::Document {
            id: format!("d{i}"),
            text: format!("document {i}"),
        })
        .collect()
}

/// A RerankStream of one batch of `n` documents; the status it ends with (OK for a final
/// ranking).
async fn rerank_stream(server: &TestServer, priority: u32, tenant: Option<&str>) -> tonic::Status {
    let header = In::Header(pb::RerankStreamHeader {
        model: "ce".into(),
        query: "q".into(),
        priority,
        ..Default::default()
    });
    let batch = In::Documents(pb::DocumentBatch {
        documents: documents(2),
    });
    let msgs = [header, batch].map(|k| pb::RerankStreamRequest { kind: Some(k) });
    let mut req = tonic::Request::new(tokio_stream::iter(msgs));
    if let Some(t) = tenant {
        req.metadata_mut()
            .insert("x-crossrank-tenant", t.parse().unwrap());
    }
    let mut responses = match server.client().rerank_stream(req).await {
        Ok(r) => r.into_inner(),
        Err(s) => return s,
    };
    loop {
        match responses.message().await {
            Ok(Some(pb::RerankStreamResponse {
                kind: Some(pb::rerank_stream_response::Kind::Final(_)),
            })) => return tonic::Status::ok(""),
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a final ranking or an error"),
            Err(s) => return s,
        }
    }
}

fn assert_priority_refused(s: &tonic::Status, value: u32, limit: u32, what: &str) {
    assert_eq!(s.code(), Code::InvalidArgument, "{what}: {s:?}");
    let want = format!("`priority` is {value}; the limit is {limit} (max_priority");
    assert!(s.message().contains(&want), "{what}: {}", s.message());
}

/// With `max_priority` 3: priority 4 is INVALID_ARGUMENT on Score, Rerank, ScoreStream (in the
/// request's answer) and RerankStream (from its header), naming `priority`, the value and the
/// limit; priority 3 is served on each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_priority_beyond_max_priority_is_invalid_argument_on_every_rpc() {
    let limits = RequestLimits {
        max_priority: 3,
        ..Default::default()
    };
    let (ce, _dir) = fake("ce");
    let server = TestServer::start(vec![ce], ServerOptions::default(), limits).await;
    let mut c = server.client();

    let s = c.score(score("ce", 2, 4)).await.unwrap_err();
    assert_priority_refused(&s, 4, 3, "Score");
    assert_eq!(
        c.score(score("ce", 2, 3))
            .await
            .unwrap()
            .into_inner()
            .results
            .len(),
        2
    );

    let rerank = |priority| pb::RerankRequest {
        model: "ce".into(),
        query: "q".into(),
        documents: documents(2),
        priority,
        ..Default::default()
    };
    let s = c.rerank(rerank(4)).await.unwrap_err();
    assert_priority_refused(&s, 4, 3, "Rerank");
    assert_eq!(
        c.rerank(rerank(3))
            .await
            .unwrap()
            .into_inner()
            .results
            .len(),
        2
    );

    let s = rerank_stream(&server, 4, None).await;
    assert_priority_refused(&s, 4, 3, "RerankStream");
    assert_eq!(rerank_stream(&server, 3, None).await.code(), Code::Ok);
    let s = rerank_stream(&server, u32::MAX, None).await;
    assert_priority_refused(&s, u32::MAX, 3, "RerankStream");

    let requests = vec![score("ce", 1, 4), score("ce", 1, 3)];
    let mut answers = c
        .score_stream(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut errors = Vec::new();
    while let Some(r) = answers.message().await.unwrap() {
        errors.push(r.error);
    }
    assert_eq!(errors.len(), 2);
    let refused: Vec<_> = errors.iter().flatten().collect();
    assert_eq!(refused.len(), 1, "{errors:?}");
    assert_eq!(refused[0].code, Code::InvalidArgument as i32);
    assert!(refused[0]
        .message
        .contains("`priority` is 4; the limit is 3"));
    server.stop().await;
}

async fn post(server: &TestServer, path: &str, body: &Value, tenant: &[u8]) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("http://{}{path}", server.http_addr.unwrap()))
        .header("content-type", "application/json")
        .header(
            "x-crossrank-tenant",
            http::HeaderValue::from_bytes(tenant).unwrap(),
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null),
    )
}

/// A tenant header of 129 bytes, or with a byte that is not printable ASCII, is refused before
/// any work: INVALID_ARGUMENT on gRPC (unary and streams), 400 on REST in every dialect, naming
/// the header, its length and the limit. 128 bytes are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_tenant_header_is_refused_naming_it() {
    let (ce, _dir) = fake("ce");
    let server =
        TestServer::start_http(vec![ce], ServerOptions::default(), RequestLimits::default()).await;
    let long = "t".repeat(129);
    let want = "header `x-crossrank-tenant` is 129 bytes; the limit is 128";
    let mut req = tonic::Request::new(score("ce", 1, 0));
    req.metadata_mut()
        .insert("x-crossrank-tenant", long.parse().unwrap());
    let s = server.client().score(req).await.unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert_eq!(s.message(), want);
    let s = rerank_stream(&server, 0, Some(&long)).await;
    assert_eq!((s.code(), s.message()), (Code::InvalidArgument, want));
    assert_eq!(
        rerank_stream(&server, 0, Some(&long[1..])).await.code(),
        Code::Ok
    );

    let cohere = json!({"query": "q", "documents": ["a", "b"]});
    let tei = json!({"query": "q", "texts": ["a", "b"]});
    for (path, body, field) in [
        ("/v2/rerank", &cohere, "message"),
        ("/rerank", &tei, "error"),
    ] {
        let (status, v) = post(&server, path, body, long.as_bytes()).await;
        assert_eq!(status, 400, "{path}: {v}");
        assert_eq!(v[field], want, "{path}: {v}");
        let (status, v) = post(&server, path, body, b"caf\xc3\xa9").await;
        assert_eq!(status, 400, "{path}: {v}");
        let m = v[field].as_str().unwrap();
        assert!(m.contains("non-ASCII byte at byte 4 of 5"), "{path}: {m}");
        let (status, v) = post(&server, path, body, &long.as_bytes()[1..]).await;
        assert_eq!(status, 200, "{path}: {v}");
    }
    server.stop().await;
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).await.unwrap();
    response
}

/// The value of the sample `series` (labels in the order the encoder writes them).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

/// A priority-0 request that finds the queue full of a priority-5 request displaces it; the
/// metrics (process-wide: the model has a name of its own) then show the displaced pairs by priority, the displaced request as an `evicted`
/// rejection of its (listed) tenant, and the newcomer's queued pairs by priority.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_displacement_shows_by_priority_and_tenant() {
    let (displace, _dir) = fake("displace,max_queue_pairs=4,max_wait_ms=4000");
    let server = TestServer::start(
        vec![displace],
        ServerOptions::default(),
        RequestLimits::default(),
    )
    .await;
    metrics().set_metric_tenants(&["bulk".into(), "live".into()]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = listener.local_addr().unwrap();
    tokio::spawn(crossrank::telemetry::serve_metrics(
        listener,
        server.engine.clone(),
    ));
    let call = |n, priority, tenant: &str| {
        let mut req = tonic::Request::new(score("displace", n, priority));
        req.metadata_mut()
            .insert("x-crossrank-tenant", tenant.parse().unwrap());
        let mut c = server.client();
        async move { c.score(req).await }
    };
    let bulk = tokio::spawn(call(4, 5, "bulk"));
    server.wait_queued("displace", 4).await;
    let live = tokio::spawn(call(2, 0, "live"));
    let s = bulk.await.unwrap().unwrap_err();
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert!(
        s.message().contains("displaced by higher-priority work"),
        "{s:?}"
    );

    // The newcomer waits out the batching window: its pairs are queued at priority 0.
    let depth = "crossrank_queue_depth_by_priority_pairs{model=\"displace\",priority=\"0\"}";
    let text = loop {
        let text = scrape(metrics_addr).await;
        if sample(&text, depth) == Some(2.0) {
            break text;
        }
        assert!(
            !live.is_finished(),
            "the window closed before the depth was seen"
        );
    };
    let evicted = "crossrank_evicted_pairs_total{model=\"displace\",priority=\"5\"}";
    assert_eq!(sample(&text, evicted), Some(4.0), "{text}");
    let rejected =
        "crossrank_tenant_rejected_total{model=\"displace\",tenant=\"bulk\",reason=\"evicted\"}";
    assert_eq!(sample(&text, rejected), Some(1.0), "{text}");
    let reason = "crossrank_rejections_total{model=\"displace\",reason=\"evicted\"}";
    assert_eq!(sample(&text, reason), Some(1.0), "{text}");

    let answer = tokio::time::timeout(Duration::from_secs(30), live).await;
    assert_eq!(
        answer.unwrap().unwrap().unwrap().into_inner().results.len(),
        2
    );
    let text = scrape(metrics_addr).await;
    let live_pairs = "crossrank_tenant_pairs_total{model=\"displace\",tenant=\"live\"}";
    assert_eq!(sample(&text, live_pairs), Some(2.0), "{text}");
    let waits = "crossrank_queue_wait_by_priority_seconds_count{model=\"displace\",priority=\"0\"}";
    assert_eq!(sample(&text, waits), Some(2.0), "{text}");
    assert_eq!(sample(&text, depth).unwrap_or(0.0), 0.0, "{text}");
    server.stop().await;
}
