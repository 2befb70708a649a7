//! A deterministic benchmark corpus: (query, passage) pairs generated from a seed.
//!
//! Passages are 1–5 sentences of 15–46 words drawn from a fixed vocabulary; queries are 2–8
//! consecutive words of one of the passage's sentences. The same seed and size give the same
//! pairs on every machine (ChaCha8 is a portable generator), about 130 BERT tokens per pair.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Words of everyday technical English, a few of them long enough to split into word pieces.
const WORDS: &[&str] = &[
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "for",
    "that",
    "with",
    "on",
    "as",
    "by",
    "it",
    "from",
    "at",
    "or",
    "be",
    "this",
    "are",
    "which",
    "an",
    "not",
    "can",
    "when",
    "each",
    "one",
    "all",
    "its",
    "more",
    "than",
    "into",
    "after",
    "before",
    "over",
    "under",
    "between",
    "most",
    "some",
    "many",
    "only",
    "also",
    "other",
    "new",
    "first",
    "last",
    "every",
    "same",
    "while",
    "system",
    "server",
    "request",
    "response",
    "model",
    "query",
    "document",
    "search",
    "index",
    "score",
    "rank",
    "batch",
    "queue",
    "token",
    "memory",
    "thread",
    "process",
    "network",
    "latency",
    "throughput",
    "client",
    "cluster",
    "replica",
    "storage",
    "cache",
    "version",
    "table",
    "record",
    "field",
    "value",
    "error",
    "status",
    "message",
    "stream",
    "file",
    "directory",
    "package",
    "library",
    "function",
    "method",
    "parameter",
    "argument",
    "result",
    "timeout",
    "deadline",
    "schedule",
    "policy",
    "release",
    "deployment",
    "container",
    "node",
    "engineer",
    "operator",
    "team",
    "user",
    "customer",
    "product",
    "market",
    "price",
    "report",
    "river",
    "mountain",
    "city",
    "village",
    "country",
    "history",
    "century",
    "language",
    "science",
    "music",
    "painting",
    "garden",
    "kitchen",
    "weather",
    "season",
    "journey",
    "returns",
    "reads",
    "writes",
    "sends",
    "receives",
    "stores",
    "loads",
    "measures",
    "compares",
    "builds",
    "runs",
    "starts",
    "stops",
    "waits",
    "grows",
    "changes",
    "describes",
    "explains",
    "contains",
    "depends",
    "requires",
    "produces",
    "improves",
    "reduces",
    "increases",
    "follows",
    "quickly",
    "slowly",
    "carefully",
    "usually",
    "rarely",
    "often",
    "together",
    "again",
    "large",
    "small",
    "fast",
    "slow",
    "long",
    "short",
    "early",
    "late",
    "simple",
    "complex",
    "reliable",
    "accurate",
    "expensive",
    "available",
    "important",
    "different",
    "similar",
    "configuration",
    "serialization",
    "authentication",
    "synchronization",
    "interoperability",
    "approximately",
    "independently",
    "asynchronous",
    "deterministic",
    "heterogeneous",
    "reranker",
    "tokenizer",
    "microservice",
    "observability",
    "benchmark",
    "kubernetes",
    "transformer",
    "embedding",
    "attention",
    "gradient",
    "precision",
    "checkpoint",
    "photosynthesis",
    "archaeology",
    "renaissance",
    "manuscript",
    "observatory",
    "biodiversity",
];

/// `n` pairs from `seed`.
pub fn pairs(n: usize, seed: u64) -> Vec<(String, String)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| pair(&mut rng)).collect()
}

fn pair(rng: &mut ChaCha8Rng) -> (String, String) {
    let sentences: Vec<Vec<&str>> = (0..rng.random_range(1..=5))
        .map(|_| sentence(rng))
        .collect();
    let source = &sentences[rng.random_range(0..sentences.len())];
    let k = rng.random_range(2..=8usize).min(source.len());
    let start = rng.random_range(0..=source.len() - k);
    let query = source[start..start + k].join(" ");
    let passage: Vec<String> = sentences.iter().map(|s| render(s)).collect();
    (query, passage.join(" "))
}

fn sentence(rng: &mut ChaCha8Rng) -> Vec<&'static str> {
    (0..rng.random_range(15..=46))
        .map(|_| WORDS[rng.random_range(0..WORDS.len())])
        .collect()
}

/// Capitalised, with a comma now and then and a full stop.
fn render(words: &[&str]) -> String {
    let mut out = String::new();
    for (i, w) in words.iter().enumerate() {
        if i == 0 {
            let mut chars = w.chars();
            if let Some(c) = chars.next() {
                out.extend(c.to_uppercase());
                out.push_str(chars.as_str());
            }
        } else {
            if i % 9 == 0 {
                out.push(',');
            }
            out.push(' ');
            out.push_str(w);
        }
    }
    out.push('.');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_pairs_other_seed_other_pairs() {
        assert_eq!(pairs(50, 3), pairs(50, 3));
        assert_ne!(pairs(50, 3), pairs(50, 4));
    }

    #[test]
    fn queries_are_short_and_come_from_their_passage() {
        for (q, p) in pairs(200, 1) {
            let words = q.split(' ').count();
            assert!((2..=8).contains(&words), "{q}");
            let first = q.split(' ').next().unwrap_or_default();
            assert!(p.to_lowercase().contains(first), "{q} / {p}");
            let sentences = p.matches('.').count();
            assert!((1..=5).contains(&sentences), "{p}");
        }
    }
}
