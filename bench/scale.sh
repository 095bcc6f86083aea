#!/usr/bin/env bash
# Scale check: one manager and 50 agents, each in a network namespace of its
# own (src/netlab), registering, heartbeating and running 10,000 no-op
# tasks; then `flotilla sim` extrapolates the measured costs to 1,000 and
# 10,000 nodes. Needs root (namespaces).
#
#   bench/scale.sh [BUILD_DIR]
#
# Environment: SCALE_NODES (50), SCALE_TASKS (10000), SCALE_IDLE_S (10),
# SCALE_RATE (100 tasks/s for the extrapolation), SCALE_INSECURE=1 (also a
# plaintext run, to show what mutual TLS costs per node).
# Output: BUILD_DIR/bench-results/scale{,-insecure}.json and scale.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
[[ $(id -u) -eq 0 ]] || { echo "bench/scale.sh: needs root (network namespaces)" >&2; exit 2; }
cmake --build "$build" --target flotilla flotilla_scale_bench -j "${JOBS:-1}" >/dev/null
out=$build/bench-results
mkdir -p "$out"
base=(--nodes "${SCALE_NODES:-50}" --idle-s "${SCALE_IDLE_S:-10}")
args=("${base[@]}" --tasks "${SCALE_TASKS:-10000}")
{
  echo "### Run of $(date -u '+%Y-%m-%d %H:%M') UTC ($(nproc) cores)"
  echo
  echo '`bench/scale.sh` (`flotilla_scale_bench '"${args[*]}"'`), mutual TLS:'
  echo
  "$build/bench/flotilla_scale_bench" "${args[@]}" --json "$out/scale.json"
  if [[ -n "${SCALE_INSECURE:-}" ]]; then
    echo
    echo 'The same without TLS (`--insecure`, registration and idle only):'
    echo
    "$build/bench/flotilla_scale_bench" "${base[@]}" --tasks 0 --insecure \
      --json "$out/scale-insecure.json" | grep -E '^\|( figure|---|.*RSS|.*per idle|.*per node)'
  fi
  echo
  echo "Extrapolated (\`flotilla sim --manager-costs $out/scale.json --rate ${SCALE_RATE:-100}\`):"
  echo
  echo '```'
  for hb in 1 5; do
    echo "heartbeat every ${hb} s:"
    "$build/src/flotilla" sim --manager-costs "$out/scale.json" --rate "${SCALE_RATE:-100}" \
      --policy tuned --duration 60 --heartbeat-s "$hb" 2>/dev/null | sed -n '/^NODES/,$p'
  done
  echo '```'
} | tee "$out/scale.md"
