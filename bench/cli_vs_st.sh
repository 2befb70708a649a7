#!/usr/bin/env bash
# `crossrank score` vs sentence-transformers `CrossEncoder.predict` on the same model, pairs and
# thread count, in one run. crossrank's time is the whole command (process start and model load
# included); the baseline's is the predict call alone, after a warm-up.
# Usage: bench/cli_vs_st.sh [PAIRS=480] [THREADS=2]
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$CROSSRANK_ROOT"
n=${1:-480}
threads=${2:-2}
./scripts/setup.sh
cargo build --release --quiet
work=$(mktemp -d)
python -W ignore -m crossrank_tools.corpus "$n" 7 > "$work/pairs.tsv"
model=models/minilm-ce
echo "model $model, $n pairs, $threads threads, $(lscpu | sed -n 's/^Model name: *//p')"

base=$(python -W ignore bench/st_predict.py "$model" "$work/pairs.tsv" --threads "$threads" --scores "$work/st.txt" 2>/dev/null)
base_rate=$(echo "$base" | python -c 'import json,sys; print(json.load(sys.stdin)["pairs_per_s"])')
printf '%-34s %8.1f pairs/s\n' "sentence-transformers predict f32" "$base_rate"

for dtype in f32 bf16; do
  start=$(date +%s.%N)
  target/release/crossrank score --model "$model" --input "$work/pairs.tsv" --dtype "$dtype" \
    --threads "$threads" --batch-size 32 > "$work/cr-$dtype.txt"
  end=$(date +%s.%N)
  python - "$n" "$start" "$end" "$base_rate" "$work/st.txt" "$work/cr-$dtype.txt" "$dtype" <<'PY'
import sys
n, start, end, base = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
st = [float(l) for l in open(sys.argv[5])]
cr = [float(l) for l in open(sys.argv[6])]
rate = n / (end - start)
dev = max(abs(a - b) for a, b in zip(st, cr))
print(f"crossrank score {sys.argv[7]:<18} {rate:8.1f} pairs/s  ratio {rate / base:.2f}x  max |delta score| {dev:.1e}")
PY
done
rm -rf "$work"
