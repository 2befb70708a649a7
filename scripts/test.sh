#!/usr/bin/env bash
# The whole test suite from a clean clone: set-up (idempotent), parity fixtures (regenerated when
# their generator changes), then every Rust test.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$CROSSRANK_ROOT"
./scripts/setup.sh

fixtures=tests/fixtures/generated
want=$(cat tests/fixtures/make_fixtures.py tests/fixtures/make_causal_reranker.py \
  tests/fixtures/make_truncation.py tests/fixtures/make_chunks.py python/crossrank_tools/corpus.py requirements.txt \
  models/minilm-ce/config.json models/minilm-ce/.complete | sha256sum | cut -d' ' -f1)
if [ "$(cat "$fixtures/.stamp" 2>/dev/null)" != "$want" ]; then
  echo "test: generating parity fixtures with sentence-transformers" >&2
  rm -rf "$fixtures"
  log=$(mktemp)
  python -W ignore tests/fixtures/make_fixtures.py "$fixtures" models/minilm-ce > "$log" 2>&1 \
    || { cat "$log" >&2; exit 1; }
  python -W ignore tests/fixtures/make_causal_reranker.py "$fixtures/causal" >> "$log" 2>&1 \
    || { cat "$log" >&2; exit 1; }
  python -W ignore tests/fixtures/make_truncation.py "$fixtures" models/minilm-ce >> "$log" 2>&1 \
    || { cat "$log" >&2; exit 1; }
  python -W ignore tests/fixtures/make_chunks.py "$fixtures" >> "$log" 2>&1 \
    || { cat "$log" >&2; exit 1; }
  rm -f "$log"
  echo "$want" > "$fixtures/.stamp"
fi

# A clean clone gains nothing from incremental state, which would double the build's disk use.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
df -h . | awk 'NR==2 {print "test: disk free before the build: " $4 " of " $2}' >&2
# With arguments (e.g. `--test serve image::`), only what they select.
if [ $# -eq 0 ]; then
  set -- --all-targets
fi
cargo test --no-fail-fast "$@"
