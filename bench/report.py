"""Turns the JSON of bench/run.sh's rounds into the markdown section of
docs/benchmarks.md. Standard library only; either Python works.

  report.py --dir OUT --machine OUT/machine.json [--docs docs/benchmarks.md]

Every figure is the median over the rounds of that round's figure (a p99 row
is the median of the rounds' p99s); the spread (min-max over rounds) is shown
for the headline numbers. Ratios are taken between medians.
"""

import argparse
import glob
import json
import statistics
import sys

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"


def load(pattern):
    out = []
    for path in sorted(glob.glob(pattern)):
        with open(path) as f:
            out.append(json.load(f))
    return out


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values):
    values = [v for v in values if v is not None]
    return (min(values), max(values)) if values else (None, None)


def ms(us):
    return "-" if us is None else f"{us / 1000:.2f}"


def rate(x):
    return "-" if x is None else f"{x:,.0f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    r = a / b
    return f"{r:.2f}x" if r < 0.95 else f"{r:.1f}x"


def dig(d, *keys):
    for k in keys:
        if d is None:
            return None
        if isinstance(k, int):
            d = d[k] if isinstance(d, list) and len(d) > k else None
        else:
            d = d.get(k) if isinstance(d, dict) else None
    return d


def peer(run, name):
    for p in run.get("peers", []):
        if p["name"].startswith(name):
            return p
    return None


def load_by_conc(loads, conc):
    for l in loads or []:
        if l.get("concurrency") == conc:
            return l
    return None


def build(args):
    fl = load(f"{args.dir}/flotilla-*.json")
    dk = load(f"{args.dir}/dask-*.json")
    with open(args.machine) as f:
        m = json.load(f)
    if not fl:
        sys.exit("report.py: no flotilla-*.json in " + args.dir)
    rounds = len(fl)
    conc = fl[0]["params"]["concurrency"]
    p = fl[0]["params"]

    lines = [BEGIN, ""]
    lines.append(f"### Run of {m['date']}")
    lines.append("")
    lines.append(
        f"- Machine: {m['nproc']} CPUs ({m['model']}), {m['mem']}, kernel {m['kernel']}; "
        f"load average {m['load_before']} before, {m['load_after']} after "
        "(these machines are shared: other jobs ran too)."
    )
    lines.append(f"- Build: `{m['build_dir']}`, CMAKE_BUILD_TYPE={m['build_type']}, "
                 f"commit {m['commit']}.")
    lines.append(f"- Command: `{m['command']}`; each of {rounds} rounds runs")
    lines.append(f"  `{m['flotilla_cmd']}`")
    if dk:
        lines.append(f"  then `{m['dask_cmd']}`.")
        d0 = dk[0]
        lines.append(
            f"- Dask {d0['distributed']} on Python {d0['python']}: LocalCluster, "
            f"{d0['workers']} worker process (processes=True) with {d0['threads_per_worker']} "
            "threads, on 127.0.0.1."
        )
    else:
        lines.append(f"  (Dask skipped: {m.get('dask_skipped', 'not run')}).")
    lines.append(
        f"- Sizes per round: {p['latency_n']} sequential executions (each followed by one run "
        f"of each process peer), then {p['throughput_m']} executions per throughput run "
        f"(unshare: a quarter of both)."
    )
    lines.append(
        f"- Figures: the median over the {rounds} rounds of each round's figure; "
        "[min-max over rounds] for the headline rows."
    )
    lines.append("")

    def row_lat(name, per_round, ref_p50, note="", show_spread=False):
        p50s = [dig(r, "p50_us") for r in per_round]
        p99s = [dig(r, "p99_us") for r in per_round]
        p50, p99 = med(p50s), med(p99s)
        cell = ms(p50)
        if show_spread and len([x for x in p50s if x is not None]) > 1:
            lo, hi = spread(p50s)
            cell += f" [{ms(lo)}-{ms(hi)}]"
        return f"| {name} | {cell} | {ms(p99)} | {ratio(p50, ref_p50)} | {note} |"

    fe = [dig(peer(r, "fork/exec"), "latency") for r in fl]
    fe_p50 = med([dig(x, "p50_us") for x in fe])
    lines.append("**Latency of one no-op task, sequential (ms)**")
    lines.append("")
    lines.append("| path | p50 | p99 | p50 / fork-exec p50 | what it is |")
    lines.append("|---|---|---|---|---|")
    lat = lambda key: [dig(r, "latency", key) for r in fl]  # noqa: E731
    lines.append(row_lat("**Flotilla** submit -> final Watch event", lat("e2e"), fe_p50,
                         "client -> manager -> agent -> fork/exec `true` -> manager -> client",
                         show_spread=True))
    lines.append(row_lat("&nbsp;&nbsp;Submit RPC alone", lat("submit_rpc"), fe_p50,
                         "validate, SQLite insert, reply"))
    lines.append(row_lat("&nbsp;&nbsp;agent run (result.wall_time_us)", lat("agent_run"), fe_p50,
                         "fork -> exit seen by the agent's poll loop"))
    lines.append(row_lat("&nbsp;&nbsp;rest", lat("rest"), fe_p50,
                         "e2e - submit - run: Watch call, dispatch, result report, wake-up"))
    lines.append(row_lat("gRPC unary round trip (ListNodes)", lat("unary_rpc"), fe_p50,
                         "the RPC floor on loopback"))
    for name, label, note in (
        ("fork/exec", "fork + execve + waitpid of /bin/true", "from the multithreaded bench client"),
        ("posix_spawn", "posix_spawn + waitpid of /bin/true", "vfork-style: no page-table copy"),
        ("unshare", "`unshare -pmuin --fork /bin/true`", "pid, mount, uts, ipc, net namespaces"),
    ):
        rs = [dig(peer(r, name), "latency") for r in fl]
        if any(rs):
            lines.append(row_lat(label, rs, fe_p50, note, show_spread=(name == "fork/exec")))
    if dk:
        lines.append(row_lat("Dask `submit(noop).result()`", [dig(d, "noop", "latency") for d in dk],
                             fe_p50, "Python function in the running worker: no process",
                             show_spread=True))
        lines.append(row_lat("Dask `submit(run true).result()`",
                             [dig(d, "spawn", "latency") for d in dk], fe_p50,
                             "the function runs subprocess.run(['/bin/true'])"))
    lines.append("")

    lines.append("**Throughput of no-op tasks (tasks/s)**")
    lines.append("")
    head = " | ".join(f"{c} clients" for c in conc)
    lines.append(f"| path | {head} | best / fork-exec best | p50 / p99 latency at {conc[-1]} clients (ms) |")
    lines.append("|---|" + "---|" * len(conc) + "---|---|")

    def tput_cells(loads_per_round, with_spread=False):
        cells, best = [], None
        for c in conc:
            vals = [dig(load_by_conc(l, c), "per_second") for l in loads_per_round]
            v = med(vals)
            cell = rate(v)
            if with_spread and len([x for x in vals if x is not None]) > 1:
                lo, hi = spread(vals)
                cell += f" [{rate(lo)}-{rate(hi)}]"
            cells.append(cell)
            if v is not None:
                best = v if best is None else max(best, v)
        last = [load_by_conc(l, conc[-1]) for l in loads_per_round]
        p50 = med([dig(x, "e2e", "p50_us") for x in last])
        p99 = med([dig(x, "e2e", "p99_us") for x in last])
        return cells, best, f"{ms(p50)} / {ms(p99)}"

    fe_loads = [dig(peer(r, "fork/exec"), "throughput") for r in fl]
    _, fe_best, _ = tput_cells(fe_loads)
    rows = [("**Flotilla** (submit + watch per client thread)", [r["throughput"] for r in fl], True)]
    for name, label in (("fork/exec", "fork/exec /bin/true (a thread per client)"),
                        ("posix_spawn", "posix_spawn /bin/true"),
                        ("unshare", "unshare -pmuin --fork /bin/true")):
        loads = [dig(peer(r, name), "throughput") for r in fl]
        if any(loads):
            rows.append((label, loads, name == "fork/exec"))
    if dk:
        rows.append(("Dask noop, submit().result() per client thread",
                     [dig(d, "noop", "threads") for d in dk], True))
        rows.append(("Dask run-true, submit().result() per client thread",
                     [dig(d, "spawn", "threads") for d in dk], False))
    for label, loads, sp in rows:
        cells, best, lat_cell = tput_cells(loads, sp)
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {ratio(best, fe_best)} | {lat_cell} |")
    if dk:
        for key, label in (("noop", "Dask noop, all futures at once (client.map + gather)"),
                           ("spawn", "Dask run-true, all futures at once")):
            v = med([dig(d, key, "many_futures", "per_second") for d in dk])
            cells = [""] * (len(conc) - 1) + [f"{rate(v)} (one client)"]
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {ratio(v, fe_best)} | - |")
    lines.append("")

    lines.append("**CPU time per Flotilla execution (µs, from /proc and getrusage)**")
    lines.append("")
    lines.append("| phase | manager | agent | the task processes (reaped by the agent) | client | total |")
    lines.append("|---|---|---|---|---|---|")
    phases = [("sequential", [dig(r, "latency", "cpu_per_task") for r in fl])]
    for c in conc:
        phases.append((f"{c} clients",
                       [dig(load_by_conc(r["throughput"], c), "cpu_per_task") for r in fl]))
    for label, cpus in phases:
        vals = {k: med([dig(c, k) for c in cpus]) for k in ("manager_us", "agent_us", "tasks_us",
                                                               "client_us")}
        total = sum(v for v in vals.values() if v is not None)
        lines.append(f"| {label} | {vals['manager_us']:.0f} | {vals['agent_us']:.0f} | "
                     f"{vals['tasks_us']:.0f} | {vals['client_us']:.0f} | {total:.0f} |")
    lines.append("")
    lines.append("(Process CPU is counted in clock ticks of 10 ms, so these are averages over "
                 "hundreds of executions, good to about ±10%.)")
    lines.append("")

    e2e_p50 = med([dig(r, "latency", "e2e", "p50_us") for r in fl])
    best_tput = max(med([dig(load_by_conc(r["throughput"], c), "per_second") for r in fl])
                    for c in conc)
    lines.append("**Against the issue's targets**")
    lines.append("")
    lines.append(f"| target | measured (median) | met? |")
    lines.append("|---|---|---|")
    lines.append(f"| p50 ≤ 1 ms, warm path | {ms(e2e_p50)} ms | "
                 f"{'yes' if e2e_p50 is not None and e2e_p50 <= 1000 else 'no'} |")
    lines.append(f"| ≥ 5,000 tasks/s | {rate(best_tput)} tasks/s | "
                 f"{'yes' if best_tput >= 5000 else 'no'} |")
    failed = sum(r.get("failed", 0) for r in fl)
    lines.append("")
    lines.append(f"Failed executions in this run: {failed}.")
    lines.append("")
    lines.append(END)
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--machine", required=True)
    ap.add_argument("--docs", help="replace the generated section of this file")
    args = ap.parse_args()
    section = build(args)
    sys.stdout.write(section)
    if args.docs:
        with open(args.docs) as f:
            text = f.read()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            text = head + section.rstrip("\n") + tail
        else:
            text = text.rstrip("\n") + "\n\n" + section
        with open(args.docs, "w") as f:
            f.write(text)
        print(f"report.py: wrote the section into {args.docs}", file=sys.stderr)


if __name__ == "__main__":
    main()
