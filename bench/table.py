"""Prints the table of bench/compare.sh from the reports it left in OUT_DIR.

Usage: table.py OUT_DIR THREADS
"""

import json
import platform
import sys
from pathlib import Path


def load(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}.json").read_text())


def scores(path: Path) -> dict[int, float]:
    if not path.exists():
        return {}
    return {r["index"]: r["score"] for r in map(json.loads, path.read_text().splitlines())}


def max_dev(a: dict[int, float], b: dict[int, float]) -> tuple[float, int]:
    common = sorted(set(a) & set(b))
    return (max((abs(a[i] - b[i]) for i in common), default=float("nan")), len(common))


def cpu() -> str:
    """The CPU model and the flags that decide the kernels (AVX2, AVX-512, bf16, VNNI, AMX)."""
    model, flags = platform.processor(), []
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "amx")
            flags = [f for f in line.split(":", 1)[1].split() if f.startswith(wanted)]
    return f"{model} [{' '.join(flags)}]"


def top10_overlap(out: Path) -> tuple[float, int]:
    """Mean share of the top 10 that int8 and f32 rankings (rank-{dtype}-{i}.jsonl) share."""
    shares = []
    for f32 in sorted(out.glob("rank-f32-*.jsonl")):
        int8 = out / f32.name.replace("f32", "int8")
        top = [{json.loads(l)["index"] for l in p.read_text().splitlines()[:10]} for p in (f32, int8)]
        shares.append(len(top[0] & top[1]) / 10)
    return (sum(shares) / len(shares) if shares else float("nan"), len(shares))


def main() -> None:
    out, threads = Path(sys.argv[1]), sys.argv[2]
    st = load(out, "st")
    base = st["predict_pairs_per_s"]
    st_scores = scores(out / "st-scores.jsonl")
    rows = []

    def row(measure, ours, theirs, ratio, target, met, note=""):
        rows.append((measure, ours, theirs, ratio, target, "yes" if met else "NO", note))

    c8 = load(out, "score-c8")
    dev, n = max_dev(scores(out / "cr-scores.jsonl"), st_scores)
    r = c8["pairs_per_s"] / base
    row("Score, 8 clients x16 pairs, f32", f"{c8['pairs_per_s']:.1f} pairs/s",
        f"{base:.1f} pairs/s (predict)", f"{r:.2f}x", ">= 1.5x, |d| <= 1e-4",
        r >= 1.5 and dev <= 1e-4 and c8["requests_failed"] == 0, f"max |d score| {dev:.1e} over {n}")

    rep = load(out, "score-c8-replicas")
    r = rep["pairs_per_s"] / base
    row(f"Score, 8 clients x16, f32, {threads} replicas x 1 thread", f"{rep['pairs_per_s']:.1f} pairs/s",
        f"{base:.1f} pairs/s (predict)", f"{r:.2f}x", ">= 1.5x", r >= 1.5 and rep["requests_failed"] == 0,
        "same model, one intra-op thread per replica")

    bf = load(out, "score-c8-bf16")
    dev, n = max_dev(scores(out / "cr-bf16-scores.jsonl"), st_scores)
    r, own = bf["pairs_per_s"] / base, bf["pairs_per_s"] / c8["pairs_per_s"]
    row("Score, 8 clients x16 pairs, bf16", f"{bf['pairs_per_s']:.1f} pairs/s",
        f"{base:.1f} pairs/s (predict f32)", f"{r:.2f}x", ">= 2x predict, >= 1.6x own f32",
        r >= 2 and own >= 1.6, f"{own:.2f}x crossrank f32; max |d score| {dev:.1e} over {n}")

    i8 = load(out, "score-c8-int8")
    dev, n = max_dev(scores(out / "cr-int8-scores.jsonl"), st_scores)
    overlap, queries = top10_overlap(out)
    r = i8["pairs_per_s"] / base
    row("Score, 8 clients x16 pairs, int8", f"{i8['pairs_per_s']:.1f} pairs/s",
        f"{base:.1f} pairs/s (predict f32)", f"{r:.2f}x", ">= 2x, top-10 overlap >= 0.95",
        r >= 2 and overlap >= 0.95, f"top-10 overlap with f32 {overlap:.3f} over {queries} "
        f"queries x 100 docs; max |d score| {dev:.1e} over {n}")

    for name, layout in [("rerank-100", "median latency"),
                         ("rerank-100-replicas", f"{threads} replicas x 1 thread")]:
        rr = load(out, name)
        ours = rr["latency_ms"]["p50"] / 1e3
        r = ours / st["rank_seconds"]
        row(f"Rerank {st['rank_docs']} docs, 1 client, {layout}", f"{ours:.2f} s",
            f"{st['rank_seconds']:.2f} s (rank)", f"{r:.2f}x", "<= 0.7x", r <= 0.7,
            f"{rr['requests_ok']} requests")

    sweep = {c: load(out, f"score-c{c}") for c in (1, 8, 64)}
    best_c = max(sweep, key=lambda c: sweep[c]["pairs_per_s"])
    c64 = sweep[64]
    r = c64["pairs_per_s"] / sweep[best_c]["pairs_per_s"]
    row(f"64 clients x16 pairs for {c64['seconds']:.0f} s", f"{c64['pairs_per_s']:.1f} pairs/s",
        f"best {sweep[best_c]['pairs_per_s']:.1f} (c={best_c})", f"{r:.2f}x",
        "no errors, >= 0.9x best", r >= 0.9 and c64["requests_failed"] == 0,
        f"{c64['requests_failed']} failed; c=1: {sweep[1]['pairs_per_s']:.1f} pairs/s")

    ov = load(out, "overload")
    ex = ov["errors"].get("RESOURCE_EXHAUSTED")
    other = {k: v["count"] for k, v in ov["errors"].items() if k != "RESOURCE_EXHAUSTED"}
    p99 = ex["latency_ms"]["p99"] if ex else float("nan")
    row("Beyond the queue bound (64 pairs), 64 clients", f"p99 {p99:.2f} ms",
        "-", "-", "RESOURCE_EXHAUSTED, p99 <= 5 ms", bool(ex) and p99 <= 5 and not other,
        f"{ex['count'] if ex else 0} refused, max {ex['latency_ms']['max'] if ex else 0:.1f} ms, "
        f"{ov['requests_ok']} served, other errors {other or 'none'}")

    tiny = load(out, "tiny-c16")
    row("Tiny model (hidden 32, 2 layers), 16 clients x32", f"{tiny['pairs_per_s']:.0f} pairs/s",
        "-", "-", ">= 5000 pairs/s", tiny["pairs_per_s"] >= 5000 and tiny["requests_failed"] == 0,
        "gRPC + tokenization + batching")
    tiny = load(out, "tiny-c16-replicas")
    row(f"Tiny model, 16 clients x32, {threads} replicas x 1 thread", f"{tiny['pairs_per_s']:.0f} pairs/s",
        "-", "-", ">= 5000 pairs/s", tiny["pairs_per_s"] >= 5000 and tiny["requests_failed"] == 0,
        "the layout for few cores")

    null = load(out, "null-c16")
    ticks, hz = map(int, (out / "null-server-cpu").read_text().split())
    warm = 2 * null["size"]  # the bench's warm-up requests
    us = ticks / hz / (null["pairs"] + warm) * 1e6
    row("Null model (0 layers), 16 clients x32", f"{null['pairs_per_s']:.0f} pairs/s",
        "-", "-", "server CPU <= 100 us/pair", us <= 100 and null["requests_failed"] == 0,
        f"server CPU {us:.0f} us/pair, the model costing ~nothing (tokenization, gRPC, batching)")

    rss = int((out / "server-peak-rss").read_text())
    r = rss / st["peak_rss_bytes"]
    row("Peak RSS, MiniLM loaded, under load", f"{rss / 2**20:.0f} MiB",
        f"{st['peak_rss_bytes'] / 2**20:.0f} MiB (Python)", f"{r:.2f}x", "<= 1.0x", r <= 1.0)

    print(f"crossrank vs sentence-transformers {st['sentence_transformers']} (torch {st['torch']}), "
          f"model models/minilm-ce, {threads} threads, {cpu()}, {st['pairs']} corpus pairs")
    widths = [max(len(str(r[i])) for r in rows + [HEAD]) for i in range(len(HEAD))]
    for r in [HEAD] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


HEAD = ("measure", "crossrank", "baseline", "ratio", "target", "met", "notes")

if __name__ == "__main__":
    main()
