#!/usr/bin/env bash
# What security costs per task: the end-to-end bench (bench/e2e_bench.cc)
# with mutual TLS and a user token (the default) and in the development mode
# (plaintext, no token), in alternating rounds on the same machine, so both
# see the same noise. Prints a markdown table of medians over the rounds.
#
#   bench/security.sh [BUILD_DIR]     (env: ROUNDS=3 N=300 M=1000)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
ROUNDS=${ROUNDS:-3}
N=${N:-300}
M=${M:-1000}
cmake --build "$BUILD_DIR" --target flotilla flotilla_e2e_bench >&2
OUT=$(mktemp -d /tmp/flotilla-secbench-XXXXXX)
trap 'rm -rf "$OUT"' EXIT
for r in $(seq 1 "$ROUNDS"); do
  for mode in insecure tls; do
    echo "bench: round $r, $mode" >&2
    "$BUILD_DIR/bench/flotilla_e2e_bench" --flotilla "$BUILD_DIR/src/flotilla" --security "$mode" \
      --latency-n "$N" --throughput-m "$M" --concurrency 4 --warmup 30 \
      --json "$OUT/$mode-$r.json" >/dev/null
  done
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys, os
out, rounds = sys.argv[1], int(sys.argv[2])
def load(mode):
    return [json.load(open(os.path.join(out, "%s-%d.json" % (mode, r)))) for r in range(1, rounds + 1)]
rows = []
def med(runs, f):
    return statistics.median(f(j) for j in runs)
res = {m: load(m) for m in ("insecure", "tls")}
metrics = [
    ("no-op task, end to end, p50 (ms)", lambda j: j["latency"]["e2e"]["p50_us"] / 1000),
    ("Submit RPC alone, p50 (ms)", lambda j: j["latency"]["submit_rpc"]["p50_us"] / 1000),
    ("unary RPC floor (ListNodes), p50 (ms)", lambda j: j["latency"]["unary_rpc"]["p50_us"] / 1000),
    ("manager CPU per task (µs)", lambda j: j["latency"]["cpu_per_task"]["manager_us"]),
    ("agent CPU per task (µs)", lambda j: j["latency"]["cpu_per_task"]["agent_us"]),
    ("client CPU per task (µs)", lambda j: j["latency"]["cpu_per_task"]["client_us"]),
    ("throughput, 4 clients (tasks/s)", lambda j: j["throughput"][0]["per_second"]),
    ("fork/exec /bin/true, p50 (ms)", lambda j: j["peers"][0]["latency"]["p50_us"] / 1000),
]
print("| median of %d rounds | plaintext (dev mode) | mutual TLS + token | TLS / plain |" % rounds)
print("|---|---|---|---|")
for name, f in metrics:
    a, b = med(res["insecure"], f), med(res["tls"], f)
    print("| %s | %.3f | %.3f | %.2f× |" % (name, a, b, b / a if a else float("nan")))
PY
