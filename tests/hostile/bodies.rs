//! Hostile request bodies against a real `crossrank serve` process: unknown-field prefixes that
//! used to hide a flood of entries from the wire scan, bodies that stall half-sent (a raw HTTP/2
//! client: the h2 crate), and a RerankStream whose final ranking cannot fit one message. Each is
//! answered with a precise status, in bounded time, with the server's peak RSS bounded.

use crate::common;

use std::future::poll_fn;
use std::time::{Duration, Instant};

use common::process::ServerProcess;
use common::raw;
use crossrank::api::pb;
use crossrank::api::pb::cross_encoder_client::CrossEncoderClient;
use prost::bytes::Bytes;
use prost::Message;
use tonic::Code;

fn bert() -> String {
    format!("ce={}", common::fixtures().join("bert").display())
}

const SCORE: &str = "/crossrank.v1.CrossEncoder/Score";

/// Unknown fields (number 99) of every wire type, and nested groups.
const PREFIXES: [(&str, &[u8]); 7] = [
    ("varint", &[0x98, 0x06, 0x01]),
    ("fixed64", &[0x99, 0x06, 1, 2, 3, 4, 5, 6, 7, 8]),
    ("length-delimited", &[0x9a, 0x06, 0x02, b'a', b'b']),
    ("group", &[0x9b, 0x06, 0x9c, 0x06]),
    ("fixed32", &[0x9d, 0x06, 1, 2, 3, 4]),
    (
        "nested groups",
        &[
            0x9b, 0x06, 0xa3, 0x06, 0xa0, 0x06, 0x05, 0xa4, 0x06, 0x9c, 0x06,
        ],
    ),
    (
        "group holding entries",
        &[0x9b, 0x06, 0x12, 0x00, 0x9c, 0x06],
    ),
];

/// The review's flood: 4 bytes of an unknown group before 2^24 empty pairs (32 MiB) decoded to
/// +1.5 GiB, because the scan gave up on groups. Every wire type in front of (and between) the
/// entries is now skipped as prost skips it, so the count still refuses the message before
/// decoding: under +150 MiB and 3 s each. Malformed groups are refused as not protobuf.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_field_prefixes_do_not_hide_a_flood() {
    let server =
        ServerProcess::start(&["--model", &bert(), "--max-message-bytes", "40000000"]).await;
    let mut grpc = raw::client(server.channel.clone()).await;
    for (name, prefix) in PREFIXES {
        let mut flood = Vec::with_capacity((1 << 25) + 64);
        flood.extend_from_slice(prefix);
        for i in 0..1 << 24 {
            flood.extend_from_slice(&[0x12, 0x00]); // field 2 (pairs), length 0
            if i == 1000 {
                flood.extend_from_slice(prefix); // and between entries
            }
        }
        let call = raw::unary::<pb::ScoreResponse>(&mut grpc, SCORE, flood);
        let (r, took, extra) = server.measured(call).await;
        let err = r.unwrap_err();
        println!(
            "{name} + 2^24 empty pairs: {:?} in {took:?}, peak RSS +{extra:.1} MiB",
            err.code()
        );
        assert_eq!(err.code(), Code::InvalidArgument, "{name}: {err:?}");
        assert!(
            err.message().contains("`pairs` has more than 2048 entries"),
            "{name}: {err:?}"
        );
        assert!(took < Duration::from_secs(3), "{name}: took {took:?}");
        assert!(extra < 150.0, "{name}: peak RSS grew by {extra:.1} MiB");
    }

    // Rerank's documents behind a group.
    let mut docs = vec![0x9b, 0x06, 0x9c, 0x06];
    docs.extend([0x1a, 0x00].repeat(3000)); // field 3 (documents), length 0
    let rerank = "/crossrank.v1.CrossEncoder/Rerank";
    let err = raw::unary::<pb::RerankResponse>(&mut grpc, rerank, docs)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("`documents`"), "{err:?}");

    // LoadModel is decoded before its admin token is checked: a flood of empty devices is
    // counted on the wire too.
    let devices = [0x0a, 0x00].repeat(200_000);
    let mut load = vec![0x1a, 0x80, 0xb5, 0x18]; // field 3 (options), 400,000 bytes
    load.extend(devices);
    let err = raw::unary::<pb::ModelInfo>(&mut grpc, "/crossrank.v1.Models/LoadModel", load)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message()
            .contains("`options.devices` has more than 4096 entries"),
        "{err:?}"
    );

    // Groups that never end, end as another field, or end without starting: not protobuf.
    for bad in [&[0x9b, 0x06][..], &[0x9b, 0x06, 0xa4, 0x06], &[0x9c, 0x06]] {
        let mut msg = bad.to_vec();
        msg.extend([0x12, 0x00].repeat(10));
        let err = raw::unary::<pb::ScoreResponse>(&mut grpc, SCORE, msg)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}: {err:?}");
        assert!(err.message().contains("not valid protobuf"), "{err:?}");
    }
}

/// A RerankStream message is counted the same way: a documents batch whose entries sit behind
/// a group, inside the batch and in front of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_messages_are_scanned_through_groups() {
    let server =
        ServerProcess::start(&["--model", &bert(), "--max-message-bytes", "40000000"]).await;
    let header = pb::RerankStreamRequest {
        kind: Some(pb::rerank_stream_request::Kind::Header(
            pb::RerankStreamHeader {
                model: "ce".into(),
                query: "q".into(),
                ..Default::default()
            },
        )),
    }
    .encode_to_vec();
    let mut batch = vec![0x9b, 0x06, 0x9c, 0x06];
    batch.extend([0x0a, 0x00].repeat(1 << 22)); // DocumentBatch.documents, empty
    let mut message = vec![0x9b, 0x06, 0x9c, 0x06, 0x12]; // then field 2 (documents)
    let mut len = batch.len();
    while len >= 0x80 {
        message.push(len as u8 | 0x80);
        len >>= 7;
    }
    message.push(len as u8);
    message.extend(batch);
    let mut grpc = raw::client(server.channel.clone()).await;
    let call = async {
        let mut responses = grpc
            .streaming::<_, Vec<u8>, pb::RerankStreamResponse, _>(
                tonic::Request::new(futures::stream::iter([header, message])),
                raw::path("/crossrank.v1.CrossEncoder/RerankStream"),
                raw::Raw::default(),
            )
            .await?
            .into_inner();
        responses.message().await
    };
    let (r, took, extra) = server.measured(call).await;
    let err = r.unwrap_err();
    println!(
        "RerankStream, group + 2^22 empty documents: {:?} in {took:?}, peak RSS +{extra:.1} MiB",
        err.code()
    );
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("more than 2048 entries"), "{err:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(extra < 150.0, "peak RSS grew by {extra:.1} MiB");
}

/// A raw HTTP/2 connection to the server.
async fn h2_connect(server: &ServerProcess) -> h2::client::SendRequest<Bytes> {
    let addr = server.addr.trim_start_matches("http://");
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn); // also answers the server's PINGs
    client.ready().await.unwrap()
}

/// Opens a Score call declaring a message of `declared` bytes, sends `send` bytes of it as the
/// server's flow control allows, and leaves the stream open. Returns the response and the send
/// side (dropping it would reset the stream), or the send error once the server refused.
async fn stall(
    client: &mut h2::client::SendRequest<Bytes>,
    timeout: Option<&str>,
    declared: u32,
    send: usize,
) -> (
    h2::client::ResponseFuture,
    Result<h2::SendStream<Bytes>, h2::Error>,
) {
    stall_on(client, "Score", timeout, declared, send).await
}

/// [`stall`] on any method of the CrossEncoder service.
async fn stall_on(
    client: &mut h2::client::SendRequest<Bytes>,
    method: &str,
    timeout: Option<&str>,
    declared: u32,
    send: usize,
) -> (
    h2::client::ResponseFuture,
    Result<h2::SendStream<Bytes>, h2::Error>,
) {
    let uri = format!("http://localhost/crossrank.v1.CrossEncoder/{method}");
    let mut req = http::Request::post(uri)
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(t) = timeout {
        req = req.header("grpc-timeout", t);
    }
    let (response, mut stream) = client.send_request(req.body(()).unwrap(), false).unwrap();
    let mut head = vec![0u8];
    head.extend(declared.to_be_bytes());
    let chunk = Bytes::from(vec![b'x'; 1 << 20]);
    let sent = async {
        stream.send_data(Bytes::from(head), false)?;
        let mut left = send;
        while left > 0 {
            stream.reserve_capacity(left.min(chunk.len()));
            let granted = match poll_fn(|cx| stream.poll_capacity(cx)).await {
                Some(granted) => granted?,
                None => return Err(h2::Error::from(h2::Reason::CANCEL)),
            };
            let k = granted.min(left);
            stream.send_data(chunk.slice(..k), false)?;
            left -= k;
        }
        Ok(())
    }
    .await;
    (response, sent.map(|()| stream))
}

/// Sends one whole Score message, ending the request (END_STREAM) or leaving it open.
async fn send_message(
    client: &mut h2::client::SendRequest<Bytes>,
    timeout: Option<&str>,
    message: &[u8],
    end: bool,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let mut req = http::Request::post(format!("http://localhost{SCORE}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(t) = timeout {
        req = req.header("grpc-timeout", t);
    }
    let (response, mut stream) = client.send_request(req.body(()).unwrap(), false).unwrap();
    let mut frame = vec![0u8];
    frame.extend((message.len() as u32).to_be_bytes());
    frame.extend(message);
    stream.send_data(Bytes::from(frame), end).unwrap();
    (response, stream)
}

/// The status a call ends with, printed with how long it took to come from now.
async fn ended(what: &str, response: h2::client::ResponseFuture) -> (Code, String, Duration) {
    let start = Instant::now();
    let (code, message) = grpc_status(response).await;
    let took = start.elapsed();
    println!("{what}: {code:?} after {took:?}: {message}");
    (code, message, took)
}

/// The gRPC status of a response (trailers-only, or in the trailers).
async fn grpc_status(response: h2::client::ResponseFuture) -> (Code, String) {
    let response = response.await.unwrap();
    let mut headers = response.headers().clone();
    if headers.get("grpc-status").is_none() {
        let mut body = response.into_body();
        while let Some(data) = body.data().await {
            drop(data);
        }
        headers = body.trailers().await.unwrap().unwrap_or_default();
    }
    let code = headers["grpc-status"].to_str().unwrap().parse().unwrap();
    let message = headers
        .get("grpc-message")
        .map(|m| percent_decode(m.to_str().unwrap()))
        .unwrap_or_default();
    (Code::from_i32(code), message)
}

fn percent_decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            s.get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok()),
        ) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The review's stalled bodies: streams that send most of a declared message and then stall
/// (answering PINGs) held their bytes until the client left. Now each message must arrive whole
/// within the call's timeout from its first byte (grpc-timeout, else --default-timeout-secs):
/// the stream ends DEADLINE_EXCEEDED on time and its bytes are freed. And the bytes of messages
/// being received count against --max-receiving-mib: a stream that would pass it is refused
/// RESOURCE_EXHAUSTED at once, so the server never holds more than the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_end_on_time_within_one_budget() {
    let server = ServerProcess::start(&[
        "--model",
        &bert(),
        "--max-message-bytes",
        "33554432",
        "--default-timeout-secs",
        "3",
        "--max-receiving-mib",
        "64",
    ])
    .await;
    let mut c = CrossEncoderClient::new(server.channel.clone());
    let score = |a: &str| pb::ScoreRequest {
        model: "ce".into(),
        pairs: vec![pb::Pair {
            text_a: a.into(),
            text_b: "b".into(),
        }],
        ..Default::default()
    };
    assert!(c.score(score("warm")).await.is_ok());
    let before = server.rss_mib();
    server.reset_peak();

    // The default timeout: 15 of a declared 24 MiB, then nothing.
    let mut h2 = h2_connect(&server).await;
    let (response, stream) = stall(&mut h2, None, 24 << 20, 15 << 20).await;
    let _keep = stream.expect("the server takes 15 MiB within the budget");
    let (code, message, waited) =
        ended("stalled at 15 of 24 MiB, default timeout 3 s", response).await;
    assert_eq!(code, Code::DeadlineExceeded, "{message}");
    assert!(
        message.contains("not received whole within 3.000 s")
            && message.contains("15728640 of its 25165824 bytes arrived"),
        "{message}"
    );
    assert!(waited < Duration::from_secs(4), "ended after {waited:?}");

    // A stream message that stalls ends its stream the same way.
    let (response, stream) = stall_on(&mut h2, "ScoreStream", None, 24 << 20, 15 << 20).await;
    let _keep_stream = stream.expect("the server takes 15 MiB within the budget");
    let (code, message, waited) = ended("ScoreStream stalled", response).await;
    assert_eq!(code, Code::DeadlineExceeded, "{message}");
    assert!(message.contains("not received whole"), "{message}");
    assert!(waited < Duration::from_secs(4));

    // A unary call whose message is whole but whose body never ends (no END_STREAM) is held to
    // the same limit; an out-of-range grpc-timeout (over 8 digits) is ignored, not a panic.
    let request = score("held open").encode_to_vec();
    let (response, _open) = send_message(&mut h2, None, &request, false).await;
    let (code, message, waited) = ended("a whole message, no END_STREAM", response).await;
    assert_eq!(code, Code::DeadlineExceeded, "{message}");
    assert!(message.contains("did not end within 3.000 s"), "{message}");
    assert!(waited < Duration::from_secs(4));
    let (response, _) = send_message(&mut h2, Some("999999999999S"), &request, true).await;
    let (code, message) = grpc_status(response).await;
    assert_eq!(code, Code::Ok, "{message}");

    // A budget of 64 MiB: four streams of a declared 15 MiB hold 60 MiB (a long grpc-timeout
    // each); the fifth is refused as its header would pass 64 MiB, while the four are held.
    let mut held = Vec::new();
    for i in 0..4 {
        let (response, stream) = stall(&mut h2, Some("60S"), 15 << 20, 14 << 20).await;
        let stream = stream.unwrap_or_else(|e| panic!("stream {i} refused: {e}"));
        held.push((response, stream));
    }
    let (response, stream) = stall(&mut h2, Some("60S"), 15 << 20, 14 << 20).await;
    assert!(stream.is_err(), "the fifth stream was not stopped");
    let (code, message, _) = ended("fifth stream", response).await;
    assert_eq!(code, Code::ResourceExhausted, "{message}");
    assert!(message.contains("--max-receiving-mib 64"), "{message}");
    let peak = server.peak_mib() - before;
    println!("peak RSS over the stalls: +{peak:.1} MiB (budget 64 MiB)");
    assert!(peak < 64.0 + 100.0, "peak RSS grew by {peak:.1} MiB");

    // The client leaves: the budget comes back (once the server has seen the resets), and a
    // short grpc-timeout applies to the body.
    drop(held);
    drop(h2);
    let left = Instant::now();
    let (response, _keep) = loop {
        let mut h2 = h2_connect(&server).await;
        match stall(&mut h2, Some("1500m"), 24 << 20, 15 << 20).await {
            (response, Ok(stream)) => break (response, (stream, h2)),
            (response, Err(_)) => {
                let (code, message) = grpc_status(response).await;
                assert_eq!(code, Code::ResourceExhausted, "{message}");
                assert!(
                    left.elapsed() < Duration::from_secs(5),
                    "the budget was not given back when the client left"
                );
            }
        }
    };
    let (code, message, waited) = ended("grpc-timeout 1.5 s", response).await;
    assert_eq!(code, Code::DeadlineExceeded, "{message}");
    assert!(
        message.contains("by the call's deadline (grpc-timeout 1.500 s)"),
        "{message}"
    );
    assert!(waited < Duration::from_secs(3));
    assert!(c.score(score("still serving")).await.is_ok());
}

/// The review's oversize final: RerankStream with return_documents and 1,100 documents of
/// 64 KiB failed OUT_OF_RANGE only after scoring every one (114 s). The final message (the
/// documents it may carry, with their ids) is now checked as documents arrive: the stream fails
/// as soon as 64 MiB can no longer hold them, naming the document; with top_n only the top_n
/// largest count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_final_ranking_is_refused_as_documents_arrive() {
    let server = ServerProcess::start(&["--model", &bert()]).await;
    let mut c = CrossEncoderClient::new(server.channel.clone());
    let header = |top_n| pb::RerankStreamRequest {
        kind: Some(pb::rerank_stream_request::Kind::Header(
            pb::RerankStreamHeader {
                model: "ce".into(),
                query: "q".into(),
                top_n,
                return_documents: true,
                ..Default::default()
            },
        )),
    };
    let text = "a".repeat(64 * 1024);
    let batch = move |from: usize| pb::RerankStreamRequest {
        kind: Some(pb::rerank_stream_request::Kind::Documents(
            pb::DocumentBatch {
                documents: (from..from + 50)
                    .map(|i| pb::Document {
                        id: format!("d{i}"),
                        text: text.clone(),
                    })
                    .collect(),
            },
        )),
    };
    let messages = std::iter::once(header(0)).chain((0..22).map(move |b| batch(b * 50)));
    let start = Instant::now();
    let mut responses = c
        .rerank_stream(futures::stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    let err = loop {
        match responses.message().await {
            Ok(Some(m)) => assert!(
                !matches!(m.kind, Some(pb::rerank_stream_response::Kind::Final(_))),
                "a final ranking of 1,100 x 64 KiB was sent"
            ),
            Ok(None) => panic!("the stream ended without an error"),
            Err(e) => break e,
        }
    };
    println!(
        "1,100 x 64 KiB with return_documents: {:?} after {:?}: {}",
        err.code(),
        start.elapsed(),
        err.message()
    );
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    // 64 MiB holds fewer than 1,024 documents of 64 KiB, and more than 1,000.
    let at: usize = err
        .message()
        .split("documents[")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no index: {err:?}"));
    assert!((1000..1024).contains(&at), "{err:?}");
    assert!(err.message().contains("top_n"), "{err:?}");
}
