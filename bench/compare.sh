#!/usr/bin/env bash
# crossrank vs sentence-transformers, side by side on this machine: same model (models/minilm-ce),
# same pairs (`crossrank bench --write-corpus`), same thread count, one run. Prints one table of
# ratios against the targets of issue 5 and keeps every raw report in $CROSSRANK_BENCH_OUT (default
# a temporary folder). About 7 minutes on a 2-core machine once built.
#
# Usage: bench/compare.sh [THREADS=2]
# Shorter runs for a smoke test: BENCH_SECONDS=5 BENCH_LONG_SECONDS=5 BENCH_PAIRS=64 bench/compare.sh
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$CROSSRANK_ROOT"
threads=${1:-2}
secs=${BENCH_SECONDS:-30}
long=${BENCH_LONG_SECONDS:-60}
npairs=${BENCH_PAIRS:-320}
reps=${BENCH_REPS:-3}
rank_docs=100
out=${CROSSRANK_BENCH_OUT:-$(mktemp -d)}
mkdir -p "$out"
cr=target/release/crossrank

./scripts/setup.sh
cargo build --release --quiet
[ -f "$out/tiny/config.json" ] || python -W ignore bench/make_tiny_model.py "$out/tiny" 2>/dev/null
# The null model: the tiny model's embeddings and head with no layer, so the load measures the
# server's own per-pair cost.
[ -f "$out/null/config.json" ] || python -W ignore bench/make_tiny_model.py "$out/null" models/minilm-ce 0 2>/dev/null

echo "== corpus and sentence-transformers baseline ($npairs pairs, $threads threads)" >&2
# One corpus for both sides; seeded corpora are prefixes of larger ones with the same seed.
$cr bench --write-corpus "$out/corpus.jsonl" --corpus-size $((npairs > rank_docs ? npairs : rank_docs)) --seed 7
python -W ignore bench/st_baseline.py models/minilm-ce "$out/corpus.jsonl" "$out/st.json" \
  --threads "$threads" --pairs "$npairs" --reps "$reps" --rank-docs "$rank_docs" --scores "$out/st-scores.jsonl" 2>/dev/null

server=""
stop_server() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  server=""
}
trap stop_server EXIT
# start_server THREADS MODEL_SPEC... : a server with THREADS intra-op threads on a free port;
# sets $server (pid) and $addr.
start_server() {
  local port threads=$1
  shift
  port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  local specs=()
  for m in "$@"; do specs+=(--model "$m"); done
  $cr serve --host 127.0.0.1 --port "$port" --metrics-port 0 --threads "$threads" "${specs[@]}" \
    > "$out/server.log" 2>&1 &
  server=$!
  addr="127.0.0.1:$port"
  python scripts/wait_serving.py "$addr"
}
bench() {  # bench NAME FLAGS... : one load run, its JSON report kept as $out/NAME.json; the
           # corpus is the one the baseline scored unless FLAGS set --corpus-size
  local name=$1; shift
  echo "== $name" >&2
  $cr bench --addr "http://$addr" --seed 7 --json "$out/$name.json" "$@" >&2
}

start_server "$threads" "minilm=models/minilm-ce" "tiny=$out/tiny" "null=$out/null"
bench score-c8 --corpus-size "$npairs" --model minilm --shape score --size 16 --concurrency 8 --duration "$secs" \
  --scores-out "$out/cr-scores.jsonl"
bench rerank-100 --model minilm --shape rerank --size 100 --concurrency 1 --requests "$reps" \
  --corpus-size "$rank_docs"
bench score-c1 --corpus-size "$npairs" --model minilm --shape score --size 16 --concurrency 1 --duration "$secs"
bench score-c64 --corpus-size "$npairs" --model minilm --shape score --size 16 --concurrency 64 --duration "$long"
grep VmHWM "/proc/$server/status" | awk '{print $2 * 1024}' > "$out/server-peak-rss"
bench tiny-c16 --corpus-size "$npairs" --model tiny --shape score --size 32 --concurrency 16 --duration "$secs"
# The server's CPU seconds (user + system, from /proc) over the null model's run, warm-up included.
cpu_before=$(awk '{print $14 + $15}' "/proc/$server/stat")
bench null-c16 --corpus-size "$npairs" --model null --shape score --size 32 --concurrency 16 --duration "$secs"
echo "$(( $(awk '{print $14 + $15}' "/proc/$server/stat") - cpu_before )) $(getconf CLK_TCK)" > "$out/null-server-cpu"
stop_server

# The same load on two single-threaded replicas of the model (the layout for few cores).
start_server 1 "minilm=models/minilm-ce,replicas=$threads" "tiny=$out/tiny,replicas=$threads"
bench tiny-c16-replicas --corpus-size "$npairs" --model tiny --shape score --size 32 --concurrency 16 \
  --duration "$secs"
bench score-c8-replicas --corpus-size "$npairs" --model minilm --shape score --size 16 \
  --concurrency 8 --duration "$secs"
bench rerank-100-replicas --model minilm --shape rerank --size 100 --concurrency 1 \
  --requests "$reps" --corpus-size "$rank_docs"
stop_server

start_server "$threads" "minilm-bf16=models/minilm-ce,dtype=bf16" "bounded=models/minilm-ce,max_queue_pairs=64" \
  "minilm-int8=models/minilm-ce,dtype=int8"
bench score-c8-bf16 --corpus-size "$npairs" --model minilm-bf16 --shape score --size 16 --concurrency 8 --duration "$secs" \
  --scores-out "$out/cr-bf16-scores.jsonl"
bench score-c8-int8 --corpus-size "$npairs" --model minilm-int8 --shape score --size 16 --concurrency 8 --duration "$secs" \
  --scores-out "$out/cr-int8-scores.jsonl"
# Clients that back off 100 ms after a refusal, as a gRPC retry policy would.
bench overload --corpus-size "$npairs" --model bounded --shape score --size 32 --concurrency 64 \
  --duration 10 --backoff-ms 100
stop_server

# int8's ranking agreement with f32: 10 corpus queries, each ranking the corpus' first 100
# documents, with the rerank command (top-10 overlap in the table).
python - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(f"{sys.argv[1]}/corpus.jsonl")]
open(f"{sys.argv[1]}/docs.txt", "w").write("".join(r["text_b"].replace("\n", " ") + "\n" for r in rows[:100]))
open(f"{sys.argv[1]}/queries.txt", "w").write("".join(r["text_a"] + "\n" for r in rows[:10]))
PY
i=0
while IFS= read -r query; do
  for dtype in f32 int8; do
    $cr rerank --model models/minilm-ce --dtype "$dtype" --threads "$threads" --query "$query" \
      --documents "$out/docs.txt" --json > "$out/rank-$dtype-$i.jsonl" 2>/dev/null
  done
  i=$((i + 1))
done < "$out/queries.txt"

python bench/table.py "$out" "$threads"
echo "raw reports: $out" >&2
