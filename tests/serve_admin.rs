//! The Models service: listing, admin-token protection, load and unload at run time (also under
//! load), health per model, and graceful shutdown.

mod common;

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

fn load_req(name: &str, dir: &str) -> pb::LoadModelRequest {
    let path = common::fixtures().join(dir).display().to_string();
    pb::LoadModelRequest {
        name: name.into(),
        path,
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

    let broken = m
        .load_model(with_token(load_req("broken", "does-not-exist"), TOKEN))
        .await
        .unwrap_err();
    assert_eq!(broken.code(), Code::FailedPrecondition);
    let info = m
        .get_model(pb::GetModelRequest {
            name: "broken".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.state, pb::ModelState::Failed as i32);
    assert!(info.reason.contains("does-not-exist"), "{}", info.reason);
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
    let late = server.client().score(score("ce", 1)).await.unwrap_err();
    assert_eq!(late.code(), Code::Unavailable, "{late:?}");
    tokio::time::timeout(Duration::from_secs(30), &mut server.handle)
        .await
        .expect("serve returns")
        .unwrap()
        .unwrap();
}
