#!/usr/bin/env bash
# Soak (not in CI): PAIRS pairs (default 1,000,000) sent to the release server on a tiny model by
# 64 clients offering about twice its capacity (a refused client backs off BACKOFF_MS, default
# 1700: 64 clients then offer ~38 requests of 32 pairs a second, against ~20 served on a 2-core
# machine; the bounded queue refuses the excess), with --chaos 0.2 (random deadlines and client
# cancels). The offered and served rates are printed. Checks that every
# request got exactly one answer (the client's count equals the server's crossrank_requests_total)
# and samples the server's RSS every 10 s (it must stay flat).
# Usage: bench/soak.sh [PAIRS=1000000]   (CROSSRANK_SERVER_BIN=path serves with another build)
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$CROSSRANK_ROOT"
pairs=${1:-1000000}
backoff=${BACKOFF_MS:-1700}
size=32
out=${CROSSRANK_BENCH_OUT:-$(mktemp -d)}
cr=target/release/crossrank
cargo build --release --quiet
srv=${CROSSRANK_SERVER_BIN:-$cr}
[ -f "$out/tiny/config.json" ] || python -W ignore bench/make_tiny_model.py "$out/tiny" 2>/dev/null
grep -m1 "model name" /proc/cpuinfo
log="$out/server.log"
$srv serve --host 127.0.0.1 --port 0 --metrics-port 0 --threads 2 \
  --model "tiny=$out/tiny,max_queue_pairs=1024" > "$log" 2>"$out/server.err" &
server=$!
trap 'kill $server $sampler 2>/dev/null; wait $server 2>/dev/null || true' EXIT
until grep -q "metrics on" "$log"; do sleep 0.1; done
addr=http://$(sed -n 's/crossrank listening on //p' "$log")
metrics=$(sed -n 's/crossrank metrics on //p' "$log")
until $cr health --addr "$addr" >/dev/null 2>&1; do sleep 0.2; done
served() { curl -s "$metrics" | awk '/^crossrank_requests_total\{.*method="Score"/ {s += $NF} END {print s + 0}'; }

echo "== capacity: 16 clients, 20 s"
$cr bench --addr "$addr" --model tiny --size $size --concurrency 16 --duration 20 --warmup 4 \
  --json "$out/capacity.json" >/dev/null
python - "$out/capacity.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"capacity {r['pairs_per_s']:.0f} pairs/s")
PY
(while kill -0 $server 2>/dev/null; do
   echo "$(date +%s) $(awk '/VmRSS/ {print $2}' /proc/$server/status)"; sleep 10
 done) > "$out/rss.txt" &
sampler=$!
before=$(served)
requests=$((pairs / size))
echo "== soak: $requests requests x $size pairs, 64 clients, --chaos 0.2, timeout 3000 ms, backoff $backoff ms"
$cr bench --addr "$addr" --model tiny --size $size --concurrency 64 --requests $requests \
  --warmup 0 --timeout-ms 3000 --backoff-ms "$backoff" --chaos 0.2 --json "$out/soak.json" | tee "$out/soak.txt"
sleep 2  # the server counts a cancelled call when its handler is dropped, just after the client
after=$(served)
python - "$out/soak.json" "$out/rss.txt" "$before" "$after" "$requests" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
rss = [int(l.split()[1]) / 1024 for l in open(sys.argv[2]) if len(l.split()) == 2]
before, after, requests = float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
client = r["requests_ok"] + r["requests_failed"]
print(f"offered {client * r['size'] / r['seconds']:.0f} pairs/s, served {r['pairs_per_s']:.0f} pairs/s")
print(f"client: {client} requests ({r['requests_ok']} ok, {r['requests_failed']} failed: "
      f"{ {k: v['count'] for k, v in r['errors'].items()} })")
print(f"server: {after - before:.0f} Score calls counted; exactly once: {client == after - before == requests}")
third = max(1, len(rss) // 3)
print(f"RSS MiB: first {rss[0]:.0f}, after a third {rss[third]:.0f}, last {rss[-1]:.0f}, "
      f"max {max(rss):.0f} ({len(rss)} samples)")
PY
echo "raw: $out"
