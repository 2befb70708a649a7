# shellcheck shell=bash disable=SC2154
# Sourced by setup.sh and image.sh: `run STEP CMD...` runs CMD with its output appended to the
# file $log; on failure it names the step (after the caller's $prefix) and shows the log's end.
run() {
  local step=$1
  shift
  echo "== $step: $*" >> "$log"
  if ! "$@" >> "$log" 2>&1; then
    echo "$prefix: $step failed; see $log" >&2
    tail -n 20 "$log" | sed 's/^/  | /' >&2
    exit 1
  fi
}
