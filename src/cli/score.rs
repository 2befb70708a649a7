//! `crossrank score`: scores for every input pair, printed in input order.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::long::{chunk_column, chunk_json};
use super::{input, ModelArgs};

#[derive(Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Pairs file: TSV (text_a TAB text_b) or JSON lines; `-` reads standard input.
    #[arg(long, default_value = "-")]
    input: PathBuf,
    /// Print one JSON object per pair instead of tab-separated scores (with `--truncation
    /// chunk`, a last column `window:start-end` names the window that scored highest, in
    /// characters of the second text).
    #[arg(long)]
    json: bool,
}

pub fn run(args: ScoreArgs) -> anyhow::Result<()> {
    let pairs = input::read_pairs(input::open(&args.input)?)?;
    let encoder = args.model.load()?;
    let scored = args.model.predict(&encoder, &pairs)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (index, s) in scored.iter().enumerate() {
        if args.json {
            let mut row = serde_json::json!({ "index": index, "scores": s.scores });
            if s.best.is_some() {
                row["best_chunk"] = chunk_json(s.best);
            }
            serde_json::to_writer(&mut out, &row)?;
            writeln!(out)?;
        } else {
            let mut line: Vec<String> = s.scores.iter().map(f32::to_string).collect();
            line.extend(s.best.map(chunk_column));
            writeln!(out, "{}", line.join("\t"))?;
        }
    }
    out.flush()?;
    Ok(())
}
