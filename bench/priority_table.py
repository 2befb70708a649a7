"""Prints the table of bench/priority.sh from what it left in OUT_DIR: the phases' mixed-mode
reports (phase-NAME.json), the server's /metrics before and after the saturated phase, the
bench commands and the script's command line; then issue 22's goals, checked after (priorities,
tenants apart) and, for contrast, before (FIFO, one tenant name).

Usage: priority_table.py OUT_DIR
"""

import json
import re
import sys
from pathlib import Path

CPU_MAX_BATCH_PAIRS = 32  # the model's max_batch_pairs on CPU (the default), for the fallback
THROUGHPUT_SHARE = 0.90  # bulk (and total) pairs/s, at least this share of the saturated
LIGHT_FACTOR = 2.0  # the light tenant's p99, at most this many times its idle p99

out = Path(sys.argv[1])
phases = {p.stem.removeprefix("phase-"): json.loads(p.read_text()) for p in sorted(out.glob("phase-*.json"))}
if not phases:
    sys.exit(f"no phase-*.json reports in {out}")


def group(phase: str, name: str) -> dict | None:
    report = phases.get(phase)
    return next((g for g in report["groups"] if g["name"] == name), None) if report else None


def p(g: dict | None, q: str) -> float | None:
    return g["latency_ms"][q] if g and g["latency_ms"] else None


def ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def histogram_sums(path: Path, name: str) -> tuple[float, float] | None:
    """(sum, count) of histogram `name` over all its label sets, from a Prometheus text page."""
    if not path.is_file():
        return None
    total = {"sum": 0.0, "count": 0.0}
    pattern = re.compile(rf"^crossrank_{name}_(sum|count)(?:{{[^}}]*}})? (\S+)$")
    for line in path.read_text().splitlines():
        m = pattern.match(line)
        if m:
            total[m[1]] += float(m[2])
    return total["sum"], total["count"]


def batch_time() -> tuple[float | None, str]:
    """One batch's inference time in ms over the saturated phase, and where it came from."""
    before, after = out / "metrics-b-before.txt", out / "metrics-b-after.txt"
    t0, t1 = histogram_sums(before, "inference_duration_seconds"), histogram_sums(after, "inference_duration_seconds")
    b0, b1 = histogram_sums(before, "batch_pairs"), histogram_sums(after, "batch_pairs")
    if t0 and t1 and b0 and b1 and t1[1] > t0[1]:
        batches = t1[1] - t0[1]
        mean_ms = (t1[0] - t0[0]) / batches * 1e3
        mean_pairs = (b1[0] - b0[0]) / batches
        return mean_ms, f"mean of {batches:.0f} batches of {mean_pairs:.1f} pairs in phase b, from /metrics"
    saturated = phases.get("b-saturated")
    if saturated and saturated["pairs_per_s"] > 0:
        return (
            CPU_MAX_BATCH_PAIRS / saturated["pairs_per_s"] * 1e3,
            f"computed as max_batch_pairs {CPU_MAX_BATCH_PAIRS} / saturated pairs/s (no /metrics)",
        )
    return None, "unknown (no phase b)"


def rows() -> None:
    print("| phase | group | priority | tenant | load | p50 ms | p99 ms | pairs/s | ok / sent | refused / evicted | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, report in phases.items():
        for g in report["groups"]:
            load = f"{g['rate']:g}/s" if g["rate"] is not None else f"{g['concurrency']} clients"
            cells = [
                name, g["name"], str(g["priority"]), g["tenant"] or "-", f"{load}, {g['shape']} x{g['docs']}",
                ms(p(g, "p50")), ms(p(g, "p99")), f"{g['pairs_per_s']:.1f}",
                f"{g['ok']} / {g['requests']}", f"{g['refused']} / {g['evicted']}", str(g["errors"]),
            ]
            print("| " + " | ".join(cells) + " |")
        if len(report["groups"]) > 1:
            print(f"| {name} | (all) | | | | | | {report['pairs_per_s']:.1f} | | | |")


def check(label: str, value: float | None, limit: float | None, at_most: bool, unit: str) -> None:
    if value is None or limit is None:
        print(f"- {label}: not measured")
        return
    met = value <= limit if at_most else value >= limit
    sign = "<=" if at_most else ">="
    print(f"- {label}: {value:.1f} {sign} {limit:.1f} {unit}: {'met' if met else 'MISSED'}")


def goals(batch_ms: float | None) -> None:
    idle = group("a-idle", "interactive")
    idle_p99 = p(idle, "p99")
    saturated = phases.get("b-saturated")
    sat = saturated["pairs_per_s"] if saturated else None
    print(f"\nGoals (idle interactive p99 {ms(idle_p99)} ms; saturated {sat or 0:.1f} pairs/s; one batch {ms(batch_ms)} ms):")
    for phase, kind in [("d-priority", "after"), ("e-slow-aging", "after, slow aging"), ("c-fifo", "before")]:
        if phase not in phases:
            continue
        limit = idle_p99 + batch_ms if idle_p99 is not None and batch_ms is not None else None
        check(f"{phase} ({kind}): interactive p99 <= idle p99 + one batch", p(group(phase, "interactive"), "p99"), limit, True, "ms")
        floor = sat * THROUGHPUT_SHARE if sat else None
        bulk = group(phase, "bulk")
        check(f"{phase} ({kind}): bulk pairs/s >= 90% of saturated", bulk and bulk["pairs_per_s"], floor, False, "pairs/s")
        check(f"{phase} ({kind}): total pairs/s >= 90% of saturated", phases[phase]["pairs_per_s"], floor, False, "pairs/s")
    for phase, kind in [("g-tenants-apart", "after"), ("f-tenants-same", "before")]:
        if phase in phases:
            limit = LIGHT_FACTOR * idle_p99 if idle_p99 is not None else None
            check(f"{phase} ({kind}): light tenant p99 <= 2 x idle p99", p(group(phase, "light"), "p99"), limit, True, "ms")


first = next(iter(phases.values()))
host = first["host"]
batch_ms, batch_source = batch_time()
print(f"host: {host['cpu']}, {host['cores']} cores, flags: {' '.join(host['flags'])}")
print(f"model {first['model']}; one batch's inference time: {ms(batch_ms)} ms ({batch_source})")
print("latency of successful requests; a rate group's from each request's due time (open loop)\n")
rows()
goals(batch_ms)
command = out / "command.txt"
if command.is_file():
    print(f"\ncommand: {command.read_text().strip()}")
commands = out / "commands.txt"
if commands.is_file():
    print("bench runs:\n" + "".join(f"    {line}\n" for line in commands.read_text().splitlines()), end="")
