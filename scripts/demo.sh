#!/usr/bin/env bash
# The main job, from a clean clone: set up, build, rank a few documents with the CLI, start the gRPC
# server on the default model, wait until it reports SERVING, send a Rerank from a Python client, and
# stop the server. The default model is a small cross-encoder distilled from the all-MiniLM-L6-v2
# sentence-similarity model (scripts/make_default_model.py; README "The default model").
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$CROSSRANK_ROOT"
./scripts/setup.sh
echo "demo: cargo build --release" >&2
cargo build --release --quiet
bin=target/release/crossrank
port=${CROSSRANK_PORT:-50051}

echo "== crossrank score --model models/minilm-ce --input examples/pairs.tsv    (query, document, score)"
$bin score --model models/minilm-ce --input examples/pairs.tsv | paste examples/pairs.tsv -
for query in "how do I read a file in rust" "which fruit has potassium" "how do plants make sugar from sunlight"; do
  echo
  echo "== crossrank rerank --model models/minilm-ce --documents examples/documents.txt --top-n 3 --query '$query'"
  $bin rerank --model models/minilm-ce --documents examples/documents.txt --top-n 3 --query "$query"
done

echo
echo "== crossrank serve --host 127.0.0.1 --port $port --model minilm=models/minilm-ce"
log=$(mktemp)
$bin serve --host 127.0.0.1 --port "$port" --metrics-port 0 --model minilm=models/minilm-ce > "$log" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
python scripts/wait_serving.py "127.0.0.1:$port"
head -1 "$log"
echo
echo "== python examples/client.py 127.0.0.1:$port minilm"
python -W ignore examples/client.py "127.0.0.1:$port" minilm
kill -TERM $server
wait $server
tail -1 "$log"
