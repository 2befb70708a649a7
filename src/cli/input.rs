//! Reading pairs (TSV or JSON lines) and documents (one per line) for the CLI.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{anyhow, bail, Context};

/// Opens FILE, or standard input for `-`.
pub fn open(path: &Path) -> anyhow::Result<Box<dyn BufRead>> {
    if path == Path::new("-") {
        return Ok(Box::new(BufReader::new(std::io::stdin())));
    }
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Box::new(BufReader::new(file)))
}

/// One pair per line: `text_a<TAB>text_b`, or a JSON object `{"text_a": …, "text_b": …}`.
/// Every line is a pair (an empty text is valid); a line that is neither is an error naming it.
pub fn read_pairs(reader: impl Read) -> anyhow::Result<Vec<(String, String)>> {
    lines(reader)?
        .into_iter()
        .enumerate()
        .map(|(n, line)| parse_pair(&line).map_err(|e| anyhow!("input line {}: {e}", n + 1)))
        .collect()
}

/// One document per line.
pub fn read_documents(reader: impl Read) -> anyhow::Result<Vec<String>> {
    lines(reader)
}

fn lines(reader: impl Read) -> anyhow::Result<Vec<String>> {
    BufReader::new(reader)
        .lines()
        .enumerate()
        .map(|(n, l)| {
            let l = l.with_context(|| format!("input line {}: not valid UTF-8 text", n + 1))?;
            Ok(l.strip_suffix('\r').map(str::to_owned).unwrap_or(l))
        })
        .collect()
}

fn parse_pair(line: &str) -> anyhow::Result<(String, String)> {
    if line.trim_start().starts_with('{') {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Pair {
            text_a: String,
            text_b: String,
        }
        let p: Pair = serde_json::from_str(line).context("invalid JSON pair")?;
        return Ok((p.text_a, p.text_b));
    }
    match line.split_once('\t') {
        Some((a, b)) => Ok((a.to_owned(), b.to_owned())),
        None => bail!("expected text_a<TAB>text_b or a JSON object with text_a and text_b"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TSV and JSON lines mix; a tab inside text_b is kept; empty texts are pairs.
    #[test]
    fn parses_both_formats() {
        let text = "q\td\n{\"text_a\": \"x\", \"text_b\": \"y\\tz\"}\n\t\nq2\td\te\n";
        let pairs = read_pairs(text.as_bytes()).unwrap();
        assert_eq!(
            pairs,
            vec![
                ("q".into(), "d".into()),
                ("x".into(), "y\tz".into()),
                (String::new(), String::new()),
                ("q2".into(), "d\te".into()),
            ]
        );
    }

    #[test]
    fn names_the_bad_line() {
        let err = read_pairs("a\tb\nno tab here\n".as_bytes()).unwrap_err();
        assert!(err.to_string().starts_with("input line 2:"), "{err}");
    }
}
