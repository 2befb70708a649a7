//! Overload with priorities through a real server: a bulk flood at priority 5 keeps the model's
//! queue full, interactive requests at priority 0 are never refused and displace bulk
//! requests, and every call ends exactly once: all its pairs scored, or one status.

use crate::common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::server::{model, TestServer};
use crossrank::api::pb;
use crossrank::api::ServerOptions;
use crossrank::config::RequestLimits;
use crossrank::scheduler::Queue;
use tonic::Code;

const QUEUE: usize = 48;

fn rerank(docs: usize, priority: u32, tag: usize) -> pb::RerankRequest {
    pb::RerankRequest {
        model: "ce".into(),
        query: format!("query {tag}"),
        documents: (0..docs)
            .map(|i| pb::Document {
                id: format!("d{i}"),
                text: format!("document {i} of request {tag}"),
            })
            .collect(),
        priority,
        ..Default::default()
    }
}

/// How bulk calls ended.
#[derive(Default, Debug)]
struct Outcomes {
    ok: usize,
    displaced: usize,
    refused: usize,
}

/// One bulk client: Rerank-16 at priority 5 until told to stop; every answer is checked whole.
async fn bulk(server: &TestServer, stop: Arc<AtomicBool>, who: usize) -> Outcomes {
    let mut client = server.client();
    let mut seen = Outcomes::default();
    let mut n = 0;
    while !stop.load(Ordering::Acquire) {
        n += 1;
        match client.rerank(rerank(16, 5, who * 10_000 + n)).await {
            Ok(r) => {
                let indices: BTreeSet<u32> =
                    r.into_inner().results.iter().map(|d| d.index).collect();
                assert_eq!(indices, (0..16).collect(), "every pair answered once");
                seen.ok += 1;
            }
            Err(s) if s.code() == Code::ResourceExhausted => {
                if s.message().contains("displaced by higher-priority work") {
                    assert!(s.message().contains("priority 0"), "{}", s.message());
                    seen.displaced += 1;
                } else {
                    assert!(s.message().contains("max_queue_pairs"), "{}", s.message());
                    seen.refused += 1;
                    // A refused client backs off before trying again.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            Err(s) => panic!("bulk call failed with {:?}: {}", s.code(), s.message()),
        }
    }
    seen
}

/// Waits until the queue holds at least `pairs` pairs (the flood keeps refilling it).
async fn filled(queue: &Queue, pairs: usize) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while queue.depth() < pairs {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the bulk flood fills the queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interactive_work_displaces_a_bulk_flood_and_every_call_ends_once() {
    // Batches form only when a pair's 50 ms window ends (64 pairs never fit in a 48-pair
    // queue), so the flood keeps the queue full between batches; no aging within the test.
    let spec = format!(
        "ce=bert,max_queue_pairs={QUEUE},max_batch_pairs=64,max_wait_ms=50,\
         priority_aging_ms=3600000"
    );
    let server = TestServer::start(
        vec![model(&spec)],
        ServerOptions::default(),
        RequestLimits::default(),
    )
    .await;
    let queue = server.engine.registry.get("ce").unwrap().queue.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let server = Arc::new(server);
    let flood: Vec<_> = (0..6)
        .map(|who| {
            let (server, stop) = (server.clone(), stop.clone());
            tokio::spawn(async move { bulk(&server, stop, who).await })
        })
        .collect();
    let mut client = server.client();
    for i in 0..10 {
        // Full enough that 4 more pairs do not fit without displacing bulk work.
        filled(&queue, QUEUE - 3).await;
        let r = client
            .rerank(rerank(4, 0, i))
            .await
            .expect("interactive work is never refused while bulk work holds the queue")
            .into_inner();
        let indices: BTreeSet<u32> = r.results.iter().map(|d| d.index).collect();
        assert_eq!(indices, (0..4).collect());
    }
    stop.store(true, Ordering::Release);
    let mut total = Outcomes::default();
    for task in flood {
        let seen = task.await.unwrap();
        total.ok += seen.ok;
        total.displaced += seen.displaced;
        total.refused += seen.refused;
    }
    let evicted: u64 = queue
        .stats()
        .by_priority
        .iter()
        .filter(|l| l.priority == 5)
        .map(|l| l.evicted_pairs)
        .sum();
    assert!(total.ok > 0, "{total:?}");
    assert!(total.displaced > 0, "{total:?}");
    // Each displaced call lost at most its 16 pairs; nothing else was displaced.
    assert!(
        evicted >= total.displaced as u64 && evicted <= 16 * total.displaced as u64,
        "{evicted} pairs evicted for {total:?}"
    );
    assert!(
        queue
            .stats()
            .by_priority
            .iter()
            .all(|l| l.priority == 5 || l.evicted_pairs == 0),
        "only priority 5 gives way"
    );
}
