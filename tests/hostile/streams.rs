//! Streams against clients that do not read, send garbage or go quiet.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::raw;
use common::server::{model, TestServer};
use crossrank::api::pb;
use crossrank::config::RequestLimits;
use prost::Message;
use tonic::Code;

fn request(i: usize, text: &str) -> pb::ScoreRequest {
    pb::ScoreRequest {
        model: "ce".into(),
        request_id: format!("r{i}"),
        pairs: vec![pb::Pair {
            text_a: "q".into(),
            text_b: text.into(),
        }],
        ..Default::default()
    }
}

/// A ScoreStream client that keeps sending while its requests cannot finish: the server holds
/// `max_stream_in_flight` requests and stops reading, so HTTP/2 flow control stalls the client
/// after a window's worth of messages instead of the server buffering all 400 (12 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn score_stream_stops_reading_at_its_in_flight_bound() {
    let limits = RequestLimits {
        max_stream_in_flight: 2,
        ..Default::default()
    };
    // Batches close at 64 pairs or after 60 s: two 1-pair requests never complete in this test.
    let ce = model("ce=bert,max_wait_ms=60000,max_batch_pairs=64");
    let server = TestServer::start(vec![ce], Default::default(), limits).await;
    let produced = Arc::new(AtomicUsize::new(0));
    let text = "word ".repeat(6000); // 30 KB per message
    let counter = produced.clone();
    let outbound = futures::stream::iter(0..400).map(move |i| {
        counter.fetch_add(1, Ordering::SeqCst);
        request(i, &text)
    });
    let mut client = server.client();
    let call = tokio::spawn(async move { client.score_stream(outbound).await });
    server.wait_queued("ce", 2).await;
    // Let the client fill every buffer between it and the server, until it stalls.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = produced.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        if produced.load(Ordering::SeqCst) == seen || Instant::now() > deadline {
            break;
        }
    }
    let queue = server.engine.registry.get("ce").unwrap().queue.clone();
    let sent = produced.load(Ordering::SeqCst);
    println!(
        "client produced {sent} of 400 messages; {} pairs queued",
        queue.depth()
    );
    assert_eq!(queue.depth(), 2, "more requests than the bound were read");
    assert!(
        sent < 100,
        "the client was never pushed back: {sent} messages sent"
    );
    call.abort();
}

use futures::StreamExt;

/// A message that does not decode ends the stream with that error's status (INVALID_ARGUMENT:
/// the wire scan refuses bytes it cannot parse), after the requests
/// before it were answered (it used to end the call OK, silently dropping the rest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_message_ends_the_stream_with_its_status() {
    let server = TestServer::simple(&["ce=bert"]).await;
    let mut grpc = raw::client(server.channel.clone()).await;
    let good = request(0, "fine").encode_to_vec();
    let garbage = vec![0x0b, 0xff, 0xff]; // a group that never ends: not a ScoreRequest
    let outbound = futures::stream::iter(vec![good, garbage]);
    let mut inbound = grpc
        .streaming::<_, _, pb::ScoreResponse, _>(
            tonic::Request::new(outbound),
            raw::path("/crossrank.v1.CrossEncoder/ScoreStream"),
            raw::Raw::default(),
        )
        .await
        .unwrap()
        .into_inner();
    let first = inbound.message().await.unwrap().unwrap();
    assert_eq!(first.request_id, "r0");
    assert!(first.error.is_none(), "{first:?}");
    let err = inbound.message().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("after 1 messages"), "{err:?}");
    assert!(err.message().contains("not valid protobuf"), "{err:?}");

    // RerankStream: a garbage batch after the header.
    let mut grpc = raw::client(server.channel.clone()).await;
    let header = pb::RerankStreamRequest {
        kind: Some(pb::rerank_stream_request::Kind::Header(
            pb::RerankStreamHeader {
                model: "ce".into(),
                query: "q".into(),
                ..Default::default()
            },
        )),
    };
    let outbound = futures::stream::iter(vec![header.encode_to_vec(), vec![0x12, 0x05, 0x0a]]);
    let mut inbound = grpc
        .streaming::<_, _, pb::RerankStreamResponse, _>(
            tonic::Request::new(outbound),
            raw::path("/crossrank.v1.CrossEncoder/RerankStream"),
            raw::Raw::default(),
        )
        .await
        .unwrap()
        .into_inner();
    let err = inbound.message().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("not valid protobuf"), "{err:?}");
}

/// Streams that go quiet with nothing being scored end after the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_streams_end_after_the_idle_timeout() {
    let limits = RequestLimits {
        stream_idle_timeout_secs: 1,
        ..Default::default()
    };
    let server = TestServer::start(vec![model("ce=bert")], Default::default(), limits).await;
    let mut client = server.client();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::RerankStreamRequest {
        kind: Some(pb::rerank_stream_request::Kind::Header(
            pb::RerankStreamHeader {
                model: "ce".into(),
                query: "q".into(),
                ..Default::default()
            },
        )),
    })
    .await
    .unwrap();
    let start = Instant::now();
    let mut inbound = client
        .rerank_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let err = inbound.message().await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        err.message().contains("stream_idle_timeout_secs"),
        "{err:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    drop(tx);

    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(request(0, "a")).await.unwrap();
    let mut inbound = client
        .score_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(inbound.message().await.unwrap().unwrap().request_id, "r0");
    let err = inbound.message().await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    drop(tx);
}

/// A unary call without `grpc-timeout` gets the server's default deadline instead of waiting
/// forever on a request that cannot complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_deadline_get_the_default_timeout() {
    let opts = crossrank::api::ServerOptions {
        transport: crossrank::api::Transport {
            default_timeout: Duration::from_secs(1),
            ..Default::default()
        },
        ..Default::default()
    };
    // One pair never fills a 64-pair batch, and the batch waits up to 60 s.
    let ce = model("ce=bert,max_wait_ms=60000,max_batch_pairs=64");
    let server = TestServer::start(vec![ce], opts, Default::default()).await;
    let start = Instant::now();
    let err = server.client().score(request(0, "a")).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "{took:?}"
    );
}
