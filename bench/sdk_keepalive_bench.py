"""SDK call latency against a real secure federation: kept-alive connections vs the SDK
before them (a new HTTPS connection, so a full TLS handshake, per call), with fork/exec of
/bin/true beside, in one run.

    FLOTILLA_BIN=build/src/flotilla python3 bench/sdk_keepalive_bench.py [--calls 1000]
        [--before 3a80d4e]

It starts `$FLOTILLA_BIN up --agents 1` in a temporary state directory (XDG_DATA_HOME), loads
the SDK of the current tree and, as `flotilla_before`, the SDK at git revision --before, and
times KV GETs of one key with each, interleaved in rounds of 50 so that both see the same load,
and counts the connections the kept-alive client opened. It stops the federation with `down`
(--purge). Results in microseconds.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SDK = os.path.join(ROOT, "sdk", "python")


def load_before(rev, into):
    """Writes sdk/python/flotilla at git revision rev as the package flotilla_before."""
    pkg = os.path.join(into, "flotilla_before")
    os.makedirs(pkg)
    names = subprocess.run(["git", "-C", ROOT, "ls-tree", "--name-only", rev,
                            "sdk/python/flotilla/"], check=True, capture_output=True,
                           text=True).stdout.split()
    for name in names:
        if name.endswith(".py"):
            text = subprocess.run(["git", "-C", ROOT, "show", "%s:%s" % (rev, name)],
                                  check=True, capture_output=True, text=True).stdout
            with open(os.path.join(pkg, os.path.basename(name)), "w") as f:
                f.write(text)
    sys.path.insert(0, into)
    import flotilla_before
    return flotilla_before


def fork_exec():
    pid = os.fork()
    if pid == 0:
        try:
            os.execv("/bin/true", ["/bin/true"])
        finally:
            os._exit(127)
    os.waitpid(pid, 0)


def pct(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * p / 100))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--before", default="3a80d4e")
    args = ap.parse_args()
    binary = os.environ.get("FLOTILLA_BIN")
    if not binary:
        sys.exit("set FLOTILLA_BIN to the flotilla binary")
    sys.path.insert(0, SDK)
    import flotilla
    tmp = tempfile.mkdtemp(prefix="flotilla-sdkbench-")
    before = load_before(args.before, os.path.join(tmp, "py"))
    env = dict(os.environ, XDG_DATA_HOME=tmp)
    env.pop("FLOTILLA_HTTP", None)
    state = os.path.join(tmp, "flotilla")
    up = subprocess.run([binary, "up", "--agents", "1", "--state-dir", state], env=env,
                        capture_output=True, text=True, timeout=180)
    try:
        if up.returncode != 0:
            sys.exit("up failed: %s%s" % (up.stdout, up.stderr))
        with open(os.path.join(state, "federation.json")) as f:
            record = json.load(f)
        with open(record["token_file"]) as f:
            token = f.read().strip()
        address, ca = record["manager_http"], record["ca"]
        after_client = flotilla.Client(address, token=token, ca=ca)
        before_client = before.Client(address, token=token, ca=ca)
        after_client.kv("bench").put("key", "value")
        opened = [0]
        connect = after_client._t._connect

        def counting_connect(*a):
            opened[0] += 1
            return connect(*a)

        after_client._t._connect = counting_connect
        kv = {"after": after_client.kv("bench"), "before": before_client.kv("bench")}
        times = {"after": [], "before": [], "fork": []}
        for name in kv:  # warm up: imports, the TLS context, the first connection
            for _ in range(20):
                kv[name].get("key")
        done = 0
        while done < args.calls:
            for name in ("after", "before"):
                for _ in range(50):
                    t0 = time.perf_counter()
                    assert kv[name].get("key") == b"value"
                    times[name].append(time.perf_counter() - t0)
            for _ in range(10):
                t0 = time.perf_counter()
                fork_exec()
                times["fork"].append(time.perf_counter() - t0)
            done += 50
        labels = {"after": "SDK KV get, kept-alive HTTPS connection (this tree)",
                  "before": "SDK KV get, new HTTPS connection per call (%s)" % args.before,
                  "fork": "fork/exec /bin/true + wait"}
        print("%-60s %6s %8s %8s %8s %8s" % ("operation", "n", "p50 us", "p90 us", "p99 us",
                                             "mean us"))
        for name in ("after", "before", "fork"):
            t = times[name]
            print("%-60s %6d %8.0f %8.0f %8.0f %8.0f" % (
                labels[name], len(t), pct(t, 50) * 1e6, pct(t, 90) * 1e6, pct(t, 99) * 1e6,
                sum(t) / len(t) * 1e6))
        print("connections the kept-alive client opened for its %d timed and 20 warm-up calls: "
              "%d" % (len(times["after"]), opened[0]))
        after_client.close()
    finally:
        subprocess.run([binary, "down", "--state-dir", state, "--purge"], env=env,
                       capture_output=True, timeout=120)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
