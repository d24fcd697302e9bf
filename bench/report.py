#!/usr/bin/env python3
"""Pairs revkv engine benchmarks with their raw RocksDB baselines.

Usage: report.py RESULTS.json [--markdown OUT.md]

RESULTS.json is Google Benchmark output (--benchmark_out=... with
--benchmark_out_format=json) from revkv_engine_bench. Each engine benchmark is
paired with its baseline at the same thread count:

    BM_EngineGet    <-> BM_RawGet            target >= 0.8
    BM_EngineGetCached <-> BM_RawGet         target >= 3.0
    BM_EnginePut    <-> BM_RawPut            target >= 0.7
    BM_EngineUpdate <-> BM_RawGetWriteBatch  target >= 0.8

ns/op is real (wall) time per iteration; for runs with more than one thread it
is 1e9 / items_per_second when that counter is present (wall-clock throughput
over all threads), else real time. The ratio is engine throughput over raw
throughput, i.e. raw ns/op / engine ns/op: 1.0 means parity, 0.5 means the
engine does half as many operations per second.

With --benchmark_repetitions, the median aggregate is used when present,
else the mean of the repetitions.

Exits 1 if the file is missing or unreadable, a pair is incomplete, or a
benchmark reported an error; prints the table first when it can.
"""

import argparse
import sys

import gbench_json  # bench/, next to this script
import targets_json  # bench/, next to this script

# (operation label, raw baseline, engine benchmark, target ratio or None)
PAIRS = [
    ("Get", "BM_RawGet", "BM_EngineGet", 0.8),
    ("Get, hot-key cache (entry_cache_bytes)", "BM_RawGet", "BM_EngineGetCached", 3.0),
    ("Put", "BM_RawPut", "BM_EnginePut", 0.7),
    ("Update (CAS)", "BM_RawGetWriteBatch", "BM_EngineUpdate", 0.8),
    # Baseline is revkv's own CAS update: acquire+release must cost at most 2x.
    ("Lock acquire+release vs revkv CAS Update", "BM_EngineUpdate",
     "BM_EngineLockAcquireRelease", 0.5),
]

TIME_UNIT_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


fail = gbench_json.fail_with("report.py")


def load(path):
    return gbench_json.load(path, "revkv_engine_bench", fail)


base_name = gbench_json.base_name


def ns_per_op(bench):
    """Wall-clock nanoseconds per operation of one benchmark run."""
    threads = int(bench.get("threads", 1))
    ips = bench.get("items_per_second")
    if threads > 1 and isinstance(ips, (int, float)) and ips > 0:
        return 1e9 / ips
    unit = bench.get("time_unit", "ns")
    if unit not in TIME_UNIT_NS:
        fail(f"benchmark '{bench.get('name')}' has unknown time_unit '{unit}'")
    real = bench.get("real_time")
    if not isinstance(real, (int, float)) or real <= 0:
        fail(f"benchmark '{bench.get('name')}' has no usable real_time")
    return real * TIME_UNIT_NS[unit]


def collect(data):
    """{(base name, threads): ns/op}, plus the names of failed runs."""
    groups, errors, _ = gbench_json.group_runs(
        data, lambda b: (base_name(b), int(b.get("threads", 1))))
    results = {k: sum(ns_per_op(r) for r in rows) / len(rows) for k, rows in groups.items()}
    return results, errors


def build_rows(results):
    rows = []
    missing = []
    for op, raw_name, engine_name, target in PAIRS:
        threads = sorted({t for (n, t) in results if n in (raw_name, engine_name)})
        if not threads:
            missing.append(f"{op}: neither {raw_name} nor {engine_name} is in the results")
            continue
        for t in threads:
            raw = results.get((raw_name, t))
            eng = results.get((engine_name, t))
            if raw is None or eng is None:
                absent = raw_name if raw is None else engine_name
                missing.append(f"{op} at {t} thread(s): {absent} is missing "
                               f"(pairs {engine_name} with {raw_name})")
                continue
            ratio = raw / eng
            if target is None:
                target_s, verdict = "\u2014", "\u2014"
            else:
                target_s = f"\u2265{target:.1f}"
                verdict = "pass" if ratio >= target else "MISS"
            rows.append((op, t, raw, eng, ratio, target, target_s, verdict))
    return rows, missing


def fmt_ratio(ratio, target):
    """Two decimals, or more when two would round across the target."""
    for digits in range(2, 7):
        text = f"{ratio:.{digits}f}"
        if target is None or (float(text) >= target) == (ratio >= target):
            break
    return text


def render(rows, context):
    lines = []
    if context:
        ctx = ", ".join(f"{k}={v}" for k, v in context)
        lines.append(f"<!-- {ctx} -->")
    lines.append("| operation | threads | raw ns/op | engine ns/op | engine/raw throughput "
                 "| target | result |")
    lines.append("|---|---:|---:|---:|---:|:---:|:---:|")
    for op, t, raw, eng, ratio, target, target_s, verdict in rows:
        lines.append(f"| {op} | {t} | {raw:,.0f} | {eng:,.0f} | {fmt_ratio(ratio, target)}x "
                     f"| {target_s} | {verdict} |")
    return "\n".join(lines) + "\n"


# The DESIGN §8 target of each row, by its operation label (bench/targets.py).
TARGET_NAMES = {"Get": "local_get", "Get, hot-key cache (entry_cache_bytes)": "local_get_cached",
                "Put": "local_put"}


def targets(rows):
    """Per DESIGN §8 target, the verdict at the thread count where it is
    lowest (targets_json.entry)."""
    worst = {}
    for op, t, _raw, _eng, ratio, target, _ts, _v in rows:
        name = TARGET_NAMES.get(op)
        if name and (name not in worst or ratio < worst[name][0]):
            worst[name] = (ratio, target, f"{op}, {t} thread(s)")
    return [targets_json.entry(n, r, tg, detail=d) for n, (r, tg, d) in worst.items()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="Google Benchmark JSON output of revkv_engine_bench")
    parser.add_argument("--markdown", metavar="OUT.md", help="also write the table to this file")
    parser.add_argument("--targets", metavar="OUT.json",
                        help="also write the DESIGN §8 verdicts for bench/targets.py")
    args = parser.parse_args()

    data = load(args.results)
    results, errors = collect(data)
    rows, missing = build_rows(results)
    if args.targets:
        targets_json.write(args.targets, targets(rows))

    ctx = data.get("context", {})
    keys = ("date", "host_name", "num_cpus", "library_build_type", "rocksdb_version",
            "revkv_engine_record_bytes")
    # library_build_type is Google Benchmark's own build, not revkv's.
    context = [("gbench_" + k if k == "library_build_type" else k, ctx[k])
               for k in keys if k in ctx]
    table = render(rows, context)
    if rows:
        print(table, end="")
    if args.markdown:
        try:
            with open(args.markdown, "w", encoding="utf-8") as f:
                f.write(table)
        except OSError as e:
            fail(f"cannot write '{args.markdown}': {e}")

    problems = [f"benchmark failed: {e}" for e in errors] + [f"missing pair: {m}" for m in missing]
    if problems:
        for p in problems:
            print(f"report.py: error: {p}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
