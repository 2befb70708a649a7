//! The `crossrank score` and `crossrank rerank` commands end to end on generated models.

use crate::common;

use std::process::{Command, Output};

use common::{expected, fixtures, max_diff, minilm_dir};

fn crossrank(args: &[&str], stdin: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_crossrank"));
    common::run_with_input(command.args(args), stdin).unwrap()
}

fn model(name: &str) -> String {
    fixtures().join(name).display().to_string()
}

/// TSV of the fixture pairs (none of them contains a tab in text_a; tabs in text_b are kept).
fn pairs_tsv(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(a, b)| format!("{a}\t{}\n", b.replace('\n', " ")))
        .collect()
}

fn parse_rows(stdout: &[u8]) -> Vec<Vec<f32>> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| l.split('\t').map(|v| v.parse().unwrap()).collect())
        .collect()
}

/// Output is one line per input pair in input order (inputs are length-sorted internally),
/// equal to sentence-transformers; three labels print three tab-separated values.
#[test]
fn score_prints_scores_in_input_order() {
    let exp = expected();
    let pairs: Vec<(String, String)> = exp
        .pairs
        .iter()
        .filter(|(_, b)| !b.contains('\n'))
        .cloned()
        .collect();
    let keep: Vec<usize> = (0..exp.pairs.len())
        .filter(|&i| !exp.pairs[i].1.contains('\n'))
        .collect();
    for name in ["bert", "bert_3labels"] {
        let out = crossrank(
            &["score", "--model", &model(name), "--batch-size", "3"],
            &pairs_tsv(&pairs),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want: Vec<Vec<f32>> = keep
            .iter()
            .map(|&i| exp.models[name].default[i].clone())
            .collect();
        let got = parse_rows(&out.stdout);
        assert!(max_diff(&got, &want) <= 1e-5, "{name}: {got:?} vs {want:?}");
    }
}

/// `--json` gives one object per pair with its index; JSON-lines input is accepted.
#[test]
fn score_json_in_and_out() {
    let input =
        "{\"text_a\": \"q\", \"text_b\": \"first\"}\n{\"text_a\": \"\", \"text_b\": \"\"}\n";
    let out = crossrank(
        &[
            "score",
            "--model",
            &model("bert_3labels"),
            "--json",
            "--activation",
            "softmax",
        ],
        input,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["index"], i);
        let sum: f64 = row["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .sum();
        assert!((sum - 1.0).abs() < 1e-5, "softmax row sums to {sum}");
    }
}

/// Rerank prints rank, original index, score and text, best first, cut at --top-n; the order is
/// the one sentence-transformers' scores give.
#[test]
fn rerank_orders_best_first() {
    let exp = expected();
    let docs: Vec<&str> = exp
        .pairs
        .iter()
        .map(|(_, b)| b.as_str())
        .filter(|d| !d.contains('\n'))
        .collect();
    let query = "what is a cross encoder";
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), docs.join("\n") + "\n").unwrap();
    let path = file.path().display().to_string();
    let out = crossrank(
        &[
            "rerank",
            "--model",
            &model("bert"),
            "--query",
            query,
            "--documents",
            &path,
            "--top-n",
            "4",
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.splitn(4, '\t').collect())
        .collect();
    assert_eq!(rows.len(), 4);
    let scores: Vec<f32> = rows.iter().map(|r| r[2].parse().unwrap()).collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "not best first: {scores:?}"
    );
    for (rank, row) in rows.iter().enumerate() {
        assert_eq!(row[0], (rank + 1).to_string());
        let index: usize = row[1].parse().unwrap();
        assert_eq!(row[3], docs[index]);
    }
    // The full ranking agrees with scoring every pair through `score`.
    let tsv: String = docs.iter().map(|d| format!("{query}\t{d}\n")).collect();
    let all = parse_rows(&crossrank(&["score", "--model", &model("bert")], &tsv).stdout);
    let best = (0..docs.len())
        .max_by(|&a, &b| all[a][0].total_cmp(&all[b][0]).then(b.cmp(&a)))
        .unwrap();
    assert_eq!(rows[0][1], best.to_string());
}

/// The default model (models/minilm-ce, distilled by scripts/make_default_model.py) puts the
/// answer a reader sees at once first, with the other documents as distractors (every query
/// here wins by more than 1 logit in bench/default_model_quality.py's demo).
#[test]
fn default_model_ranks_the_obvious_answer_first() {
    let docs = [
        "Use std::fs::read_to_string to read a whole file into a String.",
        "The argparse module parses command-line arguments and options.",
        "Bananas are a good source of potassium.",
        "Photosynthesis turns sunlight, water and carbon dioxide into sugar.",
    ];
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), docs.join("\n") + "\n").unwrap();
    let (model, path) = (
        minilm_dir().display().to_string(),
        file.path().display().to_string(),
    );
    for (query, want) in [
        ("how do I read a file in rust", 0),
        ("parse command line arguments", 1),
        ("which fruit has potassium", 2),
        ("how do plants make sugar from sunlight", 3),
    ] {
        let args = [
            "rerank",
            "--model",
            &model,
            "--query",
            query,
            "--documents",
            &path,
        ];
        let out = crossrank(&args, "");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let first = stdout.lines().next().unwrap_or_default();
        assert_eq!(
            first.split('\t').nth(1),
            Some(want.to_string().as_str()),
            "{query:?} ranked:\n{stdout}"
        );
    }
}

/// Errors are one line on stderr and a non-zero exit.
#[test]
fn errors_are_one_clear_line() {
    let cases: [(&[&str], &str, &str); 4] = [
        (
            &["score", "--model", &model("bert")],
            "a\tb\nno tab\n",
            "input line 2",
        ),
        (
            &["score", "--model", "/nonexistent/model"],
            "a\tb\n",
            "/nonexistent/model",
        ),
        (
            &[
                "rerank",
                "--model",
                &model("bert_3labels"),
                "--query",
                "q",
                "--documents",
                "-",
            ],
            "d\n",
            "3",
        ),
        (
            &[
                "score",
                "--model",
                &model("bert"),
                "--activation",
                "softmax",
            ],
            "a\tb\n",
            "at least 2 labels",
        ),
    ];
    for (args, stdin, needle) in cases {
        let out = crossrank(args, stdin);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(needle),
            "{args:?}: {stderr}"
        );
    }
}

/// `--instruction` on an LLM reranker gives sentence-transformers' `prompt=` scores (JSON-lines
/// input: the fixture's texts hold tabs and newlines); on a model without a chat template it is
/// an error that names the flag.
#[test]
fn instruction_reaches_the_chat_template() {
    #[derive(serde::Deserialize)]
    struct Reference {
        pairs: Vec<(String, String)>,
        custom_prompt: String,
        scores: std::collections::HashMap<String, Vec<f32>>,
    }
    let dir = fixtures().join("causal");
    let exp: Reference =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let input: String = exp
        .pairs
        .iter()
        .map(|(a, b)| serde_json::json!({"text_a": a, "text_b": b}).to_string() + "\n")
        .collect();
    let dir = dir.display().to_string();
    for (instruction, key) in [
        (exp.custom_prompt.as_str(), "custom_prompt_identity"),
        ("", "no_prompt_identity"),
    ] {
        let args = [
            "score",
            "--model",
            &dir,
            "--activation",
            "none",
            "--instruction",
            instruction,
        ];
        let out = crossrank(&args, &input);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Vec<Vec<f32>> = parse_rows(&out.stdout);
        let want: Vec<Vec<f32>> = exp.scores[key].iter().map(|&s| vec![s]).collect();
        assert!(
            max_diff(&got, &want) <= 1e-5 * 4.0,
            "{key}: {got:?} vs {want:?}"
        );
    }
    let out = crossrank(
        &["score", "--model", &model("bert"), "--instruction", "judge"],
        "a\tb\n",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--instruction") && err.contains("chat template"),
        "{err}"
    );
}
