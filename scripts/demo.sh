#!/usr/bin/env bash
# The main job, from a clean clone: set up, build, then score and rerank a small sample with the
# CLI on the default model (MiniLM-L6-H384 with an untrained head: its scores mean nothing yet).
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
echo "== crossrank rerank --model models/minilm-ce --query 'how do I read a file in rust' --documents examples/documents.txt --top-n 3"
$bin rerank --model models/minilm-ce --query "how do I read a file in rust" --documents examples/documents.txt --top-n 3
