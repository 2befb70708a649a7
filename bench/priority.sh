#!/usr/bin/env bash
# Issue 22's benchmark: priorities, aging and tenant fairness on one model (default MiniLM, CPU),
# with `crossrank bench --group` (docs/priority-bench.md). Seven phases, each PRIO_SECONDS long:
#   a idle        the interactive group alone (Rerank-20 at PRIO_RATE/s): idle p50/p99
#   b saturated   the bulk group alone (Rerank-100, PRIO_BULK_CLIENTS clients): saturated pairs/s,
#                 and one batch's inference time from the server's /metrics over the phase
#   c fifo        bulk + interactive, both priority 0, one tenant: today's FIFO ("before")
#   d priority    bulk at priority 5, interactive at 0, default aging (100 ms)
#   e slow-aging  d with priority_aging_ms=PRIO_SLOW_AGING_MS (20000: 12 x 100 queued pairs are a 25-40 s backlog on a 2-core CPU, under the 100 s priority 5 then takes to age to 0): the trade-off
#   f tenants-same   a flooding tenant (PRIO_FLOOD_CLIENTS clients of Rerank-100) and a light one
#                    (Rerank-20 at PRIO_RATE/s), same priority, one tenant name ("before")
#   g tenants-apart  f with two tenant names ("after")
# Prints a markdown table (bench/priority_table.py) with the goals checked and the command line.
# About 8 minutes on a quiet 2-core machine once built; run it on a quiet machine.
#
# Usage: bench/priority.sh [THREADS=2]
#   PRIO_SECONDS=60 per phase, PRIO_RATE=0.5 interactive requests/s (a quarter of a 2-core CPU's MiniLM capacity), PRIO_DOCS=20 per interactive
#   request, PRIO_BULK_CLIENTS=12, PRIO_BULK_DOCS=100, PRIO_FLOOD_CLIENTS=3,
#   PRIO_QUEUE_PAIRS=1200 (the model's max_queue_pairs: 12 x 100 fills it), PRIO_SLOW_AGING_MS=20000,
#   PRIO_MODEL=models/minilm-ce, PRIO_MODEL_OPTS="" (more model options, e.g. ",max_batch_pairs=16"); CROSSRANK_BENCH_OUT keeps the raw reports (default: a temporary
#   folder); CROSSRANK_BIN runs that binary instead of building target/release/crossrank.
#   Smoke run (about a minute on a quiet machine): PRIO_SMOKE=1 bench/priority.sh (4 s phases,
#   2 bulk and 2 flood clients; any PRIO_* given still wins).
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$CROSSRANK_ROOT"
threads=${1:-2}
smoke=${PRIO_SMOKE:-0}
secs=${PRIO_SECONDS:-$([ "$smoke" = 1 ] && echo 4 || echo 60)}
bulk_clients=${PRIO_BULK_CLIENTS:-$([ "$smoke" = 1 ] && echo 2 || echo 12)}
rate=${PRIO_RATE:-0.5}
docs=${PRIO_DOCS:-20}
bulk_docs=${PRIO_BULK_DOCS:-100}
flood_clients=${PRIO_FLOOD_CLIENTS:-$([ "$smoke" = 1 ] && echo 2 || echo 3)}
queue=${PRIO_QUEUE_PAIRS:-1200}
slow_aging=${PRIO_SLOW_AGING_MS:-20000}
model_dir=${PRIO_MODEL:-models/minilm-ce}
model_opts=${PRIO_MODEL_OPTS:-}
out=${CROSSRANK_BENCH_OUT:-$(mktemp -d)}
mkdir -p "$out"
rm -f "$out"/phase-*.json "$out/commands.txt"
cr=${CROSSRANK_BIN:-target/release/crossrank}

echo "PRIO_SECONDS=$secs PRIO_RATE=$rate PRIO_DOCS=$docs PRIO_BULK_CLIENTS=$bulk_clients" \
  "PRIO_BULK_DOCS=$bulk_docs PRIO_FLOOD_CLIENTS=$flood_clients PRIO_QUEUE_PAIRS=$queue" \
  "PRIO_SLOW_AGING_MS=$slow_aging PRIO_MODEL=$model_dir PRIO_MODEL_OPTS=$model_opts bench/priority.sh $threads" > "$out/command.txt"
./scripts/setup.sh
[ -n "${CROSSRANK_BIN:-}" ] || cargo build --release --quiet

server=""
stop_server() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  server=""
}
trap stop_server EXIT
# start_server NAME EXTRA_OPTIONS: the model as "minilm" on free ports; sets $server, $grpc and
# $metrics (the /metrics URL).
start_server() {
  local log="$out/server-$1"
  $cr serve --host 127.0.0.1 --port 0 --metrics-port 0 --threads "$threads" \
    --model "minilm=$model_dir,max_queue_pairs=$queue$model_opts$2" > "$log.out" 2> "$log.log" &
  server=$!
  # The server prints each port once it is bound (the metrics port after the gRPC one).
  until grep -q '^crossrank metrics on ' "$log.out"; do
    kill -0 "$server" || { cat "$log.log" >&2; exit 1; }
    sleep 0.1
  done
  grpc=$(sed -n 's/^crossrank listening on //p' "$log.out")
  metrics=$(sed -n 's/^crossrank metrics on //p' "$log.out")
  python scripts/wait_serving.py "$grpc"
}
# phase NAME GROUP...: one mixed run of the groups, its report kept as $out/phase-NAME.json.
phase() {
  local name=$1
  shift
  local args=(--addr "http://$grpc" --model minilm --server-pid "$server" --duration "$secs"
    --json "$out/phase-$name.json")
  for g in "$@"; do args+=(--group "$g"); done
  echo "$name: crossrank bench ${args[*]}" >> "$out/commands.txt"
  echo "== $name" >&2
  $cr bench "${args[@]}" >&2
}

interactive="docs=$docs,rate=$rate"
bulk="docs=$bulk_docs,concurrency=$bulk_clients"
flood="name=flood,priority=0,docs=$bulk_docs,concurrency=$flood_clients"
light="name=light,priority=0,docs=$docs,rate=$rate"

start_server main ""
phase a-idle "name=interactive,priority=0,tenant=app,$interactive"
curl -sf "$metrics" > "$out/metrics-b-before.txt"
phase b-saturated "name=bulk,priority=0,tenant=app,$bulk"
curl -sf "$metrics" > "$out/metrics-b-after.txt"
phase c-fifo "name=bulk,priority=0,tenant=app,$bulk" "name=interactive,priority=0,tenant=app,$interactive"
phase d-priority "name=bulk,priority=5,tenant=app,$bulk" "name=interactive,priority=0,tenant=app,$interactive"
phase f-tenants-same "$flood,tenant=shared" "$light,tenant=shared"
phase g-tenants-apart "$flood,tenant=flood" "$light,tenant=light"
stop_server

start_server slow-aging ",priority_aging_ms=$slow_aging"
phase e-slow-aging "name=bulk,priority=5,tenant=app,$bulk" "name=interactive,priority=0,tenant=app,$interactive"
stop_server

python bench/priority_table.py "$out"
echo "raw reports: $out" >&2
