#!/usr/bin/env bash
# Runs the container engine that scripts/image.sh and the image test use: podman where it is
# installed, else docker when its daemon answers (CROSSRANK_ENGINE=podman|docker chooses).
#
# On a host whose cgroups are v1 or hybrid (the development machine), podman needs runc (crun
# refuses hybrid cgroups), the cgroupfs manager and no default rlimits, and builds with
# `--isolation chroot`: a containers.conf for that is written to target/image/containers.conf and
# passed as CONTAINERS_CONF. On a cgroup-v2 host nothing is changed.
#
# Usage: scripts/engine.sh --which           prints podman or docker (exit 1: neither)
#        scripts/engine.sh ARGS...            the engine with ARGS (podman/docker syntax)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

which_engine() {
  case "${CROSSRANK_ENGINE:-}" in
    podman | docker) echo "$CROSSRANK_ENGINE"; return ;;
    "") ;;
    *) echo "engine: CROSSRANK_ENGINE must be podman or docker, not $CROSSRANK_ENGINE" >&2; return 1 ;;
  esac
  if command -v podman >/dev/null; then
    echo podman
  elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    echo docker
  else
    return 1
  fi
}

engine=$(which_engine) || {
  echo "engine: neither podman nor a running docker daemon (scripts/image.sh installs podman as root)" >&2
  exit 1
}
if [ "${1:-}" = "--which" ]; then
  echo "$engine"
  exit 0
fi
if [ "$engine" = docker ]; then
  exec docker "$@"
fi

# podman: on cgroup v2 (or where there is no /sys/fs/cgroup, as on a podman machine's client)
# nothing is changed; v1 or hybrid cgroups mount a tmpfs there.
if [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" != tmpfs ]; then
  exec podman "$@"
fi
command -v runc >/dev/null || {
  echo "engine: podman needs runc on this host (crun refuses v1 or hybrid cgroups): apt-get install runc" >&2
  exit 1
}
conf="$root/target/image/containers.conf"
want='[containers]\ndefault_ulimits = []\n\n[engine]\ncgroup_manager = "cgroupfs"\n'
# (Re)written when it differs, atomically: tests run several engine commands at once.
if ! printf '%b' "$want" | cmp -s - "$conf"; then
  mkdir -p "$(dirname "$conf")"
  tmp=$(mktemp "$conf.XXXXXX")
  printf '%b' "$want" > "$tmp"
  mv -f "$tmp" "$conf"
fi
export CONTAINERS_CONF="$conf"
if [ "${1:-}" = build ]; then
  shift
  exec podman --runtime runc build --isolation chroot "$@"
fi
exec podman --runtime runc "$@"
