"""Baseline: sentence-transformers CrossEncoder.predict on a TSV of pairs, timed after a warm-up.

Usage: st_predict.py MODEL_DIR PAIRS_TSV [--threads N] [--batch-size 32] [--scores OUT]
Prints one JSON line: {"pairs": n, "seconds": s, "pairs_per_s": r}.
"""

import argparse
import json
import time

import torch
from sentence_transformers import CrossEncoder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("pairs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--scores", help="write one score per line here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with open(args.pairs, encoding="utf-8") as f:
        pairs = [tuple(line.rstrip("\n").split("\t", 1)) for line in f]
    model = CrossEncoder(args.model, device="cpu")
    model.predict(pairs[: args.batch_size], batch_size=args.batch_size)  # warm-up
    start = time.perf_counter()
    scores = model.predict(pairs, batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    if args.scores:
        with open(args.scores, "w") as f:
            f.writelines(f"{float(s)!r}\n" for s in scores)
    print(json.dumps({"pairs": len(pairs), "seconds": seconds, "pairs_per_s": len(pairs) / seconds}))


if __name__ == "__main__":
    main()
