//! The open loop of a rate group: request `k` is due at `start + k / rate` and starts then whether
//! or not earlier ones have finished, so a slow server cannot slow the arrivals down (no
//! coordinated omission), and each latency counts from the request's due time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossrank::api::pb::cross_encoder_client::CrossEncoderClient;
use tokio::task::{JoinError, JoinSet};
use tonic::transport::Channel;

use super::super::load::{self, Plan, Progress, Stop};
use super::super::report::{Failure, Tally};

/// Requests of one rate group in flight at once. A request that falls due while this many are
/// in flight is not sent and is counted as `NOT_SENT`, so the bench's memory stays bounded when
/// the server stalls.
pub const MAX_IN_FLIGHT: usize = 1000;

/// An answered request: its outcome and its latency from its due time.
type Done = (Result<(), Failure>, Duration);

/// Sends the group's requests on schedule over `clients` (in turn) until `stop`, then waits for
/// the ones still in flight.
pub async fn run(
    clients: Vec<CrossEncoderClient<Channel>>,
    plan: Arc<Plan>,
    rate: f64,
    start: Instant,
    stop: Stop,
    progress: Arc<Progress>,
) -> Tally {
    let mut tally = Tally::default();
    let mut running: JoinSet<Done> = JoinSet::new();
    let period = Duration::from_secs_f64(1.0 / rate);
    for k in 0u64.. {
        let due = start + period.mul_f64(k as f64);
        let over = match stop {
            Stop::At(end) => due >= end,
            Stop::After(n) => k >= n,
        };
        if over {
            break;
        }
        let sleep = tokio::time::sleep_until(due.into());
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                Some(done) = running.join_next() => record(&mut tally, &progress, &plan, joined(done)),
            }
        }
        if running.len() >= MAX_IN_FLIGHT {
            let message = format!(
                "{MAX_IN_FLIGHT} requests of the group were in flight when this one fell due \
                 (the bench's bound)"
            );
            let failure = Failure::new("NOT_SENT", message);
            record(&mut tally, &progress, &plan, (Err(failure), Duration::ZERO));
            continue;
        }
        let mut client = clients[k as usize % clients.len()].clone();
        let plan = plan.clone();
        running.spawn(async move {
            let mut unused = Tally::default();
            let outcome = load::send(&mut client, &plan, k, &mut unused, plan.timeout).await;
            (outcome.map_err(Failure::from), due.elapsed())
        });
    }
    while let Some(done) = running.join_next().await {
        record(&mut tally, &progress, &plan, joined(done));
    }
    tally
}

/// A request task's answer; a task that panicked (a bug) counts as a failed request.
fn joined(done: Result<Done, JoinError>) -> Done {
    done.unwrap_or_else(|e| {
        (
            Err(Failure::new("BENCH_TASK", e.to_string())),
            Duration::ZERO,
        )
    })
}

fn record(tally: &mut Tally, progress: &Progress, plan: &Plan, (outcome, latency): Done) {
    progress.record(tally, plan.size, outcome, latency);
}
