#!/usr/bin/env bash
# Part of `make demo`: predictive resource management on the running local
# federation. Two more agents join with adaptive allocation on — "lab-big"
# with the host's memory and "lab-small" with 300 MiB — and two Python tasks
# grow their memory past the python template's 512 MiB limit:
#   - on lab-big the forecast's risk rises and the agent raises the limit in
#     place before the task reaches it (the task then succeeds instead of
#     being OOM-killed);
#   - on lab-small there is no room to raise it, so the agent reports that
#     the task needs migration, and the manager checkpoints it, moves it to
#     the cheapest node with room and resumes it there (CRIU).
# Prints the risk score and the reason of every change. Stops the agents it
# started, by pid.
set -euo pipefail
FLOTILLA=$(realpath "${1:-build/src/flotilla}")
cd "$(dirname "$0")/.."
state="${XDG_DATA_HOME:-$HOME/.local/share}/flotilla"
grpc=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["manager_grpc"])' "$state/federation.json")

pids=()
stop_agents() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done; }
trap stop_agents EXIT

insecure=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1])).get("insecure", False))' "$state/federation.json")

start_agent() {  # id region extra-resources
  local id=$1 region=$2 resources=$3
  mkdir -p "$state/work-$id"
  # Every agent proves who it is with a certificate from the federation's CA.
  local tls="tls: {insecure: true}"
  if [ "$insecure" != True ]; then
    "$FLOTILLA" ca issue --node "$id" --trust 5 --ip 127.0.0.1 --dir "$state/pki" >/dev/null
    tls="tls: {ca: $state/pki/ca.crt, cert: $state/pki/$id.crt, key: $state/pki/$id.key}"
  fi
  cat > "$state/$id.yaml" <<YAML
$tls
node_id: $id
manager: $grpc
listen: 127.0.0.1:0
work_dir: $state/work-$id
labels: {region: $region}
security: {trust_level: 5}
resources: {cpu_millis: 2000$resources}
resize: {enabled: true}
YAML
  "$FLOTILLA" agent --config "$state/$id.yaml" --log-level info > "$state/logs/$id.log" 2>&1 &
  pids+=($!)
}
start_agent lab-big lab ""
start_agent lab-small lab-small ", memory_bytes: 314572800"
for _ in $(seq 100); do
  n=$("$FLOTILLA" nodes --json | python3 -c 'import json,sys;print(sum(1 for n in json.load(sys.stdin).get("nodes",[]) if n.get("status")=="NODE_ONLINE"))')
  [ "$n" -ge 5 ] && break
  sleep 0.2
done
# Migration needs checkpointing, which each agent proves at start with a
# real dump and restore (the CHECKPOINT column); wait for that, and skip the
# migration part, saying why, where it does not work.
why_not=""
# Bounded in time, not in tries: on a busy host the probe takes longer.
probe_deadline=$((SECONDS + 150))
while [ "$SECONDS" -lt "$probe_deadline" ]; do
  why_not=$("$FLOTILLA" nodes --json | python3 -c '
import json, sys
nodes = {n["id"]: n.get("checkpoint", {}) for n in json.load(sys.stdin).get("nodes", [])}
states = [nodes.get(i, {}).get("state", "") for i in ("lab-big", "lab-small")]
if any(s in ("", "CHECKPOINT_PROBING") for s in states):
    print("probing")
else:
    print("; ".join("%s: %s" % (i, nodes[i].get("reason", "?")) for i in ("lab-big", "lab-small")
                    if nodes[i].get("state") != "CHECKPOINT_AVAILABLE"))')
  [ "$why_not" != probing ] && break
  sleep 0.2
done
"$FLOTILLA" nodes | sed -n '1p;/lab/p'

grow() {  # MB, seconds to hold
  cat <<PY
import time
chunks, ticks = [], 0
for _ in range($1 // 10):
    chunks.append(bytearray(10 * 1000 * 1000))
    time.sleep(0.15)
for _ in range($2):
    ticks += 1
    time.sleep(1)
print("held", len(chunks) * 10, "MB for", ticks, "s; state kept:", sum(len(c) for c in chunks))
PY
}
resized=$("$FLOTILLA" run --detach --region lab --name grows-to-700MB --python "$(grow 700 3)")
echo "resize candidate:    $resized (prefers region lab)"
migrated=""
if [ -z "$why_not" ]; then
  migrated=$("$FLOTILLA" run --detach --region lab-small --name grows-on-a-small-node --python "$(grow 450 6)")
  echo "migration candidate: $migrated (prefers region lab-small, 300 MiB)"
else
  printf '\033[1;31mSKIPPING THE MIGRATION: checkpointing is not available (%s)\033[0m\n' "$why_not"
fi
echo

# Follow both: print each change of node, limit, risk or pressure.
python3 - "$FLOTILLA" "$resized" $migrated <<'PY'
import base64, json, subprocess, sys, time
flotilla, ids = sys.argv[1], sys.argv[2:]
last = {}
deadline = time.time() + 90
done = set()
while time.time() < deadline and len(done) < len(ids):
    for i in ids:
        if i in done:
            continue
        out = subprocess.run([flotilla, "--json", "get", i], capture_output=True, text=True)
        if out.returncode != 0:
            continue
        e = json.loads(out.stdout)
        u = e.get("usage", {})
        state = e.get("state", "").replace("EXECUTION_", "").lower()
        view = (e.get("node_id"), u.get("memory_limit_bytes"), u.get("resizes"), u.get("needs_migration"), state)
        sampled = int(u.get("memory_bytes", 0) or 0) > 0
        if view != last.get(i) and sampled:
            last[i] = view
            mib = lambda b: "%d MiB" % (int(b or 0) >> 20)
            line = "%-24s %-9s on %-9s mem %-8s limit %-8s risk %.2f" % (
                i[:24], state, e.get("node_id", "-"), mib(u.get("memory_bytes")),
                mib(u.get("memory_limit_bytes")), float(u.get("risk", 0)))
            if u.get("last_resize"):
                line += "  resized: " + u["last_resize"]
            if u.get("needs_migration"):
                line += "  NEEDS MIGRATION: " + u.get("pressure_reason", "")
            print(line, flush=True)
        if state in ("succeeded", "failed", "timed_out", "cancelled"):
            done.add(i)
            out = base64.b64decode(e.get("result", {}).get("stdout", "") or "").decode(errors="replace")
            print("%-24s %s on %s: %s" % (i[:24], state, e.get("node_id"), out.strip()), flush=True)
    time.sleep(0.3)
PY
echo
echo "The manager's account of the migration:"
grep -hE "migrat" "$state/logs/manager.log" | tail -n 4 | sed 's/^/  /' || echo "  (no migration logged)"
echo "What each task printed (the migrated one kept its memory across the move):"
for id in "$resized" $migrated; do
  "$FLOTILLA" logs "$id" 2>/dev/null | tail -n 1 | sed "s/^/  $id: /" || true
done
