"""Reading Google Benchmark JSON results: shared by the report scripts."""

import json
import sys
from collections import defaultdict


def load(path, bench_binary, fail):
    """The parsed results file; fail(message) on anything unusable."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        fail(f"results file '{path}' not found; run {bench_binary} with "
             f"--benchmark_out={path} --benchmark_out_format=json first")
    except OSError as e:
        fail(f"cannot read '{path}': {e}")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        fail(f"'{path}' is not valid JSON ({e}); was the benchmark run interrupted?")
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        fail(f"'{path}' has no 'benchmarks' list; is it Google Benchmark JSON output?")
    return data


def base_name(bench):
    """The benchmark's name without its /arguments."""
    name = bench.get("run_name") or bench.get("name", "")
    return name.split("/")[0]


def fail_with(prog):
    """A fail(message) for report `prog`: prints 'prog: error: message' to
    stderr and exits with status 1."""
    def fail(msg):
        print(f"{prog}: error: {msg}", file=sys.stderr)
        sys.exit(1)
    return fail


def group_runs(data, key_of):
    """Groups the runs of `data` by key_of(bench) (None: not one of ours).

    Returns ({key: rows}, errors, repetitions): rows is [the median
    aggregate] when the run was repeated (--benchmark_repetitions) and the
    median is there, else the run's iteration rows; errors lists the runs
    that failed, as 'name: message'; repetitions is the most iteration rows
    of one key."""
    iterations = defaultdict(list)
    medians = {}
    errors = []
    for b in data["benchmarks"]:
        if not isinstance(b, dict):
            continue
        key = key_of(b)
        if key is None:
            continue
        if b.get("error_occurred"):
            errors.append(f"{b.get('name', b.get('run_name', '?'))}: "
                          f"{b.get('error_message', 'error')}")
            continue
        run_type = b.get("run_type", "iteration")
        if run_type == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[key] = b
        elif run_type == "iteration":
            iterations[key].append(b)
    groups = {k: ([medians[k]] if k in medians else iterations[k])
              for k in set(iterations) | set(medians)}
    repetitions = max((len(v) for v in iterations.values()), default=0)
    return groups, errors, repetitions


def mean_of(rows, metric):
    """The mean of `metric` over the rows that have it as a number, or None."""
    vals = [r[metric] for r in rows if isinstance(r.get(metric), (int, float))]
    return sum(vals) / len(vals) if vals else None
