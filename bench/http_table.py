"""Prints the table of bench/http.sh from the reports it left in OUT_DIR
(MODEL-cC-PROTOCOL-ROUND.json): per model and concurrency, each protocol's median server CPU per
pair, latency and throughput over the rounds, then HTTP against gRPC round by round (the two runs
of a round ran back to back on the same server) with issue 21's targets.

Usage: http_table.py OUT_DIR
"""

import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

CPU_TARGET = 1.10  # HTTP's server CPU per pair over gRPC's, at most
P50_TARGET_MS = 1.0  # HTTP's p50 minus gRPC's, at most

out = Path(sys.argv[1])
runs = defaultdict(dict)  # (model, concurrency) -> {(protocol, round): report}
name = re.compile(r"(?P<model>.+)-c(?P<c>\d+)-(?P<proto>grpc|http)-(?P<round>\d+)\.json")
for path in sorted(out.glob("*.json")):
    m = name.fullmatch(path.name)
    if m:
        runs[(m["model"], int(m["c"]))][(m["proto"], int(m["round"]))] = json.loads(path.read_text())
if not runs:
    sys.exit(f"no reports in {out}")


def spread(values: list[float], fmt: str) -> str:
    """The median, and the range when there is more than one value."""
    med = format(statistics.median(values), fmt)
    return med if len(values) == 1 else f"{med} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


first = next(iter(next(iter(runs.values())).values()))
host = first["host"]
print(f"host: {host['cpu']}, {host['cores']} cores, flags: {' '.join(host['flags'])}")
print(f"Rerank of {first['size']} documents; medians over rounds (min-max in parentheses)\n")
print("| model | clients | protocol | server CPU us/pair | p50 ms | p99 ms | pairs/s | client CPU us/pair | failed |")
print("|---|---|---|---|---|---|---|---|---|")
ratios = []
for (model, c), reports in sorted(runs.items()):
    for proto in ("grpc", "http"):
        rs = [r for (p, _), r in sorted(reports.items()) if p == proto]
        if not rs:
            continue
        cells = [
            spread([r["cpu"]["server_us_per_pair"] or 0.0 for r in rs], ".1f"),
            spread([r["latency_ms"]["p50"] for r in rs], ".2f"),
            spread([r["latency_ms"]["p99"] for r in rs], ".2f"),
            spread([r["pairs_per_s"] for r in rs], ".0f"),
            spread([r["cpu"]["client_us_per_pair"] or 0.0 for r in rs], ".1f"),
            str(sum(r["requests_failed"] for r in rs)),
        ]
        print(f"| {model} | {c} | {proto} | " + " | ".join(cells) + " |")
    rounds = sorted({k for (_, k) in reports})
    pairs = [(reports[("grpc", k)], reports[("http", k)]) for k in rounds if ("grpc", k) in reports and ("http", k) in reports]
    if pairs:
        ratios.append((model, c, pairs))

print("\nHTTP against gRPC, round by round:")
for model, c, pairs in ratios:
    cpu = [h["cpu"]["server_us_per_pair"] / g["cpu"]["server_us_per_pair"] for g, h in pairs]
    p50 = [h["latency_ms"]["p50"] - g["latency_ms"]["p50"] for g, h in pairs]
    cpu_med, p50_med = statistics.median(cpu), statistics.median(p50)
    print(
        f"  {model} c{c}: server CPU/pair x{' x'.join(f'{x:.3f}' for x in cpu)} -> median x{cpu_med:.3f} "
        f"(target <= x{CPU_TARGET:.2f}: {verdict(cpu_med <= CPU_TARGET)}); "
        f"p50 {' '.join(f'{d:+.2f}' for d in p50)} ms -> median {p50_med:+.2f} ms "
        f"(target <= +{P50_TARGET_MS:.0f} ms: {verdict(p50_med <= P50_TARGET_MS)})"
    )
