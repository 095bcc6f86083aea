"""Workflow benchmark (issue 5, item 9): split fan-out speedup, and per-node
orchestration overhead against Dask distributed, side by side in one run.

    /usr/bin/python3 bench/workflow_bench.py --flotilla build/src/flotilla
    bench/run.sh workflow [BUILD_DIR]          (the same, with a build first)

Run it with Debian's interpreter (/usr/bin/python3): it imports Dask
(python3-distributed) in this process, and it is also the interpreter the
sandboxes run pieces with, so the local call and the pieces run the same
Python. Standard library + the Flotilla SDK (sdk/python) + Dask.

It starts its own local federation (`flotilla up --agents 3`) in a temporary
XDG_DATA_HOME, and a Dask LocalCluster (3 worker processes, 1 thread each),
both on 127.0.0.1, and always stops both (`flotilla down --purge`, then the
cluster), also on SIGTERM / SIGINT.

A. Speedup. `fan(xs)` = `out = [work(x) for x in xs]; return sum(out)` with
   16 items, each `work` a pure-Python CPU loop calibrated here to
   --piece-ms (default 300 ms). Per round: the plain local call in this
   process, the splitable function through Flotilla (split into a fan-out of
   16 chunks over the agents) and, as a reference on the same cores, the
   same 16 calls as Dask tasks. Speedup = local / remote, medians of rounds.

B. Per-node overhead, no-op pieces, the same DAG shapes through both:
     split-fanout   the splitable `fan` with a no-op `work`: the planner's
                    items piece, N map chunks and the return piece (N+2 nodes),
                    deployed under a fresh name each round (the planner keeps
                    measured costs per function and merges a measured no-op
                    fan-out into one piece, which is right but not this shape);
                    Dask: an items task, N tasks reading it, a sum (N+2 tasks)
     dag-fanout     hand-written DAG: N python3 `pass` steps + a join step
                    taking all of them as inputs (N+1 nodes); Dask: N no-op
                    tasks and a join task on their futures
     dag-chain      hand-written DAG: N python3 `pass` steps, each taking the
                    previous one as input (N nodes); Dask: a chain of futures
     dag-parallel   hand-written DAG: N independent python3 `pass` steps
                    (N nodes); Dask: N no-op tasks, gathered
   per-node overhead = (end-to-end - work) / nodes with work = 0 (the pieces
   do nothing), end-to-end from the first request to the final result on
   the client. Shapes are interleaved per round (Flotilla, then Dask).

Writes a markdown section to stdout (and --md), raw figures to --json.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "sdk", "python"))

import flotilla  # noqa: E402  (the SDK, for deploy and analyze)

FAN_SOURCE = '''\
ITERS = {iters}


def work(x):
    t = 0
    for i in range(ITERS):
        t += (i * x) % 7
    return t


def fan(xs):
    out = [work(x) for x in xs]
    return sum(out)
'''

# A no-op at run time (x >= 0 always) whose dead loop gives it the static cost of
# real work, so the planner keeps one chunk per item as for the CPU-bound fan;
# with a plain `return x` it rightly merges the items into fewer chunks.
NOOP_SOURCE = '''\
def work(x):
    if x < 0:
        for i in range(100000):
            x += i % 7
    return x


def fan(xs):
    out = [work(x) for x in xs]
    return sum(out)
'''


def load_module(source, name):
    ns = {"__name__": name}
    exec(compile(source, name, "exec"), ns)
    return ns


# ---- Dask task bodies (module-level: pickled by reference or by value)


def dask_items(n):
    return list(range(n))


def dask_pick(items, i):
    return items[i]


def dask_sum(values):
    return sum(values)


def dask_noop(*args):
    return 0


def dask_work(iters, x):
    t = 0
    for i in range(iters):
        t += (i * x) % 7
    return t


# ---- helpers


class Stop(Exception):
    pass


def on_signal(signum, frame):
    raise Stop("signal %d" % signum)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt(x, nd=1):
    return "-" if x is None or x != x else ("%.*f" % (nd, x))


def span(xs, nd=1):
    return "%s [%s-%s]" % (fmt(median(xs), nd), fmt(min(xs), nd), fmt(max(xs), nd)) if xs else "-"


class Http:
    def __init__(self, base, token=None, ca=None):
        self.base = base
        self.token = token
        # The SDK's TLS: only the manager certified by the federation's CA is trusted.
        self.open = flotilla._http._opener(ca).open

    def call(self, method, path, body=None, timeout=120):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with self.open(req, timeout=timeout) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            raise RuntimeError("%s %s -> HTTP %d: %s" % (method, path, e.code,
                                                         e.read()[:500].decode("utf-8", "replace")))

    def run(self, body, deadline_s=120):
        """Submits and waits for the workflow; returns (workflow, client seconds)."""
        body = dict(body, wait_ms=int(deadline_s * 1000))
        t0 = time.perf_counter()
        wf = self.call("POST", "/execution/submit", body, timeout=deadline_s + 10)["workflow"]
        end = t0 + deadline_s
        while wf["state"] not in ("succeeded", "failed", "cancelled") and time.perf_counter() < end:
            left = max(1, int((end - time.perf_counter()) * 1000))
            wf = self.call("GET", "/v1/workflows/%s?wait_ms=%d" % (wf["id"], left),
                           timeout=left / 1000 + 10)["workflow"]
        return wf, time.perf_counter() - t0


def executions_of(wf):
    return [e for p in wf["pieces"] for e in p.get("executions", [])]


class Federation:
    def __init__(self, binary):
        self.binary = os.path.abspath(binary)
        self.dir = tempfile.mkdtemp(prefix="flotilla-wfbench-")
        self.env = dict(os.environ, XDG_DATA_HOME=self.dir)
        self.started = False
        self.ca = None

    def up(self, agents):
        self.started = True
        p = subprocess.run([self.binary, "up", "--agents", str(agents)], env=self.env,
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError("flotilla up failed: %s %s" % (p.stdout[-2000:], p.stderr[-2000:]))
        with open(os.path.join(self.dir, "flotilla", "federation.json")) as f:
            self.record = json.load(f)
        self.token = None
        if self.record.get("token_file"):
            with open(self.record["token_file"]) as f:
                self.token = f.read().strip()
        self.ca = self.record.get("ca") or None
        # The port speaks HTTPS unless the federation is in the development mode.
        scheme = "http://" if self.record.get("insecure") else "https://"
        return scheme + self.record["manager_http"]

    def get_execution(self, eid):
        p = subprocess.run([self.binary, "--json", "get", eid], env=self.env,
                           capture_output=True, text=True, timeout=30)
        return json.loads(p.stdout) if p.returncode == 0 else None

    def down(self):
        if self.started:
            subprocess.run([self.binary, "down", "--purge"], env=self.env,
                           capture_output=True, text=True, timeout=60)
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)


def calibrate(piece_ms):
    """Iterations of work() that take about piece_ms here (best of 3 probes)."""
    probe = load_module(FAN_SOURCE.format(iters=200000), "probe")
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        probe["work"](3)
        best = min(best, time.perf_counter() - t0)
    return max(10000, int(200000 * (piece_ms / 1000.0) / best))


def runner_duration_us(execution):
    import base64
    try:
        out = base64.b64decode(execution["result"]["stdout"]).decode("utf-8", "replace")
        return json.loads(out.rsplit("\x1eFLOTILLA-RESULT ", 1)[1])["duration_us"]
    except Exception:
        return None


def breakdown(fed, wf):
    """Per execution of one workflow: queued->started, the agent's run, user code (ms)."""
    rows = {"dispatch": [], "run": [], "user": [], "nodes": {}}
    for eid in executions_of(wf):
        e = fed.get_execution(eid)
        if not e:
            continue
        rows["nodes"][e.get("node_id", "?")] = rows["nodes"].get(e.get("node_id", "?"), 0) + 1
        try:
            rows["dispatch"].append(int(e["started_unix_ms"]) - int(e["submitted_unix_ms"]))
            rows["run"].append(int(e["result"]["wall_time_us"]) / 1000.0)
        except (KeyError, ValueError):
            pass
        d = runner_duration_us(e)
        if d is not None:
            rows["user"].append(d / 1000.0)
    return rows


# ---- the DAG shapes


def plan_steps(shape, n):
    if shape == "dag-fanout":
        steps = [{"name": "s%d" % i, "run": "pass", "runtime": "python3", "inputs": []}
                 for i in range(n)]
        steps.append({"name": "join", "run": "pass", "runtime": "python3",
                      "inputs": ["s%d" % i for i in range(n)]})
        return steps
    if shape == "dag-chain":
        return [{"name": "s%d" % i, "run": "pass", "runtime": "python3",
                 "inputs": ["s%d" % (i - 1)] if i else []} for i in range(n)]
    if shape == "dag-parallel":
        return [{"name": "s%d" % i, "run": "pass", "runtime": "python3", "inputs": []}
                for i in range(n)]
    raise ValueError(shape)


def dask_shape(client, shape, n):
    t0 = time.perf_counter()
    if shape == "split-fanout":
        items = client.submit(dask_items, n, pure=False)
        outs = [client.submit(dask_pick, items, i, pure=False) for i in range(n)]
        total = client.submit(dask_sum, outs, pure=False).result()
        assert total == sum(range(n)), total
    elif shape == "dag-fanout":
        outs = [client.submit(dask_noop, i, pure=False) for i in range(n)]
        client.submit(dask_noop, outs, pure=False).result()
    elif shape == "dag-chain":
        f = client.submit(dask_noop, pure=False)
        for _ in range(n - 1):
            f = client.submit(dask_noop, f, pure=False)
        f.result()
    elif shape == "dag-parallel":
        client.gather([client.submit(dask_noop, i, pure=False) for i in range(n)])
    return time.perf_counter() - t0


def nodes_of(shape, n):
    return {"split-fanout": n + 2, "dag-fanout": n + 1, "dag-chain": n, "dag-parallel": n}[shape]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flotilla", default=os.path.join(ROOT, "build", "src", "flotilla"))
    ap.add_argument("--agents", type=int, default=3)
    ap.add_argument("--pieces", type=int, default=16, help="fan-out width of the speedup part")
    ap.add_argument("--piece-ms", type=float, default=300.0)
    ap.add_argument("--speedup-rounds", type=int, default=5)
    ap.add_argument("--nodes", type=int, default=16, help="N of the overhead DAG shapes")
    ap.add_argument("--overhead-rounds", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=1, help="unrecorded rounds first")
    ap.add_argument("--no-dask", action="store_true")
    ap.add_argument("--json", help="write raw figures here")
    ap.add_argument("--md", help="write the markdown section here too")
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logging_quiet()

    load_before = open("/proc/loadavg").read().split()[:3]
    iters = calibrate(args.piece_ms)
    fan_src = FAN_SOURCE.format(iters=iters)
    local = load_module(fan_src, "workflow_bench_fan")
    xs = list(range(1, args.pieces + 1))
    expected = local["fan"](xs[:1])  # warm the code path
    res = {"args": vars(args), "iters": iters, "speedup": {}, "overhead": {}, "errors": [],
           "load_before": load_before}

    fed = Federation(args.flotilla)
    cluster = client = None
    try:
        base = fed.up(args.agents)
        http = Http(base, fed.token, fed.ca)
        fc = flotilla.Client(base, token=fed.token, ca=fed.ca)
        fc.deploy("bench.fan", fan_src, "fan", annotations={"splitable": True})
        fc.deploy("bench.noopfan", NOOP_SOURCE, "fan", annotations={"splitable": True})
        res["plan_fan"] = fc.analyze("bench.fan")["reason"]
        res["plan_noopfan"] = fc.analyze("bench.noopfan")["reason"]
        if not args.no_dask:
            import dask
            import distributed
            cluster = distributed.LocalCluster(n_workers=args.agents, threads_per_worker=1,
                                               processes=True, host="127.0.0.1",
                                               dashboard_address=None)
            client = distributed.Client(cluster)
            # Starting the cluster replaces SIGTERM/SIGINT handling: ours again, so
            # that a signal still stops the federation and the cluster.
            signal.signal(signal.SIGTERM, on_signal)
            signal.signal(signal.SIGINT, on_signal)
            res["dask_version"] = "%s (distributed %s)" % (dask.__version__,
                                                            distributed.__version__)
            client.gather([client.submit(dask_noop, i, pure=False) for i in range(30)])

        # ---- A. speedup
        expected = local["fan"](xs)
        sp = {"local": [], "flotilla": [], "flotilla_server": [], "dask": [], "pieces_ms": []}
        last_wf = None
        for r in range(args.warmup + args.speedup_rounds):
            rec = r >= args.warmup
            print("workflow-bench: speedup round %d/%d" % (r + 1, args.warmup + args.speedup_rounds),
                  file=sys.stderr)
            t0 = time.perf_counter()
            got = local["fan"](xs)
            t_local = time.perf_counter() - t0
            assert got == expected
            wf, t_fl = http.run({"function": "bench.fan", "args": [xs]})
            if wf["state"] != "succeeded" or wf.get("result_json") != expected:
                res["errors"].append("speedup: %s %s" % (wf["state"], wf.get("error")))
                break
            t_dask = None
            if client is not None:
                t0 = time.perf_counter()
                total = sum(client.gather([client.submit(dask_work, iters, x, pure=False)
                                           for x in xs]))
                t_dask = time.perf_counter() - t0
                assert total == expected
            if rec:
                sp["local"].append(t_local)
                sp["flotilla"].append(t_fl)
                sp["flotilla_server"].append((wf["finished_unix_ms"] - wf["submitted_unix_ms"]) / 1e3)
                if t_dask is not None:
                    sp["dask"].append(t_dask)
                last_wf = wf
        res["speedup"] = sp
        if last_wf is not None:
            res["speedup_split"] = {"split": last_wf.get("split"),
                                    "pieces": [(p["id"], p["kind"], len(p.get("executions", [])))
                                               for p in last_wf["pieces"]]}
            res["speedup_breakdown"] = breakdown(fed, last_wf)

        # ---- B. overhead
        shapes = ["split-fanout", "dag-fanout", "dag-chain", "dag-parallel"]
        ov = {s: {"flotilla": [], "dask": [], "error": None, "nodes": nodes_of(s, args.nodes)}
              for s in shapes}
        noop_xs = list(range(args.nodes))
        last = {}
        for r in range(args.warmup + args.overhead_rounds):
            rec = r >= args.warmup
            print("workflow-bench: overhead round %d/%d" % (r + 1, args.warmup + args.overhead_rounds),
                  file=sys.stderr)
            for s in shapes:
                o = ov[s]
                if o["error"] is None:
                    if s == "split-fanout":
                        # A fresh name per round: the planner keeps measured costs per
                        # function and would (rightly) run a measured no-op fan-out whole.
                        name = "bench.noopfan.r%d" % r
                        fc.deploy(name, NOOP_SOURCE, "fan", annotations={"splitable": True})
                        body = {"function": name, "args": [noop_xs]}
                    else:
                        body = {"plan": {"name": s, "steps": plan_steps(s, args.nodes)}}
                    try:
                        wf, t = http.run(body)
                    except RuntimeError as e:
                        o["error"] = str(e)
                    else:
                        ran = len(executions_of(wf))
                        if wf["state"] != "succeeded":
                            o["error"] = "workflow %s: %s (%d executions ran)" % (
                                wf["state"], json.dumps(wf.get("error")), ran)
                        elif ran != o["nodes"]:
                            o["error"] = "ran %d executions, expected %d (plan: %s)" % (
                                ran, o["nodes"], wf.get("reason"))
                        elif rec:
                            o["flotilla"].append(t)
                            last[s] = wf
                if client is not None and rec:
                    o["dask"].append(dask_shape(client, s, args.nodes))
                elif client is not None:
                    dask_shape(client, s, args.nodes)
        res["overhead"] = ov
        if "split-fanout" in last:
            res["overhead_breakdown"] = breakdown(fed, last["split-fanout"])
        if "dag-parallel" in last:
            res["overhead_breakdown_dag"] = breakdown(fed, last["dag-parallel"])
    finally:
        if client is not None:
            try:
                client.close()
                cluster.close()
            except Exception:
                pass
        fed.down()
    res["load_after"] = open("/proc/loadavg").read().split()[:3]
    md = report(res, args)
    print(md)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1, default=str)
    return 1 if res["errors"] else 0


def logging_quiet():
    import logging
    for name in ("distributed", "tornado", "asyncio"):
        logging.getLogger(name).setLevel(logging.ERROR)


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = "%.0f GiB" % (int(line.split()[1]) / 1048576)
    return os.cpu_count(), model, mem, os.uname().release


def report(res, args):
    ms = lambda xs: [x * 1000 for x in xs]  # noqa: E731
    nproc, model, mem, kernel = machine()
    out = []
    out.append("### Run of %s" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    out.append("")
    out.append("- Machine: %d CPUs (%s), %s, kernel %s; load average %s before, %s after." % (
        nproc, model, mem, kernel, " ".join(res["load_before"]), " ".join(res["load_after"])))
    out.append("- Command: `%s`" % " ".join(["/usr/bin/python3", "bench/workflow_bench.py"] +
                                             sys.argv[1:]))
    out.append("- Federation: `flotilla up --agents %d` (all agents on this machine, Linux "
               "sandboxes, warm Python pools); Python %s. Dask: %s, LocalCluster of %d worker "
               "processes x 1 thread on 127.0.0.1, in the bench process." % (
                   args.agents, sys.version.split()[0], res.get("dask_version", "skipped"),
                   args.agents))
    out.append("")
    sp = res["speedup"]
    if sp.get("local"):
        lm, fm = median(sp["local"]), median(sp["flotilla"])
        out.append("**A. Speedup: fan-out of %d CPU-bound pieces (~%.0f ms each, %d loop "
                   "iterations), %d rounds** (seconds, median [min-max])" % (
                       args.pieces, args.piece_ms, res["iters"], len(sp["local"])))
        out.append("")
        out.append("| run | wall (s) | speedup vs local |")
        out.append("|---|---|---|")
        out.append("| local: plain call `fan(xs)` in one process | %s | 1.00x |" % span(sp["local"], 2))
        out.append("| **Flotilla**: split into %s, %d agents (client wall) | %s | **%.2fx** |" % (
            ", ".join("%s %s x%d" % p for p in res["speedup_split"]["pieces"]), args.agents,
            span(sp["flotilla"], 2), lm / fm))
        out.append("| &nbsp;&nbsp;the same, submitted -> finished on the manager | %s | %.2fx |" % (
            span(sp["flotilla_server"], 2), lm / median(sp["flotilla_server"])))
        if sp["dask"]:
            out.append("| Dask: the same %d calls as tasks on %d workers | %s | %.2fx |" % (
                args.pieces, args.agents, span(sp["dask"], 2), lm / median(sp["dask"])))
        b = res.get("speedup_breakdown") or {}
        if b.get("run"):
            out.append("")
            out.append("Last round, per execution: placed on %s; queued -> started %s ms, "
                       "the agent's run %s ms, user code (the runner's own clock) %s ms "
                       "(medians [min-max])." % (
                           ", ".join("%s x%d" % kv for kv in sorted(b["nodes"].items())),
                           span(b["dispatch"], 0), span(b["run"], 0), span(b["user"], 0)))
        out.append("")
    out.append("**B. Per-node orchestration overhead, no-op pieces, N = %d, %d rounds** "
               "(ms; overhead per node = end-to-end / nodes, work = 0)" % (
                   args.nodes, args.overhead_rounds))
    out.append("")
    out.append("| DAG shape | nodes | Flotilla end-to-end | Flotilla per node | Dask end-to-end "
               "| Dask per node | Flotilla / Dask |")
    out.append("|---|---|---|---|---|---|---|")
    for s, o in res["overhead"].items():
        n = o["nodes"]
        d = ms(o["dask"])
        if o["error"] or not o["flotilla"]:
            f_e2e, f_per, ratio = "failed: %s" % (o["error"] or "no rounds"), "-", "-"
        else:
            f = ms(o["flotilla"])
            f_e2e, f_per = span(f), span([x / n for x in f], 2)
            ratio = "%.2fx" % (median(f) / median(d)) if d else "-"
        out.append("| %s | %d | %s | %s | %s | %s | %s |" % (
            s, n, f_e2e, f_per, span(d) if d else "-", span([x / n for x in d], 2) if d else "-",
            ratio))
    for key, label in (("overhead_breakdown", "split-fanout"),
                       ("overhead_breakdown_dag", "dag-parallel")):
        b = res.get(key)
        if b and b.get("run"):
            out.append("")
            out.append("Flotilla %s, last round, per execution: placed on %s; queued -> started "
                       "%s ms, the agent's run %s ms%s (medians [min-max])." % (
                           label, ", ".join("%s x%d" % kv for kv in sorted(b["nodes"].items())),
                           span(b["dispatch"], 0), span(b["run"], 1),
                           (", user code %s ms" % span(b["user"], 2)) if b["user"] else ""))
    if res["errors"]:
        out.append("")
        out.append("Errors: " + "; ".join(res["errors"]))
    out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
