#!/usr/bin/env python3
"""Smoke test of the cross-process contention suite and its report.

Usage: replicated_contention_smoke.py BENCH_BINARY

Runs revkv_replicated_contention_bench in short mode on two cases (occ and
raw, Zipf, 2 engines: two worker processes each), then
replicated_contention_report.py on its JSON. Fails if either exits non-zero
(a failed case, lost updates, a worker that did not report) or if a case
has no increments.
"""

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rc.json")
        subprocess.run([sys.argv[1], "--short",
                        "--benchmark_filter=rcontention/(occ|raw)/zipf/engines:2/",
                        f"--benchmark_out={out}", "--benchmark_out_format=json"], check=True)
        runs = [b for b in json.load(open(out))["benchmarks"] if b.get("run_type") == "iteration"]
        names = sorted(b["name"].split("/iterations")[0] for b in runs)
        want = ["rcontention/occ/zipf/engines:2", "rcontention/raw/zipf/engines:2"]
        if names != want:
            sys.exit(f"expected runs {want}, got {names}")
        for b in runs:
            if not b.get("ops", 0) > 0 or b.get("lost_updates") != 0:
                sys.exit(f"{b['name']}: ops {b.get('ops')}, lost_updates {b.get('lost_updates')}")
        subprocess.run([sys.executable, os.path.join(HERE, "replicated_contention_report.py"), out,
                        "--markdown", os.path.join(tmp, "rc.md")], check=True)


if __name__ == "__main__":
    main()
