"""The GPU check's table (bench/gpu.sh): crossrank against the sentence-transformers baseline at
its best batch size, per model and dtype, with score deviations and the issue's targets.

Usage: gpu_table.py OUT_DIR MODELS DTYPES   (MODELS and DTYPES comma-separated)
"""

import json
import sys
from pathlib import Path

out, models, dtypes = Path(sys.argv[1]), sys.argv[2].split(","), sys.argv[3].split(",")
# Targets per model shape: pairs/s, ratio to the baseline, Rerank-100 p50 in ms.
TARGETS = {"mini": (40_000, 10.0, 5.0), "large": (5_000, 2.0, 20.0)}
# Largest |score - sentence-transformers f32| allowed per dtype.
TOLERANCE = {"f32": 1e-4, "f16": 2e-3, "bf16": 2e-3}


def load(name):
    p = out / name
    return json.loads(p.read_text()) if p.exists() else None


def scores(name):
    p = out / name
    return {r["index"]: r["score"] for r in map(json.loads, p.read_text().splitlines())} if p.exists() else {}


def deviation(model, dtype):
    ours, ref = scores(f"cr-{model}-{dtype}.scores.jsonl"), scores(f"st-{model}-f32.scores.jsonl")
    common = ours.keys() & ref.keys()
    return max((abs(ours[i] - ref[i]) for i in common), default=float("nan")), len(common)


print("| model | dtype | crossrank pairs/s | ST best pairs/s (batch) | ratio | max abs diff vs ST f32 | "
      "Rerank-100 p50 crossrank / ST rank | met |")
print("|---|---|---|---|---|---|---|---|")
for m in models:
    pairs_target, ratio_target, rerank_target = TARGETS.get(m, (0, 0.0, float("inf")))
    for dt in dtypes:
        cr, st = load(f"cr-{m}-{dt}.json"), load(f"st-{m}-{dt}.json")
        if not cr:
            print(f"| {m} | {dt} | no report | | | | | |")
            continue
        best_batch, best = max(st["pairs_per_s"].items(), key=lambda kv: kv[1]) if st else ("-", float("nan"))
        ratio = cr["pairs_per_s"] / best
        dev, n = deviation(m, dt)
        rr, rr_ms = load(f"cr-rr-{m}-{dt}.json"), st["rank100_ms"] if st else float("nan")
        rr_p50 = rr["latency_ms"]["p50"] if rr and rr.get("latency_ms") else float("nan")
        checks = [dev <= TOLERANCE[dt], cr["requests_failed"] == 0]
        if dt != "f32":
            checks += [cr["pairs_per_s"] >= pairs_target, ratio >= ratio_target, rr_p50 <= rerank_target]
        print(f"| {m} | {dt} | {cr['pairs_per_s']:,.0f} | {best:,.0f} ({best_batch}) | {ratio:.2f}x | "
              f"{dev:.1e} over {n} | {rr_p50:.1f} ms / {rr_ms:.1f} ms | {'yes' if all(checks) else 'no'} |")
print(f"\ntargets (f16/bf16): mini >= 40,000 pairs/s and >= 10x, Rerank-100 p50 <= 5 ms; large >= 5,000 "
      f"and >= 2x, <= 20 ms; every dtype within {TOLERANCE} of ST f32, no failed request")
