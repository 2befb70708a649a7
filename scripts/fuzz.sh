#!/usr/bin/env bash
# Mutation fuzzing of decode -> validation -> tokenization (tests/hostile/fuzz.rs) for SECS seconds
# (default 600); CI runs the same test for 60 s. A failure prints CROSSRANK_FUZZ_SEED to replay.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$CROSSRANK_ROOT"
CROSSRANK_FUZZ_SECS=${1:-600} cargo test --test hostile fuzz:: -- --nocapture
