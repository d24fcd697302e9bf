#!/usr/bin/env python3
"""Tables and plots the multi-key (transfer) contention suite's results.

Usage: txn_contention_report.py RESULTS.json [RERUN.json ...] [--markdown OUT.md]
                                [--png OUT.png]

RESULTS.json is Google Benchmark JSON output (--benchmark_out=...
--benchmark_out_format=json) from revkv_txn_contention_bench, whose runs are
named transfer/<strategy>/<workload>[/min_time:...]/real_time/threads:<n>
(local), rtransfer/<strategy>/<workload>/engines:<n>/... (replicated) and
single/writes/<file|memory>/... (single measurements).

Prints (and with --markdown writes):
- summary tables, local and replicated, one row per workload x strategy:
  ops/s at each thread or engine count, retries/op, p50 and p99 at the
  highest count (p50 at 1 too), and locally ops/s over rocksdb_otxn's;
- the local table, one row per workload x strategy x threads: ops/s,
  retries/op, p50 and p99 latency of one transfer (us), mean lock wait (us),
  process CPU per transfer (us), and ops/s over rocksdb_otxn's at the same
  thread count;
- the replicated table, one row per workload x strategy x engines: ops/s,
  retries/op, p50 and p99 (us), lock wait p50 (us), the CPU of the benchmark
  process and of the nats-server (% of one core), client CPU per transfer;
- for each workload and thread or engine count, txn's ops/s over the best
  lock strategy's;
- the single measurements (Put, Commit of two Puts, Acquire + Release; file
  and memory storage).
With --png, draws local (top row) and replicated (bottom row), one subplot
per workload (zipf_mem: zipf on a memory-storage bucket, replicated only), x = threads or engines (log2), y = ops/s (log scale),
one line per strategy.

With --benchmark_repetitions, the median aggregate is used when present, else
the mean of the repetitions. Further files (RERUN.json: a rerun of some cases,
e.g. with --benchmark_filter while the machine was quieter) replace the cases
and single measurements they hold; the report names the replaced cases.

Exits 1 with a message if the file is missing or not Google Benchmark JSON,
or holds no transfer runs; also exits 1 (after writing the outputs) if a run
reported an error or a broken balance invariant.
"""

import argparse
import os
import re
import sys
from collections import defaultdict

# The local contention report has the number formats and the matplotlib
# import (with its re-exec under /usr/bin/python3).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import contention_report as local  # noqa: E402
import gbench_json  # noqa: E402

COUNTS = [1, 2, 4, 8]
WORKLOADS = ["uniform", "zipf", "zipf_mem"]
LOCAL_STRATEGIES = ["txn", "lock", "lock_global", "rocksdb_otxn"]
REPLICATED_STRATEGIES = ["txn", "lock", "lock_puts", "lock_global"]
LOCKS = ["lock", "lock_puts", "lock_global"]
LABELS = {
    "txn": "txn (UpdateManyWithRetry)",
    "lock": "per-account locks (sorted) → Commit",
    "lock_puts": "per-account locks (sorted) → 2 fenced Puts",
    "lock_global": "one global lock → Commit",
    "rocksdb_otxn": "RocksDB OptimisticTransactionDB",
}
METRICS = ["ops_per_s", "retries_per_op", "p50_us", "p99_us", "lock_wait_us", "cpu_us_per_op",
           "client_cpu_pct", "server_cpu_pct", "balance_errors"]
SINGLE_METRICS = ["put_p50_us", "put_p99_us", "commit2_p50_us", "commit2_p99_us",
                  "lock_acq_rel_p50_us", "lock_acq_rel_p99_us"]
LOCAL_RE = re.compile(r"^transfer/([^/]+)/([^/]+)(?:/.*)?/threads:(\d+)(?:/|$)")
REPLICATED_RE = re.compile(r"^rtransfer/([^/]+)/([^/]+)/engines:(\d+)(?:/|$)")
SINGLE_RE = re.compile(r"^single/writes/([^/]+)(?:/|$)")
PROG = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "txn_contention_report.py"


fail = gbench_json.fail_with(PROG)


def parse(data, path):
    """Returns ({"local"|"replicated": {(workload, strategy): {n: {metric: v}}}},
    {"file"|"memory": {metric: v}}, errors, repetitions seen)."""
    def key_of(b):
        run_name = b.get("run_name") or b.get("name", "")
        m_local = LOCAL_RE.match(run_name)
        m_rep = REPLICATED_RE.match(run_name)
        m_single = SINGLE_RE.match(run_name)
        if m_local:
            return ("local", m_local.group(1), m_local.group(2), int(m_local.group(3)))
        if m_rep:
            return ("replicated", m_rep.group(1), m_rep.group(2), int(m_rep.group(3)))
        if m_single:
            return ("single", m_single.group(1))
        return None

    groups, errors, reps = gbench_json.group_runs(data, key_of)

    def values(key, metrics):
        out = {}
        for metric in metrics:
            v = gbench_json.mean_of(groups[key], metric)
            if v is not None:
                out[metric] = v
        return out

    cases = {"local": defaultdict(dict), "replicated": defaultdict(dict)}
    singles = {}
    for key in groups:
        if key[0] == "single":
            singles[key[1]] = values(key, SINGLE_METRICS)
            continue
        kind, strategy, workload, n = key
        v = values(key, METRICS)
        if "ops_per_s" not in v:
            fail(f"'{path}': {kind} case '{strategy}/{workload}' {n} has no ops_per_s "
                 f"counter; is this revkv_txn_contention_bench output?")
        cases[kind][(workload, strategy)][n] = v
    return cases, singles, errors, reps


def ratio(a, b):
    return "—" if not a or not b else f"{a / b:.2f}×"


def local_table(cases):
    header = ["Workload", "Strategy", "Threads", "ops/s", "retries/op", "p50 µs", "p99 µs",
              "lock wait µs", "CPU µs/op", "vs rocksdb_otxn"]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    for w in local.ordered({w for w, _ in cases}, WORKLOADS):
        base = cases.get((w, "rocksdb_otxn"), {})
        for s in local.ordered({s for _, s in cases}, LOCAL_STRATEGIES):
            runs = cases.get((w, s), {})
            for n in sorted(runs):
                v = runs[n]
                lines.append("| " + " | ".join([
                    w, s, str(n), local.fmt_ops(v.get("ops_per_s")),
                    local.fmt_num(v.get("retries_per_op"), 2),
                    local.fmt_num(v.get("p50_us"), 0),
                    local.fmt_num(v.get("p99_us"), 0),
                    local.fmt_num(v.get("lock_wait_us"), 0) if s in LOCKS else "—",
                    local.fmt_num(v.get("cpu_us_per_op"), 0),
                    "—" if s == "rocksdb_otxn" else
                    ratio(v.get("ops_per_s"), base.get(n, {}).get("ops_per_s")),
                ]) + " |")
    return "\n".join(lines) + "\n"


def cpu(v):
    c, s = v.get("client_cpu_pct"), v.get("server_cpu_pct")
    return "—" if c is None or s is None else f"{c:.0f} + {s:.0f}"


def cpu_per_op(v):
    c, ops = v.get("client_cpu_pct"), v.get("ops_per_s")
    return "—" if c is None or not ops else f"{c / 100 / ops * 1e6:,.0f}"


def replicated_table(cases):
    header = ["Workload", "Strategy", "Engines", "ops/s", "retries/op", "p50 µs", "p99 µs",
              "lock wait p50 µs", "CPU % clients + server", "client CPU µs/op"]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    for w in local.ordered({w for w, _ in cases}, WORKLOADS):
        for s in local.ordered({s for _, s in cases}, REPLICATED_STRATEGIES):
            runs = cases.get((w, s), {})
            for n in sorted(runs):
                v = runs[n]
                lines.append("| " + " | ".join([
                    w, s, str(n), local.fmt_ops(v.get("ops_per_s")),
                    local.fmt_num(v.get("retries_per_op"), 2),
                    local.fmt_num(v.get("p50_us"), 0),
                    local.fmt_num(v.get("p99_us"), 0),
                    local.fmt_num(v.get("lock_wait_us"), 0) if s in LOCKS else "—",
                    cpu(v), cpu_per_op(v),
                ]) + " |")
    return "\n".join(lines) + "\n"


def summary(cases, unit, known, base=None):
    """One row per workload x strategy: ops/s at each count, then at the
    highest count retries/op, p50 and p99 (us), and (local) ops/s over
    `base`'s at the same count."""
    counts = sorted({n for runs in cases.values() for n in runs})
    if not counts:
        return ""
    top = counts[-1]
    header = (["Workload", "Strategy"] + [f"ops/s @{n}" for n in counts] +
              [f"retries/op @{top}", f"p50 µs @{counts[0]}", f"p50 µs @{top}",
               f"p99 µs @{top}"])
    if base:
        header += [f"CPU µs/op @{counts[0]} / @{top}", f"vs {base} @{counts[0]} / @{top}"]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    for w in local.ordered({w for w, _ in cases}, WORKLOADS):
        ref = cases.get((w, base), {}) if base else {}
        for s in local.ordered({s for _, s in cases}, known):
            runs = cases.get((w, s), {})
            if not runs:
                continue
            row = [w, s] + [local.fmt_ops(runs.get(n, {}).get("ops_per_s")) for n in counts]
            last, first = runs.get(top, {}), runs.get(counts[0], {})
            row += [local.fmt_num(last.get("retries_per_op"), 2),
                    local.fmt_num(first.get("p50_us"), 0),
                    local.fmt_num(last.get("p50_us"), 0),
                    local.fmt_num(last.get("p99_us"), 0)]
            if base:
                row.append(f"{local.fmt_num(first.get('cpu_us_per_op'), 0)} / "
                           f"{local.fmt_num(last.get('cpu_us_per_op'), 0)}")
                row.append("—" if s == base else
                           f"{ratio(first.get('ops_per_s'), ref.get(counts[0], {}).get('ops_per_s'))}"
                           f" / {ratio(last.get('ops_per_s'), ref.get(top, {}).get('ops_per_s'))}")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def txn_vs_locks(cases, unit):
    """Per workload: at each count, txn ops/s over the best lock strategy's,
    and over the best one that writes both balances in one Commit (atomic
    for readers that take no lock, as txn is)."""
    lines = []
    for w in local.ordered({w for w, _ in cases}, WORKLOADS):
        txn = cases.get((w, "txn"), {})
        for label, pool in (("the best lock strategy", LOCKS),
                            ("the best lock strategy with one Commit", ["lock", "lock_global"])):
            if pool != LOCKS and (w, "lock_puts") not in cases:
                continue  # the same as the line above
            parts = []
            for n in sorted(txn):
                best = max(((cases.get((w, s), {}).get(n, {}).get("ops_per_s") or 0, s)
                            for s in pool), default=(0, ""))
                if not best[0]:
                    continue
                parts.append(f"{n}: {txn[n]['ops_per_s'] / best[0]:.2f}× ({best[1]})")
            if parts:
                lines.append(f"- {w}, txn over {label}, by {unit}: " + "; ".join(parts) + ".")
    return "\n".join(lines) + "\n" if lines else ""


def singles_text(singles):
    out = []
    for kind in ("file", "memory"):
        v = singles.get(kind)
        if not v or "put_p50_us" not in v:
            continue
        out.append(
            f"- {kind} storage: Put p50 {v['put_p50_us']:,.0f} µs (p99 "
            f"{v.get('put_p99_us', 0):,.0f}); Commit of two Puts (one atomic batch) p50 "
            f"{v.get('commit2_p50_us', 0):,.0f} µs (p99 {v.get('commit2_p99_us', 0):,.0f}); "
            f"Acquire + Release p50 {v.get('lock_acq_rel_p50_us', 0):,.0f} µs (p99 "
            f"{v.get('lock_acq_rel_p99_us', 0):,.0f}).")
    return "\n".join(out) + "\n" if out else ""


def plot(cases, out_png, plt):
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator
    rows = [(k, t) for k, t in (("local", "local, one Engine"),
                                ("replicated", "replicated, one nats-server"))
            if cases[k]]
    workloads = local.ordered({w for k, _ in rows for w, _ in cases[k]}, WORKLOADS)
    fig, axes = plt.subplots(len(rows), len(workloads), figsize=(5.2 * len(workloads),
                                                                  4.4 * len(rows)),
                             squeeze=False)
    markers = {"txn": "o", "lock": "s", "lock_puts": "v", "lock_global": "^",
               "rocksdb_otxn": "D"}
    colors = {"txn": "C0", "lock": "C1", "lock_global": "C2", "rocksdb_otxn": "C3",
              "lock_puts": "C4"}
    handles = {}
    for r, (kind, title) in enumerate(rows):
        known = LOCAL_STRATEGIES if kind == "local" else REPLICATED_STRATEGIES
        res = cases[kind]
        for c, w in enumerate(workloads):
            ax = axes[r][c]
            if not any(wl == w for wl, _ in res):
                ax.set_visible(False)
                continue
            for s in local.ordered({s for _, s in res}, known):
                runs = res.get((w, s), {})
                ns = sorted(runs)
                if not ns:
                    continue
                (line,) = ax.plot(ns, [runs[n]["ops_per_s"] for n in ns],
                                  marker=markers.get(s, "P"), color=colors.get(s),
                                  label=LABELS.get(s, s),
                                  linewidth=1.8)
                handles.setdefault(LABELS.get(s, s), line)
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_locator(FixedLocator(COUNTS))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticklabels([str(n) for n in COUNTS])
            ax.set_xlim(COUNTS[0] / 1.2, COUNTS[-1] * 1.2)
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_minor_locator(LogLocator(base=10, subs=tuple(range(1, 10))))
            ax.yaxis.set_major_formatter(FuncFormatter(local.fmt_si))
            ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))
            storage = " (memory store)" if w.endswith("_mem") else ""
            ax.set_title(f"{title} — {w}{storage}", fontsize=10)
            ax.set_xlabel("threads" if kind == "local" else "engines (one thread each)")
            ax.grid(True, which="both", alpha=0.3)
        axes[r][0].set_ylabel("transfers/s (log scale)")
    fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=3,
               frameon=False)
    fig.suptitle("revkv: transfer between two of 64 accounts — transaction with retry vs locks")
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    try:
        fig.savefig(out_png, dpi=110)
    except OSError as e:
        fail(f"cannot write '{out_png}': {e}")
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", help="Google Benchmark JSON from revkv_txn_contention_bench")
    ap.add_argument("reruns", nargs="*", metavar="RERUN.json",
                    help="later runs of some cases, which replace them")
    ap.add_argument("--markdown", metavar="OUT.md", help="also write the report here")
    ap.add_argument("--png", metavar="OUT.png", help="draw throughput vs threads/engines here")
    args = ap.parse_args()

    # Fail on a missing matplotlib before doing any work.
    plt = local.import_pyplot() if args.png else None

    if not os.path.exists(args.results):
        fail(f"results file '{args.results}' not found; run revkv_txn_contention_bench with "
             f"--benchmark_out={args.results} --benchmark_out_format=json first "
             f"(scripts/run_txn_contention.sh)")
    data = gbench_json.load(args.results, "revkv_txn_contention_bench", fail)
    cases, singles, errors, reps = parse(data, args.results)
    replaced = []
    for path in args.reruns:
        more = gbench_json.load(path, "revkv_txn_contention_bench", fail)
        m_cases, m_singles, m_errors, m_reps = parse(more, path)
        names = []
        for kind in ("local", "replicated"):
            for key, runs in m_cases[kind].items():
                for n, v in runs.items():
                    cases[kind][key][n] = v
                    names.append(f"{key[0]}/{key[1]}@{n}")
        singles.update(m_singles)
        names += [f"single/{k}" for k in m_singles]
        errors += m_errors
        if names:
            replaced.append(f"{len(names)} cases from {os.path.basename(path)}"
                            f" ({m_reps} repetitions)")
    if not cases["local"] and not cases["replicated"] and not singles and not errors:
        fail(f"'{args.results}' holds no transfer/, rtransfer/ or single/writes runs; "
             f"is it revkv_txn_contention_bench output?")

    md = ""
    if cases["local"]:
        md += ("Summary, local (one Engine; @N = N threads):\n\n" +
               summary(cases["local"], "threads", LOCAL_STRATEGIES, "rocksdb_otxn"))
    if cases["replicated"]:
        md += ("\nSummary, replicated (@N = N engines on one nats-server):\n\n" +
               summary(cases["replicated"], "engines", REPLICATED_STRATEGIES))
    if cases["local"]:
        md += "\nLocal (one Engine, threads):\n\n" + local_table(cases["local"])
        md += "\n" + txn_vs_locks(cases["local"], "threads")
    if cases["replicated"]:
        md += ("\nReplicated (engines on one nats-server, one thread each):\n\n" +
               replicated_table(cases["replicated"]))
        md += "\n" + txn_vs_locks(cases["replicated"], "engines")
    st = singles_text(singles)
    if st:
        md += "\nSingle measurements (one engine, nobody else):\n\n" + st
    ctx = data.get("context", {}) if isinstance(data.get("context"), dict) else {}
    notes = []
    if ctx.get("revkv_txn_contention_mode"):
        mode = ctx["revkv_txn_contention_mode"]
        secs = ctx.get("revkv_case_seconds")
        notes.append(f"mode: {mode}" + (f" ({float(secs):g} s per replicated case)"
                                        if secs else ""))
    if reps > 1:
        notes.append(f"{reps} repetitions, medians")
    if ctx.get("num_cpus"):
        notes.append(f"{ctx['num_cpus']} CPUs")
    if ctx.get("rocksdb_version"):
        notes.append(f"RocksDB {ctx['rocksdb_version']}")
    if ctx.get("nats_server"):
        notes.append(ctx["nats_server"].replace("nats-server: ", "nats-server "))
    if replaced:
        notes.append("replaced by reruns: " + "; ".join(replaced))
    if notes:
        md += "\n" + ", ".join(notes) + "\n"

    broken = [f"{kind} {w}/{s} {n}: {v['balance_errors']:.0f} balance errors"
              for kind in ("local", "replicated")
              for (w, s), runs in sorted(cases[kind].items()) for n, v in sorted(runs.items())
              if v.get("balance_errors", 0) != 0]
    problems = errors + broken
    if problems:
        md += "\nProblems:\n" + "".join(f"- {p}\n" for p in problems)
    print(md, end="")
    if args.markdown:
        try:
            with open(args.markdown, "w", encoding="utf-8") as f:
                f.write(md)
        except OSError as e:
            fail(f"cannot write '{args.markdown}': {e}")
    if args.png:
        if cases["local"] or cases["replicated"]:
            plot(cases, args.png, plt)
        else:
            print(f"{PROG}: warning: no successful runs to plot", file=sys.stderr)
    if problems:
        fail(f"{len(problems)} run(s) failed or broke the balance invariant (listed above)")


if __name__ == "__main__":
    main()
