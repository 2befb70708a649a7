//! `crossrank rerank`: documents ordered by their score for one query, best first.

use std::io::Write;
use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

use super::long::{chunk_column, chunk_json};
use super::{input, ModelArgs};

#[derive(Args)]
pub struct RerankArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The query.
    #[arg(long)]
    query: String,
    /// Documents file, one document per line; `-` reads standard input.
    #[arg(long)]
    documents: PathBuf,
    /// Print only the best N documents (default: all).
    #[arg(long)]
    top_n: Option<usize>,
    /// Print one JSON object per document instead of `rank TAB index TAB score TAB text` (with
    /// `--truncation chunk`, a `window:start-end` column before the text names the window that
    /// scored highest, in characters of the document).
    #[arg(long)]
    json: bool,
}

pub fn run(args: RerankArgs) -> anyhow::Result<()> {
    let docs = input::read_documents(input::open(&args.documents)?)?;
    let encoder = args.model.load()?;
    let labels = encoder.spec().labels.len();
    if labels != 1 {
        bail!("rerank needs a model with one output label; this one has {labels}: use `crossrank score`");
    }
    let pairs: Vec<(&str, &str)> = docs
        .iter()
        .map(|d| (args.query.as_str(), d.as_str()))
        .collect();
    let scored = args.model.predict(&encoder, &pairs)?;
    let ranked = rank(scored.iter().map(|s| s.scores[0]).collect());
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (rank, &(index, score)) in ranked
        .iter()
        .take(args.top_n.unwrap_or(usize::MAX))
        .enumerate()
    {
        let text = &docs[index];
        let best = scored[index].best;
        if args.json {
            let mut row = serde_json::json!({ "rank": rank + 1, "index": index, "score": score, "text": text });
            if best.is_some() {
                row["best_chunk"] = chunk_json(best);
            }
            serde_json::to_writer(&mut out, &row)?;
            writeln!(out)?;
        } else {
            let chunk = best.map(|b| chunk_column(b) + "\t").unwrap_or_default();
            writeln!(out, "{}\t{index}\t{score}\t{chunk}{text}", rank + 1)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// (index, score) best first; equal scores keep input order.
fn rank(scores: Vec<f32>) -> Vec<(usize, f32)> {
    let mut ranked: Vec<(usize, f32)> = scores.into_iter().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked
}
