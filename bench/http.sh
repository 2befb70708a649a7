#!/usr/bin/env bash
# gRPC Rerank against REST /v2/rerank on one server process: issue 21's performance targets
# (server CPU per pair at most 10% more over HTTP, p50 latency at most 1 ms more). The server
# serves both ports; for each model and concurrency the two protocols alternate for BENCH_REPS
# rounds (which goes first flips every round), each run reporting the server's CPU per pair (from
# /proc, --server-pid) and its latency. Prints per-protocol medians, the HTTP/gRPC ratios of every
# round and the targets. About 15 minutes on a quiet 2-core machine once built.
#
# Usage: bench/http.sh [THREADS=2]
#   BENCH_PLAN="null:1 null:4 minilm:1" (model:clients runs), BENCH_REPS=3 rounds,
#   BENCH_SECONDS=20 per null-model run, BENCH_MINILM_REQUESTS=30 per MiniLM run,
#   BENCH_DOCS=100 documents per Rerank; CROSSRANK_BENCH_OUT keeps the raw reports (default: a
#   temporary folder).
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$CROSSRANK_ROOT"
threads=${1:-2}
secs=${BENCH_SECONDS:-20}
minilm_requests=${BENCH_MINILM_REQUESTS:-30}
reps=${BENCH_REPS:-3}
plan=${BENCH_PLAN:-null:1 null:4 minilm:1}
docs=${BENCH_DOCS:-100}
out=${CROSSRANK_BENCH_OUT:-$(mktemp -d)}
mkdir -p "$out"
cr=target/release/crossrank

./scripts/setup.sh
cargo build --release --quiet
# The null model: MiniLM's tokenizer, embeddings and head with no layer, so its load measures
# the server's own cost per pair (transport, parsing, tokenization, batching).
[ -f "$out/null/config.json" ] || python -W ignore bench/make_tiny_model.py "$out/null" models/minilm-ce 0 2>/dev/null

server=""
stop_server() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  server=""
}
trap stop_server EXIT
$cr serve --host 127.0.0.1 --port 0 --http-port 0 --metrics-port 0 --threads "$threads" \
  --model minilm=models/minilm-ce --model "null=$out/null" > "$out/server.out" 2> "$out/server.log" &
server=$!
# The server prints each port once it is bound (the REST port last).
until grep -q '^crossrank http on ' "$out/server.out"; do
  kill -0 "$server" || { cat "$out/server.log" >&2; exit 1; }
  sleep 0.1
done
grpc=$(sed -n 's/^crossrank listening on //p' "$out/server.out")
http=$(sed -n 's/^crossrank http on //p' "$out/server.out")
python scripts/wait_serving.py "$grpc"

for run in $plan; do
  model=${run%%:*} c=${run#*:}
  # A MiniLM Rerank of 100 takes seconds: a count of requests, not a duration, sets its length.
  length=(--duration "$secs")
  [ "$model" = minilm ] && length=(--requests "$minilm_requests")
  for rep in $(seq 1 "$reps"); do
    order="grpc http"
    [ $((rep % 2)) -eq 0 ] && order="http grpc"
    for proto in $order; do
      echo "== $model c$c round $rep: $proto" >&2
      $cr bench --protocol "$proto" --addr "http://$grpc" --http-url "$http" --server-pid "$server" \
        --model "$model" --shape rerank --size "$docs" --concurrency "$c" "${length[@]}" \
        --warmup 4 --json "$out/$model-c$c-$proto-$rep.json" >&2
    done
  done
done
stop_server

python bench/http_table.py "$out"
echo "raw reports: $out" >&2
