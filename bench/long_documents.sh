#!/usr/bin/env bash
# Throughput of long documents scored in windows (truncation CHUNK) against short pairs, in model
# tokens per second as the server counts them (usage.tokens: special tokens included, padding
# excluded), on the default model, one server, runs alternating for BENCH_REPS rounds:
#   short:     Rerank of 20 corpus pairs (~130 tokens each), longest-first;
#   truncated: Rerank of 4 documents of 20 corpus passages (~2,400 tokens), longest-first (one
#              512-token pair each: today's cost of a full-length pair);
#   chunked:   the same 4 documents with truncation CHUNK (5 windows of up to 512 tokens each).
# Prints the CPU, each run's tokens/s, the medians and the ratios chunked/short and
# chunked/truncated. About 10 minutes on a quiet 2-core machine once built.
#
# Usage: bench/long_documents.sh [THREADS=2]   BENCH_REPS=3, BENCH_SECONDS=30 per run
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$CROSSRANK_ROOT"
threads=${1:-2}
secs=${BENCH_SECONDS:-30}
reps=${BENCH_REPS:-3}
out=${CROSSRANK_BENCH_OUT:-$(mktemp -d)}
mkdir -p "$out"
cr=target/release/crossrank

./scripts/setup.sh
cargo build --release --quiet

server=""
stop_server() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  server=""
}
trap stop_server EXIT
$cr serve --host 127.0.0.1 --port 0 --metrics-port 0 --threads "$threads" \
  --model minilm=models/minilm-ce > "$out/server.out" 2> "$out/server.log" &
server=$!
until grep -q '^crossrank listening on ' "$out/server.out"; do
  kill -0 "$server" || { cat "$out/server.log" >&2; exit 1; }
  sleep 0.1
done
grpc=$(sed -n 's/^crossrank listening on //p' "$out/server.out")
python scripts/wait_serving.py "$grpc"

avx512=$(grep -o 'avx512[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' ' || true)
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, ${avx512:-avx2 only}"
declare -A args=(
  [short]="--size 20"
  [truncated]="--size 4 --doc-passages 20"
  [chunked]="--size 4 --doc-passages 20 --truncation chunk"
)
for rep in $(seq 1 "$reps"); do
  for run in short truncated chunked; do
    # shellcheck disable=SC2086
    $cr bench --addr "http://$grpc" --shape rerank ${args[$run]} --concurrency 2 \
      --duration "$secs" --warmup 2 --json "$out/$run-$rep.json" > /dev/null
    python - "$out/$run-$rep.json" "$run" "$rep" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
fails = sum(e["count"] for e in r["errors"].values())
print(f"round {sys.argv[3]} {sys.argv[2]:9}  {r['tokens_per_s']:8.0f} tokens/s  {r['pairs_per_s']:6.1f} docs/s  {fails} failed")
EOF
  done
done
python - "$out" "$reps" <<'EOF'
import json, statistics, sys
out, reps = sys.argv[1], int(sys.argv[2])
med = {run: statistics.median(json.load(open(f"{out}/{run}-{k}.json"))["tokens_per_s"] for k in range(1, reps + 1))
       for run in ["short", "truncated", "chunked"]}
print(f"\nmedian tokens/s: short {med['short']:.0f}, truncated {med['truncated']:.0f}, chunked {med['chunked']:.0f}")
print(f"chunked / short = {med['chunked'] / med['short']:.2f}; chunked / truncated = {med['chunked'] / med['truncated']:.2f}")
print(f"raw reports: {out}")
EOF
