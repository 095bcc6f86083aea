#!/usr/bin/env bash
# Leader failover of the HA manager: three replicas on a 3-member etcd
# cluster and Redis, two agents; the leader is killed with SIGKILL at a
# random point while work runs, N times in one run (tests/fault/
# failover_test.cc with FLOTILLA_FAILOVER_KILLS=N). Prints, per run, the
# failover time (from the kill until a task submitted after it has run)
# p50 / p99 / max, how long until a standby led, the executions
# acknowledged, lost (must be 0) and reported other than once (must be 0),
# with the host's fork/exec time and load beside them.
#
#   bench/failover.sh [BUILD_DIR]
#
# Environment: FAILOVER_RUNS ("20 100": kills per run).
# Output: BUILD_DIR/bench-results/failover.md and failover-<N>.log.
# Exits non-zero if a run failed (a target missed, or something lost).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../build}" && pwd)
cmake --build "$build" --target flotilla fault_test -j "${JOBS:-1}" >/dev/null
out=$build/bench-results
mkdir -p "$out"

# Mean fork + exec + wait of /bin/true from bash, in ms (200 runs).
forkexec_ms() {
  local t0 t1
  t0=$(date +%s%N)
  for _ in $(seq 200); do /bin/true; done
  t1=$(date +%s%N)
  echo "scale=2; ($t1 - $t0) / 200 / 1000000" | bc
}

failed=0
{
  echo "### Run of $(date -u '+%Y-%m-%d %H:%M') UTC ($(nproc) cores)"
  echo
  echo "| kills | failover p50 | p99 | max | a standby led, p50 / max | acknowledged | lost | reported twice | fork/exec of /bin/true | load (1 min) | test |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  for n in ${FAILOVER_RUNS:-20 100}; do
    log=$out/failover-$n.log
    fe=$(forkexec_ms)
    load=$(cut -d' ' -f1 /proc/loadavg)
    rc=0
    FLOTILLA_FAILOVER_KILLS=$n "$build/tests/fault_test" \
      --gtest_filter='FailoverTest.KilledLeadersAreReplacedAndNothingAcknowledgedIsLost' \
      >"$log" 2>&1 || rc=$?
    line=$(grep -E '^failover: ' "$log" | tail -1 || true)
    verdict=passed
    if [[ $rc -ne 0 ]]; then verdict="FAILED (see $log)"; failed=1; fi
    if [[ -z "$line" ]]; then
      echo "| $n | - | - | - | - | - | - | - | $fe ms | $load | $verdict |"
      continue
    fi
    # failover: N kills, p50 X ms, p99 Y ms, max Z ms; A executions acknowledged,
    # L lost, T reported twice; a standby led after p50 E ms, max F ms
    echo "$line" | sed -E "s/^failover: ([0-9]+) kills, p50 ([0-9]+) ms, p99 ([0-9]+) ms, max ([0-9]+) ms; ([0-9]+) executions acknowledged, ([0-9]+) lost, ([0-9]+) reported twice; a standby led after p50 ([0-9]+) ms, max ([0-9]+) ms$/| \1 | \2 ms | \3 ms | \4 ms | \8 ms \/ \9 ms | \5 | \6 | \7 | $fe ms | $load | $verdict |/"
  done
  echo
  echo "Targets (issue 12): failover p50 <= 5 s and p99 <= 10 s over 20 kills; 0 lost over 100 kills; 0 reported twice."
} | tee "$out/failover.md"
exit $failed
