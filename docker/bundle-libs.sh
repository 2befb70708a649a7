#!/usr/bin/env bash
# Packages BINARY for the runtime image into OUT: OUT/crossrank (the binary without the build
# machine's rpath and debug information) and OUT/lib/ with the shared libraries it loads from outside the base system:
# libtorch, c10 and their companions from the torch wheel (found with ldd).
#
# --flavor cpu (the default): the image runs on CPU only. The binary keeps libtorch.so linked so
# that a CUDA build of torch brings its CUDA backend (build.rs); for the CPU image that entry is
# removed from the copy (patchelf), so a CUDA wheel's libtorch_cuda and its gigabytes of nvidia-*
# libraries stay out: what is left is libtorch_cpu, c10, libgomp, and with a CUDA wheel the two
# small CUDA runtime libraries libtorch_cpu itself names (cudart, cupti).
# --flavor cuda: also every library of the wheel's nvidia-* packages in SITE_PACKAGES, since
# libtorch_cuda opens some of them with dlopen, which ldd cannot see.
# --link puts symbolic links in OUT/lib instead of copies: the same set of names without the
# gigabytes (what tests/serve/deploy.rs uses to check that the set is complete).
#
# Usage: docker/bundle-libs.sh [--link] [--flavor cpu|cuda] BINARY OUT [SITE_PACKAGES]
# Needs ldd, strip (binutils) and patchelf.
set -euo pipefail
place() { cp -L "$1" "$2/"; }
flavor=cpu
while [ $# -gt 0 ]; do
  case "$1" in
    --link) place() { ln -sf "$(readlink -f "$1")" "$2/$(basename "$1")"; }; shift ;;
    --flavor) flavor=$2; shift 2 ;;
    *) break ;;
  esac
done
case "$flavor" in
  cpu | cuda) ;;
  *) echo "bundle-libs: --flavor is cpu or cuda, not $flavor" >&2; exit 2 ;;
esac
if [ $# -lt 2 ]; then
  echo "usage: docker/bundle-libs.sh [--link] [--flavor cpu|cuda] BINARY OUT [SITE_PACKAGES]" >&2
  exit 2
fi
binary=$1 out=$2 site=${3:-}
if [ "$flavor" = cuda ] && [ ! -d "$site/nvidia" ]; then
  echo "bundle-libs: --flavor cuda needs the site-packages of a CUDA torch wheel (no $site/nvidia)" >&2
  exit 2
fi
rm -rf "${out:?}/lib" "${out:?}/crossrank"
mkdir -p "$out/lib"
cp "$binary" "$out/crossrank"
chmod u+w "$out/crossrank"
# Release builds keep line tables (Cargo.toml) for backtraces; in the image they would be 85% of
# the binary (182 MB -> 27 MB). Function names stay.
strip --strip-debug "$out/crossrank"
patchelf --remove-rpath "$out/crossrank"
if [ "$flavor" = cpu ]; then
  patchelf --remove-needed libtorch.so "$out/crossrank"
fi
# Found where the build linked them: the wheel's own libraries carry $ORIGIN rpaths.
libtorch_cpu=$(ldd "$binary" | awk '$1 == "libtorch_cpu.so" && $3 ~ /^\// { print $3 }')
if [ -z "$libtorch_cpu" ]; then
  echo "bundle-libs: $binary does not resolve libtorch_cpu.so (ldd); build it against torch 2.13.0 first" >&2
  exit 1
fi
libdir=$(dirname "$libtorch_cpu")
# Libraries the base image (debian bookworm-slim) provides itself.
system='^/(usr/)?lib(64)?/(x86_64-linux-gnu/)?(ld-linux|libc|libm|libdl|libpthread|librt|libutil|libgcc_s|libstdc\+\+|libz)\.so'
needed=$(LD_LIBRARY_PATH="$libdir" ldd "$out/crossrank")
if grep -q "not found" <<< "$needed"; then
  echo "bundle-libs: libraries of $binary not found:" >&2
  grep "not found" <<< "$needed" >&2
  exit 1
fi
awk '/=> \// { print $3 }' <<< "$needed" | { grep -Ev "$system" || true; } |
  while read -r lib; do
    place "$lib" "$out/lib"
  done
if [ "$flavor" = cuda ]; then
  for dir in "$site"/nvidia/*/lib; do
    for lib in "$dir"/*.so*; do
      [ -e "$lib" ] && place "$lib" "$out/lib"
    done
  done
fi
