"""How well long documents rank with truncation and with chunking (crossrank score --truncation chunk),
on the default model, from held-out standard-library text.

Usage: python bench/long_document_quality.py [MODEL_DIR] [QUERIES]   (needs target/release/crossrank;
       about 10 minutes on 2 cores with the default 60 queries)

Each query is the first sentence of a held-out docstring (crossrank_tools.default_model.HELD_OUT: modules
the default model never trained on); its relevant passage is that docstring's body (sentences 2-5). Ten
candidates per query:
- long: the relevant passage placed at a random depth inside a 1,000-4,000-token document made of other
  docstrings' bodies (from the training modules: filler), and 9 long distractors built the same way
  around the 9 held-out bodies with the highest TF-IDF cosine to the query (lexical hard negatives,
  chosen without any model);
- short: the relevant passage and the same 9 hard negatives alone (the short-document reference).
Scored with `crossrank score --activation none`: long documents with truncation (longest-first at 512
tokens) and with chunking (max and mean pooling; windows of the model's 512 tokens, and of 128 tokens,
the length the default model was distilled at); short ones as they are. QUALITY_RUNS=a,b keeps the
reference and the runs whose names contain a or b. MRR@10 (with 10 candidates,
the mean of 1/rank; chance is 0.293), by the depth of the relevant passage in its document.
"""

import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crossrank_tools import default_model as M
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from default_model_quality import cos, tfidf  # noqa: E402  (the same folder)

ROOT = Path(__file__).resolve().parents[1]
SEED = 11
N_HARD = 9
MIN_TOKENS, MAX_TOKENS = 1000, 4000
DEPTHS = [(0, 500, "0-500 (first window)"), (500, 1500, "500-1,500"), (1500, 10**9, "1,500+")]


def cpu() -> str:
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    flags = next((l for l in open("/proc/cpuinfo") if l.startswith("flags")), "")
    avx = sorted({f for f in flags.split() if f.startswith("avx512")}) or ["avx2 only"]
    return f"{model}, {os.cpu_count()} cores, {' '.join(avx)}"


def build(tok: Tokenizer, n_queries: int):
    """(queries, short candidates, long candidates, depth in tokens of each relevant passage)."""
    rng = random.Random(SEED)
    docs = M.documents()
    held = [s for module, s in docs if module in M.HELD_OUT]
    filler = [M.body(s) for module, s in docs if module not in M.HELD_OUT]
    bodies = [M.body(s) for s in held]
    length = lambda t: len(tok.encode(t, add_special_tokens=False).ids)
    filler_len = [length(f) for f in filler]
    chosen = rng.sample(range(len(held)), min(n_queries, len(held)))
    queries = [held[d][0] for d in chosen]
    q_vecs = tfidf(queries + bodies)[: len(queries)]
    b_vecs = tfidf(bodies)

    def long_doc(passage: str) -> tuple[str, int]:
        """`passage` at a random depth among filler; (text, tokens before the passage)."""
        target = rng.randint(MIN_TOKENS, MAX_TOKENS) - length(passage)
        parts, total = [], 0
        while total < target:
            i = rng.randrange(len(filler))
            parts.append(filler[i])
            total += filler_len[i]
        at = rng.randint(0, len(parts))
        depth = sum(length(p) for p in parts[:at])
        return " ".join(parts[:at] + [passage] + parts[at:]), depth

    short, long, depths = [], [], []
    for qi, d in enumerate(chosen):
        others = [b for b in range(len(bodies)) if bodies[b] != bodies[d]]
        hard = sorted(others, key=lambda b: -cos(q_vecs[qi], b_vecs[b]))[:N_HARD]
        short.append([bodies[d]] + [bodies[h] for h in hard])
        docs_long = [long_doc(p) for p in short[-1]]
        long.append([t for t, _ in docs_long])
        depths.append(docs_long[0][1])
    return queries, short, long, depths


def score(model: str, queries, candidates, args: list[str]) -> tuple[list[list[float]], float]:
    """Raw scores per query (relevant first), and the seconds the CLI took."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for q, cands in zip(queries, candidates):
            for c in cands:
                f.write(json.dumps({"text_a": q, "text_b": c}) + "\n")
        path = f.name
    binary = os.environ.get("CROSSRANK_BIN", str(ROOT / "target/release/crossrank"))
    cmd = [binary, "score", "--model", model, "--input", path, "--activation", "none", "--json", *args]
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    seconds = time.perf_counter() - t
    os.unlink(path)
    flat = [json.loads(l)["scores"][0] for l in out.splitlines()]
    n = len(candidates[0])
    return [flat[i : i + n] for i in range(0, len(flat), n)], seconds


def rank_of(s: list[float]) -> int:
    return 1 + sum(1 for x in s[1:] if x > s[0])  # ties count in favour of the relevant passage


def mrr(rows) -> float:
    return sum(1 / rank_of(s) if rank_of(s) <= 10 else 0 for s in rows) / max(1, len(rows))


def main(model: str, n_queries: int) -> None:
    tok = Tokenizer.from_file(str(Path(model) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    queries, short, long, depths = build(tok, n_queries)
    print(f"CPU: {cpu()}; {platform.python_version()}")
    print(f"{len(queries)} queries x {len(long[0])} candidates; long documents {MIN_TOKENS}-{MAX_TOKENS} tokens; "
          f"model {model}\n")
    chunk = ["--truncation", "chunk", "--chunk-pooling"]
    short128 = ["--max-length", "128", "--max-chunks-per-doc", "256"]
    plan = {
        "short documents (reference)": (short, []),
        "long, truncation (longest-first)": (long, []),
        "long, chunking, max": (long, chunk + ["max"]),
        "long, chunking, mean": (long, chunk + ["mean"]),
        # The default model was distilled on pairs of at most 128 tokens: windows of its length.
        "long, chunking, max, windows of 128": (long, chunk + ["max"] + short128),
        "long, chunking, mean, windows of 128": (long, chunk + ["mean"] + short128),
        "long, chunking, max, windows of 128, overlap 24": (long, chunk + ["max", "--chunk-overlap", "24"] + short128),
        "long, chunking, mean, windows of 128, overlap 24": (long, chunk + ["mean", "--chunk-overlap", "24"] + short128),
    }
    only = os.environ.get("QUALITY_RUNS")  # e.g. "reference,128": runs whose name has one of these
    if only:
        keep = ["reference"] + only.split(",")
        plan = {k: v for k, v in plan.items() if any(w in k for w in keep)}
    runs = {name: score(model, queries, cands, args) for name, (cands, args) in plan.items()}
    header = " | ".join(f"depth {name}: MRR@10 (n)" for _, _, name in DEPTHS)
    print(f"| documents | MRR@10 | share of short | {header} | seconds |")
    print("|---|---|---|" + "---|" * len(DEPTHS) + "---|")
    reference = mrr(runs["short documents (reference)"][0])
    for name, (rows, seconds) in runs.items():
        cells = []
        for lo, hi, _ in DEPTHS:
            sel = [r for r, d in zip(rows, depths) if lo <= d < hi]
            cells.append(f"{mrr(sel):.3f} ({len(sel)})")
        total = mrr(rows)
        print(f"| {name} | {total:.3f} | {total / reference:.0%} | {' | '.join(cells)} | {seconds:.0f} |", flush=True)
    print(f"\nchance: {sum(1 / r for r in range(1, 11)) / 10:.3f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "models/minilm-ce"),
         int(sys.argv[2]) if len(sys.argv) > 2 else 60)
