//! The serving behaviours of the REST port, against a real `crossrank serve --http-port 0`
//! process: a client that leaves cancels its queued pairs, a full queue answers 429 and
//! shutdown 503 (both with `Retry-After`), `x-request-id` is echoed, TEI's timing headers carry
//! the call's times, `traceparent` continues the caller's trace, requests are counted in
//! /metrics by route, dialect, model and status, and SIGTERM stops the port while in-flight
//! calls finish.

use crate::common;

use std::time::{Duration, Instant};

use common::collector::Collector;
use common::process::ServerProcess;
use common::rest::{
    call, closed_within, post_json, request, rerank, serve_ce as start, Reader, Response,
};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The value of the sample `series` (name and labels, as the encoder writes them) in a /metrics
/// answer; 0 when it has none yet.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .map_or(0.0, |v| v.parse().unwrap())
}

/// Polls /metrics until `series` has `value` (30 s at most).
async fn wait_sample(server: &ServerProcess, series: &str, value: f64) {
    let start = Instant::now();
    loop {
        let now = sample(&server.metrics().await, series);
        if now == value {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{series} is {now}, not {value}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const DEPTH: &str = "crossrank_queue_depth_pairs{model=\"ce\"}";
const RUN: &str = "crossrank_batch_pairs_sum{model=\"ce\"}";
const SCORED: &str = "crossrank_pairs_total{model=\"ce\"}";

fn http_requests(route: &str, model: &str, status: &str) -> String {
    format!(
        "crossrank_http_requests_total{{route=\"{route}\",dialect=\"cohere\",model=\"{model}\",\
         status=\"{status}\"}}"
    )
}

/// A client that closes its connection (HTTP/1.1) or resets its stream (HTTP/2) while its
/// pairs wait in the queue (a 3 s batching window) cancels them, as a cancelled gRPC call
/// does: they are dropped, not run, and the call is counted "cancelled".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_cancels_its_queued_pairs() {
    let server = start(",max_wait_ms=3000,max_batch_pairs=256", &[]).await;
    let addr = server.http();
    let cancelled = http_requests("/v2/rerank", "ce", "cancelled");
    let text = server.metrics().await;
    let (run, scored) = (sample(&text, RUN), sample(&text, SCORED));

    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(&post_json("/v2/rerank", &[], &rerank(50)))
        .await
        .unwrap();
    wait_sample(&server, DEPTH, 50.0).await;
    drop(conn);
    wait_sample(&server, &cancelled, 1.0).await;

    let tcp = TcpStream::connect(addr).await.unwrap();
    let (h2, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let mut h2 = h2.ready().await.unwrap();
    let req = http::Request::post("http://localhost/v2/rerank")
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let (response, mut stream) = h2.send_request(req, false).unwrap();
    let body = serde_json::to_vec(&rerank(40)).unwrap();
    stream.send_data(body.into(), true).unwrap();
    wait_sample(&server, DEPTH, 40.0).await;
    stream.send_reset(h2::Reason::CANCEL);
    drop(response);
    wait_sample(&server, &cancelled, 2.0).await;

    let r = call(addr, &post_json("/v2/rerank", &[], &rerank(1))).await;
    assert_eq!(r.status, 200, "{r:?}");
    let text = server.metrics().await;
    assert_eq!(sample(&text, RUN) - run, 1.0, "abandoned pairs were run");
    assert_eq!(sample(&text, SCORED) - scored, 1.0);
    assert_eq!(sample(&text, DEPTH), 0.0);
    connection.abort();
}

/// A full queue answers 429 at once with `Retry-After`, naming what is queued and the limit:
/// a call larger than max_queue_pairs, and one arriving while the queue holds others; the
/// queued call still succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_429_with_retry_after() {
    let server = start(",max_wait_ms=2000,max_queue_pairs=4", &[]).await;
    let addr = server.http().to_owned();
    let r = call(&addr, &post_json("/v2/rerank", &[], &rerank(5))).await;
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(
        r.message()
            .contains("0 pairs queued + 5 requested exceeds max_queue_pairs 4"),
        "{r:?}"
    );

    let queued = {
        let addr = addr.clone();
        tokio::spawn(async move { call(&addr, &post_json("/v1/rerank", &[], &rerank(3))).await })
    };
    wait_sample(&server, DEPTH, 3.0).await;
    let start = Instant::now();
    let r = call(&addr, &post_json("/v2/rerank", &[], &rerank(2))).await;
    let took = start.elapsed();
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(
        r.message()
            .contains("3 pairs queued + 2 requested exceeds max_queue_pairs 4"),
        "{r:?}"
    );
    assert!(took < Duration::from_millis(500), "refused after {took:?}");
    let r = queued.await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["results"].as_array().unwrap().len(), 3);
    let text = server.metrics().await;
    let overload = "crossrank_rejections_total{model=\"ce\",reason=\"overload\"}";
    assert_eq!(sample(&text, overload), 2.0);
}

fn millis(r: &Response, name: &str) -> u64 {
    r.header(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", r.headers))
        .parse()
        .unwrap()
}

/// `x-request-id` is echoed on answers and refusals alike (not when longer than max_id_bytes);
/// scoring answers carry TEI's timing headers with the call's real times: a call alone in a
/// 300 ms batching window waits about that long in the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_echoed_and_timing_headers_sent() {
    let server = start(",max_wait_ms=300,max_batch_pairs=64", &[]).await;
    let addr = server.http();
    let id = ("x-request-id", "req-7f3a");
    let unknown = json!({"model": "nope", "query": "q", "documents": ["a"]});
    let calls = [
        (post_json("/v2/rerank", &[id], &rerank(1)), 200),
        (post_json("/v1/rerank", &[id], &rerank(1)), 200),
        (post_json("/v2/rerank", &[id], &unknown), 404),
        (
            request(
                "POST",
                "/v2/rerank",
                &[id, ("content-type", "application/json")],
                Some(b"["),
            ),
            400,
        ),
        (
            request(
                "POST",
                "/v1/rerank",
                &[id, ("content-type", "text/csv")],
                Some(b"a,b"),
            ),
            415,
        ),
    ];
    for (bytes, status) in calls {
        let r = call(addr, &bytes).await;
        assert_eq!(r.status, status, "{r:?}");
        assert_eq!(r.header("x-request-id"), Some("req-7f3a"), "{r:?}");
        if status != 200 {
            assert_eq!(r.header("x-total-time"), None, "{r:?}");
            continue;
        }
        let (queue, total) = (millis(&r, "x-queue-time"), millis(&r, "x-total-time"));
        let tokenize = millis(&r, "x-tokenization-time");
        let inference = millis(&r, "x-inference-time");
        let compute = millis(&r, "x-compute-time");
        println!(
            "queue {queue} ms, tokenization {tokenize} ms, inference {inference} ms, \
             compute {compute} ms, total {total} ms"
        );
        assert!((250..2000).contains(&queue), "queue time {queue} ms");
        assert!(compute.abs_diff(tokenize + inference) <= 1);
        assert!(total >= queue + inference, "total {total} ms");
    }
    let long = "i".repeat(257);
    let r = call(
        addr,
        &post_json("/v2/rerank", &[("x-request-id", &long)], &rerank(1)),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("x-request-id"),
        None,
        "an id past max_id_bytes was echoed"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A REST call with a W3C `traceparent` is a span of the caller's trace, received by a real
/// OTLP collector, and its steps are its children.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_continues_the_callers_trace() {
    let (collector, endpoint) = Collector::start().await;
    let server = start("", &["--otlp-endpoint", &endpoint]).await;
    let (trace_id, caller) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let traceparent = format!("00-{trace_id}-{caller}-01");
    let bytes = post_json("/v2/rerank", &[("traceparent", &traceparent)], &rerank(2));
    assert_eq!(call(server.http(), &bytes).await.status, 200);
    let spans = collector
        .wait_for(
            || {},
            |s| s.name == "tokenize" && hex(&s.trace_id) == trace_id,
        )
        .await;
    let http = spans
        .iter()
        .find(|s| s.name == "POST /v2/rerank")
        .unwrap_or_else(|| {
            let names: Vec<_> = spans.iter().map(|s| &s.name).collect();
            panic!("no span of the REST call in {names:?}")
        });
    assert_eq!(
        hex(&http.trace_id),
        trace_id,
        "the call's span is in the caller's trace"
    );
    assert_eq!(
        hex(&http.parent_span_id),
        caller,
        "its parent is the caller's span"
    );
    let tokenize = spans
        .iter()
        .find(|s| s.name == "tokenize" && hex(&s.trace_id) == trace_id)
        .unwrap();
    assert_eq!(
        tokenize.parent_span_id, http.span_id,
        "tokenize is the call's child"
    );
}

/// /metrics counts REST calls by route, dialect, model and status class (the model as
/// "(unknown)" when it is not served, empty when the call failed before naming one), and
/// passes `promtool check metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_are_counted_for_prometheus() {
    let server = start("", &[]).await;
    let addr = server.http();
    let unknown = json!({"model": "nope", "query": "q", "documents": ["a"]});
    let zero = json!({"model": "ce", "query": "q", "documents": ["a"], "top_n": 0});
    let csv = request(
        "POST",
        "/v1/rerank",
        &[("content-type", "text/csv")],
        Some(b"a"),
    );
    let traffic = [
        (post_json("/v2/rerank", &[], &rerank(2)), 200),
        (post_json("/v2/rerank", &[], &rerank(1)), 200),
        (post_json("/v1/rerank", &[], &rerank(1)), 200),
        (post_json("/v2/rerank", &[], &zero), 400),
        (post_json("/v2/rerank", &[], &unknown), 404),
        (csv, 415),
    ];
    for (bytes, status) in traffic {
        assert_eq!(call(addr, &bytes).await.status, status);
    }
    let text = server.metrics().await;
    let expected = [
        (http_requests("/v2/rerank", "ce", "2xx"), 2.0),
        (http_requests("/v2/rerank", "ce", "4xx"), 1.0),
        (http_requests("/v2/rerank", "(unknown)", "4xx"), 1.0),
        (http_requests("/v1/rerank", "ce", "2xx"), 1.0),
        (http_requests("/v1/rerank", "", "4xx"), 1.0),
        (
            "crossrank_http_request_duration_seconds_count{route=\"/v2/rerank\",dialect=\"cohere\"}"
                .to_owned(),
            4.0,
        ),
    ];
    for (series, value) in expected {
        assert_eq!(sample(&text, &series), value, "{series} in:\n{text}");
    }
    let body = text.split_once("\r\n\r\n").unwrap().1;
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/setup.sh installs it)");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// SIGTERM: the REST port stops accepting connections at once; a call in the queue finishes
/// 200; a call whose body completes after the signal is refused 503 with `Retry-After`; an
/// idle keep-alive connection is closed; the process exits 0 within the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_port_and_finishes_in_flight_calls() {
    let mut server = start(",max_wait_ms=2000", &["--grace-period-secs", "20"]).await;
    let addr = server.http().to_owned();
    let mut queued = TcpStream::connect(&addr).await.unwrap();
    queued
        .write_all(&post_json("/v2/rerank", &[], &rerank(3)))
        .await
        .unwrap();
    wait_sample(&server, DEPTH, 3.0).await;
    let mut partial = TcpStream::connect(&addr).await.unwrap();
    let bytes = post_json("/v2/rerank", &[], &rerank(2));
    let (sent, rest) = bytes.split_at(bytes.len() - 5);
    partial.write_all(sent).await.unwrap();
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(&request("GET", "/health", &[], None))
        .await
        .unwrap();
    let r = Reader::default().response(&mut idle).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");

    // SAFETY: kill sends a signal to the child this test started; nothing is shared.
    assert_eq!(
        unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) },
        0
    );
    let signalled = Instant::now();
    while TcpStream::connect(&addr).await.is_ok() {
        assert!(
            signalled.elapsed() < Duration::from_secs(5),
            "the REST port still accepts connections"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "the port stopped accepting {:?} after SIGTERM",
        signalled.elapsed()
    );

    partial.write_all(rest).await.unwrap();
    let r = Reader::default().response(&mut partial).await.unwrap();
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.message().contains("shutting down"), "{r:?}");
    let r = Reader::default().response(&mut queued).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["results"].as_array().unwrap().len(), 3);
    closed_within(&mut idle, Duration::from_secs(5)).await;

    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(25),
            "the server did not exit within its grace period"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("exited {status} {:?} after SIGTERM", signalled.elapsed());
    assert!(status.success(), "{}", server.stderr());
}
