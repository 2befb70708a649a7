#!/usr/bin/env bash
# Starts `crossrank serve` on the default MiniLM model and runs bench/grpc_bench.py against it:
# Rerank-100 latency vs CrossEncoder.rank and 16-client Score throughput vs CrossEncoder.predict.
# Usage: bench/serve_vs_st.sh [extra grpc_bench.py flags]
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$CROSSRANK_ROOT"
./scripts/setup.sh
cargo build --release --quiet
port=${CROSSRANK_BENCH_PORT:-50151}
target/release/crossrank serve --host 127.0.0.1 --port "$port" --metrics-port 0 --threads 2 \
  --model "minilm=models/minilm-ce,max_batch_pairs=32,max_wait_ms=5" > /dev/null &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
python scripts/wait_serving.py "127.0.0.1:$port"
python -W ignore bench/grpc_bench.py "127.0.0.1:$port" minilm models/minilm-ce "$@"
