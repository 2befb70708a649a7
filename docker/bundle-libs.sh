#!/usr/bin/env bash
# Copies the shared libraries that BINARY loads from outside the base system into DEST: libtorch,
# c10 and their companions from the torch wheel (found with ldd), and with --cuda also every
# library the wheel's nvidia-* packages bring (libtorch_cuda opens some of them with dlopen,
# which ldd cannot see). Used by the Dockerfile; tests/serve/deploy.rs checks that the set is complete.
# --link puts symbolic links in DEST instead of copies: the same set of names without the
# gigabytes a CUDA build of torch brings (what the test uses).
#
# Usage: docker/bundle-libs.sh [--link] BINARY DEST [--cuda SITE_PACKAGES]
set -euo pipefail
place() { cp -L "$1" "$2/"; }
if [ "${1:-}" = "--link" ]; then
  place() { ln -sf "$(readlink -f "$1")" "$2/$(basename "$1")"; }
  shift
fi
binary=$1 dest=$2
mkdir -p "$dest"
# Libraries the base image (debian bookworm-slim) provides itself.
system='^/(usr/)?lib(64)?/(x86_64-linux-gnu/)?(ld-linux|libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+|libz)\.so'
ldd "$binary" | awk '/=> \// { print $3 }' | grep -Ev "$system" | while read -r lib; do
  place "$lib" "$dest"
done
if [ "${3:-}" = "--cuda" ]; then
  for dir in "$4"/nvidia/*/lib; do
    [ -d "$dir" ] || continue
    for lib in "$dir"/*.so*; do
      [ -e "$lib" ] && place "$lib" "$dest"
    done
  done
fi
