#!/usr/bin/env python3
"""Tables and plots the contention suite's results.

Usage: contention_report.py RESULTS.json [--markdown OUT.md] [--png OUT.png]

RESULTS.json is Google Benchmark JSON output (--benchmark_out=...
--benchmark_out_format=json) from revkv_contention_bench, whose runs are
named contention/<strategy>/<workload>[/min_time:...]/real_time/threads:<n>.

Prints (and with --markdown writes) one table row per workload x strategy:
ops/s at 1, 2, 4, 8 and 16 threads; retries/op, p50 and p99 latency (us) and
mean lock wait (us) at 16 threads; and "16-thread / peak", the throughput at
16 threads over the best throughput at any thread count (1.0: no loss under
contention; a low value means throughput collapses as threads are added).
With --png, draws one subplot per workload: x = threads (log2), y = ops/s
(log scale), one line per strategy.

With --benchmark_repetitions, the median aggregate is used when present, else
the mean of the repetitions.

Exits 1 with a message if the file is missing or not Google Benchmark JSON,
or holds no contention runs; also exits 1 (after writing the outputs) if a
run reported an error or lost updates.
"""

import argparse
import os
import re
import sys
from collections import defaultdict

import gbench_json  # bench/, next to this script
import targets_json  # bench/, next to this script

THREADS = [1, 2, 4, 8, 16]
WORKLOADS = ["hot", "uniform", "zipf"]
STRATEGIES = ["occ", "lock", "rocksdb_optimistic", "rocksdb_pessimistic"]
METRICS = ["ops_per_s", "retries_per_op", "p50_us", "p99_us", "lock_wait_us", "lost_updates"]
NAME_RE = re.compile(r"^contention/([^/]+)/([^/]+)(?:/.*)?$")
THREADS_RE = re.compile(r"/threads:(\d+)(?:/|$)")
PROG = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "contention_report.py"


fail = gbench_json.fail_with(PROG)


def load(path):
    return gbench_json.load(path, "revkv_contention_bench", fail)


def parse(data, path):
    """Returns ({(workload, strategy): {threads: {metric: value}}}, errors)."""
    def key_of(b):
        run_name = b.get("run_name") or b.get("name", "")
        m = NAME_RE.match(run_name)
        if not m:
            return None  # not a contention run
        threads = b.get("threads")
        if not isinstance(threads, int):
            t = THREADS_RE.search(run_name)
            if not t:
                fail(f"'{path}': cannot tell the thread count of '{run_name}'")
            threads = int(t.group(1))
        return (m.group(1), m.group(2), threads)

    groups, errors, _ = gbench_json.group_runs(data, key_of)
    results = defaultdict(dict)
    for key, rows in groups.items():
        strategy, workload, threads = key
        values = {}
        for metric in METRICS:
            v = gbench_json.mean_of(rows, metric)
            if v is not None:
                values[metric] = v
        if "ops_per_s" not in values:
            fail(f"'{path}': run '{strategy}/{workload}' threads:{threads} has no ops_per_s "
                 f"counter; is this revkv_contention_bench output?")
        results[(workload, strategy)][threads] = values
    return results, errors


def ordered(names, known):
    return [n for n in known if n in names] + sorted(n for n in names if n not in known)


def fmt_ops(v):
    return "—" if v is None else f"{v:,.0f}"


def fmt_num(v, digits=1):
    if v is None:
        return "—"
    if v != 0 and abs(v) < 0.1:
        return f"{v:.3f}"
    return f"{v:,.{digits}f}"


def targets(results):
    """The DESIGN §8 verdicts (targets_json.entry): OCC against
    OptimisticTransactionDB at 1 thread, the lowest over the workloads; and
    OCC on the hot key at the most threads against its peak."""
    out = []
    worst = None
    for w in ordered({w for w, _ in results}, WORKLOADS):
        occ = results.get((w, "occ"), {}).get(1, {}).get("ops_per_s")
        otdb = results.get((w, "rocksdb_optimistic"), {}).get(1, {}).get("ops_per_s")
        if occ and otdb and (worst is None or occ / otdb < worst[0]):
            worst = (occ / otdb, w)
    if worst:
        out.append(targets_json.entry("local_update_vs_otdb", worst[0], 0.8,
                                      detail=f"lowest on the {worst[1]} workload"))
    hot = results.get(("hot", "occ"), {})
    max_t = max(THREADS)
    if max_t in hot and hot[max_t].get("ops_per_s"):
        peak = max(r["ops_per_s"] for r in hot.values())
        out.append(targets_json.entry("hot_key_no_collapse", hot[max_t]["ops_per_s"] / peak, 0.7,
                                      detail=f"OCC on the hot key, {max_t} threads / peak"))
    return out


def table(results):
    max_t = max(THREADS)
    header = (["Workload", "Strategy"] + [f"ops/s @{t}" for t in THREADS] +
              [f"retries/op @{max_t}", f"p50 µs @{max_t}", f"p99 µs @{max_t}",
               f"lock wait µs @{max_t}", f"{max_t}-thread / peak"])
    rows = []
    workloads = ordered({w for w, _ in results}, WORKLOADS)
    strategies = ordered({s for _, s in results}, STRATEGIES)
    for w in workloads:
        for s in strategies:
            runs = results.get((w, s))
            if not runs:
                continue
            ops = {t: runs[t]["ops_per_s"] for t in runs}
            top = runs.get(max_t, {})
            peak = max(ops.values()) if ops else None
            ratio = (ops[max_t] / peak) if (max_t in ops and peak) else None
            rows.append([w, s] + [fmt_ops(ops.get(t)) for t in THREADS] + [
                fmt_num(top.get("retries_per_op"), 3),
                fmt_num(top.get("p50_us")),
                fmt_num(top.get("p99_us")),
                fmt_num(top.get("lock_wait_us")),
                "—" if ratio is None else f"{ratio:.2f}",
            ])
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def fmt_si(v, _pos=None):
    """Axis label: 2000 -> '2k', 1500000 -> '1.5M'."""
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


def import_pyplot():
    """matplotlib.pyplot with the Agg backend. Debian's python3-matplotlib is
    visible only to /usr/bin/python3; when another interpreter (a pyenv shim,
    a venv) runs this script without it, re-run under /usr/bin/python3."""
    try:
        import matplotlib
    except ImportError:
        system = "/usr/bin/python3"
        if (os.environ.get("REVKV_REPORT_REEXEC") != "1" and os.path.exists(system) and
                os.path.realpath(sys.executable) != os.path.realpath(system)):
            os.environ["REVKV_REPORT_REEXEC"] = "1"
            os.execv(system, [system] + sys.argv)
        fail("matplotlib is not installed for this Python (needed for --png); "
             "install Debian's python3-matplotlib (scripts/bootstrap.sh) or omit --png")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot(results, out_png, plt):
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator
    workloads = ordered({w for w, _ in results}, WORKLOADS)
    strategies = ordered({s for _, s in results}, STRATEGIES)
    fig, axes = plt.subplots(1, len(workloads), figsize=(5.2 * len(workloads), 4.6),
                             sharey=True, squeeze=False)
    markers = ["o", "s", "^", "D", "v", "P"]
    for ax, w in zip(axes[0], workloads):
        for i, s in enumerate(strategies):
            runs = results.get((w, s), {})
            ts = sorted(runs)
            if not ts:
                continue
            ax.plot(ts, [runs[t]["ops_per_s"] for t in ts], marker=markers[i % len(markers)],
                    label=s, linewidth=1.8)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(THREADS))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([str(t) for t in THREADS])
        ax.set_xlim(THREADS[0] / 1.2, THREADS[-1] * 1.2)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_minor_locator(LogLocator(base=10, subs=tuple(range(1, 10))))
        ax.yaxis.set_major_formatter(FuncFormatter(fmt_si))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))
        ax.set_title(f"workload: {w}")
        ax.set_xlabel("threads")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("ops/s (all threads, log scale)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.suptitle("revkv contention: read-increment-write throughput")
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    try:
        fig.savefig(out_png, dpi=110)
    except OSError as e:
        fail(f"cannot write '{out_png}': {e}")
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", help="Google Benchmark JSON from revkv_contention_bench")
    ap.add_argument("--markdown", metavar="OUT.md", help="also write the table here")
    ap.add_argument("--png", metavar="OUT.png", help="draw throughput vs threads here")
    ap.add_argument("--targets", metavar="OUT.json",
                    help="also write the DESIGN §8 verdicts for bench/targets.py")
    args = ap.parse_args()

    # Fail on a missing matplotlib before doing any work.
    plt = import_pyplot() if args.png else None

    data = load(args.results)
    results, errors = parse(data, args.results)
    if not results and not errors:
        fail(f"'{args.results}' holds no contention/<strategy>/<workload> runs; "
             f"is it revkv_contention_bench output?")

    md = table(results)
    if args.targets:
        targets_json.write(args.targets, targets(results))
    ctx = data.get("context", {}) if isinstance(data.get("context"), dict) else {}
    notes = []
    if ctx.get("revkv_contention_mode"):
        notes.append(f"mode: {ctx['revkv_contention_mode']}")
    if ctx.get("num_cpus"):
        notes.append(f"{ctx['num_cpus']} CPUs")
    if ctx.get("rocksdb_version"):
        notes.append(f"RocksDB {ctx['rocksdb_version']}")
    if notes:
        md += "\n" + ", ".join(notes) + "\n"
    finish(md, results, errors, "threads", args, lambda: plot(results, args.png, plt), fail)


def finish(md, cases, errors, unit, args, draw, fail_fn):
    """Lists failed runs and lost updates under the table, prints it, writes
    it to --markdown, draws --png with draw(), and fails (through fail_fn)
    if any run failed or lost an update. Shared with the replicated suite's
    report, whose cases are keyed by engine count (unit "engines")."""
    lost = [f"{w}/{s} {unit}:{n}: {v['lost_updates']:.0f} lost updates"
            for (w, s), runs in sorted(cases.items()) for n, v in sorted(runs.items())
            if v.get("lost_updates", 0) != 0]
    problems = errors + lost
    if problems:
        md += "\nProblems:\n" + "".join(f"- {p}\n" for p in problems)
    print(md, end="")

    if args.markdown:
        try:
            with open(args.markdown, "w", encoding="utf-8") as f:
                f.write(md)
        except OSError as e:
            fail_fn(f"cannot write '{args.markdown}': {e}")
    if args.png:
        if cases:
            draw()
        else:
            prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "report"
            print(f"{prog}: warning: no successful runs to plot", file=sys.stderr)
    if problems:
        fail_fn(f"{len(problems)} run(s) failed or lost updates (listed above)")


if __name__ == "__main__":
    main()
