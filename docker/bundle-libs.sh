#!/usr/bin/env bash
# Copies the shared libraries that BINARY loads from outside the base system into DEST: libtorch,
# c10 and their companions from the torch wheel (found with ldd), and with --cuda also every
# library the wheel's nvidia-* packages bring (libtorch_cuda opens some of them with dlopen,
# which ldd cannot see). Used by the Dockerfile; tests/deploy.rs checks that the set is complete.
#
# Usage: docker/bundle-libs.sh BINARY DEST [--cuda SITE_PACKAGES]
set -euo pipefail
binary=$1 dest=$2
mkdir -p "$dest"
# Libraries the base image (debian bookworm-slim) provides itself.
system='^/(usr/)?lib(64)?/(x86_64-linux-gnu/)?(ld-linux|libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+|libz)\.so'
ldd "$binary" | awk '/=> \// { print $3 }' | grep -Ev "$system" | while read -r lib; do
  cp -L "$lib" "$dest/"
done
if [ "${3:-}" = "--cuda" ]; then
  for dir in "$4"/nvidia/*/lib; do
    [ -d "$dir" ] && cp -L "$dir"/*.so* "$dest/" 2>/dev/null || true
  done
fi
