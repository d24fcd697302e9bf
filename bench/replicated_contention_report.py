#!/usr/bin/env python3
"""Tables and plots the cross-process (replicated) contention suite's results.

Usage: replicated_contention_report.py RESULTS.json [--markdown OUT.md] [--png OUT.png]

RESULTS.json is Google Benchmark JSON output (--benchmark_out=...
--benchmark_out_format=json) from revkv_replicated_contention_bench, whose
cases are named rcontention/<strategy>/<workload>/engines:<n>/... (each
engine, or raw client, in its own worker process), plus the single
measurements single/lock_vs_update and single/lock_wake.

Prints (and with --markdown writes):
- one table row per workload x strategy x engines: ops/s, conflicts/op, p50
  and p99 latency of one increment (us), lock wait p50 (us, lock only), and
  the CPU used by all worker processes (engines or raw clients) and by the
  nats-server, in % of one core, and the workers' CPU time per increment
  (us);
- for each workload and engine count, the ratio of replicated OCC's ops/s to
  the raw nats.c kvStore_Get + kvStore_Update loop's, against the target of
  at least 1.00;
- the single measurements: uncontended Acquire + Release vs one raw
  kvStore_Update (p50 and ratio), the parts of one uncontended increment
  (revkv: local GetEntry + Update; raw: kvStore_Get + kvStore_Update), and
  the lock-wake latency across engines (p50, p99).
With --png, draws one subplot per workload: x = engines (log2), y = ops/s
(log scale), one line per strategy.

With --benchmark_repetitions, the median aggregate is used when present, else
the mean of the repetitions.

Exits 1 with a message if the file is missing or not Google Benchmark JSON,
or holds no rcontention runs; also exits 1 (after writing the outputs) if a
run reported an error or lost updates.
"""

import argparse
import os
import re
import sys
from collections import defaultdict

# The local suite's report has the JSON loading, number formats and the
# matplotlib import (with its re-exec under /usr/bin/python3).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import contention_report as local  # noqa: E402
import gbench_json  # noqa: E402
import targets_json  # noqa: E402

ENGINES = [1, 2, 4, 8]
WORKLOADS = ["hot", "zipf"]
STRATEGIES = ["occ", "lock", "fenced", "fenced_cas", "raw"]
STRATEGY_LABELS = {
    "occ": "occ (UpdateWithRetry)",
    "lock": "lock → read → write → release",
    "fenced": "lock in the bucket → read → fenced Put → release",
    "fenced_cas": "lock in the bucket → read → fenced CAS → release",
    "raw": "raw nats.c Get + Update",
}
METRICS = ["ops_per_s", "conflicts_per_op", "p50_us", "p99_us", "lock_wait_p50_us",
           "lock_wait_mean_us", "client_cpu_pct", "server_cpu_pct", "lost_updates"]
SINGLE_METRICS = {
    "lock_vs_update": ["lock_acq_rel_p50_us", "lock_acq_rel_p99_us", "acquire_p50_us",
                       "release_p50_us", "kv_update_p50_us", "kv_update_p99_us",
                       "revkv_update_p50_us", "lock_over_kv_update", "kv_get_p50_us",
                       "revkv_get_p50_us"],
    "lock_wake": ["wake_p50_us", "wake_p99_us", "release_call_p50_us"],
}
CASE_RE = re.compile(r"^rcontention/([^/]+)/([^/]+)/engines:(\d+)(?:/|$)")
SINGLE_RE = re.compile(r"^single/([^/]+)(?:/|$)")
PROG = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else \
    "replicated_contention_report.py"


fail = gbench_json.fail_with(PROG)


def parse(data, path):
    """Returns ({(workload, strategy): {engines: {metric: value}}},
    {single name: {metric: value}}, errors, repetitions seen)."""
    def key_of(b):
        run_name = b.get("run_name") or b.get("name", "")
        m = CASE_RE.match(run_name)
        s = SINGLE_RE.match(run_name)
        if m:
            return ("case", m.group(1), m.group(2), int(m.group(3)))
        if s:
            return ("single", s.group(1))
        return None

    groups, errors, reps = gbench_json.group_runs(data, key_of)

    def values(key, metrics):
        out = {}
        for metric in metrics:
            v = gbench_json.mean_of(groups[key], metric)
            if v is not None:
                out[metric] = v
        return out

    cases = defaultdict(dict)
    singles = {}
    for key in groups:
        if key[0] == "case":
            _, strategy, workload, engines = key
            v = values(key, METRICS)
            if "ops_per_s" not in v:
                fail(f"'{path}': case '{strategy}/{workload}' engines:{engines} has no "
                     f"ops_per_s counter; is this revkv_replicated_contention_bench output?")
            cases[(workload, strategy)][engines] = v
        else:
            singles[key[1]] = values(key, SINGLE_METRICS.get(key[1], []))
    return cases, singles, errors, reps


def cpu(v):
    c, s = v.get("client_cpu_pct"), v.get("server_cpu_pct")
    return "—" if c is None or s is None else f"{c:.0f} + {s:.0f}"


def cpu_per_op(v):
    c, ops = v.get("client_cpu_pct"), v.get("ops_per_s")
    return "—" if c is None or not ops else f"{c / 100 / ops * 1e6:,.0f}"


def table(cases):
    header = ["Workload", "Strategy", "Engines", "ops/s", "conflicts/op", "p50 µs", "p99 µs",
              "lock wait p50 µs", "CPU % clients + server", "client CPU µs/op"]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    workloads = local.ordered({w for w, _ in cases}, WORKLOADS)
    strategies = local.ordered({s for _, s in cases}, STRATEGIES)
    for w in workloads:
        for s in strategies:
            runs = cases.get((w, s), {})
            for n in sorted(runs):
                v = runs[n]
                lines.append("| " + " | ".join([
                    w, s, str(n), local.fmt_ops(v.get("ops_per_s")),
                    local.fmt_num(v.get("conflicts_per_op"), 2),
                    local.fmt_num(v.get("p50_us"), 0),
                    local.fmt_num(v.get("p99_us"), 0),
                    local.fmt_num(v.get("lock_wait_p50_us"), 0) if s in ("lock", "fenced", "fenced_cas") else "—",
                    cpu(v),
                    cpu_per_op(v),
                ]) + " |")
    return "\n".join(lines) + "\n"


def occ_vs_raw(cases):
    """One line per workload: at each engine count, occ ops/s / raw ops/s."""
    lines = []
    for w in local.ordered({w for w, _ in cases}, WORKLOADS):
        occ, raw = cases.get((w, "occ"), {}), cases.get((w, "raw"), {})
        parts = []
        for n in sorted(set(occ) & set(raw)):
            if not raw[n].get("ops_per_s"):
                continue
            ratio = occ[n]["ops_per_s"] / raw[n]["ops_per_s"]
            verdict = "≥ raw" if ratio >= 1.0 else "BELOW raw"
            parts.append(f"{n} engine{'s' if n > 1 else ''}: {ratio:.2f}× ({verdict})")
        if parts:
            lines.append(f"- {w}: replicated OCC / raw nats.c Get + Update (ops/s; target "
                         f"≥ 1.00): " + "; ".join(parts) + ".")
        # Every replica applies every write: OCC's CPU per increment, all
        # worker processes together, grows with the engine count.
        cpu = [f"{n}: {cpu_per_op(occ[n])} vs {cpu_per_op(raw[n])}"
               for n in sorted(set(occ) & set(raw))]
        if cpu:
            lines.append(f"  Worker CPU per increment, OCC vs raw (µs, by engines): " +
                         "; ".join(cpu) + ".")
    return "\n".join(lines) + "\n" if lines else ""


def occ_target(cases):
    """The DESIGN §8 verdict: the lowest OCC / raw ratio over every workload
    and engine count (targets_json.entry), or None without both."""
    worst = None
    for w in sorted({w for w, _ in cases}):
        occ, raw = cases.get((w, "occ"), {}), cases.get((w, "raw"), {})
        for n in sorted(set(occ) & set(raw)):
            if raw[n].get("ops_per_s"):
                ratio = occ[n]["ops_per_s"] / raw[n]["ops_per_s"]
                if worst is None or ratio < worst[0]:
                    worst = (ratio, f"{w}, {n} engine{'s' if n > 1 else ''}")
    if worst is None:
        return None
    return targets_json.entry("cross_process_occ", worst[0], 1.0, detail=f"lowest at {worst[1]}")


def singles_text(singles):
    out = []
    lv = singles.get("lock_vs_update")
    if lv and "lock_acq_rel_p50_us" in lv:
        out.append(
            f"- Uncontended replicated lock, Acquire + Release: p50 "
            f"{lv['lock_acq_rel_p50_us']:,.0f} µs (p99 {lv.get('lock_acq_rel_p99_us', 0):,.0f}; "
            f"Acquire {lv.get('acquire_p50_us', 0):,.0f} + Release "
            f"{lv.get('release_p50_us', 0):,.0f}) vs one raw kvStore_Update p50 "
            f"{lv.get('kv_update_p50_us', 0):,.0f} µs (p99 {lv.get('kv_update_p99_us', 0):,.0f}): "
            f"{lv.get('lock_over_kv_update', 0):.2f}× (revkv Update p50 "
            f"{lv.get('revkv_update_p50_us', 0):,.0f} µs).")
    if lv and "kv_get_p50_us" in lv and "revkv_get_p50_us" in lv:
        revkv = lv["revkv_get_p50_us"] + lv.get("revkv_update_p50_us", 0)
        raw = lv["kv_get_p50_us"] + lv.get("kv_update_p50_us", 0)
        out.append(
            f"- One uncontended increment, in parts (p50): revkv reads its replica in "
            f"{lv['revkv_get_p50_us']:,.1f} µs and writes with Update in "
            f"{lv.get('revkv_update_p50_us', 0):,.0f} µs (the publish, then the wait for its "
            f"own replica to apply the write), {revkv:,.0f} µs in all; raw nats.c reads with "
            f"kvStore_Get in {lv['kv_get_p50_us']:,.0f} µs and writes with kvStore_Update in "
            f"{lv.get('kv_update_p50_us', 0):,.0f} µs, {raw:,.0f} µs in all.")
    wk = singles.get("lock_wake")
    if wk and "wake_p50_us" in wk:
        out.append(
            f"- Lock wake across engines (A's Release() call → B's Acquire returns): p50 "
            f"{wk['wake_p50_us']:,.0f} µs, p99 {wk.get('wake_p99_us', 0):,.0f} µs (A's Release "
            f"call itself: p50 {wk.get('release_call_p50_us', 0):,.0f} µs).")
    return "\n".join(out) + "\n" if out else ""


def plot(cases, out_png, plt):
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator
    workloads = local.ordered({w for w, _ in cases}, WORKLOADS)
    strategies = local.ordered({s for _, s in cases}, STRATEGIES)
    fig, axes = plt.subplots(1, len(workloads), figsize=(5.4 * len(workloads), 5.0),
                             sharey=True, squeeze=False)
    markers = ["o", "s", "^", "D", "v", "P"]
    for ax, w in zip(axes[0], workloads):
        for i, s in enumerate(strategies):
            runs = cases.get((w, s), {})
            ns = sorted(runs)
            if not ns:
                continue
            ax.plot(ns, [runs[n]["ops_per_s"] for n in ns], marker=markers[i % len(markers)],
                    label=STRATEGY_LABELS.get(s, s), linewidth=1.8)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(ENGINES))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([str(n) for n in ENGINES])
        ax.set_xlim(ENGINES[0] / 1.2, ENGINES[-1] * 1.2)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_minor_locator(LogLocator(base=10, subs=tuple(range(1, 10))))
        ax.yaxis.set_major_formatter(FuncFormatter(local.fmt_si))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))
        ax.set_title(f"workload: {w}")
        ax.set_xlabel("engines (one process each: own connection + replica, one thread)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("ops/s (all processes, log scale)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    # Five long labels do not fit in one row of the figure's width.
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), frameon=False)
    fig.suptitle("revkv replicated contention (one nats-server, one process per engine): "
                 "read-increment-write throughput")
    fig.tight_layout(rect=(0, 0.13, 1, 0.95))
    try:
        fig.savefig(out_png, dpi=110)
    except OSError as e:
        fail(f"cannot write '{out_png}': {e}")
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", help="Google Benchmark JSON from revkv_replicated_contention_bench")
    ap.add_argument("--markdown", metavar="OUT.md", help="also write the report here")
    ap.add_argument("--png", metavar="OUT.png", help="draw throughput vs engines here")
    ap.add_argument("--targets", metavar="OUT.json",
                    help="also write the DESIGN §8 verdict for bench/targets.py")
    args = ap.parse_args()

    # Fail on a missing matplotlib before doing any work.
    plt = local.import_pyplot() if args.png else None

    if not os.path.exists(args.results):
        fail(f"results file '{args.results}' not found; run "
             f"revkv_replicated_contention_bench with --benchmark_out={args.results} "
             f"--benchmark_out_format=json first (scripts/run_replicated_contention.sh)")
    data = gbench_json.load(args.results, "revkv_replicated_contention_bench", fail)
    cases, singles, errors, reps = parse(data, args.results)
    if not cases and not singles and not errors:
        fail(f"'{args.results}' holds no rcontention/<strategy>/<workload>/engines:<n> runs; "
             f"is it revkv_replicated_contention_bench output?")

    md = table(cases)
    md += "\n" + occ_vs_raw(cases)
    if args.targets:
        verdict = occ_target(cases)
        targets_json.write(args.targets, [verdict] if verdict else [])
    st = singles_text(singles)
    if st:
        md += ("\nSingle measurements (one engine and one raw client in the driver's process, "
               "nobody else):\n\n" + st)
    ctx = data.get("context", {}) if isinstance(data.get("context"), dict) else {}
    notes = []
    if ctx.get("revkv_replicated_contention_mode"):
        mode = ctx["revkv_replicated_contention_mode"]
        secs = ctx.get("revkv_case_seconds")
        notes.append(f"mode: {mode}" + (f" ({float(secs):g} s per case)" if secs else ""))
    if reps > 1:
        notes.append(f"{reps} repetitions, medians")
    if ctx.get("num_cpus"):
        notes.append(f"{ctx['num_cpus']} CPUs")
    if ctx.get("nats_server"):
        notes.append(ctx["nats_server"].replace("nats-server: ", "nats-server "))
    if notes:
        md += "\n" + ", ".join(notes) + "\n"
    local.finish(md, cases, errors, "engines", args, lambda: plot(cases, args.png, plt), fail)


if __name__ == "__main__":
    main()
