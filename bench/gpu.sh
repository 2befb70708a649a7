#!/usr/bin/env bash
# The GPU check: crossrank against sentence-transformers on one GPU, same machine, same run.
# Needs python with torch, transformers and sentence-transformers, and a crossrank binary built
# for that machine's libtorch (no cargo there; see ../shared/gpu/README.md for building one
# against torch 2.11). Builds seeded random BERT cross-encoders of MiniLM-L6 and BERT-large
# shape, runs the baseline (fp16 and f32 predict at batch 32 and 128, rank of 100 documents;
# cuDNN attention deprioritized, its best setting), then crossrank (Score, 64 clients x 32
# pairs; Rerank of 100 documents, one client) and prints one table. About 4 minutes on an H200.
#
# Usage: bench/gpu.sh --bin PATH [--out DIR] [--tokenizer DIR] [--smoke]
#   --smoke runs every step on the CPU with a tiny model and a few pairs: a check of the script,
#   not a measurement (CI-free; run it after changing this file).
set -euo pipefail
bin="" out=${OUT:-/tmp/crossrank-gpu} tok=models/minilm-ce smoke=0
while [ $# -gt 0 ]; do
  case $1 in
    --bin) bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --tokenizer) tok=$2; shift 2 ;;
    --smoke) smoke=1; shift ;;
    *) echo "unknown argument $1 (usage: bench/gpu.sh --bin PATH [--out DIR] [--tokenizer DIR] [--smoke])" >&2; exit 2 ;;
  esac
done
[ -x "$bin" ] || { echo "--bin must name a crossrank binary (got '$bin')" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python3}
mkdir -p "$out"
if [ "$smoke" = 1 ]; then
  device=cpu models=tiny dtypes=f32 pairs=128 secs=3 clients=4
else
  device=cuda:0 models=mini,large dtypes=f16,bf16,f32 pairs=8000 secs=12 clients=64
fi
export TORCH_CUDNN_SDPA_DEPRIORITIZED=1 TOKENIZERS_PARALLELISM=true PYTHONUNBUFFERED=1
torch_lib=$($py -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH=$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
step() { echo "== $(date +%T) $*" >&2; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU"
echo "$(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
$py -c 'import torch, sentence_transformers as s; print("torch", torch.__version__, "st", s.__version__, "cuda", torch.cuda.is_available())'

step "models and corpus"
$py -W ignore "$here/gpu_models.py" "$out/models" "$tok" "$models" 2> "$out/models.log"
"$bin" bench --write-corpus "$out/corpus.jsonl" --corpus-size "$pairs" --seed 7

for m in ${models//,/ }; do
  for dt in ${dtypes//,/ }; do
    step "sentence-transformers $m $dt"
    $py -W ignore "$here/gpu_st.py" "$out/models/$m" "$out/corpus.jsonl" "$dt" "$pairs" "$out/st-$m-$dt" 2>> "$out/st.log"
  done
done

port=$($py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
specs=()
for m in ${models//,/ }; do
  for dt in ${dtypes//,/ }; do specs+=(--model "$m-$dt=$out/models/$m,device=$device,dtype=$dt"); done
done
step "crossrank serve ${specs[*]}"
"$bin" serve --host 127.0.0.1 --port "$port" --metrics-port 0 "${specs[@]}" > "$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
until "$bin" health --addr "http://127.0.0.1:$port" --timeout-secs 2 > /dev/null 2>&1; do
  kill -0 $server 2>/dev/null || { echo "the server stopped:" >&2; tail -20 "$out/server.log" >&2; exit 1; }
  sleep 0.5
done
for m in ${models//,/ }; do
  for dt in ${dtypes//,/ }; do
    step "crossrank $m $dt"
    "$bin" bench --addr "http://127.0.0.1:$port" --model "$m-$dt" --shape score --size 32 \
      --concurrency "$clients" --duration "$secs" --corpus-size "$pairs" --seed 7 \
      --json "$out/cr-$m-$dt.json" --scores-out "$out/cr-$m-$dt.scores.jsonl" 2>&1 | grep throughput
    "$bin" bench --addr "http://127.0.0.1:$port" --model "$m-$dt" --shape rerank --size 100 \
      --concurrency 1 --requests 20 --corpus-size "$pairs" --seed 7 --json "$out/cr-rr-$m-$dt.json" \
      2>&1 | grep latency
  done
done
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader 2>/dev/null || true
kill -TERM $server; wait $server || true
grep -iE "warn|error" "$out/server.log" | head -5 || true
$py "$here/gpu_table.py" "$out" "$models" "$dtypes" | tee "$out/table.md"
