#!/usr/bin/env bash
# Builds the crossrank container image with podman or docker (scripts/engine.sh picks; as root
# with apt-get, podman is installed when neither podman nor a running docker is found) from the
# binary `cargo build --release` makes here (after scripts/setup.sh, for the venv's torch):
# docker/bundle-libs.sh packages it with its libraries, and docker/prebuilt.Dockerfile puts them
# on the Dockerfile's `base` target. That base starts from debian:bookworm-slim when the engine
# can pull it; otherwise (no Docker Hub, as on the development machine) from an image made of
# Debian's packages with debootstrap, imported as localhost/debian:bookworm-slim.
# Idempotent; each step prints one line, the tools' output goes to target/image/image.log.
#
# Usage: scripts/image.sh [--flavor cpu|cuda] [--from-source] [--print-name] [--test]
#   --flavor cuda   the CUDA image: needs the CUDA torch wheel in .venv (PyPI's default)
#   --from-source   build the Dockerfile's default target instead (the binary compiled inside the
#                   image build, as `docker build .` does), on rust:1.95-bookworm or, when that
#                   cannot be pulled, on a stand-in made from the base image and this machine's
#                   Rust toolchain (docker/builder.Dockerfile); torch from the PyTorch CPU index,
#                   or PyPI when that is unreachable. 7.5 minutes on 2 cores here.
#   --print-name    print the image name the flavor gets and exit (what the Helm chart defaults to)
#   --test          then run the image tests against it (tests/serve/image.rs, through
#                   scripts/test.sh: set-up and fixtures first)
# Environment: CROSSRANK_IMAGE_REPOSITORY (default ghcr.io/crossrank/crossrank),
#   CROSSRANK_BASE_IMAGE (a Debian bookworm image to use as is), CROSSRANK_TORCH_INDEX_URL
#   (--from-source), CROSSRANK_ENGINE (podman or docker).
set -euo pipefail
shopt -s inherit_errexit
source "$(dirname "$0")/env.sh"
cd "$CROSSRANK_ROOT"

usage() { echo "image: $1 (see the header of $0)" >&2; exit 2; }
flavor=cpu print_name=0 test=0 from_source=0
while [ $# -gt 0 ]; do
  case "$1" in
    --flavor) [ $# -ge 2 ] || usage "--flavor needs cpu or cuda"; flavor=$2; shift 2 ;;
    --print-name) print_name=1; shift ;;
    --test) test=1; shift ;;
    --from-source) from_source=1; shift ;;
    *) usage "unknown argument $1" ;;
  esac
done
case "$flavor" in
  cpu) suffix="" ;;
  cuda) suffix="-cuda" ;;
  *) usage "--flavor is cpu or cuda, not $flavor" ;;
esac
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
name="${CROSSRANK_IMAGE_REPOSITORY:-ghcr.io/crossrank/crossrank}:$version$suffix"
if [ "$print_name" = 1 ]; then
  echo "$name"
  exit 0
fi

# The venv with torch (libtorch for the build; the tests' Python client) and the default model.
./scripts/setup.sh

work=target/image
mkdir -p "$work"
log=$work/image.log
: > "$log"
prefix=image
source scripts/steps.sh
as_root_with_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }
engine=scripts/engine.sh

# 1. The engine, and the tools the steps below need.
if ! "$engine" --which >/dev/null 2>&1; then
  as_root_with_apt || { echo "image: install podman or docker first" >&2; exit 1; }
  echo "image: installing podman and runc (Debian packages)" >&2
  run "apt-get install podman" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends podman runc
fi
for tool in patchelf debootstrap; do
  if ! command -v "$tool" >/dev/null && as_root_with_apt; then
    echo "image: installing $tool (Debian package)" >&2
    run "apt-get install $tool" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y --no-install-recommends "$tool"
  fi
done
echo "image: engine $("$engine" --which)" >&2

# 2. The Debian base: as given, local, pulled, or made with debootstrap.
debian_base() {
  local local_base=localhost/debian:bookworm-slim rootfs=$work/rootfs mirror
  if [ -n "${CROSSRANK_BASE_IMAGE:-}" ]; then
    echo "$CROSSRANK_BASE_IMAGE"
  elif "$engine" image inspect "$local_base" >/dev/null 2>&1; then
    echo "$local_base"
  elif timeout 120 "$engine" pull -q docker.io/library/debian:bookworm-slim >> "$log" 2>&1; then
    echo docker.io/library/debian:bookworm-slim
  else
    command -v debootstrap >/dev/null ||
      { echo "image: debian:bookworm-slim cannot be pulled and debootstrap is missing" >&2; exit 1; }
    mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    echo "image: making $local_base with debootstrap from $mirror (~1 min)" >&2
    rm -rf --one-file-system "$rootfs"
    run "debootstrap" debootstrap --variant=minbase bookworm "$rootfs" "$mirror"
    # What debian:bookworm-slim leaves out too: documentation, manuals, locales, apt's caches.
    rm -rf "$rootfs"/usr/share/{doc,man,info,locale}/* "$rootfs"/var/cache/apt/* \
      "$rootfs"/var/lib/apt/lists/*
    run "import" bash -o pipefail -c "tar -C '$rootfs' -c . | '$engine' import - $local_base"
    rm -rf --one-file-system "$rootfs"
    echo "$local_base"
  fi
}
base=$(debian_base)
echo "image: base $base" >&2

# 3. The image: from this machine's binary, or built from source by the Dockerfile.

# The binary links against this machine's glibc and libstdc++, which the image does not carry:
# it must need no newer ones than Debian bookworm's (glibc 2.36, GCC 12's GLIBCXX_3.4.30).
check_libc() {
  local symbols newest
  symbols=$(objdump -T "$1")
  for pair in GLIBC_:2.36 GLIBCXX_:3.4.30; do
    newest=$(grep -o "${pair%%:*}[0-9.]*" <<< "$symbols" | sed "s/${pair%%:*}//" | sort -V | tail -n 1)
    if [ -n "$newest" ] && [ "$(printf '%s\n%s\n' "$newest" "${pair#*:}" | sort -V | tail -n 1)" != "${pair#*:}" ]; then
      echo "image: $1 needs ${pair%%:*}$newest, newer than Debian bookworm's ${pair#*:}: build on bookworm, or use --from-source" >&2
      exit 1
    fi
  done
}

prebuilt() {
  local site context=$work/$flavor base_target=localhost/crossrank-base:$version
  echo "image: cargo build --release (minutes when not built yet)" >&2
  run "cargo build" cargo build --release --locked --bin crossrank
  check_libc target/release/crossrank
  site=$(python -c 'import site; print(site.getsitepackages()[0])')
  echo "image: bundling the binary and its libraries into $context" >&2
  run "bundle-libs" docker/bundle-libs.sh --flavor "$flavor" target/release/crossrank "$context" "$site"
  echo "image: building $name" >&2
  run "build base" "$engine" build --network=host --target base \
    --build-arg RUNTIME_IMAGE="$base" -t "$base_target" .
  run "build" "$engine" build --network=host -f docker/prebuilt.Dockerfile \
    --build-arg BASE_IMAGE="$base_target" -t "$name" "$context"
  libs="; libraries $(du -sm "$context/lib" | cut -f1) MiB"
}

# A builder image: rust:1.95-bookworm, or the stand-in of docker/builder.Dockerfile.
builder_image() {
  local rust=docker.io/library/rust:1.95-bookworm version stand_in context=$work/builder
  if timeout 120 "$engine" pull -q "$rust" >> "$log" 2>&1; then
    echo "$rust"
    return
  fi
  version=$(rustc --version | cut -d' ' -f2)
  stand_in=localhost/crossrank-builder:$version
  if ! "$engine" image inspect "$stand_in" >/dev/null 2>&1; then
    echo "image: making $stand_in (Debian's compilers, this machine's Rust toolchain)" >&2
    rm -rf "$context"
    mkdir -p "$context/toolchain"
    run "toolchain" bash -o pipefail -c \
      "tar -C '$(rustc --print sysroot)' --exclude=./share/doc -c . | tar -C '$context/toolchain' -x"
    run "CA bundle" cp /etc/ssl/certs/ca-certificates.crt "$context/"
    run "builder" "$engine" build --network=host -f docker/builder.Dockerfile \
      --build-arg BASE_IMAGE="$base" -t "$stand_in" "$context"
    rm -rf "$context"
  fi
  echo "$stand_in"
}

from_source() {
  local builder index=${CROSSRANK_TORCH_INDEX_URL:-}
  builder=$(builder_image)
  if [ -z "$index" ] && [ "$flavor" = cpu ] &&
    ! curl -sfI --max-time 10 https://download.pytorch.org/whl/cpu/ >/dev/null 2>&1; then
    index=https://pypi.org/simple
  fi
  echo "image: building $name from source on $builder (torch from ${index:-the default index}; minutes)" >&2
  run "build" "$engine" build --network=host --build-arg FLAVOR="$flavor" \
    --build-arg BUILDER_IMAGE="$builder" --build-arg RUNTIME_IMAGE="$base" \
    ${index:+--build-arg TORCH_INDEX_URL="$index"} -t "$name" .
  libs=""
}

if [ "$from_source" = 1 ]; then from_source; else prebuilt; fi
bytes=$("$engine" image inspect --format '{{.Size}}' "$name")
echo "image: built $name ($((bytes / 1000000)) MB$libs)" >&2
echo "$name"
if [ "$test" = 1 ]; then
  echo "image: testing $name (tests/serve/image.rs)" >&2
  CROSSRANK_IMAGE_TEST=1 CROSSRANK_IMAGE="$name" ./scripts/test.sh --test serve image:: -- --nocapture
fi
