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
#
# The sandbox step, separate (needs root, ~1 min):
#   bench/run.sh sandbox [BUILD_DIR]
# builds flotilla_sandbox_bench and flotilla-guest, installs bubblewrap, crun
# and runc with apt-get when missing, and runs bench/sandbox_bench.cc: cold and
# warm start of Flotilla's Linux sandboxes (no-op and `python3 -c pass`) side by
# side with fork/exec, bwrap, crun run and runc run. Its output goes to
# BUILD_DIR/bench-results/sandbox.{md,json}; with BENCH_WRITE_DOCS=1 it also
# replaces the generated part of "Sandboxes: cold and warm start" in
# docs/benchmarks.md. BENCH_QUICK=1 makes it a smoke run (~10 s).
#
# The workflow step, separate (~2 min; needs root for the agents' sandboxes):
#   bench/run.sh workflow [BUILD_DIR]
# builds flotilla and flotilla-guest, installs python3-distributed with apt-get
# when missing, and runs bench/workflow_bench.py with /usr/bin/python3: its own
# `flotilla up --agents 3` federation in a temporary XDG_DATA_HOME, a split
# fan-out of 16 CPU-bound pieces against a local call (speedup), and the
# per-node overhead of no-op DAGs side by side with a Dask LocalCluster (3
# workers). Output: BUILD_DIR/bench-results/workflow.{md,json}; with
# BENCH_WRITE_DOCS=1 it also replaces the generated part of "Workflows:
# split fan-out speedup and per-node overhead" in docs/benchmarks.md.
# BENCH_QUICK=1 makes it a smoke run (~30 s).
#
# The micro-VM step, separate (needs root for the Linux sandbox beside it, ~40 s):
#   bench/run.sh microvm [BUILD_DIR]
# runs bench/microvm_bench.cc: QEMU microvm (TCG) cold boot vs snapshot
# restore, a no-op task in a pooled VM beside a warm Linux sandbox, and the
# memory (VmRSS, Pss) of idle VMs, and the QEMU jail's cost (jailed vs unjailed
# starts and restores). Output: BUILD_DIR/bench-results/microvm.md.
#
# The shard channel step, separate (~3 min):
#   bench/run.sh shard [BUILD_DIR]
# builds flotilla_shard_channel_bench and runs bench/shard_channel_bench.cc:
# 64-byte messages between two processes pinned to CPUs 0 and 1 through the
# shared-memory ring, a unix socket and a pipe (throughput and ping-pong
# latency), 5 rounds; once as it is, and, as root, once more under
# `chrt -f 10` so that background load on a shared machine does not take the
# pinned CPUs away. Output: BUILD_DIR/bench-results/shard_channel{,_rt}.{md,json}.
# BENCH_QUICK=1 makes it a smoke run (~10 s).
set -euo pipefail

cd "$(dirname "$0")/.."

# ---- the shard channel step: bench/run.sh shard [BUILD_DIR]
if [[ ${1:-} == shard ]]; then
  BUILD_DIR=${2:-build}
  OUT=$BUILD_DIR/bench-results
  mkdir -p "$OUT"
  if [[ ! -f $BUILD_DIR/build.ninja ]]; then
    cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release
  fi
  cmake --build "$BUILD_DIR" -j "${JOBS:-$(nproc)}" --target flotilla_shard_channel_bench
  BIN=$BUILD_DIR/bench/flotilla_shard_channel_bench
  if [[ -n ${BENCH_QUICK:-} ]]; then
    ARGS=(--messages=200000 --round-trips=20000 --rounds=1)
  else
    ARGS=(--messages=5000000 --round-trips=200000 --rounds=5)
  fi
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  "$BIN" "${ARGS[@]}" --json-out="$OUT/shard_channel.json" | tee "$OUT/shard_channel.md"
  if [[ $(id -u) == 0 ]]; then
    echo "with real-time priority (chrt -f 10):" >&2
    chrt -f 10 "$BIN" "${ARGS[@]}" --json-out="$OUT/shard_channel_rt.json" | tee "$OUT/shard_channel_rt.md"
  fi
  echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  exit 0
fi

# ---- the component pipeline step: bench/run.sh component [BUILD_DIR]
# bench/component_pipeline_bench.py: the example log pipeline sharded by
# `flotilla component run` vs the same code in one process, CPU per record,
# fork/exec and Python start, and recovery after a SIGKILL. As root, again
# under chrt -f 10 (the wall-clock figures otherwise measure the other jobs
# on this shared machine; see docs/benchmarks.md).
if [[ ${1:-} == component ]]; then
  BUILD_DIR=${2:-build}
  OUT=$BUILD_DIR/bench-results
  mkdir -p "$OUT"
  if [[ ! -f $BUILD_DIR/build.ninja ]]; then
    cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release
  fi
  cmake --build "$BUILD_DIR" -j "${JOBS:-$(nproc)}" --target flotilla
  if [[ -n ${BENCH_QUICK:-} ]]; then ARGS=(--records 50000 --rounds 1); else ARGS=(--records 400000 --rounds 3); fi
  /usr/bin/python3 bench/component_pipeline_bench.py --flotilla "$BUILD_DIR/src/flotilla" "${ARGS[@]}" \
    --json-out "$OUT/component.json" | tee "$OUT/component.md"
  if [[ $(id -u) == 0 ]]; then
    timeout 900 chrt -f 10 /usr/bin/python3 bench/component_pipeline_bench.py \
      --flotilla "$BUILD_DIR/src/flotilla" "${ARGS[@]}" --json-out "$OUT/component_rt.json" |
      tee "$OUT/component_rt.md"
  fi
  exit 0
fi

# ---- the micro-VM step: bench/run.sh microvm [BUILD_DIR]
if [[ ${1:-} == microvm ]]; then
  BUILD_DIR=${2:-build}
  OUT=$BUILD_DIR/bench-results
  mkdir -p "$OUT"
  if [[ ! -f $BUILD_DIR/build.ninja ]]; then
    cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release
  fi
  cmake --build "$BUILD_DIR" -j "${JOBS:-$(nproc)}" --target flotilla_microvm_bench
  if [[ -n ${BENCH_QUICK:-} ]]; then
    ARGS=(--cold 1 --restores 3 --noop 30 --idle 2 --jail-compare 5 --python 3)
  else
    ARGS=(--cold 3 --restores 10 --noop 200 --idle 4 --jail-compare 15 --python 10)
  fi
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  "$BUILD_DIR/bench/flotilla_microvm_bench" --initrd "$BUILD_DIR/src/guest-initramfs.cpio" \
    --guest "$BUILD_DIR/src/flotilla-guest" --templates templates \
    --rootfs "$BUILD_DIR/src/guest-rootfs.img" "${ARGS[@]}" | tee "$OUT/microvm.md"
  echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  exit 0
fi

# ---- the sandbox step: bench/run.sh sandbox [BUILD_DIR]
if [[ ${1:-} == sandbox ]]; then
  BUILD_DIR=${2:-build}
  OUT=$BUILD_DIR/bench-results
  if [[ $(id -u) != 0 ]]; then
    echo "bench: the sandbox benchmark needs root (containers, cgroups, crun/runc)" >&2
    exit 1
  fi
  missing=()
  for pair in bwrap:bubblewrap crun:crun runc:runc; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || [[ -x /usr/sbin/${pair%%:*} ]] || missing+=("${pair#*:}")
  done
  if ((${#missing[@]})); then
    echo "bench: installing ${missing[*]} with apt-get (peers of the sandbox benchmark)" >&2
    export DEBIAN_FRONTEND=noninteractive
    # No recommends: runc would pull in Debian's criu.
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
      { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; } ||
      echo "bench: could not install ${missing[*]}; those peers are left out" >&2
  fi
  if [[ ! -f $BUILD_DIR/build.ninja && ! -f $BUILD_DIR/Makefile ]]; then
    echo "bench: configuring a Release build in $BUILD_DIR" >&2
    cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >&2
  fi
  cmake --build "$BUILD_DIR" --target flotilla-guest flotilla_sandbox_bench -j "${JOBS:-$(nproc)}" >&2
  if [[ ${BENCH_QUICK:-0} == 1 ]]; then
    SB_ARGS=(-n 30 --slow-iterations 10 --warmup 3)
  else
    SB_ARGS=(-n 300 --slow-iterations 100 --warmup 10)
  fi
  SB_CMD=("$BUILD_DIR/bench/flotilla_sandbox_bench" --guest "$BUILD_DIR/src/flotilla-guest"
    --templates templates "${SB_ARGS[@]}")
  mkdir -p "$OUT"
  LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
  RC=0
  timeout -k 5 300 "${SB_CMD[@]}" --json "$OUT/sandbox.json" >"$OUT/sandbox-table.md" || RC=$?
  LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
  COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [[ -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]]; then COMMIT="$COMMIT (with uncommitted changes)"; fi
  BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt")
  version() { "$@" 2>/dev/null | head -1 || true; }
  {
    echo "### Run of $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "- Machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1))," \
      "$(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r);" \
      "load average $LOAD_BEFORE before, $LOAD_AFTER after."
    echo "- Build: \`$BUILD_DIR\`, CMAKE_BUILD_TYPE=$BUILD_TYPE, commit $COMMIT."
    echo "- Command: \`bench/run.sh sandbox $BUILD_DIR\`, which runs \`${SB_CMD[*]}\`."
    echo "- Peers: $(version bwrap --version), $(version crun --version), $(version runc --version);" \
      "Python $(/usr/bin/python3 -c 'import sys; print(sys.version.split()[0])') (/usr/bin/python3, as in the sandboxes)."
    echo
    cat "$OUT/sandbox-table.md"
  } >"$OUT/sandbox.md"
  cat "$OUT/sandbox.md"
  if [[ ${BENCH_WRITE_DOCS:-0} == 1 && $RC == 0 ]]; then
    /usr/bin/python3 - "$OUT/sandbox.md" docs/benchmarks.md <<'PY'
import sys
new, doc = open(sys.argv[1]).read(), open(sys.argv[2]).read()
begin, end = "<!-- sandbox-bench:begin -->", "<!-- sandbox-bench:end -->"
if begin not in doc or end not in doc:
    sys.exit("bench: docs/benchmarks.md has no sandbox-bench markers; not written")
head, rest = doc.split(begin, 1)
open(sys.argv[2], "w").write(head + begin + "\n\n" + new.strip() + "\n\n" + end + rest.split(end, 1)[1])
print("bench: wrote the sandbox section of docs/benchmarks.md", file=sys.stderr)
PY
  fi
  exit "$RC"
fi

# ---- the workflow step: bench/run.sh workflow [BUILD_DIR]
if [[ ${1:-} == workflow ]]; then
  BUILD_DIR=${2:-build}
  OUT=$BUILD_DIR/bench-results
  if [[ ! -f $BUILD_DIR/build.ninja && ! -f $BUILD_DIR/Makefile ]]; then
    echo "bench: configuring a Release build in $BUILD_DIR" >&2
    cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >&2
  fi
  cmake --build "$BUILD_DIR" --target flotilla flotilla-guest -j "${JOBS:-$(nproc)}" >&2
  if ! dpkg -s python3-distributed >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
    echo "bench: installing python3-distributed (Dask) with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q python3-distributed >&2 ||
      { apt-get update -q >&2 && apt-get install -y -q python3-distributed >&2; } || true
  fi
  WF_ARGS=(--flotilla "$BUILD_DIR/src/flotilla")
  if [[ ${BENCH_QUICK:-0} == 1 ]]; then WF_ARGS+=(--speedup-rounds 1 --overhead-rounds 2 --piece-ms 100); fi
  if ! /usr/bin/python3 -c 'import distributed' 2>/dev/null; then WF_ARGS+=(--no-dask); fi
  mkdir -p "$OUT"
  RC=0
  timeout -k 10 600 /usr/bin/python3 bench/workflow_bench.py "${WF_ARGS[@]}" \
    --json "$OUT/workflow.json" --md "$OUT/workflow.md" || RC=$?
  if [[ ${BENCH_WRITE_DOCS:-0} == 1 && $RC == 0 ]]; then
    /usr/bin/python3 - "$OUT/workflow.md" docs/benchmarks.md <<'PY'
import sys
new, doc = open(sys.argv[1]).read(), open(sys.argv[2]).read()
begin, end = "<!-- workflow-bench:begin -->", "<!-- workflow-bench:end -->"
if begin not in doc or end not in doc:
    sys.exit("bench: docs/benchmarks.md has no workflow-bench markers; not written")
head, rest = doc.split(begin, 1)
open(sys.argv[2], "w").write(head + begin + "\n\n" + new.strip() + "\n\n" + end + rest.split(end, 1)[1])
print("bench: wrote the workflow section of docs/benchmarks.md", file=sys.stderr)
PY
  fi
  exit "$RC"
fi

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
