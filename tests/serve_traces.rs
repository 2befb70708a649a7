//! Traces: the RPC span of a Rerank is a child of the caller's W3C `traceparent`, carries the
//! request's priority and tenant, its steps are its children, and the batch span that ran its
//! pairs links back to it; all received by a real OTLP/gRPC collector.

mod common;

use common::collector::Collector;
use common::server::TestServer;
use crossrank::api::pb;
use crossrank::telemetry::tracing::{init, TraceOptions};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerank_span_joins_the_callers_trace() {
    let (collector, endpoint) = Collector::start().await;
    let opts = TraceOptions {
        filter: "info".into(),
        json_logs: false,
        otlp_endpoint: Some(endpoint),
        service_name: "crossrank-test".into(),
        sampling_ratio: 1.0,
    };
    let tracing = init(&opts).unwrap();
    let server = TestServer::simple(&["ce=bert"]).await;

    let (trace_id, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let docs = (0..3)
        .map(|i| pb::Document {
            id: i.to_string(),
            text: format!("document {i}"),
        })
        .collect();
    let mut req = tonic::Request::new(pb::RerankRequest {
        model: "ce".into(),
        query: "q".into(),
        documents: docs,
        priority: 7,
        ..Default::default()
    });
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{caller_span}-01").parse().unwrap(),
    );
    let tenant = "team-t";
    req.metadata_mut()
        .insert("x-crossrank-tenant", tenant.parse().unwrap());
    server.client().rerank(req).await.unwrap();

    let spans = collector
        .wait_for(
            || tracing.flush(),
            |s| s.name == "batch" && s.links.iter().any(|l| hex(&l.trace_id) == trace_id),
        )
        .await;
    let rpc = spans
        .iter()
        .find(|s| s.name == "crossrank.v1.CrossEncoder/Rerank")
        .unwrap_or_else(|| {
            panic!(
                "no RPC span in {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(
        hex(&rpc.trace_id),
        trace_id,
        "the RPC span is in the caller's trace"
    );
    assert_eq!(
        hex(&rpc.parent_span_id),
        caller_span,
        "the RPC span's parent is the caller's span"
    );
    let attribute = |key: &str| {
        let a = rpc.attributes.iter().find(|a| a.key == key);
        a.and_then(|a| a.value.clone()?.value)
    };
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    assert_eq!(attribute("priority"), Some(Value::IntValue(7)));
    assert_eq!(attribute("tenant"), Some(Value::StringValue(tenant.into())));
    for child in ["tokenize", "queue_wait"] {
        let s = spans
            .iter()
            .find(|s| s.name == child && s.trace_id == rpc.trace_id)
            .unwrap();
        assert_eq!(
            s.parent_span_id, rpc.span_id,
            "{child} is a child of the RPC span"
        );
    }
    let batch = spans
        .iter()
        .find(|s| s.name == "batch" && s.links.iter().any(|l| l.span_id == rpc.span_id))
        .unwrap();
    assert!(
        batch.attributes.iter().any(|a| a.key == "pairs"),
        "{:?}",
        batch.attributes
    );
    assert!(
        spans.iter().any(|s| s.name == "load_model"),
        "model load spans are exported too"
    );

    println!("span tree as received by the collector:");
    let name = |id: &[u8]| {
        spans
            .iter()
            .find(|s| s.span_id == id)
            .map_or("(caller)".to_string(), |s| s.name.clone())
    };
    for s in spans.iter().filter(|s| s.trace_id == rpc.trace_id) {
        println!(
            "  {} <- parent {} [{}]",
            s.name,
            name(&s.parent_span_id),
            hex(&s.span_id)
        );
    }
    println!(
        "  batch [{}] links -> {}",
        hex(&batch.span_id),
        batch
            .links
            .iter()
            .map(|l| name(&l.span_id))
            .collect::<Vec<_>>()
            .join(", ")
    );
    server.stop().await;
}
