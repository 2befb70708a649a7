//! A replica thread that dies outside the forward pass (a fault injected in test builds) turns
//! its model FAILED and NOT_SERVING with the reason, answers its calls instead of leaving them
//! hanging, leaves the other models serving, and "" follows UnloadModel.

use crate::common;

use common::process::ServerProcess;
use crossrank::api::pb;
use crossrank::api::pb::cross_encoder_client::CrossEncoderClient;
use crossrank::api::pb::models_client::ModelsClient;
use tonic::Code;

fn score(model: &str) -> pb::ScoreRequest {
    pb::ScoreRequest {
        model: model.into(),
        pairs: vec![pb::Pair {
            text_a: "q".into(),
            text_b: "d".into(),
        }],
        ..Default::default()
    }
}

fn with_token<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", "Bearer t0ken".parse().unwrap());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replica_fails_its_model_and_nothing_else() {
    let bert = common::fixtures().join("bert");
    let (doomed, healthy) = (
        format!("doomed={}", bert.display()),
        format!("healthy={}", bert.display()),
    );
    let server = ServerProcess::start_with_env(
        &[
            "--model",
            &doomed,
            "--model",
            &healthy,
            "--admin-token",
            "t0ken",
        ],
        &[("CROSSRANK_FAULT_REPLICA_PANIC", "doomed")],
    )
    .await;
    let mut c = CrossEncoderClient::new(server.channel.clone());
    // The call whose batch the replica held when it died is answered, not left hanging.
    let err = tokio::time::timeout(std::time::Duration::from_secs(30), c.score(score("doomed")))
        .await
        .expect("the call hung")
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    server.wait_health("doomed", 2).await;
    server.wait_health("", 2).await;
    let later = c.score(score("doomed")).await.unwrap_err();
    assert_eq!(later.code(), Code::Unavailable);
    assert!(later.message().contains("doomed"), "{later:?}");

    let mut m = ModelsClient::new(server.channel.clone());
    let info = m
        .get_model(with_token(pb::GetModelRequest {
            name: "doomed".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.state, pb::ModelState::Failed as i32);
    assert!(info.reason.contains("injected fault"), "{}", info.reason);

    let ok = c.score(score("healthy")).await.unwrap().into_inner();
    assert_eq!(ok.results.len(), 1);
    server.wait_health("healthy", 1).await;
    server.wait_health("crossrank.liveness", 1).await;

    m.unload_model(with_token(pb::UnloadModelRequest {
        name: "doomed".into(),
    }))
    .await
    .unwrap();
    server.wait_health("", 1).await;
    assert!(server.stderr().contains("replica thread died"));
}
