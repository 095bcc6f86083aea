"""Dask peer for bench/run.sh: task overhead of a local Dask cluster.

Run with Debian's interpreter (/usr/bin/python3), which sees python3-distributed.
One worker process (processes=True, its default threads), on 127.0.0.1. Measures, like
flotilla_e2e_bench does for Flotilla:
  latency     N sequential client.submit(f).result() round trips
  throughput  M tasks as many futures at once (client.map, then gather), and
              M tasks from C client threads each doing submit().result()
for two task bodies:
  noop        a Python function in the already-running worker (Dask's own
              overhead: no process is started)
  spawn       the same function running subprocess.run(["/bin/true"]): a process
              per task, as Flotilla does
Note: Dask batches its client -> scheduler messages (BatchedSend, 10 ms in
distributed 2022.12), so one sequential round trip is ~10 ms by design; it is
built for throughput of many futures, not for one task's latency.
Writes JSON to --json and prints a short summary.
"""

import argparse
import concurrent.futures
import json
import logging
import math
import subprocess
import sys
import time


def noop(i):
    return i


def spawn_true(i):
    subprocess.run(["/bin/true"], check=True)
    return i


def summarize(us):
    us = sorted(us)
    n = len(us)
    if n == 0:
        return {"n": 0}

    def pct(p):
        return us[max(1, min(n, math.ceil(p * n))) - 1]  # nearest rank

    return {
        "n": n,
        "p50_us": pct(0.50),
        "p90_us": pct(0.90),
        "p99_us": pct(0.99),
        "max_us": us[-1],
        "mean_us": sum(us) / n,
    }


def latency(client, fn, n):
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        client.submit(fn, i, pure=False).result()
        out.append((time.perf_counter() - t0) * 1e6)
    return summarize(out)


def many_futures(client, fn, m):
    t0 = time.perf_counter()
    futures = client.map(fn, range(m), pure=False)
    results = client.gather(futures)
    seconds = time.perf_counter() - t0
    assert len(results) == m
    return {"tasks": m, "seconds": seconds, "per_second": m / seconds}


def threads(client, fn, m, concurrency):
    counter = iter(range(m))
    samples = []

    def loop():
        mine = []
        for i in counter:  # next() on a shared iterator is atomic under the GIL
            t0 = time.perf_counter()
            client.submit(fn, i, pure=False).result()
            mine.append((time.perf_counter() - t0) * 1e6)
        return mine

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for mine in pool.map(lambda _: loop(), range(concurrency)):
            samples.extend(mine)
    seconds = time.perf_counter() - t0
    return {
        "concurrency": concurrency,
        "tasks": len(samples),
        "seconds": seconds,
        "per_second": len(samples) / seconds,
        "e2e": summarize(samples),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency-n", type=int, default=1000)
    ap.add_argument("--throughput-m", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, action="append")
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--json")
    args = ap.parse_args()
    concurrency = args.concurrency or [4, 16]

    import dask
    import distributed
    from dask.distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)

    t0 = time.perf_counter()
    cluster = LocalCluster(
        n_workers=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",  # its HTTP server always starts: no fixed port
        silence_logs=logging.ERROR,
    )
    client = Client(cluster)
    start_s = time.perf_counter() - t0
    worker_threads = sum(client.nthreads().values())
    out = {
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "python": sys.version.split()[0],
        "workers": len(client.nthreads()),
        "threads_per_worker": worker_threads,
        "cluster_start_s": start_s,
        "params": {
            "latency_n": args.latency_n,
            "throughput_m": args.throughput_m,
            "concurrency": concurrency,
        },
    }
    try:
        for name, fn, scale in (("noop", noop, 1), ("spawn", spawn_true, 4)):
            n = max(args.latency_n // scale, 50)
            m = max(args.throughput_m // scale, 100)
            for i in range(args.warmup):
                client.submit(fn, i, pure=False).result()
            out[name] = {
                "latency": latency(client, fn, n),
                "many_futures": many_futures(client, fn, m),
                "threads": [threads(client, fn, m, c) for c in concurrency],
            }
    finally:
        client.close()
        cluster.close()

    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    for name in ("noop", "spawn"):
        r = out[name]
        print(
            f"dask {name}: p50 {r['latency']['p50_us'] / 1000:.3f} ms, "
            f"p99 {r['latency']['p99_us'] / 1000:.3f} ms, "
            f"many futures {r['many_futures']['per_second']:.0f}/s, "
            + ", ".join(f"{t['concurrency']} threads {t['per_second']:.0f}/s" for t in r["threads"])
        )


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    main()
