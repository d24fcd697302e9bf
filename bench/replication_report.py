#!/usr/bin/env python3
"""Pairs revkv's replicated benchmarks with their raw nats.c baselines.

Usage: replication_report.py RESULTS.json [--markdown OUT.md]

RESULTS.json is Google Benchmark output (--benchmark_out=... with
--benchmark_out_format=json) from revkv_replication_bench. Each row compares
a revkv benchmark with the nats.c baseline measured in the same run against
the same nats-server, and checks the DESIGN §8 target:

  Get                 BM_ReplicatedGet       vs BM_NatsKvGet          >= 50x faster
  CAS Update          BM_ReplicatedUpdate    vs BM_NatsKvUpdate       latency <= 1.1x
  8 writers           BM_ReplicatedPut (8)   vs BM_NatsPublishAsync   throughput >= 0.5x
  replication lag     BM_ReplicationLag p99  vs BM_NatsPublishRtt     <= 2x, against both
                                                                      the RTT's p50 and p99
  bootstrap           BM_ReplicaBootstrap    vs BM_NatsOrderedReplay  throughput >= 1.0x

Rows without a target give context (sync js_Publish from 8 threads, the
lag's p50).

Latencies are wall time per operation; for runs with more than one thread,
1e9 / items_per_second when present. Throughput is items_per_second (entries
per second for the bootstrap pair). p50/p99 are the benchmarks' p50_us and
p99_us counters. With --benchmark_repetitions the median aggregate is used
when present, else the mean of the repetitions.

Exits 1 if the file is missing or unreadable, a row's benchmark is missing, or
a benchmark reported an error; prints the table first when it can. A missed
target is reported in the table (✘), not by the exit status.
"""

import argparse
import sys

import gbench_json  # bench/, next to this script
import targets_json  # bench/, next to this script

TIME_UNIT_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}

# How revkv's figure relates to the baseline's:
#   faster:  baseline / revkv latency, target is a minimum ("N× faster")
#   latency: revkv / baseline latency, target is a maximum ("N× the latency")
#   rate:    revkv / baseline throughput, target is a minimum
FASTER, LATENCY, RATE = "faster", "latency", "rate"

# (what, (baseline name, threads, metric, label), (revkv name, threads, metric, label),
#  kind, target or None). Metrics: "ns" (wall ns/op), "ips" (items/s), or a counter.
ROWS = [
    ("Get (revkv reads its replica)",
     ("BM_NatsKvGet", 1, "ns", "`kvStore_Get`"),
     ("BM_ReplicatedGet", 1, "ns", "Get"), FASTER, 50.0),
    ("CAS Update, one thread, bucket with a watcher",
     ("BM_NatsKvUpdateWatched", 1, "ns", "`kvStore_Update`"),
     ("BM_ReplicatedUpdate", 1, "ns", "Update"), LATENCY, 1.1),
    ("CAS Update, one thread (context: bucket without a consumer)",
     ("BM_NatsKvUpdate", 1, "ns", "`kvStore_Update`"),
     ("BM_ReplicatedUpdate", 1, "ns", "Update"), LATENCY, None),
    ("Pipelined writes, 1 thread",
     ("BM_NatsPublishAsync", 1, "ips", "`js_PublishAsync`, 1 thread"),
     ("BM_ReplicatedPutAsync", 1, "ips", "PutAsync"), RATE, 0.8),
    ("Writes, 8 threads on distinct keys",
     ("BM_NatsPublishAsync", 1, "ips", "`js_PublishAsync`, 1 thread"),
     ("BM_ReplicatedPut", 8, "ips", "Put"), RATE, 0.5),
    ("Writes, 8 threads (context: sync publish)",
     ("BM_NatsPublishSync", 8, "ips", "`js_Publish`, 8 threads"),
     ("BM_ReplicatedPut", 8, "ips", "Put"), RATE, None),
    ("Writes, 1 thread (context)",
     ("BM_NatsPublishRtt", 1, "ns", "`js_Publish`"),
     ("BM_ReplicatedPut", 1, "ns", "Put"), LATENCY, None),
    ("Replication lag A→B, p99 vs publish RTT p50",
     ("BM_NatsPublishRtt", 1, "p50_us", "`js_Publish` RTT p50"),
     ("BM_ReplicationLag", 1, "p99_us", "lag p99"), LATENCY, 2.0),
    ("Replication lag A→B, p99 vs publish RTT p99",
     ("BM_NatsPublishRtt", 1, "p99_us", "`js_Publish` RTT p99"),
     ("BM_ReplicationLag", 1, "p99_us", "lag p99"), LATENCY, 2.0),
    ("Replication lag A→B, p50 (context)",
     ("BM_NatsPublishRtt", 1, "p50_us", "`js_Publish` RTT p50"),
     ("BM_ReplicationLag", 1, "p50_us", "lag p50"), LATENCY, None),
    ("Bootstrap of 100k keys",
     ("BM_NatsOrderedReplay", 1, "ips", "ordered consumer"),
     ("BM_ReplicaBootstrap", 1, "ips", "new replica + Sync"), RATE, 1.0),
    ("Bootstrap by replay, snapshot off (context)",
     ("BM_NatsOrderedReplay", 1, "ips", "ordered consumer"),
     ("BM_ReplicaBootstrapReplay", 1, "ips", "new replica + Sync"), RATE, None),
]


fail = gbench_json.fail_with("replication_report.py")


def load(path):
    return gbench_json.load(path, "revkv_replication_bench", fail)


base_name = gbench_json.base_name


def metrics(bench):
    """{metric: value} of one benchmark run: ns, ips and its numeric counters."""
    out = {}
    threads = int(bench.get("threads", 1))
    ips = bench.get("items_per_second")
    if isinstance(ips, (int, float)) and ips > 0:
        out["ips"] = float(ips)
    unit = bench.get("time_unit", "ns")
    real = bench.get("real_time")
    if threads > 1 and "ips" in out:
        out["ns"] = 1e9 / out["ips"]
    elif unit in TIME_UNIT_NS and isinstance(real, (int, float)) and real > 0:
        out["ns"] = real * TIME_UNIT_NS[unit]
    for k, v in bench.items():
        if k.endswith("_us") and isinstance(v, (int, float)):
            out[k] = float(v)
    return out


def collect(data):
    """{(base name, threads): {metric: value}}, plus the failed runs."""
    groups, errors, _ = gbench_json.group_runs(
        data, lambda b: (base_name(b), int(b.get("threads", 1))))
    results = {}
    for key, rows in groups.items():
        runs = [metrics(r) for r in rows]
        names = set().union(*runs)
        results[key] = {m: sum(r[m] for r in runs if m in r) / sum(1 for r in runs if m in r)
                        for m in names}
    return results, errors


def fmt_value(metric, value):
    if metric == "ips":
        return f"{value / 1e3:,.1f}k/s"
    us = value / 1e3 if metric == "ns" else value
    return f"{us:,.1f} µs"


def fmt_ratio(ratio, target, passes):
    """Two decimals, or more when two would round across the target."""
    for digits in range(2, 7):
        text = f"{ratio:.{digits}f}"
        if target is None or passes(float(text)) == passes(ratio):
            break
    return text


# The DESIGN §8 target each row checks, by its first column (bench/targets.py).
TARGET_NAMES = {
    "Get (revkv reads its replica)": "replicated_get",
    "CAS Update, one thread, bucket with a watcher": "replicated_cas",
    "Pipelined writes, 1 thread": "pipelined_puts",
    "Writes, 8 threads on distinct keys": "writes_8_threads",
    "Replication lag A→B, p99 vs publish RTT p50": "replication_lag",
    "Bootstrap of 100k keys": "bootstrap",
}


def build_rows(results, targets=None):
    """Rows of the table; with a list `targets`, also appends each checked
    target's verdict there (targets_json.entry)."""
    rows = []
    missing = []
    for what, (bname, bthreads, bmetric, blabel), (rname, rthreads, rmetric, rlabel), kind, \
            target in ROWS:
        base = results.get((bname, bthreads), {}).get(bmetric)
        rev = results.get((rname, rthreads), {}).get(rmetric)
        if base is None or rev is None:
            absent = [f"{n} ({t} thread(s)) {m}" for n, t, m, v in
                      ((bname, bthreads, bmetric, base), (rname, rthreads, rmetric, rev))
                      if v is None]
            missing.append(f"{what}: no {' and no '.join(absent)}")
            continue
        if kind == FASTER:
            ratio = base / rev
            passes = lambda r, t=target: r >= t  # noqa: E731
            shown = lambda r: f"{r}× faster"  # noqa: E731
            target_s = f"≥ {target:g}× faster" if target else "—"
        elif kind == LATENCY:
            ratio = rev / base
            passes = lambda r, t=target: r <= t  # noqa: E731
            shown = lambda r: f"{r}× the latency"  # noqa: E731
            target_s = f"≤ {target:g}×" if target else "—"
        else:
            ratio = rev / base
            passes = lambda r, t=target: r >= t  # noqa: E731
            shown = lambda r: f"{r}× the throughput"  # noqa: E731
            target_s = f"≥ {target:g}×" if target else "—"
        if kind == FASTER and ratio >= 10:
            ratio_s = f"{ratio:,.0f}"
        else:
            ratio_s = fmt_ratio(ratio, target, passes)
        verdict = "—" if target is None else ("✔" if passes(ratio) else "✘")
        if targets is not None and target is not None and what in TARGET_NAMES:
            targets.append(targets_json.entry(TARGET_NAMES[what], ratio, target,
                                              higher_is_better=kind != LATENCY, detail=what))
        rows.append((what, f"{blabel} {fmt_value(bmetric, base)}",
                     f"{rlabel} {fmt_value(rmetric, rev)}", shown(ratio_s), target_s, verdict))
    return rows, missing


def render(rows, context):
    lines = []
    if context:
        lines.append("<!-- " + ", ".join(f"{k}={v}" for k, v in context) + " -->")
    lines.append("| operation | nats.c | revkv | revkv vs nats.c | target (DESIGN §8) | result |")
    lines.append("|---|---:|---:|---:|:---:|:---:|")
    for row in rows:
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="Google Benchmark JSON output of revkv_replication_bench")
    parser.add_argument("--markdown", metavar="OUT.md", help="also write the table to this file")
    parser.add_argument("--targets", metavar="OUT.json",
                        help="also write the DESIGN §8 verdicts for bench/targets.py")
    args = parser.parse_args()

    data = load(args.results)
    results, errors = collect(data)
    targets = []
    rows, missing = build_rows(results, targets)
    if args.targets:
        targets_json.write(args.targets, targets)

    ctx = data.get("context", {})
    keys = ("date", "host_name", "num_cpus", "nats_server", "revkv_value_bytes",
            "revkv_bootstrap_entries")
    context = [(k, ctx[k]) for k in keys if k in ctx]
    table = render(rows, context)
    if rows:
        print(table, end="")
    if args.markdown:
        try:
            with open(args.markdown, "w", encoding="utf-8") as f:
                f.write(table)
        except OSError as e:
            fail(f"cannot write '{args.markdown}': {e}")

    problems = [f"benchmark failed: {e}" for e in errors] + [f"missing: {m}" for m in missing]
    if problems:
        for p in problems:
            print(f"replication_report.py: error: {p}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
