//! /metrics after known traffic: valid for `promtool check metrics`, and its counters equal the
//! requests and pairs sent, per model.

use crate::common;

use std::process::Command;

use common::server::{model, TestServer};
use crossrank::api::pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    assert!(
        head.to_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_owned()
}

/// The value of the sample `name{labels}` (labels in the order the encoder writes them).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
        .parse()
        .unwrap()
}

fn pairs(n: usize) -> Vec<pb::Pair> {
    (0..n)
        .map(|i| pb::Pair {
            text_a: format!("q{i}"),
            text_b: "a document".into(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_traffic_and_pass_promtool() {
    let server = TestServer::start(
        vec![
            model("metrics-a=bert"),
            model("metrics-b=bert_3labels"),
            model("metrics-c=bert,max_queue_pairs=2"),
        ],
        Default::default(),
        Default::default(),
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = listener.local_addr().unwrap();
    tokio::spawn(crossrank::telemetry::serve_metrics(
        listener,
        server.engine.clone(),
    ));

    let mut c = server.client();
    for n in [2, 3, 4] {
        c.score(pb::ScoreRequest {
            model: "metrics-a".into(),
            pairs: pairs(n),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    c.score(pb::ScoreRequest {
        model: "metrics-b".into(),
        pairs: pairs(6),
        ..Default::default()
    })
    .await
    .unwrap();
    let docs = (0..5)
        .map(|i| pb::Document {
            id: i.to_string(),
            text: format!("doc {i}"),
        })
        .collect();
    c.rerank(pb::RerankRequest {
        model: "metrics-a".into(),
        query: "q".into(),
        documents: docs,
        ..Default::default()
    })
    .await
    .unwrap();
    let bad = c
        .score(pb::ScoreRequest {
            model: "metrics-a".into(),
            pairs: vec![],
            ..Default::default()
        })
        .await;
    assert!(bad.is_err());
    let full = c
        .score(pb::ScoreRequest {
            model: "metrics-c".into(),
            pairs: pairs(3),
            ..Default::default()
        })
        .await;
    assert_eq!(full.unwrap_err().code(), tonic::Code::ResourceExhausted);

    let text = scrape(metrics_addr).await;
    let req = |model: &str, method: &str, code: &str| {
        sample(
            &text,
            &format!(
                "crossrank_requests_total{{model=\"{model}\",method=\"{method}\",code=\"{code}\"}}"
            ),
        )
    };
    assert_eq!(req("metrics-a", "Score", "OK"), 3.0);
    assert_eq!(req("metrics-a", "Rerank", "OK"), 1.0);
    assert_eq!(req("metrics-a", "Score", "INVALID_ARGUMENT"), 1.0);
    assert_eq!(req("metrics-b", "Score", "OK"), 1.0);
    assert_eq!(req("metrics-c", "Score", "RESOURCE_EXHAUSTED"), 1.0);
    let overload = "crossrank_rejections_total{model=\"metrics-c\",reason=\"overload\"}";
    assert_eq!(sample(&text, overload), 1.0);
    for (series, want) in [
        ("crossrank_pairs_total{model=\"metrics-a\"}", 14.0),
        ("crossrank_pairs_total{model=\"metrics-b\"}", 6.0),
        // Warm-up batches are not counted.
        ("crossrank_batch_pairs_sum{model=\"metrics-b\"}", 6.0),
        (
            "crossrank_model_state{model=\"metrics-a\",state=\"ready\"}",
            1.0,
        ),
        ("crossrank_model_replicas{model=\"metrics-b\"}", 1.0),
        ("crossrank_queue_depth_pairs{model=\"metrics-a\"}", 0.0),
        (
            "crossrank_in_flight_requests{model=\"metrics-a\",method=\"Score\"}",
            0.0,
        ),
    ] {
        assert_eq!(sample(&text, series), want, "{series}");
    }

    // Every family served is documented, and every series the dashboard queries is served.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_to_string(root.join("docs/metrics.md")).unwrap();
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert!(families.len() >= 16, "{families:?}\n{text}");
    for f in &families {
        assert!(
            docs.contains(&format!("`{f}`")),
            "{f} is not in docs/metrics.md"
        );
    }
    let dashboard = std::fs::read_to_string(root.join("dashboards/crossrank.json")).unwrap();
    let used = dashboard.split("crossrank_").skip(1).map(|rest| {
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        format!("crossrank_{name}")
    });
    for series in used {
        assert!(
            text.contains(&series),
            "the dashboard queries {series}, which /metrics does not serve"
        );
    }

    let mut promtool = Command::new("promtool");
    let out = common::run_with_input(promtool.args(["check", "metrics"]), &text)
        .expect("promtool (Debian package prometheus; scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    server.stop().await;
}
