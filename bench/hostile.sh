#!/usr/bin/env bash
# Hostile inputs against the release server: time, status and peak RSS of each (bench/hostile.py).
# Usage: bench/hostile.sh [REPS=3] [BINARY=target/release/crossrank]
# The server runs MiniLM (models/minilm-ce) and the tiny BERT fixture, 2 threads, and accepts
# 40 MB messages so that the 32 MiB flood reaches the decoder.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$CROSSRANK_ROOT"
reps=${1:-3}
bin=${2:-target/release/crossrank}
if [ "$bin" = target/release/crossrank ]; then cargo build --release --quiet; fi
grep -m1 "model name" /proc/cpuinfo
grep -m1 -o -w -E "avx512f|avx2" /proc/cpuinfo | sort -u | tr '\n' ' '; echo
log=$(mktemp)
"$bin" serve --host 127.0.0.1 --port 0 --metrics-port 0 --threads 2 --max-message-bytes 40000000 \
  --model minilm=models/minilm-ce --model tiny=tests/fixtures/generated/bert > "$log" 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
until grep -q "listening on" "$log"; do sleep 0.1; done
addr=$(sed -n 's/crossrank listening on //p' "$log")
until "$bin" health --addr "http://$addr" >/dev/null 2>&1; do sleep 0.2; done
python -W ignore bench/hostile.py "$addr" "$server" minilm tiny "$reps"
