#!/usr/bin/env python3
"""Tables and plots the scale curves: how a bucket's costs grow with its size.

Usage: scale_report.py RESULTS.json [--markdown OUT.md] [--png OUT.png]

RESULTS.json is Google Benchmark JSON output (--benchmark_out=...
--benchmark_out_format=json) from revkv_scale_bench, whose runs are named
<benchmark>/keys:<n>[/...]. Prints (and with --markdown writes) one row per
measure and one column per bucket size:

  Get p50/p99, local-only bucket    BM_LocalGet    p50_us, p99_us
  Get p50/p99, replica              BM_ReplicaGet  p50_us, p99_us
  bootstrap time and keys/s         BM_Bootstrap   real_time, keys_per_s
  RSS growth, replica dir on disk   BM_Bootstrap   rss_mib, disk_mib (and per key)
  Keys(">"), full listing           BM_Keys        real_time (and per key)
  KeysAfter(">", "", 4096)          BM_KeysPage    real_time

With --png, draws four log-log panels (2 x 2) against the key count: Get latency,
time (bootstrap, Keys, first page), bootstrap rate, and memory and disk.

With --benchmark_repetitions, the median aggregate is used when present, else
the mean of the repetitions.

Exits 1 with a message if the file is missing or not Google Benchmark JSON,
or holds no scale runs; also exits 1 (after writing the outputs) if a run
reported an error.
"""

import argparse
import os
import re
import sys

import gbench_json  # bench/, next to this script

NAME_RE = re.compile(r"^(BM_[A-Za-z]+)/keys:(\d+)(?:/|$)")
TIME_UNIT_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
PROG = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "scale_report.py"


fail = gbench_json.fail_with(PROG)


def metrics(bench):
    """{metric: value} of one run: its wall time in ms and numeric counters."""
    out = {}
    unit = bench.get("time_unit", "ns")
    real = bench.get("real_time")
    if unit in TIME_UNIT_MS and isinstance(real, (int, float)) and real > 0:
        out["ms"] = real * TIME_UNIT_MS[unit]
    skip = {"real_time", "cpu_time", "iterations", "repetitions", "repetition_index",
            "threads", "family_index", "per_family_instance_index", "items_per_second"}
    for k, v in bench.items():
        if k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = float(v)
    return out


def parse(data):
    """({(benchmark, keys): {metric: value}}, errors)."""
    def key_of(b):
        m = NAME_RE.match(b.get("run_name") or b.get("name", ""))
        return (m.group(1), int(m.group(2))) if m else None

    groups, errors, _ = gbench_json.group_runs(data, key_of)
    results = {}
    for key, rows in groups.items():
        runs = [metrics(r) for r in rows]
        names = set().union(*runs)
        results[key] = {n: sum(r[n] for r in runs if n in r) / sum(1 for r in runs if n in r)
                        for n in names}
    return results, errors


def fmt_keys(n):
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return f"{n:,}"


def fmt_num(v):
    if v is None:
        return "—"
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def get(results, bench, keys, metric):
    return results.get((bench, keys), {}).get(metric)


def per_key(value, keys, scale=1.0):
    return None if value is None else value * scale / keys


# (label, function(results, keys) -> value or None)
ROWS = [
    ("Get p50, local-only bucket (µs)", lambda r, n: get(r, "BM_LocalGet", n, "p50_us")),
    ("Get p99, local-only bucket (µs)", lambda r, n: get(r, "BM_LocalGet", n, "p99_us")),
    ("Get p50, replica (µs)", lambda r, n: get(r, "BM_ReplicaGet", n, "p50_us")),
    ("Get p99, replica (µs)", lambda r, n: get(r, "BM_ReplicaGet", n, "p99_us")),
    ("bootstrap: Open + OpenBucket + Sync (s)",
     lambda r, n: None if get(r, "BM_Bootstrap", n, "ms") is None
     else get(r, "BM_Bootstrap", n, "ms") / 1e3),
    ("bootstrap rate (k keys/s)",
     lambda r, n: None if get(r, "BM_Bootstrap", n, "keys_per_s") is None
     else get(r, "BM_Bootstrap", n, "keys_per_s") / 1e3),
    ("`Keys(\">\")`, full listing (ms)", lambda r, n: get(r, "BM_Keys", n, "ms")),
    ("`Keys(\">\")` per key (ns)", lambda r, n: per_key(get(r, "BM_Keys", n, "ms"), n, 1e6)),
    ("`KeysAfter(\">\", \"\", 4096)`, first page (µs)",
     lambda r, n: None if get(r, "BM_KeysPage", n, "ms") is None
     else get(r, "BM_KeysPage", n, "ms") * 1e3),
    ("RSS growth after bootstrap (MiB)", lambda r, n: get(r, "BM_Bootstrap", n, "rss_mib")),
    ("RSS growth per key (bytes)", lambda r, n: get(r, "BM_Bootstrap", n, "rss_bytes_per_key")),
    ("replica directory on disk (MiB)", lambda r, n: get(r, "BM_Bootstrap", n, "disk_mib")),
    ("… of which WAL / SST (MiB)",
     lambda r, n: (get(r, "BM_Bootstrap", n, "disk_wal_mib"),
                   get(r, "BM_Bootstrap", n, "disk_sst_mib"))),
    ("disk per key (bytes)", lambda r, n: get(r, "BM_Bootstrap", n, "disk_bytes_per_key")),
]


def table(results, sizes):
    lines = ["| measure | " + " | ".join(f"{fmt_keys(n)} keys" for n in sizes) + " |",
             "|---|" + "---:|" * len(sizes)]
    for label, fn in ROWS:
        cells = []
        for n in sizes:
            v = fn(results, n)
            if isinstance(v, tuple):
                cells.append(" / ".join(fmt_num(x) for x in v))
            else:
                cells.append(fmt_num(v))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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


# Panels: (title, y label, [(legend, function(results, keys) -> value)]).
PANELS = [
    ("Get latency", "µs", [
        ("local p50", lambda r, n: get(r, "BM_LocalGet", n, "p50_us")),
        ("local p99", lambda r, n: get(r, "BM_LocalGet", n, "p99_us")),
        ("replica p50", lambda r, n: get(r, "BM_ReplicaGet", n, "p50_us")),
        ("replica p99", lambda r, n: get(r, "BM_ReplicaGet", n, "p99_us")),
    ]),
    ("Time", "ms", [
        ("bootstrap", lambda r, n: get(r, "BM_Bootstrap", n, "ms")),
        ("Keys(\">\")", lambda r, n: get(r, "BM_Keys", n, "ms")),
        ("first page of 4096", lambda r, n: get(r, "BM_KeysPage", n, "ms")),
    ]),
    ("Bootstrap rate", "keys/s", [
        ("new replica", lambda r, n: get(r, "BM_Bootstrap", n, "keys_per_s")),
    ]),
    ("Memory and disk", "MiB", [
        ("RSS growth", lambda r, n: get(r, "BM_Bootstrap", n, "rss_mib")),
        ("replica dir", lambda r, n: get(r, "BM_Bootstrap", n, "disk_mib")),
    ]),
]


def plot(results, sizes, out_png, plt):
    from matplotlib.ticker import FixedLocator, NullLocator
    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    markers = ["o", "s", "^", "D"]
    for ax, (title, ylabel, lines) in zip(axes.flat, PANELS):
        for i, (legend, fn) in enumerate(lines):
            pts = [(n, fn(results, n)) for n in sizes]
            pts = [(n, v) for n, v in pts if v is not None and v > 0]
            if pts:
                ax.plot([n for n, _ in pts], [v for _, v in pts],
                        marker=markers[i % len(markers)], label=legend, linewidth=1.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(FixedLocator(sizes))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([fmt_keys(n) for n in sizes])
        ax.set_xlim(sizes[0] / 1.6, sizes[-1] * 1.6)
        ax.set_title(title)
        ax.set_xlabel("keys in the bucket")
        ax.set_ylabel(f"{ylabel} (log scale)")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle("revkv scale curves (100-byte values)")
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    try:
        fig.savefig(out_png, dpi=110)
    except OSError as e:
        fail(f"cannot write '{out_png}': {e}")
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", help="Google Benchmark JSON from revkv_scale_bench")
    ap.add_argument("--markdown", metavar="OUT.md", help="also write the table here")
    ap.add_argument("--png", metavar="OUT.png", help="draw the curves vs key count here")
    args = ap.parse_args()

    # Fail on a missing matplotlib before doing any work.
    plt = import_pyplot() if args.png else None

    data = gbench_json.load(args.results, "revkv_scale_bench", fail)
    results, errors = parse(data)
    if not results and not errors:
        fail(f"'{args.results}' holds no <benchmark>/keys:<n> runs; "
             f"is it revkv_scale_bench output?")
    sizes = sorted({n for _, n in results})

    md = table(results, sizes) if sizes else ""
    ctx = data.get("context", {}) if isinstance(data.get("context"), dict) else {}
    notes = []
    if ctx.get("num_cpus"):
        notes.append(f"{ctx['num_cpus']} CPUs")
    if ctx.get("nats_server"):
        notes.append(str(ctx["nats_server"]))
    if ctx.get("revkv_get_samples"):
        notes.append(f"{ctx['revkv_get_samples']} Gets per p50/p99")
    if notes:
        md += "\n" + ", ".join(notes) + "\n"
    if errors:
        md += "\nProblems:\n" + "".join(f"- {e}\n" for e in errors)
    print(md, end="")

    if args.markdown:
        try:
            with open(args.markdown, "w", encoding="utf-8") as f:
                f.write(md)
        except OSError as e:
            fail(f"cannot write '{args.markdown}': {e}")
    if args.png:
        if sizes:
            plot(results, sizes, args.png, plt)
        else:
            print(f"{PROG}: warning: no successful runs to plot", file=sys.stderr)
    if errors:
        fail(f"{len(errors)} run(s) failed (listed above)")


if __name__ == "__main__":
    main()
