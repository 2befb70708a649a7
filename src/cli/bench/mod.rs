//! `crossrank bench`: a load generator for a running server, over gRPC or the REST port's
//! `/v2/rerank`, on a deterministic corpus; it reports latency, throughput and, with
//! `--server-pid`, the server's CPU per pair. With `--group` (repeated) it runs several client
//! groups at once, each with its own priority, tenant, request size and rate ([`mixed`]).

mod corpus;
mod host;
mod load;
mod mixed;
mod plan;
mod report;
mod rest;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use tonic::transport::Endpoint;

use super::long::TruncationArg;
use host::{cpu_seconds, Host};
use load::{Conn, Plan, Progress, Shape, Stop};
use mixed::spec::GroupSpec;
use report::{CpuTime, Report, Setup, Tally};

/// How requests reach the server.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Protocol {
    /// The gRPC port (`--addr`).
    Grpc,
    /// The REST port (`--http-url`): Rerank as `POST /v2/rerank` over HTTP/1.1 keep-alive.
    Http,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Server address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// gRPC, or HTTP to the REST port (`--shape rerank` only).
    #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
    protocol: Protocol,
    /// The REST port's URL, for `--protocol http`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    http_url: String,
    /// The server's process id: its CPU time over the run is reported, per pair (/proc/PID/stat;
    /// the server must run on this machine).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Model name (empty: the server's only model).
    #[arg(long, default_value = "")]
    model: String,
    /// Request shape.
    #[arg(long, value_enum, default_value_t = Shape::Score)]
    shape: Shape,
    /// Pairs per Score request, documents per Rerank or RerankStream request.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    size: u32,
    /// Documents per RerankStream message.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    chunk: u32,
    /// Concurrent clients, each with its own connection and one request in flight.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    concurrency: u32,
    /// Run time in seconds, after the warm-up.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Stop after this many requests instead of after --duration.
    #[arg(long)]
    requests: Option<u64>,
    /// Requests sent one at a time before measuring (not counted).
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Per-request deadline in milliseconds (sent as grpc-timeout).
    #[arg(long, default_value_t = 120_000)]
    timeout_ms: u64,
    /// Pause of a client after a failed request, in milliseconds (a retrying client backs off).
    #[arg(long, default_value_t = 0)]
    backoff_ms: u64,
    /// Share (0-1) of requests sent with chaos: half get a random deadline below --timeout-ms,
    /// half are cancelled by the client after a random delay below it (for soak tests).
    #[arg(long, default_value_t = 0.0)]
    chaos: f64,
    /// Corpus seed: the same seed and size give the same pairs everywhere.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Truncation of every request: longest-first, or chunk (long documents in windows).
    #[arg(long, value_enum, default_value = "longest-first")]
    truncation: TruncationArg,
    /// Each document is this many consecutive corpus passages joined (about 120 tokens each):
    /// long documents for `--truncation chunk`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    doc_passages: u32,
    /// Pairs in the corpus; requests take consecutive slices of it, wrapping around.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    corpus_size: u64,
    /// Write the corpus as JSON lines ({"text_a", "text_b"}) here and exit without sending.
    #[arg(long)]
    write_corpus: Option<PathBuf>,
    /// Write the report as JSON here (`-`: standard output, instead of the text report).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the first score of each corpus pair scored by Score requests, as JSON lines
    /// ({"index", "score"}) sorted by index.
    #[arg(long)]
    scores_out: Option<PathBuf>,
    /// A client group of a mixed run (repeat for more, at most 16), as comma-separated
    /// key=value: name (required), priority (0, the highest), tenant (sent as
    /// x-crossrank-tenant), shape (rerank), docs (20), chunk (10), requests (else --requests or
    /// --duration), and exactly one of rate (requests/s, 0.01-1000: open loop, latency from
    /// each request's due time) or concurrency (clients, 1-1000: closed loop). E.g.
    /// `name=bulk,priority=5,tenant=batch,docs=100,concurrency=3`.
    #[arg(long = "group", value_name = "SPEC",
          conflicts_with_all = ["shape", "size", "chunk", "concurrency", "scores_out", "chaos"])]
    groups: Vec<GroupSpec>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let corpus: Arc<[(String, String)]> =
        corpus::pairs(args.corpus_size as usize, args.seed).into();
    if let Some(path) = &args.write_corpus {
        return write_corpus(path, &corpus);
    }
    if !args.groups.is_empty() {
        return run_mixed(&args, corpus);
    }
    if args.scores_out.is_some() && args.shape != Shape::Score {
        bail!("--scores-out needs --shape score");
    }
    if args.protocol == Protocol::Http && args.shape != Shape::Rerank {
        bail!(
            "--protocol http sends /v2/rerank: give --shape rerank (not {:?})",
            args.shape
        );
    }
    if args.protocol == Protocol::Http && args.chaos > 0.0 {
        bail!("--chaos {} needs --protocol grpc", args.chaos);
    }
    check_duration(&args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (report, scores) = runtime.block_on(drive(&args, corpus))?;
    if let Some(path) = &args.scores_out {
        write_scores(path, scores)?;
    }
    emit(&args.json, &report, || report.text())
}

/// The `pb::Truncation` of `--truncation`.
fn truncation(t: TruncationArg) -> i32 {
    match t {
        TruncationArg::LongestFirst => crossrank::api::pb::Truncation::LongestFirst as i32,
        TruncationArg::Chunk => crossrank::api::pb::Truncation::Chunk as i32,
    }
}

/// Without `--requests`, the run lasts `--duration` seconds: a positive number.
fn check_duration(args: &BenchArgs) -> anyhow::Result<()> {
    if args.requests.is_none() && !(args.duration > 0.0 && args.duration.is_finite()) {
        bail!(
            "--duration must be a positive number of seconds, got {}",
            args.duration
        );
    }
    Ok(())
}

/// The mixed mode: `--group` given.
fn run_mixed(args: &BenchArgs, corpus: Arc<[(String, String)]>) -> anyhow::Result<()> {
    if args.protocol != Protocol::Grpc {
        bail!("--group runs over gRPC: leave out --protocol http");
    }
    check_duration(args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(mixed::drive(args, corpus))?;
    emit(&args.json, &report, || report.text())
}

/// The report as JSON on standard output (`--json -`), or as JSON in a file and as text, or as
/// text only.
fn emit<R: serde::Serialize>(
    json: &Option<PathBuf>,
    report: &R,
    text: impl Fn() -> String,
) -> anyhow::Result<()> {
    match json {
        Some(path) if path == Path::new("-") => println!("{}", serde_json::to_string(report)?),
        Some(path) => {
            std::fs::write(path, serde_json::to_vec_pretty(report)?)
                .with_context(|| format!("writing {}", path.display()))?;
            print!("{}", text());
        }
        None => print!("{}", text()),
    }
    Ok(())
}

async fn drive(
    args: &BenchArgs,
    corpus: Arc<[(String, String)]>,
) -> anyhow::Result<(Report, Vec<(usize, f32)>)> {
    let plan = Arc::new(Plan {
        shape: args.shape,
        model: args.model.clone(),
        size: args.size as usize,
        chunk: args.chunk as usize,
        timeout: Duration::from_millis(args.timeout_ms),
        keep_scores: args.scores_out.is_some(),
        backoff: Duration::from_millis(args.backoff_ms),
        chaos: args.chaos,
        priority: 0,
        tenant: None,
        corpus,
        truncation: truncation(args.truncation),
        doc_passages: args.doc_passages as usize,
    });
    let mut conns = connect(args).await?;
    warm_up(&mut conns[0], &plan, args.warmup).await?;

    let server_cpu_before = args.server_pid.map(cpu_seconds).transpose()?;
    let client_cpu_before = cpu_seconds(std::process::id())?;
    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let stop = match args.requests {
        Some(n) => Stop::After(n),
        None => Stop::At(started + Duration::from_secs_f64(args.duration)),
    };
    let clients: Vec<_> = conns
        .into_iter()
        .map(|conn| tokio::spawn(load::client(conn, plan.clone(), stop, progress.clone())))
        .collect();
    let ticker = tokio::spawn(show_progress(
        progress.clone(),
        args.requests,
        args.duration,
    ));
    let mut tally = Tally::default();
    for client in clients {
        tally.merge(client.await?);
    }
    let elapsed = started.elapsed();
    let cpu = CpuTime {
        server: match (args.server_pid, server_cpu_before) {
            (Some(pid), Some(before)) => Some(cpu_seconds(pid)? - before),
            _ => None,
        },
        client: cpu_seconds(std::process::id())? - client_cpu_before,
    };
    ticker.abort();
    let _ = ticker.await;
    let scores = std::mem::take(&mut tally.scores);
    let setup = Setup {
        protocol: format!("{:?}", args.protocol).to_lowercase(),
        shape: format!("{:?}", args.shape).to_lowercase(),
        model: args.model.clone(),
        size: args.size,
        concurrency: args.concurrency,
        corpus_seed: args.seed,
        corpus_size: plan.corpus.len(),
        truncation: match args.truncation {
            TruncationArg::LongestFirst => "longest-first".into(),
            TruncationArg::Chunk => "chunk".into(),
        },
        doc_passages: args.doc_passages,
    };
    let report = tally.report(setup, elapsed, cpu, Host::this_machine());
    Ok((report, scores))
}

/// One connection per client, on the chosen protocol.
async fn connect(args: &BenchArgs) -> anyhow::Result<Vec<Conn>> {
    let mut conns = Vec::with_capacity(args.concurrency as usize);
    match args.protocol {
        Protocol::Grpc => {
            let endpoint = Endpoint::from_shared(args.addr.clone())
                .with_context(|| format!("--addr {:?} is not a URI", args.addr))?;
            for _ in 0..args.concurrency {
                let channel = endpoint
                    .connect()
                    .await
                    .with_context(|| format!("connecting to {}", args.addr))?;
                conns.push(Conn::grpc(channel));
            }
        }
        Protocol::Http => {
            let target = rest::Target::parse(&args.http_url)?;
            for _ in 0..args.concurrency {
                conns.push(Conn::Http(rest::Rest::connect(target.clone()).await?));
            }
        }
    }
    Ok(conns)
}

/// Sends `n` requests one at a time; the first failure ends the run with its status.
async fn warm_up(conn: &mut Conn, plan: &Plan, n: u64) -> anyhow::Result<()> {
    for k in 0..n {
        conn.send(plan, k, &mut Tally::default(), plan.timeout)
            .await
            .map_err(|f| anyhow::anyhow!("warm-up request failed: {}: {}", f.code, f.message))?;
    }
    Ok(())
}

/// A progress line on stderr (hidden when stderr is no terminal).
async fn show_progress(progress: Arc<Progress>, requests: Option<u64>, duration: f64) {
    let (len, template) = match requests {
        Some(n) => (n, "{bar:30} {pos}/{len} requests {msg}"),
        None => ((duration * 10.0) as u64, "{bar:30} {elapsed} {msg}"),
    };
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        let seconds = started.elapsed().as_secs_f64().max(1e-3);
        let done = progress.done.load(Ordering::Relaxed);
        bar.set_position(match requests {
            Some(_) => done,
            None => (seconds * 10.0) as u64,
        });
        bar.set_message(format!(
            "{:.1} pairs/s, {} failed",
            progress.pairs.load(Ordering::Relaxed) as f64 / seconds,
            progress.failed.load(Ordering::Relaxed)
        ));
    }
}

fn write_corpus(path: &Path, corpus: &[(String, String)]) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for (a, b) in corpus {
        serde_json::to_writer(&mut out, &serde_json::json!({ "text_a": a, "text_b": b }))?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}

fn write_scores(path: &Path, mut scores: Vec<(usize, f32)>) -> anyhow::Result<()> {
    scores.sort_by_key(|&(i, _)| i);
    scores.dedup_by_key(|&mut (i, _)| i);
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for (index, score) in scores {
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({ "index": index, "score": score }),
        )?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}
