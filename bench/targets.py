#!/usr/bin/env python3
"""Gathers the DESIGN §8 targets of one scripts/run.sh run into one file.

    targets.py OUT.json PART.json... [--markdown OUT.md]

Each PART.json is what a report wrote with --targets (bench/targets_json.py).
OUT.json holds one entry per target of DESIGN §8, in its order: name,
measured ratio, target, met; a target no report measured is listed with
"ratio": null and "met": false. The same table is printed, and written as
markdown with --markdown. Exits 1 only when a file cannot be read or written.
"""

import argparse
import json
import sys

import gbench_json  # bench/, next to this script

# DESIGN §8, in its order: (name, what, target as shown).
TARGETS = [
    ("local_get", "local Get vs raw RocksDB Get", "≥ 0.8×"),
    ("local_get_cached", "local Get of a cached hot key vs raw RocksDB Get", "≥ 3×"),
    ("local_update_vs_otdb", "local UpdateWithRetry increment vs OptimisticTransactionDB, 1 thread",
     "≥ 0.8×"),
    ("local_put", "local Put vs raw single-key Put", "≥ 0.7×"),
    ("replicated_get", "replicated Get vs kvStore_Get", "≥ 50× faster"),
    ("replicated_cas", "replicated CAS Update vs kvStore_Update, bucket with a watcher (latency)",
     "≤ 1.1×"),
    ("pipelined_puts", "replicated pipelined Puts, 1 thread, vs js_PublishAsync", "≥ 0.8×"),
    ("writes_8_threads", "replicated writes, 8 threads, vs async publish", "≥ 0.5×"),
    ("replication_lag", "replication lag p99 vs one publish round trip (p50)", "≤ 2×"),
    ("bootstrap", "new-replica bootstrap vs ordered-consumer replay", "≥ 1.0×"),
    ("hot_key_no_collapse", "hot-key contention, 16 threads, vs the peak", "≥ 0.7×"),
    ("cross_process_occ", "cross-process OCC vs raw Get+Update, worst engine count", "≥ 1.0×"),
]


fail = gbench_json.fail_with("targets.py")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="the targets.json to write")
    parser.add_argument("parts", nargs="*", help="targets files the reports wrote")
    parser.add_argument("--markdown", metavar="OUT.md")
    args = parser.parse_args()

    measured = {}
    for path in args.parts:
        try:
            with open(path, encoding="utf-8") as f:
                for e in json.load(f).get("targets", []):
                    measured[e["name"]] = e
        except FileNotFoundError:
            print(f"targets.py: warning: '{path}' is missing (its benchmark did not run?)",
                  file=sys.stderr)
        except (OSError, ValueError, KeyError, TypeError) as e:
            fail(f"cannot read '{path}': {e}")

    out = []
    lines = ["| target (DESIGN §8) | measured | target | met |", "|---|---:|:---:|:---:|"]
    for name, what, shown in TARGETS:
        e = measured.pop(name, None)
        if e is None:
            out.append({"name": name, "what": what, "ratio": None, "target": shown, "met": False})
            lines.append(f"| {what} | not measured | {shown} | ✘ |")
            continue
        out.append({"name": name, "what": what, "ratio": e["ratio"], "target": e["target"],
                    "bound": e["bound"], "met": e["met"], "detail": e.get("detail", "")})
        ratio = e["ratio"]
        shown_ratio = f"{ratio:,.0f}×" if ratio >= 10 else f"{ratio:.2f}×"
        lines.append(f"| {what} | {shown_ratio} | {shown} | {'✔' if e['met'] else '✘'} |")
    for name in measured:
        print(f"targets.py: warning: '{name}' is not a DESIGN §8 target; left out", file=sys.stderr)
    met = sum(1 for e in out if e["met"])
    lines.append("")
    lines.append(f"{met} of {len(out)} targets met.")
    table = "\n".join(lines) + "\n"
    print(table, end="")
    try:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"targets": out}, f, indent=1, ensure_ascii=False)
            f.write("\n")
        if args.markdown:
            with open(args.markdown, "w", encoding="utf-8") as f:
                f.write(table)
    except OSError as e:
        fail(f"cannot write: {e}")


if __name__ == "__main__":
    main()
