//! The Models service: listing, admin-token protection, load and unload at run time (also under
//! load), health per model, and graceful shutdown.

use crate::common;

use std::time::Duration;

use common::server::{model, TestServer};
use crossrank::api::pb;
use crossrank::api::ServerOptions;
use crossrank::config::RequestLimits;
use tonic::Code;

const TOKEN: &str = "s3cret";

fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// A LoadModel of `dir`, relative to the model root (the fixtures directory).
fn load_req(name: &str, dir: &str) -> pb::LoadModelRequest {
    pb::LoadModelRequest {
        name: name.into(),
        path: dir.into(),
        options: None,
    }
}

fn score(model: &str, n: usize) -> pb::ScoreRequest {
    let pairs = (0..n)
        .map(|i| pb::Pair {
            text_a: format!("q{i}"),
            text_b: "doc".into(),
        })
        .collect();
    pb::ScoreRequest {
        model: model.into(),
        pairs,
        ..Default::default()
    }
}

async fn admin_server() -> TestServer {
    let opts = ServerOptions {
        admin_token: Some(TOKEN.into()),
        model_root: Some(common::fixtures()),
        ..Default::default()
    };
    TestServer::start(vec![model("ce=bert")], opts, RequestLimits::default()).await
}

/// Without a configured token model management is PERMISSION_DENIED; with one, a missing or
/// wrong token is UNAUTHENTICATED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_need_the_token() {
    let open = TestServer::simple(&["ce=bert"]).await;
    let err = open
        .models()
        .load_model(with_token(load_req("x", "bert"), TOKEN))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    open.stop().await;

    let server = admin_server().await;
    let mut m = server.models();
    assert_eq!(
        m.unload_model(pb::UnloadModelRequest { name: "ce".into() })
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let err = m
        .unload_model(with_token(
            pb::UnloadModelRequest { name: "ce".into() },
            "wrong",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let list = m
        .list_models(pb::ListModelsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        list.models
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        vec!["ce"]
    );
    server.stop().await;
}

/// LoadModel brings a second model up (health SERVING for it); a broken directory leaves a
/// FAILED entry with the reason; UnloadModel removes a model (NOT_FOUND afterwards).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_and_unload_at_run_time() {
    let server = admin_server().await;
    let mut m = server.models();
    let info = m
        .load_model(with_token(load_req("nli", "bert_3labels"), TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (info.state, info.num_labels),
        (pb::ModelState::Ready as i32, 3)
    );
    assert_eq!(info.labels, vec!["contradiction", "entailment", "neutral"]);
    assert_eq!(server.health("nli").await, 1);
    let r = server
        .client()
        .score(score("nli", 2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.results[0].scores.len(), 3);
    let dup = m
        .load_model(with_token(load_req("nli", "bert"), TOKEN))
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);

    // A directory under the root that holds no model: a FAILED entry, whose reason and path
    // only token holders see; "" turns NOT_SERVING until it is unloaded.
    std::fs::create_dir_all(common::fixtures().join("empty-model")).unwrap();
    let broken = m
        .load_model(with_token(load_req("broken", "empty-model"), TOKEN))
        .await
        .unwrap_err();
    assert_eq!(broken.code(), Code::FailedPrecondition);
    let get = pb::GetModelRequest {
        name: "broken".into(),
    };
    let info = m
        .get_model(with_token(get.clone(), TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.state, pb::ModelState::Failed as i32);
    assert!(info.reason.contains("empty-model"), "{}", info.reason);
    let anonymous = m.get_model(get).await.unwrap().into_inner();
    assert_eq!(anonymous.state, pb::ModelState::Failed as i32);
    assert!(
        !anonymous.reason.contains("empty-model"),
        "{}",
        anonymous.reason
    );
    assert!(anonymous.path.is_empty(), "{}", anonymous.path);
    server.wait_health("", 2).await;
    assert_eq!(
        server
            .client()
            .score(score("broken", 1))
            .await
            .unwrap_err()
            .code(),
        Code::Unavailable
    );

    m.unload_model(with_token(
        pb::UnloadModelRequest {
            name: "broken".into(),
        },
        TOKEN,
    ))
    .await
    .unwrap();
    server.wait_health("", 1).await;
    m.unload_model(with_token(
        pb::UnloadModelRequest { name: "nli".into() },
        TOKEN,
    ))
    .await
    .unwrap();
    let gone = m
        .get_model(pb::GetModelRequest { name: "nli".into() })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    assert_ne!(server.health("nli").await, 1);
    server.stop().await;
}

/// LoadModel reads only under --model-root, and its options have the same bounds as --model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_model_stays_under_the_root_and_within_bounds() {
    let server = admin_server().await;
    let mut m = server.models();
    let outside = common::fixtures().parent().unwrap().display().to_string();
    for path in ["..", "../generated/..", "/etc", outside.as_str()] {
        let err = m
            .load_model(with_token(load_req("x", path), TOKEN))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{path}: {err:?}");
        assert!(err.message().contains("outside the model root"), "{err:?}");
    }
    let missing = m
        .load_model(with_token(load_req("x", "no-such-dir"), TOKEN))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument, "{missing:?}");

    let with = |options: pb::LoadModelOptions| pb::LoadModelRequest {
        options: Some(options),
        ..load_req("x", "bert")
    };
    let batching = |b: pb::BatchingLimits| pb::LoadModelOptions {
        batching: Some(b),
        ..Default::default()
    };
    let cases = [
        (
            batching(pb::BatchingLimits {
                max_wait_ms: u32::MAX,
                ..Default::default()
            }),
            "max_wait_ms is 4294967295; it must be between 0 and 60000",
        ),
        (
            pb::LoadModelOptions {
                devices: vec!["cpu".into(); 1000],
                ..Default::default()
            },
            "replicas is 1000; it must be between 1 and 64",
        ),
        (
            batching(pb::BatchingLimits {
                max_queue_pairs: u32::MAX,
                ..Default::default()
            }),
            "max_queue_pairs is 4294967295",
        ),
    ];
    for (options, want) in cases {
        let err = m
            .load_model(with_token(with(options), TOKEN))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains(want), "{err:?}");
    }
    // The same defaults as --model: a CPU model batches 32 pairs unless told otherwise.
    let info = m
        .load_model(with_token(load_req("x", "bert"), TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.batching.unwrap().max_batch_pairs, 32);
    server.stop().await;
}

/// Unloading while requests stream in: every request either completes or fails with
/// UNAVAILABLE / NOT_FOUND; none hangs or vanishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unload_under_load_drains() {
    let server = admin_server().await;
    let mut load = Vec::new();
    for _ in 0..4 {
        let mut c = server.client();
        load.push(tokio::spawn(async move {
            let mut codes = Vec::new();
            for _ in 0..15 {
                codes.push(match c.score(score("ce", 6)).await {
                    Ok(r) => {
                        assert_eq!(r.into_inner().results.len(), 6);
                        Code::Ok
                    }
                    Err(s) => s.code(),
                });
            }
            codes
        }));
    }
    server.wait_queued("ce", 1).await;
    server
        .models()
        .unload_model(with_token(
            pb::UnloadModelRequest { name: "ce".into() },
            TOKEN,
        ))
        .await
        .unwrap();
    let mut codes = Vec::new();
    for task in load {
        codes.extend(
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("a request hung")
                .unwrap(),
        );
    }
    assert!(codes.contains(&Code::Ok), "{codes:?}");
    assert!(
        codes
            .iter()
            .all(|c| matches!(c, Code::Ok | Code::Unavailable | Code::NotFound)),
        "{codes:?}"
    );
    assert!(
        codes.iter().any(|c| *c != Code::Ok),
        "the unload happened after all requests: {codes:?}"
    );
    server.stop().await;
}

/// Shutdown: health goes NOT_SERVING, a call in flight completes, later calls are UNAVAILABLE,
/// and serve() returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_calls() {
    let mut server = TestServer::start(
        vec![model("ce=bert,max_wait_ms=500")],
        Default::default(),
        Default::default(),
    )
    .await;
    let mut c = server.client();
    let in_flight = tokio::spawn(async move { c.score(score("ce", 3)).await });
    server.wait_queued("ce", 3).await;
    server.trigger_shutdown();
    let done = in_flight
        .await
        .unwrap()
        .expect("the in-flight call completes");
    assert_eq!(done.into_inner().results.len(), 3);
    // A late call is refused: UNAVAILABLE from the draining server while the connection lives,
    // or, when it races the connection's close after GOAWAY, CANCELLED by the transport.
    let late = server.client().score(score("ce", 1)).await.unwrap_err();
    assert!(
        matches!(late.code(), Code::Unavailable | Code::Cancelled),
        "{late:?}"
    );
    tokio::time::timeout(Duration::from_secs(30), &mut server.handle)
        .await
        .expect("serve returns")
        .unwrap()
        .unwrap();
}
