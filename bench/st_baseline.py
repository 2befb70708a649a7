"""The sentence-transformers side of bench/compare.sh: CrossEncoder.predict and .rank on the
pairs that `crossrank bench --write-corpus` wrote, with the same thread count.

Usage: st_baseline.py MODEL_DIR CORPUS_JSONL OUT_JSON [--threads 2] [--pairs 320] [--rank-docs 100]
  [--reps 3] [--scores SCORES_JSONL] [--device cpu|cuda] [--dtype f32|f16|bf16]
OUT_JSON: {"predict_pairs_per_s", "rank_seconds" (median of reps), "peak_rss_bytes", versions}.
The rank query and documents are those of crossrank's Rerank request 0: the first pair's query
and the first N passages.
"""

import argparse
import json
import platform
import resource
import statistics
import time

import sentence_transformers
import torch
from sentence_transformers import CrossEncoder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("corpus")
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=320)
    ap.add_argument("--rank-docs", type=int, default=100)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--scores", help="write {index, score} JSON lines here")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with open(a.corpus, encoding="utf-8") as f:
        corpus = [(p["text_a"], p["text_b"]) for p in map(json.loads, f)]
    pairs = corpus[: a.pairs]
    model = CrossEncoder(a.model, device=a.device)
    if a.dtype != "f32":
        model.model.to({"f16": torch.float16, "bf16": torch.bfloat16}[a.dtype])
    model.predict(pairs[:32], batch_size=32)  # warm-up

    sync(a.device)
    start = time.perf_counter()
    scores = model.predict(pairs, batch_size=32)
    sync(a.device)
    predict_seconds = time.perf_counter() - start

    query, docs = corpus[0][0], [d for _, d in corpus[: a.rank_docs]]
    rank_times = []
    for _ in range(a.reps):
        start = time.perf_counter()
        model.rank(query, docs)
        rank_times.append(time.perf_counter() - start)

    if a.scores:
        with open(a.scores, "w") as f:
            for i, s in enumerate(scores):
                f.write(json.dumps({"index": i, "score": float(s)}) + "\n")
    result = {
        "pairs": len(pairs),
        "predict_seconds": predict_seconds,
        "predict_pairs_per_s": len(pairs) / predict_seconds,
        "rank_docs": len(docs),
        "rank_seconds": statistics.median(rank_times) if rank_times else None,
        "rank_seconds_all": rank_times,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "threads": a.threads,
        "device": a.device,
        "dtype": a.dtype,
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
