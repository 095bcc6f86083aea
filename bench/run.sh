#!/usr/bin/env bash
# The end-to-end benchmark, with its peers side by side in the same run:
#   bench/run.sh [BUILD_DIR]        (`make bench` runs it on $(BUILD_DIR))
#
# Builds flotilla and flotilla_e2e_bench in BUILD_DIR if needed (configuring
# a Release build when BUILD_DIR has none), then runs BENCH_ROUNDS rounds of
#   flotilla_e2e_bench  Flotilla (own manager + one agent) and the process
#                       peers (fork/exec, posix_spawn, unshare), interleaved
#   bench/dask_peer.py  a Dask LocalCluster, with Debian's /usr/bin/python3
# and prints a markdown section of medians and ratios (bench/report.py).
#
# Environment:
#   BENCH_ROUNDS=3        rounds; figures are medians over rounds
#   BENCH_QUICK=1         small sizes (a smoke run, ~20 s)
#   BENCH_WRITE_DOCS=1    also replace the generated section of docs/benchmarks.md
#   BENCH_NO_DASK=1       skip Dask (otherwise python3-distributed is installed
#                         with apt-get when missing and we are root)
#   JOBS=N                build parallelism (default: nproc)
# Results (JSON per round, the section as results.md) go to BUILD_DIR/bench-results.
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
ROUNDS=${BENCH_ROUNDS:-3}
OUT=$BUILD_DIR/bench-results
PY=/usr/bin/python3 # Debian's: it sees python3-distributed (the pyenv python3 does not)

if [[ ${BENCH_QUICK:-0} == 1 ]]; then
  LAT_N=100 LOAD_M=200 DASK_LAT_N=50 DASK_LOAD_M=200 WARMUP=10
else
  LAT_N=500 LOAD_M=1000 DASK_LAT_N=200 DASK_LOAD_M=1000 WARMUP=50
fi
CONCURRENCY=(4 16)

# ---- build
if [[ ! -f $BUILD_DIR/build.ninja && ! -f $BUILD_DIR/Makefile ]]; then
  echo "bench: configuring a Release build in $BUILD_DIR" >&2
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >&2
fi
if ! cmake --build "$BUILD_DIR" --target flotilla flotilla_e2e_bench -j "${JOBS:-$(nproc)}" >&2; then
  echo "bench: the build failed (above). If it says flotilla_e2e_bench is unknown: bench/ is" \
    "configured only when Google Benchmark is found; install libbenchmark-dev, re-run cmake." >&2
  exit 1
fi
FLOTILLA=$BUILD_DIR/src/flotilla
BENCH=$BUILD_DIR/bench/flotilla_e2e_bench
BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt")
if [[ $BUILD_TYPE != Release ]]; then
  echo "bench: note: $BUILD_DIR is a $BUILD_TYPE build; published figures use Release" >&2
fi

# ---- Dask
DASK_SKIPPED=""
if [[ ${BENCH_NO_DASK:-0} == 1 ]]; then
  DASK_SKIPPED="BENCH_NO_DASK=1"
elif ! dpkg -s python3-distributed >/dev/null 2>&1; then
  if [[ $(id -u) == 0 ]]; then
    echo "bench: installing python3-distributed (Dask) with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q python3-distributed >&2 ||
      { apt-get update -q >&2 && apt-get install -y -q python3-distributed >&2; } ||
      DASK_SKIPPED="python3-distributed could not be installed"
  else
    DASK_SKIPPED="python3-distributed is not installed (apt-get install python3-distributed)"
  fi
fi

UNSHARE_FLAG=()
if unshare -pmuin --fork /bin/true 2>/dev/null; then UNSHARE_FLAG=(--unshare); fi

rm -rf "$OUT"
mkdir -p "$OUT"
CONC_FLAGS=()
DASK_CONC_FLAGS=()
for c in "${CONCURRENCY[@]}"; do
  CONC_FLAGS+=(--concurrency "$c")
  DASK_CONC_FLAGS+=(--concurrency "$c")
done
FL_CMD=("$BENCH" --flotilla "$FLOTILLA" --latency-n "$LAT_N" --throughput-m "$LOAD_M"
  --warmup "$WARMUP" "${CONC_FLAGS[@]}" "${UNSHARE_FLAG[@]}" --time-limit-s 100)
DASK_CMD=("$PY" bench/dask_peer.py --latency-n "$DASK_LAT_N" --throughput-m "$DASK_LOAD_M"
  --warmup "$WARMUP" "${DASK_CONC_FLAGS[@]}")

FAILED=0
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for ((r = 1; r <= ROUNDS; r++)); do
  echo "bench: round $r/$ROUNDS: flotilla" >&2
  if ! timeout -k 5 120 "${FL_CMD[@]}" --json "$OUT/flotilla-$r.json" >"$OUT/flotilla-$r.md"; then
    echo "bench: round $r: flotilla_e2e_bench failed (see above)" >&2
    FAILED=1
  fi
  if [[ -z $DASK_SKIPPED ]]; then
    echo "bench: round $r/$ROUNDS: dask" >&2
    if ! timeout -k 5 120 "${DASK_CMD[@]}" --json "$OUT/dask-$r.json" >"$OUT/dask-$r.txt"; then
      echo "bench: round $r: bench/dask_peer.py failed (see above)" >&2
      FAILED=1
    fi
  fi
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the machine, the commands, the report
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo "unknown (not a git checkout)")
if [[ -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]]; then COMMIT="$COMMIT (with uncommitted changes)"; fi
MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
MEM=$(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
"$PY" - "$OUT/machine.json" <<EOF
import json, sys
json.dump({
    "date": "$(date -u '+%Y-%m-%d %H:%M UTC')",
    "nproc": "$(nproc)",
    "model": """$MODEL""",
    "mem": "$MEM",
    "kernel": "$(uname -r)",
    "load_before": "$LOAD_BEFORE",
    "load_after": "$LOAD_AFTER",
    "build_dir": "$BUILD_DIR",
    "build_type": "$BUILD_TYPE",
    "commit": "$COMMIT",
    "command": "bench/run.sh $BUILD_DIR",
    "flotilla_cmd": """${FL_CMD[*]}""",
    "dask_cmd": """${DASK_CMD[*]}""",
    "dask_skipped": """$DASK_SKIPPED""",
}, open(sys.argv[1], "w"), indent=2)
EOF
DOCS_FLAG=()
if [[ ${BENCH_WRITE_DOCS:-0} == 1 ]]; then DOCS_FLAG=(--docs docs/benchmarks.md); fi
"$PY" bench/report.py --dir "$OUT" --machine "$OUT/machine.json" "${DOCS_FLAG[@]}" |
  tee "$OUT/results.md"
exit "$FAILED"
