"""A plain Python function, decorated: calling it runs it on the federation,
split into pieces that run on agents in different regions, reassembled into
exactly the answer a local call gives.

    flotilla up
    PYTHONPATH=sdk/python python3 examples/python/split_demo.py
"""
import time

import flotilla


def collatz_steps(n):
    """CPU work: the total Collatz stopping time of n, n+1, ... n+19999."""
    total = 0
    for start in range(n, n + 20000):
        x = start
        while x != 1:
            x = x // 2 if x % 2 == 0 else 3 * x + 1
            total += 1
    return total


@flotilla.splitable
@flotilla.resource_constraint(memory="128Mi", timeout="60s")
def survey(starts):
    steps = [collatz_steps(s) for s in starts]   # independent items: a fan-out
    longest = max(steps)
    return {"total": sum(steps), "longest": longest, "pieces": len(steps)}


if __name__ == "__main__":
    starts = [1 + 20000 * i for i in range(8)]
    t0 = time.time()
    future = survey.remote(starts)
    remote = future.result(timeout=300)
    remote_s = time.time() - t0
    wf = future.workflow
    print("split:", wf["split"], "-", wf["reason"])
    for p in wf["pieces"]:
        nodes = sorted(set(p.get("nodes", [])))
        print("  %-4s %-7s %-10s tasks %-2d on %s" % (p["id"], p["kind"], p["state"],
                                                      len(p["executions"]), ", ".join(nodes) or "-"))
    t0 = time.time()
    local = survey.local(starts)
    local_s = time.time() - t0
    print("remote: %s  (%.2f s)" % (remote, remote_s))
    print("local:  %s  (%.2f s)" % (local, local_s))
    print("same answer:", remote == local)
    raise SystemExit(0 if remote == local else 1)
