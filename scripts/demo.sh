#!/usr/bin/env bash
# `make demo`: starts a local federation (1 manager + 3 agents with different
# regions, trust levels and data sets), runs a showcase workload that shows
# where each execution ran and why, prints a summary, and shuts it all down.
set -euo pipefail

FLOTILLA=${1:-build/src/flotilla}
FLOTILLA=$(realpath "$FLOTILLA")
cd "$(dirname "$0")/.."

# A private state directory, so the demo never touches a federation of yours.
export XDG_DATA_HOME=$(mktemp -d /tmp/flotilla-demo-XXXXXX)
unset FLOTILLA_MANAGER
cleanup() {
  "$FLOTILLA" down --purge >/dev/null 2>&1 || true
  rm -rf "$XDG_DATA_HOME"
}
trap cleanup EXIT

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }

bold "Start a local federation: one manager, three agents"
show "$FLOTILLA" up --agents 3

bold "Run a command; its output streams back and its exit code is ours"
show "$FLOTILLA" run -- echo "hello from flotilla"
show "$FLOTILLA" run --python 'import sys; print("python", sys.version.split()[0]); sys.exit(3)' || echo "(exit code $?)"

bold "Every execution runs in a Linux sandbox from a warm pool"
show "$FLOTILLA" template list
show "$FLOTILLA" run -- python3 -c 'print(2 + 2)'
show "$FLOTILLA" run -- sh -c 'echo "uid $(id -u) on $(hostname)"; grep -E "CapEff|Seccomp:" /proc/self/status; ls /'
show "$FLOTILLA" run -- cat /etc/shadow || echo "(exit code $?: the host's /etc is not in the sandbox)"

bold "Placement: data locality, trust and capabilities decide the node"
show "$FLOTILLA" run -v --data genomics/hg38 -- sh -c 'echo "reading genomics/hg38 locally on $FLOTILLA_NODE_ID"'
show "$FLOTILLA" run -v --min-trust 7 -- sh -c 'echo "sensitive work on $FLOTILLA_NODE_ID"'
show "$FLOTILLA" run -v --cap network-egress --data climate/era5-2025 -- sh -c 'echo "egress + climate data on $FLOTILLA_NODE_ID"'

bold "A batch from a request file"
show "$FLOTILLA" submit examples/batch.yaml --wait

bold "Bad input gets a clear error (these are meant to fail)"
show "$FLOTILLA" run --cpu 64 -- true || true
show "$FLOTILLA" run --min-trust 10 -- true || true
show "$FLOTILLA" run --timeout 1s -- sleep 10 || echo "(exit code $? = timed out)"

bold "Cancel a running execution"
id=$("$FLOTILLA" run --detach -- sleep 60)
sleep 0.5
show "$FLOTILLA" cancel "$id"

bold "Why did it run there? (the placement decision of the genome job)"
genome=$("$FLOTILLA" ps --json -n 50 | python3 -c '
import json, sys
for e in json.load(sys.stdin).get("executions", []):
    if e.get("request", {}).get("name") == "genome-align":
        print(e["id"]); break')
show "$FLOTILLA" get "$genome"

bold "Functions: decorate a plain Python function, call it, watch it split across regions"
show "$FLOTILLA" split analyze examples/python/split_demo.py:survey
printf '\033[2m$ PYTHONPATH=sdk/python python3 examples/python/split_demo.py\033[0m\n'
PYTHONPATH=sdk/python python3 examples/python/split_demo.py
show "$FLOTILLA" function list
show "$FLOTILLA" workflow list
show "$FLOTILLA" workflow run examples/workflow.yaml

bold "Predictive resource management: one task resized in place, another migrated"
./scripts/demo_predict.sh "$FLOTILLA"

bold "Nodes and executions"
show "$FLOTILLA" nodes
show "$FLOTILLA" ps -n 20

bold "Summary"
"$FLOTILLA" ps --json -n 100 | python3 -c '
import collections, json, sys
execs = json.load(sys.stdin).get("executions", [])
by_node = collections.Counter(e.get("node_id") or "-" for e in execs)
by_state = collections.Counter(e.get("state", "?").replace("EXECUTION_", "").lower() for e in execs)
print(f"{len(execs)} executions")
print("  by node:  " + ", ".join(f"{n} {c}" for n, c in sorted(by_node.items())))
print("  by state: " + ", ".join(f"{s} {c}" for s, c in sorted(by_state.items())))'
record="$XDG_DATA_HOME/flotilla/federation.json"
metrics=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["manager_http"])' "$record")
ca=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1])).get("ca",""))' "$record")
# The HTTP port speaks HTTPS with the manager's certificate (issued for 127.0.0.1 by `up`):
# curl checks it against the federation's CA.
echo "  metrics:  https://$metrics/metrics"
curl -s --cacert "$ca" "https://$metrics/metrics" | grep -E '^flotilla_(nodes|executions_total|end_to_end_latency_seconds_count)' | sed 's/^/    /'
token_file=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1])).get("token_file",""))' "$record")
echo "  dashboard: https://$metrics/dashboard/  (sign in with the token in $token_file;"
echo "             the browser does not know the federation's CA $ca: import it or accept the warning)"

if [[ "${FLOTILLA_DEMO_KEEP:-}" == 1 ]]; then
  bold "FLOTILLA_DEMO_KEEP=1: the federation stays up for the dashboard"
  echo "  stop it with: XDG_DATA_HOME=$XDG_DATA_HOME $FLOTILLA down --purge"
  trap - EXIT
  exit 0
fi
echo "  (run with FLOTILLA_DEMO_KEEP=1 to keep the federation up and browse the dashboard)"

bold "Shut the federation down"
show "$FLOTILLA" down --purge
trap - EXIT
rm -rf "$XDG_DATA_HOME"
