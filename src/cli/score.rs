//! `crossrank score`: scores for every input pair, printed in input order.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::{input, progress, ModelArgs};

#[derive(Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Pairs file: TSV (text_a TAB text_b) or JSON lines; `-` reads standard input.
    #[arg(long, default_value = "-")]
    input: PathBuf,
    /// Print one JSON object per pair instead of tab-separated scores.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ScoreArgs) -> anyhow::Result<()> {
    let pairs = input::read_pairs(input::open(&args.input)?)?;
    let encoder = args.model.load()?;
    let bar = progress(pairs.len(), args.model.batch_size);
    let scores = encoder.predict(
        &pairs,
        args.model.activation,
        args.model.batch_size as usize,
        |n| bar.inc(n as u64),
    )?;
    bar.finish_and_clear();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (index, s) in scores.iter().enumerate() {
        if args.json {
            serde_json::to_writer(
                &mut out,
                &serde_json::json!({ "index": index, "scores": s }),
            )?;
            writeln!(out)?;
        } else {
            let line: Vec<String> = s.iter().map(f32::to_string).collect();
            writeln!(out, "{}", line.join("\t"))?;
        }
    }
    out.flush()?;
    Ok(())
}
