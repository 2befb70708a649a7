//! A hostile client against a real `crossrank serve` process: every class of input that used to
//! cost the server time or memory out of proportion to its bytes is answered with a precise
//! status, in bounded time, with the server's own peak RSS (/proc) bounded.

use crate::common;

use std::time::Duration;

use common::process::ServerProcess;
use common::raw;
use crossrank::api::pb;
use crossrank::api::pb::cross_encoder_client::CrossEncoderClient;
use tonic::Code;

fn bert() -> String {
    format!("ce={}", common::fixtures().join("bert").display())
}

fn pair(a: &str, b: &str) -> pb::Pair {
    pb::Pair {
        text_a: a.into(),
        text_b: b.into(),
    }
}

fn score(pairs: Vec<pb::Pair>) -> pb::ScoreRequest {
    pb::ScoreRequest {
        model: "ce".into(),
        pairs,
        ..Default::default()
    }
}

/// One pair of 64 KiB + 64 KiB of "!" (one token per byte: 131,072 tokens before truncation)
/// used to take ~90 s and ~23 GiB (quadratic overflow chunks). Now: linear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_pair_costs_time_and_memory_linear_in_its_bytes() {
    let server = ServerProcess::start(&["--model", &bert()]).await;
    let mut c = CrossEncoderClient::new(server.channel.clone());
    let side = "!".repeat(64 * 1024);
    let warm = c.score(score(vec![pair("a", "b")])).await;
    assert!(warm.is_ok());
    // The first such pair also grows the allocator arenas of the two tokenizer threads that encode
    // its sides at once (~27 MiB each); a second one reuses them.
    let (r, took, cold) = server
        .measured(c.score(score(vec![pair(&side, &side)])))
        .await;
    let r = r.unwrap().into_inner();
    println!("64 KiB + 64 KiB pair, first: OK in {took:?}, peak RSS +{cold:.1} MiB");
    assert!(r.results[0].truncated);
    // The debug build's own code is unoptimized; release answers in milliseconds (README).
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(cold < 80.0, "peak RSS grew by {cold:.1} MiB");
    let (r, took, extra) = server
        .measured(c.score(score(vec![pair(&side, &side)])))
        .await;
    println!("64 KiB + 64 KiB pair, again: OK in {took:?}, peak RSS +{extra:.1} MiB");
    assert!(r.unwrap().into_inner().results[0].truncated);
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(extra < 50.0, "peak RSS grew by {extra:.1} MiB");

    let reject = pb::ScoreRequest {
        truncation: pb::Truncation::Reject as i32,
        ..score(vec![pair("a", "b"), pair(&side, &side)])
    };
    let (r, took, extra) = server.measured(c.score(reject)).await;
    let err = r.unwrap_err();
    println!(
        "same pair, REJECT: {:?} in {took:?}, peak RSS +{extra:.1} MiB",
        err.code()
    );
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("pair 1 is longer"), "{err:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

/// The largest request the default limits allow in pairs, 2048 pairs of 2 KiB + 2 KiB (8 MiB of
/// text): memory stays within a small multiple of the request's bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_request_uses_memory_linear_in_its_bytes() {
    let server = ServerProcess::start(&["--model", &bert()]).await;
    let mut c = CrossEncoderClient::new(server.channel.clone());
    let side = "word ".repeat(2048 / 5);
    let pairs = vec![pair(&side, &side); 2048];
    let bytes: usize = pairs.iter().map(|p| p.text_a.len() + p.text_b.len()).sum();
    let (r, took, extra) = server.measured(c.score(score(pairs))).await;
    assert_eq!(r.unwrap().into_inner().results.len(), 2048);
    let mib = bytes as f64 / (1 << 20) as f64;
    println!("2048 pairs, {mib:.1} MiB of text: OK in {took:?}, peak RSS +{extra:.1} MiB");
    // Bound stated in the README: 6 x the request's text + 32 MiB.
    assert!(extra < 6.0 * mib + 32.0, "peak RSS grew by {extra:.1} MiB");
}

/// 2^24 empty pairs in one 32 MiB message would decode into ~800 MiB before the count check;
/// the entries are counted on the wire first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_empty_entries_is_refused_before_decoding() {
    let server =
        ServerProcess::start(&["--model", &bert(), "--max-message-bytes", "40000000"]).await;
    let mut flood = Vec::with_capacity(1 << 25);
    for _ in 0..1 << 24 {
        flood.extend_from_slice(&[0x12, 0x00]); // field 2 (pairs), length 0
    }
    let mut grpc = raw::client(server.channel.clone()).await;
    let call = grpc.unary::<_, pb::ScoreResponse, _>(
        tonic::Request::new(flood),
        raw::path("/crossrank.v1.CrossEncoder/Score"),
        raw::Raw::default(),
    );
    let (r, took, extra) = server.measured(call).await;
    let err = r.unwrap_err();
    println!(
        "2^24 empty pairs (32 MiB): {:?} in {took:?}, peak RSS +{extra:.1} MiB",
        err.code()
    );
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("`pairs` has more than 2048 entries"),
        "{err:?}"
    );
    // The message itself is buffered once (32 MiB), nothing is decoded.
    assert!(extra < 80.0, "peak RSS grew by {extra:.1} MiB");

    // Rerank and RerankStream are counted the same way (a documents batch inside a oneof).
    let mut grpc = raw::client(server.channel.clone()).await;
    let mut docs = Vec::new();
    for _ in 0..3000 {
        docs.extend_from_slice(&[0x1a, 0x00]); // field 3 (documents), length 0
    }
    let err = grpc
        .unary::<_, pb::RerankResponse, _>(
            tonic::Request::new(docs),
            raw::path("/crossrank.v1.CrossEncoder/Rerank"),
            raw::Raw::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("`documents`"), "{err:?}");
}

/// Client-controlled names and ids are bounded, refused without being echoed, and unknown model
/// names neither become metric labels nor reach the logs raw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_ids_are_bounded_and_never_echoed_or_labelled() {
    let server = ServerProcess::start(&["--model", &bert()]).await;
    let mut c = CrossEncoderClient::new(server.channel.clone());
    let huge = "N".repeat(10_000);
    let cases = [
        (
            pb::ScoreRequest {
                model: huge.clone(),
                ..score(vec![pair("a", "b")])
            },
            "`model` is 10000 bytes; the limit is 128",
        ),
        (
            pb::ScoreRequest {
                request_id: huge.clone(),
                ..score(vec![pair("a", "b")])
            },
            "`request_id` is 10000 bytes; the limit is 256",
        ),
    ];
    for (req, want) in cases {
        let err = c.score(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains(want), "{err:?}");
        assert!(
            err.message().len() < 200,
            "message echoes the value: {err:?}"
        );
    }
    let rerank = pb::RerankRequest {
        model: "ce".into(),
        query: "q".into(),
        documents: vec![
            pb::Document {
                id: "ok".into(),
                text: "a".into(),
            },
            pb::Document {
                id: huge.clone(),
                text: "b".into(),
            },
        ],
        ..Default::default()
    };
    let err = c.rerank(rerank).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains("`documents[1].id` is 10000 bytes; the limit is 256"),
        "{err:?}"
    );

    for i in 0..20 {
        let evil = format!("evil{i}\ninjected_line level=ERROR");
        let err = c
            .score(pb::ScoreRequest {
                model: evil,
                ..score(vec![pair("a", "b")])
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
    }
    let metrics = server.metrics().await;
    assert!(!metrics.contains("evil"), "an unknown name became a label");
    assert!(metrics.contains("model=\"(unknown)\""), "{metrics}");
    let logs = server.stderr();
    assert!(
        !logs.lines().any(|l| l.starts_with("injected_line")),
        "a newline in a model name split a log line:\n{logs}"
    );
}

/// A long-context model: the ModernBERT fixture with 8,192 positions (rotary positions need no
/// table, so only the config changes) and an LLM reranker (causal Qwen3, 512 positions). Each
/// replica's warm-up runs a pair of the maximum length, so the memory of the longest input is
/// claimed at start-up, bounded (ModernBERT: S x S booleans and SDPA's float copy of one mask;
/// decoders: no S x S tensor), and a 64 KiB + 64 KiB pair of "!" (one token per byte, cut at the
/// max length) adds little to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_context_models_keep_memory_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("modernbert-8k");
    std::fs::create_dir(&dir).unwrap();
    let src = common::fixtures().join("modernbert");
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    for (file, key) in [
        ("config.json", "max_position_embeddings"),
        ("tokenizer_config.json", "model_max_length"),
    ] {
        let path = dir.join(file);
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        v[key] = 8192.into();
        std::fs::write(&path, v.to_string()).unwrap();
    }
    let llm = common::fixtures().join("causal");
    let server = ServerProcess::start(&[
        "--model",
        &format!("ce={}", dir.display()),
        "--model",
        &format!("llm={}", llm.display()),
    ])
    .await;
    let started = server.rss_mib();
    println!("RSS after start-up (warm-ups included): {started:.0} MiB");
    // Measured 1,436 MiB (debug build; a server with one BERT starts at ~550 MiB).
    assert!(started < 2500.0, "RSS after start-up {started:.0} MiB");
    let mut c = CrossEncoderClient::new(server.channel.clone());
    let side = "!".repeat(64 * 1024);
    for model in ["ce", "llm"] {
        let req = |a: &str, b: &str| pb::ScoreRequest {
            model: model.into(),
            ..score(vec![pair(a, b)])
        };
        assert!(c.score(req("a", "b")).await.is_ok());
        let (r, took, grew) = server.measured(c.score(req(&side, &side))).await;
        let r = r.unwrap().into_inner();
        println!("{model}: 64 KiB + 64 KiB pair in {took:?}, peak RSS +{grew:.1} MiB");
        assert!(r.results[0].truncated && r.results[0].scores[0].is_finite());
        // Tokenization holds ~27 MiB per side; measured +4 and +30 MiB.
        assert!(grew < 200.0, "{model}: peak RSS grew by {grew:.1} MiB");
    }
    drop(tmp);
}

/// Long documents in windows cost what their windows are, counted before any is built: a 64 KiB
/// document of "!" (65,536 tokens; 1,821 windows of the fixture's 40 tokens) is refused at once
/// under the default 64 windows a document, refused when half-window overlap would need more
/// windows than even max_pairs_per_request, and scored in bounded time and memory when the request
/// raises its window limit to max_pairs_per_request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_document_in_windows_costs_time_and_memory_linear_in_its_windows() {
    let server = ServerProcess::start(&["--model", &bert()]).await;
    let mut c = CrossEncoderClient::new(server.channel.clone());
    let doc = "!".repeat(64 * 1024);
    assert!(c.score(score(vec![pair("a", "b")])).await.is_ok());
    let chunked = |max_chunks_per_doc: u32, overlap_tokens: u32| pb::ScoreRequest {
        truncation: pb::Truncation::Chunk as i32,
        chunking: Some(pb::ChunkOptions {
            overlap_tokens,
            max_chunks_per_doc,
            pooling: pb::ChunkPooling::Mean as i32,
        }),
        ..score(vec![pair("q", &doc)])
    };
    let (r, took, extra) = server.measured(c.score(chunked(0, 0))).await;
    let err = r.unwrap_err();
    println!(
        "64 KiB document, 64 windows at most: {:?} in {took:?}, peak RSS +{extra:.1} MiB",
        err.code()
    );
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains("`pairs[0]` needs 1821 windows; the limit is 64"),
        "{err:?}"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(extra < 80.0, "peak RSS grew by {extra:.1} MiB");

    let (r, took, extra) = server.measured(c.score(chunked(2048, 18))).await;
    let err = r.unwrap_err();
    println!(
        "same, overlap 18: {:?} in {took:?}, peak RSS +{extra:.1} MiB",
        err.code()
    );
    assert!(
        err.message()
            .contains("needs 3640 windows; the limit is 2048"),
        "{err:?}"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");

    let (r, took, extra) = server.measured(c.score(chunked(2048, 0))).await;
    let r = r.unwrap().into_inner();
    let usage = r.usage.unwrap();
    println!(
        "same, 2048 windows at most: OK, {} windows of {} tokens in all, in {took:?}, peak RSS +{extra:.1} MiB",
        usage.chunks, usage.tokens
    );
    assert_eq!(usage.chunks, 1821);
    assert!(r.results[0].best_chunk.is_some());
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(extra < 80.0, "peak RSS grew by {extra:.1} MiB");
}
