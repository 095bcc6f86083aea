#!/usr/bin/env python3
"""Component pipeline: sharded on this machine's cores vs one process, and
recovery after a shard is killed, side by side in one run.

    /usr/bin/python3 bench/component_pipeline_bench.py --flotilla build/src/flotilla \
        [--records 200000] [--rounds 3]

Runs, interleaved, for `rounds` rounds:
  fork/exec   posix_spawn of /bin/true and of `python3 -S -c pass` (the host's
              cost of starting a process, and of starting one Python stage)
  single      examples/components/log-pipeline-local/single_process.py: the
              same stage code composed in one process
  sharded     `flotilla component run` of the example (plan as the engine
              makes it), and again with --min-saved-us 0.1 (every shardable
              stage split)
  recovery    the sharded run with parse/0, then aggregate/0, SIGKILLed a
              quarter of the way in: restart and resume times
Every sharded run's sink output is checked against the single-process one.
Stage commands use /usr/bin/python3 -S in both (a pyenv shim costs ~0.6 s of
startup per process here, which would be measured instead of the pipeline).
Prints a markdown section with medians; JSON with --json-out.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "components", "log-pipeline-local")
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def spawn_ms(argv, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, os.environ)
        os.waitpid(pid, 0)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def single(records):
    env = dict(os.environ, FLOTILLA_RECORDS=str(records))
    cpu = children_cpu_s()
    t = time.perf_counter()
    out = subprocess.run([PY, "-S", "single_process.py"], cwd=EXAMPLE, env=env, check=True,
                         capture_output=True, timeout=600).stdout
    wall = time.perf_counter() - t
    return {"wall_s": wall, "records_per_s": records / wall,
            "cpu_us_per_record": (children_cpu_s() - cpu) / records * 1e6}, out


def sharded(flotilla, spec, records, extra, expected):
    with tempfile.TemporaryDirectory(prefix="flotilla-bench-") as work:
        cpu = children_cpu_s()
        t = time.perf_counter()
        proc = subprocess.run([flotilla, "--json", "component", "run", spec, "--records",
                               str(records), "--work-dir", work] + extra,
                              capture_output=True, timeout=600, text=True)
        wall = time.perf_counter() - t
        cpu = children_cpu_s() - cpu
        if proc.returncode != 0:
            sys.exit("flotilla component run failed: " + proc.stderr)
        report = json.loads(proc.stdout)
        with open(report["output_files"][0], "rb") as f:
            if f.read() != expected:
                sys.exit("sharded output differs from the single-process run: " + " ".join(extra))
    return {"wall_s": wall, "records_per_s": records / wall,
            "runtime_records_per_s": report["records_per_s"],
            "cpu_us_per_record": cpu / records * 1e6,
            "shards": [s["id"] for s in report["shards"]],
            "recoveries": report["recoveries"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flotilla", required=True)
    ap.add_argument("--records", type=int, default=200000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json-out")
    args = ap.parse_args()
    flotilla = os.path.abspath(args.flotilla)

    with open(os.path.join(EXAMPLE, "component.yaml")) as f:
        yaml = f.read().replace('["python3",', '["%s", "-S",' % PY)
    fd, spec = tempfile.mkstemp(prefix=".bench-", suffix=".yaml", dir=EXAMPLE)
    with os.fdopen(fd, "w") as f:
        f.write(yaml)
    runs = {k: [] for k in ["fork_exec_ms", "python_start_ms", "single", "sharded",
                            "sharded_all", "kill_parse", "kill_aggregate"]}
    try:
        for _ in range(args.rounds):
            runs["fork_exec_ms"].append(spawn_ms(["/bin/true"], 200))
            runs["python_start_ms"].append(spawn_ms([PY, "-S", "-c", "pass"], 20))
            s, expected = single(args.records)
            runs["single"].append(s)
            runs["sharded"].append(sharded(flotilla, spec, args.records, [], expected))
            runs["sharded_all"].append(
                sharded(flotilla, spec, args.records, ["--min-saved-us", "0.1"], expected))
            after = str(args.records // 4)
            runs["kill_parse"].append(sharded(
                flotilla, spec, args.records, ["--kill-shard", "parse/0", "--after", after],
                expected))
            runs["kill_aggregate"].append(sharded(
                flotilla, spec, args.records,
                ["--min-saved-us", "0.1", "--kill-shard", "aggregate/0", "--after",
                 str(args.records // 8)], expected))
    finally:
        os.unlink(spec)

    med = statistics.median
    single_rps = med(r["records_per_s"] for r in runs["single"])
    single_cpu = med(r["cpu_us_per_record"] for r in runs["single"])
    rows = []
    for key, label in [("sharded", "sharded, engine's plan"),
                       ("sharded_all", "sharded, --min-saved-us 0.1")]:
        rps = med(r["records_per_s"] for r in runs[key])
        rrps = med(r["runtime_records_per_s"] for r in runs[key])
        cpu = med(r["cpu_us_per_record"] for r in runs[key])
        rows.append("| %s (%s) | %.0f | %.0f | %.2f× | %.1f µs (%.2f×) |" % (
            label, ", ".join(runs[key][0]["shards"]), rps, rrps, rps / single_rps, cpu,
            cpu / single_cpu))
    rec = []
    for key in ["kill_parse", "kill_aggregate"]:
        evs = [r["recoveries"][0] for r in runs[key] if r["recoveries"]]
        rec.append("| %s | %.1f | %.1f | %d of %d runs |" % (
            evs[0]["shard"] if evs else key, med(e["restart_ms"] for e in evs),
            med(e["resume_ms"] for e in evs), len(evs), len(runs[key])))
    load = os.getloadavg()
    print("### Run of %s UTC\n" % time.strftime("%Y-%m-%d %H:%M", time.gmtime()))
    print("Host: %d CPUs, load average %.2f at the end of the run (other builds share "
          "this machine). %d records, medians of %d rounds.\n" % (
              os.cpu_count(), load[0], args.records, args.rounds))
    print("| host cost | median |\n|---|---|")
    print("| fork/exec of /bin/true (posix_spawn + wait) | %.2f ms |" % med(runs["fork_exec_ms"]))
    print("| start of one stage: `python3 -S -c pass` | %.1f ms |\n" % med(runs["python_start_ms"]))
    print("| pipeline | records/s (wall, incl. startup) | records/s (runtime's own clock) "
          "| vs one process | CPU per record, all processes |\n|---|---|---|---|---|")
    print("| one process (single_process.py) | %.0f | - | 1.00× | %.1f µs (1.00×) |" % (
        single_rps, single_cpu))
    for r in rows:
        print(r)
    print("\n| shard killed (SIGKILL) | restart, ms | resume (first commit), ms | "
          "output equal to one process |\n|---|---|---|---|")
    for r in rec:
        print(r)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(runs, f, indent=1)


if __name__ == "__main__":
    main()
