#!/usr/bin/env bash
# The multi-key contention suite ("lock or OCC across keys?"), short version:
# a transfer of 1 between two of 64 accounts (uniform or Zipf), as a
# transaction with retry (UpdateManyWithRetry) vs under per-account locks
# taken in order vs under one global lock; locally at 1-8 threads on one
# Engine, against RocksDB's OptimisticTransactionDB, and with 1-8 engines
# (each its own NATS connection and replica) on a nats-server the benchmark
# starts on a free loopback port; plus the uncontended cost of a Put, a
# two-key Commit and a lock. Every run ends by checking every balance and
# the total. 3 randomly interleaved repetitions (medians reported); about
# 4 minutes on 2 cores. Writes bench/results/txn_contention.{json,md,png}.
#
# Expects a built tree (scripts/build.sh); REVKV_BUILD_DIR picks another one.
# REVKV_TXN_CONTENTION_FULL=1 runs the library's min time per local run and
# 5 s per replicated case instead of 0.2 s and 1 s;
# REVKV_TXN_CONTENTION_REPETITIONS sets the repetitions.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${REVKV_BUILD_DIR:-$ROOT/build}"
OUT="$ROOT/bench/results"
BIN="$BUILD/bench/revkv_txn_contention_bench"
if [[ ! -x "$BIN" ]]; then
  echo "run_txn_contention.sh: $BIN is missing; build first (scripts/build.sh)" >&2
  exit 1
fi
mkdir -p "$OUT"

short=(--short)
if [[ "${REVKV_TXN_CONTENTION_FULL:-0}" == 1 ]]; then short=(); fi
status=0
"$BIN" "${short[@]}" \
  --benchmark_repetitions="${REVKV_TXN_CONTENTION_REPETITIONS:-3}" \
  --benchmark_enable_random_interleaving=true \
  --benchmark_out="$OUT/txn_contention.json" --benchmark_out_format=json || status=$?
# Render whatever was measured, failed runs included, then report failure.
python3 "$ROOT/bench/txn_contention_report.py" "$OUT/txn_contention.json" \
  --markdown "$OUT/txn_contention.md" --png "$OUT/txn_contention.png" || status=$?
echo "plot: $OUT/txn_contention.png"
exit "$status"
