#!/usr/bin/env bash
# The cross-process contention suite, short version: OCC (UpdateWithRetry) vs
# lock -> read -> write -> release vs the same with the lock in the counter's
# bucket and a fenced Put or a fenced CAS vs raw nats.c kvStore_Get +
# kvStore_Update, with 1, 2, 4 and 8 engines, each in its own worker process
# (own NATS connection and replica; the raw baseline one process per client
# too), released together after all have opened, on a hot key and Zipf over
# 1,000 keys, on a nats-server the benchmark starts on a free loopback port;
# plus the uncontended lock latency and the lock-wake latency. 3 randomly
# interleaved repetitions (medians reported); about 2.5-3 minutes on 2
# cores. Writes bench/results/replicated_contention.{json,md,png}.
#
# Expects a built tree (scripts/build.sh); REVKV_BUILD_DIR picks another one.
# REVKV_REPLICATED_CONTENTION_FULL=1 runs 5 s per case instead of 1 s;
# REVKV_REPLICATED_CONTENTION_REPETITIONS sets the repetitions.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${REVKV_BUILD_DIR:-$ROOT/build}"
OUT="$ROOT/bench/results"
BIN="$BUILD/bench/revkv_replicated_contention_bench"
if [[ ! -x "$BIN" ]]; then
  echo "run_replicated_contention.sh: $BIN is missing; build first (scripts/build.sh)" >&2
  exit 1
fi
mkdir -p "$OUT"

short=(--short)
if [[ "${REVKV_REPLICATED_CONTENTION_FULL:-0}" == 1 ]]; then short=(); fi
status=0
"$BIN" "${short[@]}" \
  --benchmark_repetitions="${REVKV_REPLICATED_CONTENTION_REPETITIONS:-3}" \
  --benchmark_enable_random_interleaving=true \
  --benchmark_out="$OUT/replicated_contention.json" --benchmark_out_format=json || status=$?
# Render whatever was measured, failed cases included, then report failure.
python3 "$ROOT/bench/replicated_contention_report.py" "$OUT/replicated_contention.json" \
  --markdown "$OUT/replicated_contention.md" --png "$OUT/replicated_contention.png" \
  --targets "$OUT/targets-replicated-contention.json"
echo "plot: $OUT/replicated_contention.png"
exit "$status"
