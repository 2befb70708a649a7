#!/usr/bin/env bash
# One command for a machine with one NVIDIA GPU: builds crossrank, then compares Score throughput
# of crossrank at f32, f16 and bf16 with sentence-transformers fp16 (CrossEncoder.predict,
# batch_size 32) on the same GPU, same model (models/minilm-ce) and same pairs, and prints a table
# with score deviations from the fp16 baseline. About 5 minutes once the venv exists.
#
# Without a GPU it runs the same steps on the CPU with short runs (a dry run of the script, not a
# measurement): bench/gpu.sh --dry-run, or automatically when torch sees no CUDA device.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$CROSSRANK_ROOT"
out=${CROSSRANK_BENCH_OUT:-$(mktemp -d)}
mkdir -p "$out"
cr=target/release/crossrank

./scripts/setup.sh
cargo build --release --quiet
if [ "${1:-}" != "--dry-run" ] && python -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  device=cuda:0 secs=${BENCH_SECONDS:-30} npairs=${BENCH_PAIRS:-4000} conc=32 size=32
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu"
else
  device=cpu secs=3 npairs=64 conc=2 size=8
  echo "dry run on the CPU (no CUDA device): this checks the script, it measures nothing" | tee "$out/gpu"
fi
baseline_dtype=f16
[ "$device" = cpu ] && baseline_dtype=f32  # half precision matmuls on a CPU would take minutes

$cr bench --write-corpus "$out/corpus.jsonl" --corpus-size "$npairs" --seed 7
echo "== sentence-transformers $baseline_dtype on $device" >&2
python -W ignore bench/st_baseline.py models/minilm-ce "$out/corpus.jsonl" "$out/st.json" \
  --device "$device" --dtype "$baseline_dtype" --pairs "$npairs" --reps 0 \
  --scores "$out/st-scores.jsonl" 2>/dev/null

port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
$cr serve --host 127.0.0.1 --port "$port" --metrics-port 0 \
  --model "f32=models/minilm-ce,device=$device,dtype=f32" \
  --model "f16=models/minilm-ce,device=$device,dtype=f16" \
  --model "bf16=models/minilm-ce,device=$device,dtype=bf16" > "$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
python scripts/wait_serving.py "127.0.0.1:$port"
for dtype in f32 f16 bf16; do
  [ "$device" = cpu ] && [ "$dtype" = f16 ] && continue  # no fast f16 kernels on CPUs
  echo "== crossrank $dtype on $device" >&2
  $cr bench --addr "http://127.0.0.1:$port" --model "$dtype" --shape score --size "$size" \
    --concurrency "$conc" --duration "$secs" --corpus-size "$npairs" --seed 7 \
    --json "$out/$dtype.json" --scores-out "$out/$dtype-scores.jsonl" >&2
done

python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
st = json.loads((out / "st.json").read_text())
def scores(p):
    return {r["index"]: r["score"] for r in map(json.loads, p.read_text().splitlines())}
base = scores(out / "st-scores.jsonl")
print(f"device: {(out / 'gpu').read_text().strip()}")
print(f"sentence-transformers {st['sentence_transformers']} {st['dtype']}: "
      f"{st['predict_pairs_per_s']:.0f} pairs/s (predict, batch_size 32, {st['pairs']} pairs)")
for dtype in ["f32", "f16", "bf16"]:
    report = out / f"{dtype}.json"
    if not report.exists():
        continue
    r = json.loads(report.read_text())
    ours = scores(out / f"{dtype}-scores.jsonl")
    common = set(ours) & set(base)
    dev = max(abs(ours[i] - base[i]) for i in common) if common else float("nan")
    ratio = r["pairs_per_s"] / st["predict_pairs_per_s"]
    print(f"crossrank {dtype:<5} {r['pairs_per_s']:9.0f} pairs/s  {ratio:5.2f}x  "
          f"max |d score| {dev:.1e} over {len(common)}  failed {r['requests_failed']}  "
          f"p50 {r['latency_ms']['p50']:.0f} ms")
PY
