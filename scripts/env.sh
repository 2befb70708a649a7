# Sourced by the other scripts: where libtorch comes from.
# A user with a libtorch 2.13 elsewhere sets LIBTORCH; otherwise tch asks the venv's torch.
CROSSRANK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$CROSSRANK_ROOT/.venv/bin:$PATH"
# The Python helpers shared by bench/, scripts/ and tests/ (python/crossrank_tools).
export PYTHONPATH="$CROSSRANK_ROOT/python${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "${LIBTORCH:-}" ]; then
  export LIBTORCH_USE_PYTORCH=1
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=true
