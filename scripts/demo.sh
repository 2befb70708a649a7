#!/usr/bin/env bash
# The main job, from a clean clone: set up, build, rank a few documents with the CLI, start the gRPC
# server on the default model with its REST port, wait until it reports SERVING, send a Rerank from a
# Python gRPC client and the same through Cohere's /v2/rerank with curl, and stop the server. The default model is a small cross-encoder distilled from the all-MiniLM-L6-v2
# sentence-similarity model (scripts/make_default_model.py; README "The default model").
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$CROSSRANK_ROOT"
./scripts/setup.sh
echo "demo: cargo build --release" >&2
cargo build --release --quiet
bin=target/release/crossrank
port=${CROSSRANK_PORT:-50051}
http_port=${CROSSRANK_HTTP_PORT:-8080}

echo "== crossrank score --model models/minilm-ce --input examples/pairs.tsv    (query, document, score)"
$bin score --model models/minilm-ce --input examples/pairs.tsv | paste examples/pairs.tsv -
for query in "how do I read a file in rust" "which fruit has potassium" "how do plants make sugar from sunlight"; do
  echo
  echo "== crossrank rerank --model models/minilm-ce --documents examples/documents.txt --top-n 3 --query '$query'"
  $bin rerank --model models/minilm-ce --documents examples/documents.txt --top-n 3 --query "$query"
done

echo
echo "== crossrank serve --host 127.0.0.1 --port $port --http-port $http_port --model minilm=models/minilm-ce"
log=$(mktemp)
$bin serve --host 127.0.0.1 --port "$port" --http-port "$http_port" --metrics-port 0 \
  --model minilm=models/minilm-ce > "$log" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
python scripts/wait_serving.py "127.0.0.1:$port"
head -1 "$log"
echo
echo "== python examples/client.py 127.0.0.1:$port minilm"
python -W ignore examples/client.py "127.0.0.1:$port" minilm
echo
echo "== curl http://127.0.0.1:$http_port/v2/rerank    (Cohere's rerank API; any Cohere SDK with base_url works)"
body='{"model": "minilm", "query": "which fruit has potassium", "top_n": 2,
       "documents": ["Bananas are rich in potassium.", "Rust has a borrow checker.", "Apples are fruit."]}'
curl -sS --fail-with-body -H 'content-type: application/json' -d "$body" "http://127.0.0.1:$http_port/v2/rerank"
echo
kill -TERM $server
wait $server
tail -1 "$log"
