//! `crossrank bench`: a gRPC load generator for a running server, on a deterministic corpus.

mod corpus;
mod load;
mod report;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use tonic::transport::{Channel, Endpoint};

use load::{Plan, Progress, Shape, Stop};
use report::{Report, Setup, Tally};

#[derive(Args)]
pub struct BenchArgs {
    /// Server address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    addr: String,
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
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let corpus = corpus::pairs(args.corpus_size as usize, args.seed);
    if let Some(path) = &args.write_corpus {
        return write_corpus(path, &corpus);
    }
    if args.scores_out.is_some() && args.shape != Shape::Score {
        bail!("--scores-out needs --shape score");
    }
    if args.requests.is_none() && !(args.duration > 0.0 && args.duration.is_finite()) {
        bail!(
            "--duration must be a positive number of seconds, got {}",
            args.duration
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (report, scores) = runtime.block_on(drive(&args, corpus))?;
    if let Some(path) = &args.scores_out {
        write_scores(path, scores)?;
    }
    match &args.json {
        Some(path) if path == Path::new("-") => println!("{}", serde_json::to_string(&report)?),
        Some(path) => {
            std::fs::write(path, serde_json::to_vec_pretty(&report)?)
                .with_context(|| format!("writing {}", path.display()))?;
            print!("{}", report.text());
        }
        None => print!("{}", report.text()),
    }
    Ok(())
}

async fn drive(
    args: &BenchArgs,
    corpus: Vec<(String, String)>,
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
        corpus,
    });
    let endpoint = Endpoint::from_shared(args.addr.clone())
        .with_context(|| format!("--addr {:?} is not a URI", args.addr))?;
    let mut channels = Vec::with_capacity(args.concurrency as usize);
    for _ in 0..args.concurrency {
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("connecting to {}", args.addr))?;
        channels.push(channel);
    }
    warm_up(&channels[0], &plan, args.warmup).await?;

    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let stop = match args.requests {
        Some(n) => Stop::After(n),
        None => Stop::At(started + Duration::from_secs_f64(args.duration)),
    };
    let clients: Vec<_> = channels
        .into_iter()
        .map(|channel| tokio::spawn(load::client(channel, plan.clone(), stop, progress.clone())))
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
    ticker.abort();
    let _ = ticker.await;
    let scores = std::mem::take(&mut tally.scores);
    let setup = Setup {
        shape: format!("{:?}", args.shape).to_lowercase(),
        model: args.model.clone(),
        size: args.size,
        concurrency: args.concurrency,
        corpus_seed: args.seed,
        corpus_size: plan.corpus.len(),
    };
    Ok((tally.report(setup, elapsed), scores))
}

/// Sends `n` requests one at a time; the first failure ends the run with its status.
async fn warm_up(channel: &Channel, plan: &Plan, n: u64) -> anyhow::Result<()> {
    let mut client =
        crossrank::api::pb::cross_encoder_client::CrossEncoderClient::new(channel.clone())
            .max_decoding_message_size(usize::MAX);
    for k in 0..n {
        load::send(&mut client, plan, k, &mut Tally::default(), plan.timeout)
            .await
            .map_err(|s| {
                anyhow::anyhow!("warm-up request failed: {:?}: {}", s.code(), s.message())
            })?;
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
