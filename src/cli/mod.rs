//! Subcommands: `score` (like `CrossEncoder.predict`), `rerank` (like `CrossEncoder.rank`) and
//! `serve` (the gRPC server), `bench` (a load generator for a running server) and `health`.

mod allocator;
mod bench;
mod fetch;
mod health;
mod input;
mod long;
mod rerank;
mod score;
mod serve;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use crossrank::activation::ActivationChoice;
use crossrank::device::{parse_device, DType};
use crossrank::hub::{Cancel, HubConfig, ModelSource, Progress};
use crossrank::load_error::LoadError;
use crossrank::runtime::{CrossEncoder, LoadOptions};

#[derive(Parser)]
#[command(
    name = "crossrank",
    version,
    about = "Cross-encoder (reranker) scoring and serving on libtorch"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Score (text_a, text_b) pairs, one output line per input pair, in input order.
    Score(score::ScoreArgs),
    /// Rank documents for one query, best first.
    Rerank(rerank::RerankArgs),
    /// Serve models over gRPC.
    Serve(Box<serve::ServeArgs>),
    /// Drive a running server over gRPC and report throughput, latency and errors.
    Bench(bench::BenchArgs),
    /// Check a running server's gRPC health; exit status 0 only when SERVING.
    Health(health::HealthArgs),
    /// Fetch Hugging Face models (org/name[@revision]) into the Hugging Face cache.
    Fetch(fetch::FetchArgs),
}

impl Cli {
    pub fn run(self) -> anyhow::Result<()> {
        if !matches!(self.command, Command::Serve(_)) {
            // `serve` installs its own subscriber (with trace export) inside its runtime.
            // Hub downloads report their progress at info when stderr is no terminal.
            let filter = std::env::var("CROSSRANK_LOG")
                .unwrap_or_else(|_| "warn,crossrank::hub::progress=info".into());
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_new(filter)
                        .unwrap_or_else(|_| "warn".into()),
                )
                .with_writer(std::io::stderr)
                .init();
        }
        match self.command {
            Command::Score(args) => score::run(args),
            Command::Rerank(args) => rerank::run(args),
            Command::Serve(args) => serve::run(*args),
            Command::Bench(args) => bench::run(args),
            Command::Health(args) => health::run(args),
            Command::Fetch(args) => fetch::run(args),
        }
    }
}

/// How to load and run the model; shared by `score` and `rerank`.
#[derive(Args)]
pub struct ModelArgs {
    /// Hugging Face model directory (config.json, tokenizer.json, safetensors), TorchScript
    /// directory, or Hugging Face id `org/name[@revision]` (fetched into the Hugging Face cache).
    #[arg(long, env = "CROSSRANK_MODEL")]
    model: PathBuf,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: tch::Device,
    /// f32, f16, bf16 or int8 (CPU only) (default: f32 on CPU, f16 on CUDA).
    #[arg(long)]
    dtype: Option<DType>,
    /// Score activation: default (the model's), none (raw logits), sigmoid or softmax.
    #[arg(long, default_value = "default")]
    activation: ActivationChoice,
    /// Pairs per forward pass (inputs are sorted by token length first).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    batch_size: u32,
    /// Maximum tokens per pair (default: the model's; never above its position embeddings).
    #[arg(long)]
    max_length: Option<usize>,
    /// Intra-op threads for libtorch (default: libtorch's choice, one per core).
    #[arg(long, env = "CROSSRANK_THREADS")]
    threads: Option<u16>,
    /// For models with a chat template (LLM rerankers): the system message (default: the
    /// model's default prompt; "" for none).
    #[arg(long)]
    instruction: Option<String>,
    #[command(flatten)]
    long: long::LongArgs,
}

impl ModelArgs {
    fn load(&self) -> anyhow::Result<CrossEncoder> {
        if let Some(n) = self.threads {
            tch::set_num_threads(i32::from(n.max(1)));
        }
        let opts = LoadOptions {
            device: self.device,
            dtype: self.dtype,
            max_length: self.max_length,
        };
        // relative to the working directory
        let source = ModelSource::resolve(&self.model, Some(std::path::Path::new("")));
        let hub = HubConfig::from_env();
        let dir = source
            .dir("cli", &hub, Progress::for_stderr(), &Cancel::default())
            .map_err(LoadError::Fetch)?;
        CrossEncoder::load(&dir, &opts).with_context(|| format!("loading {}", dir.display()))
    }
}

impl ModelArgs {
    /// Scores `pairs` in length-sorted batches with a progress bar; results in input order.
    /// With `--truncation chunk`, each pair's second text is scored in windows and pooled.
    fn predict<S: AsRef<str>>(
        &self,
        encoder: &CrossEncoder,
        pairs: &[(S, S)],
    ) -> anyhow::Result<Vec<long::Scored>> {
        let instruction = self.instruction.as_deref();
        if instruction.is_some_and(|i| !i.is_empty()) && !encoder.tokenizer.uses_chat_template() {
            anyhow::bail!(
                "--instruction is set, but {} has no chat template: instructions apply to models \
                 that render pairs through one (LLM rerankers)",
                self.model.display()
            );
        }
        let bar = progress(pairs.len(), self.batch_size);
        let batch = self.batch_size as usize;
        let tick = |n: usize| bar.inc(n as u64);
        let scored = match self.long.chunked() {
            Some(how) => encoder
                .predict_chunked(pairs, &how, self.activation, batch, tick)?
                .into_iter()
                .map(|p| long::Scored {
                    scores: p.scores,
                    best: Some(p.best),
                })
                .collect(),
            None => encoder
                .predict_instructed(
                    pairs,
                    instruction,
                    self.long.cut(),
                    self.activation,
                    batch,
                    tick,
                )?
                .into_iter()
                .map(|scores| long::Scored { scores, best: None })
                .collect(),
        };
        bar.finish_and_clear();
        Ok(scored)
    }
}

/// A progress bar on stderr for inputs larger than one batch; hidden when stderr is no terminal.
fn progress(total: usize, batch_size: u32) -> indicatif::ProgressBar {
    if total <= batch_size as usize {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} pairs {per_sec} eta {eta}")
    {
        bar.set_style(style);
    }
    bar
}
