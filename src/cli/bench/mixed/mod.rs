//! The mixed mode (`--group`, repeated): several client groups in one run against one model,
//! each with its own priority, tenant, request shape and size, and either a fixed request rate
//! (open loop) or a number of clients (closed loop), reported per group and in all. It is how
//! priorities and tenant fairness are measured (bench/priority.sh).
//!
//! # Layout
//! - `spec`: a group's `--group` settings and their bounds.
//! - `open`: the open loop of a rate group. Closed-loop groups use the single mode's clients.
//! - `report`: per-group counts, latency and throughput, as a table or JSON.

mod open;
mod report;
pub mod spec;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossrank::api::pb::cross_encoder_client::CrossEncoderClient;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

use super::host::{cpu_seconds, Host};
use super::load::{self, Conn, Plan, Progress, Stop};
use super::report::{CpuTime, Tally};
use super::BenchArgs;
use report::GroupReport;
pub use report::MixedReport;
use spec::{GroupSpec, Load};

/// Connections of a rate group: its requests share them in turn (HTTP/2 carries many calls on
/// one, up to the server's per-connection limit).
const RATE_CONNECTIONS: usize = 4;

/// A group ready to start: its requests' plan and its connections.
struct Group {
    spec: GroupSpec,
    plan: Arc<Plan>,
    clients: Vec<CrossEncoderClient<Channel>>,
}

/// Connects and warms up every group, runs them together and reports.
pub async fn drive(
    args: &BenchArgs,
    corpus: Arc<[(String, String)]>,
) -> anyhow::Result<MixedReport> {
    spec::check_groups(&args.groups).map_err(anyhow::Error::msg)?;
    let endpoint = Endpoint::from_shared(args.addr.clone())
        .with_context(|| format!("--addr {:?} is not a URI", args.addr))?;
    let mut groups = Vec::with_capacity(args.groups.len());
    for spec in &args.groups {
        let group = prepare(args, &endpoint, spec, corpus.clone()).await?;
        warm_up(&group, args.warmup).await?;
        groups.push(group);
    }
    let server_cpu_before = args.server_pid.map(cpu_seconds).transpose()?;
    let client_cpu_before = cpu_seconds(std::process::id())?;
    let started = Instant::now();
    let runs: Vec<_> = groups
        .iter()
        .map(|g| {
            let stop = match g.spec.requests.or(args.requests) {
                Some(n) => Stop::After(n),
                None => Stop::At(started + Duration::from_secs_f64(args.duration)),
            };
            tokio::spawn(run_group(
                g.spec.load,
                g.plan.clone(),
                g.clients.clone(),
                started,
                stop,
            ))
        })
        .collect();
    let mut reports = Vec::with_capacity(runs.len());
    for (run, group) in runs.into_iter().zip(&groups) {
        let (tally, elapsed) = run.await.context("a bench group's task failed")?;
        reports.push(GroupReport::new(&group.spec, tally, elapsed));
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = CpuTime {
        server: match (args.server_pid, server_cpu_before) {
            (Some(pid), Some(before)) => Some(cpu_seconds(pid)? - before),
            _ => None,
        },
        client: cpu_seconds(std::process::id())? - client_cpu_before,
    };
    let pairs = reports.iter().map(|g| g.pairs).sum();
    Ok(MixedReport {
        mode: "mixed",
        protocol: "grpc",
        model: args.model.clone(),
        corpus_seed: args.seed,
        corpus_size: corpus.len(),
        timeout_ms: args.timeout_ms,
        seconds,
        requests: reports.iter().map(|g| g.requests).sum(),
        pairs,
        pairs_per_s: pairs as f64 / seconds.max(1e-9),
        groups: reports,
        cpu: cpu.report(pairs),
        host: Host::this_machine(),
    })
}

/// The group's plan and connections: one per client of a closed-loop group,
/// [`RATE_CONNECTIONS`] for a rate group.
async fn prepare(
    args: &BenchArgs,
    endpoint: &Endpoint,
    spec: &GroupSpec,
    corpus: Arc<[(String, String)]>,
) -> anyhow::Result<Group> {
    let tenant = match spec.tenant.as_str() {
        "" => None,
        name => Some(MetadataValue::try_from(name).with_context(|| {
            format!(
                "--group {:?}: tenant {name:?} is no metadata value",
                spec.name
            )
        })?),
    };
    let plan = Plan {
        shape: spec.shape,
        model: args.model.clone(),
        size: spec.docs as usize,
        chunk: spec.chunk as usize,
        timeout: Duration::from_millis(args.timeout_ms),
        keep_scores: false,
        backoff: Duration::from_millis(args.backoff_ms),
        chaos: 0.0,
        priority: spec.priority,
        tenant,
        corpus,
        truncation: 0,
        doc_passages: 1,
    };
    let n = match spec.load {
        Load::Clients(c) => c as usize,
        Load::Rate(_) => RATE_CONNECTIONS,
    };
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("connecting to {}", args.addr))?;
        clients.push(load::grpc_client(channel));
    }
    Ok(Group {
        spec: spec.clone(),
        plan: Arc::new(plan),
        clients,
    })
}

/// Sends `n` of the group's requests one at a time; the first failure ends the run, naming the
/// group and the status.
async fn warm_up(group: &Group, n: u64) -> anyhow::Result<()> {
    let mut client = group.clients[0].clone();
    for k in 0..n {
        load::send(
            &mut client,
            &group.plan,
            k,
            &mut Tally::default(),
            group.plan.timeout,
        )
        .await
        .map_err(|s| {
            let code = super::report::Failure::from(s);
            anyhow::anyhow!(
                "group {:?}: warm-up request failed: {}: {}",
                group.spec.name,
                code.code,
                code.message
            )
        })?;
    }
    Ok(())
}

/// One group's requests until `stop`; its outcomes and the time from `start` to its last answer.
async fn run_group(
    load: Load,
    plan: Arc<Plan>,
    clients: Vec<CrossEncoderClient<Channel>>,
    start: Instant,
    stop: Stop,
) -> (Tally, Duration) {
    let progress = Arc::new(Progress::default());
    let tally = match load {
        Load::Rate(rate) => open::run(clients, plan, rate, start, stop, progress).await,
        Load::Clients(_) => {
            let tasks: Vec<_> = clients
                .into_iter()
                .map(|c| {
                    let conn = Conn::Grpc(Box::new(c));
                    tokio::spawn(load::client(conn, plan.clone(), stop, progress.clone()))
                })
                .collect();
            let mut tally = Tally::default();
            for task in tasks {
                match task.await {
                    Ok(t) => tally.merge(t),
                    Err(e) => tally.error(
                        Duration::ZERO,
                        super::report::Failure::new("BENCH_TASK", e.to_string()),
                    ),
                }
            }
            tally
        }
    };
    (tally, start.elapsed())
}
