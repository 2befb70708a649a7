#!/usr/bin/env bash
# A decoder-LLM reranker's speed on this machine: a random Qwen3-Reranker-0.6B-shaped
# Qwen3ForSequenceClassification (bench/make_llm_model.py), crossrank against
# sentence-transformers predict on the same pairs and threads, f32 and bf16, with score
# deviations. About 10 minutes on 2 cores (the model is ~40x MiniLM's work per pair).
#
# Usage: bench/llm_speed.sh [THREADS=2] [PAIRS=32]
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$CROSSRANK_ROOT"
threads=${1:-2} pairs=${2:-32}
out=${CROSSRANK_BENCH_OUT:-$(mktemp -d)}
mkdir -p "$out"
cr=target/release/crossrank
cargo build --release --quiet
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) [$(grep -o -w -E 'avx2|avx512f|avx512_bf16|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')]"
[ -f "$out/qwen3/config.json" ] || python -W ignore bench/make_llm_model.py "$out/qwen3" 2>/dev/null
$cr bench --write-corpus "$out/corpus.jsonl" --corpus-size "$pairs" --seed 7
port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
for dtype in f32 bf16; do
  python -W ignore bench/st_baseline.py "$out/qwen3" "$out/corpus.jsonl" "$out/st-$dtype.json" --threads "$threads" \
    --pairs "$pairs" --reps 0 --dtype "$dtype" --scores "$out/st-$dtype.scores.jsonl" 2>/dev/null
  $cr serve --host 127.0.0.1 --port "$port" --metrics-port 0 --threads "$threads" \
    --model "qwen3=$out/qwen3,dtype=$dtype,max_batch_pairs=8" > "$out/server-$dtype.log" 2>&1 &
  server=$!
  python scripts/wait_serving.py "127.0.0.1:$port"
  $cr bench --addr "http://127.0.0.1:$port" --model qwen3 --shape score --size 8 --concurrency 2 \
    --requests $((pairs / 8)) --warmup 1 --corpus-size "$pairs" --seed 7 --json "$out/cr-$dtype.json" \
    --scores-out "$out/cr-$dtype.scores.jsonl" 2>&1 | grep throughput
  grep VmHWM "/proc/$server/status"
  kill $server; wait $server 2>/dev/null || true
done
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def scores(p):
    return {r["index"]: r["score"] for r in map(json.loads, p.read_text().splitlines())}
ref = scores(out / "st-f32.scores.jsonl")
for dt in ["f32", "bf16"]:
    st, cr = json.loads((out / f"st-{dt}.json").read_text()), json.loads((out / f"cr-{dt}.json").read_text())
    ours = scores(out / f"cr-{dt}.scores.jsonl")
    dev = max(abs(ours[i] - ref[i]) for i in ours.keys() & ref.keys())
    print(f"{dt:5} crossrank {cr['pairs_per_s']:6.2f} pairs/s  predict {st['predict_pairs_per_s']:6.2f} pairs/s "
          f"({cr['pairs_per_s'] / st['predict_pairs_per_s']:.2f}x)  max |d| vs predict f32 {dev:.1e}  "
          f"peak RSS ST {st['peak_rss_bytes'] / 2**20:.0f} MiB")
PY
echo "raw reports: $out" >&2
