//! A dead OTLP collector never slows or fails requests: export runs off the request path.

mod common;

use std::time::{Duration, Instant};

use common::server::TestServer;
use crossrank::api::pb;
use crossrank::telemetry::tracing::{init, TraceOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_do_not_wait_for_a_dead_collector() {
    // A port that was just free: nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let opts = TraceOptions {
        filter: "warn".into(),
        json_logs: true,
        otlp_endpoint: Some(format!("http://{dead}")),
        service_name: "crossrank-test".into(),
        sampling_ratio: 1.0,
    };
    let tracing = init(&opts).unwrap();
    let server = TestServer::simple(&["ce=bert"]).await;
    let mut client = server.client();
    let start = Instant::now();
    for i in 0..20 {
        let pairs = vec![pb::Pair {
            text_a: format!("q{i}"),
            text_b: "d".into(),
        }];
        client
            .score(pb::ScoreRequest {
                pairs,
                ..Default::default()
            })
            .await
            .unwrap();
        // Flushing in between makes the exporter try (and fail) while requests are served.
        if i % 5 == 0 {
            std::thread::spawn({
                let flush = tracing.flush_handle();
                move || flush()
            });
        }
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "20 tiny requests took {took:?} with a dead collector"
    );
    server.stop().await;
    std::mem::forget(tracing); // do not wait for the exporter's timeouts at exit
}
