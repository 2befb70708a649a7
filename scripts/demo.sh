#!/usr/bin/env bash
# The main job, from a clean clone: set up, build, start the gRPC server on the default model
# (MiniLM-L6-H384 with an untrained head: its scores mean nothing yet), wait until it reports
# SERVING, send a Rerank from a Python client, and stop the server. The CLI's `score` / `rerank`
# run on the same model first.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$CROSSRANK_ROOT"
./scripts/setup.sh
cargo build --release --quiet
bin=target/release/crossrank
cat <<'MSG'
NOTE: the default model is the real MiniLM-L6-H384 BERT with a seeded, UNTRAINED classification
head. Its scores are deterministic and match sentence-transformers, but carry no relevance meaning.
MSG
echo
echo "== crossrank score --model models/minilm-ce --input examples/pairs.tsv"
$bin score --model models/minilm-ce --input examples/pairs.tsv
echo
echo "== crossrank serve --host 127.0.0.1 --port ${CROSSRANK_PORT:-50051} --model minilm=models/minilm-ce"
log=$(mktemp)
$bin serve --host 127.0.0.1 --port "${CROSSRANK_PORT:-50051}" --metrics-port 0 --model minilm=models/minilm-ce > "$log" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
python scripts/wait_serving.py "127.0.0.1:${CROSSRANK_PORT:-50051}"
head -1 "$log"
echo
echo "== python examples/client.py 127.0.0.1:${CROSSRANK_PORT:-50051} minilm"
python -W ignore examples/client.py "127.0.0.1:${CROSSRANK_PORT:-50051}" minilm
kill -TERM $server
wait $server
tail -1 "$log"
