#!/usr/bin/env bash
# The main job: bootstraps, builds, runs the engine benchmark against raw
# RocksDB (5 randomly interleaved repetitions; the report uses medians), and
# prints the ratio table (results in bench/results/).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/build.sh"
mkdir -p "$ROOT/bench/results"
"$ROOT/build/bench/revkv_engine_bench" \
  --benchmark_out="$ROOT/bench/results/engine.json" --benchmark_out_format=json \
  --benchmark_min_time="${REVKV_BENCH_MIN_TIME:-0.5}" \
  --benchmark_repetitions="${REVKV_BENCH_REPETITIONS:-5}" \
  --benchmark_enable_random_interleaving=true
python3 "$ROOT/bench/report.py" "$ROOT/bench/results/engine.json" \
  --markdown "$ROOT/bench/results/engine.md"
