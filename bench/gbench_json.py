"""Reading Google Benchmark JSON results: shared by the report scripts."""

import json


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
