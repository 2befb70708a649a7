//! `crossrank score`: scores for every input pair, printed in input order.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::{input, ModelArgs};

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
    let scores = args.model.predict(&encoder, &pairs)?;
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
