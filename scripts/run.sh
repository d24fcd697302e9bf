#!/usr/bin/env bash
# The main job: bootstraps, builds, runs the engine benchmark against raw
# RocksDB, and prints the ratio table (results in bench/results/).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/build.sh"
mkdir -p "$ROOT/bench/results"
"$ROOT/build/bench/revkv_engine_bench" \
  --benchmark_out="$ROOT/bench/results/engine.json" --benchmark_out_format=json \
  --benchmark_min_time="${REVKV_BENCH_MIN_TIME:-0.5}"
python3 "$ROOT/bench/report.py" "$ROOT/bench/results/engine.json"
