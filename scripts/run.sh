#!/usr/bin/env bash
# The main job: bootstraps and builds, then
#  1. the contention suite (short version): OCC with UpdateWithRetry vs
#     lock -> read -> write -> release vs RocksDB's OptimisticTransactionDB
#     and TransactionDB, over a hot key, uniform and Zipf workloads at 1-16
#     threads (3 randomly interleaved repetitions, medians reported); writes
#     JSON, a markdown table and a PNG plot;
#  2. the engine benchmark against raw RocksDB (5 randomly interleaved
#     repetitions; the report uses medians);
#  3. the replication benchmark against raw nats.c on one nats-server it
#     starts itself: replica Get, CAS Update, 8 writers, replication lag
#     A -> B and the bootstrap of a 100k-key bucket (3 randomly interleaved
#     repetitions, medians; about a minute);
#  4. the scale curves: Get p50/p99, the bootstrap of a new replica, Keys and
#     its first page, RSS and disk use for buckets of 10k, 100k and 1M keys
#     (3 randomly interleaved repetitions, medians; 65-75 s);
#  5. the cross-process contention suite (short version): OCC vs lock vs raw
#     nats.c Get + Update with 1-8 engines, each in its own process with its
#     own connection and replica, on one nats-server; plus the lock
#     latencies (about 3 minutes);
#  6. the multi-key contention suite (short version): a transfer between two
#     accounts as a transaction with retry (UpdateManyWithRetry) vs under
#     locks, locally against RocksDB's OptimisticTransactionDB and with 1-8
#     engines on one nats-server (about 4 minutes).
# At its end it gathers every DESIGN §8 target into bench/results/targets.json
# (name, measured ratio, target, met) and prints the same table.
# Results go to bench/results/. REVKV_CONTENTION_FULL=1 runs the full suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/bench/results"
"$ROOT/scripts/build.sh"
mkdir -p "$OUT"
rm -f "$OUT"/targets-*.json  # each report writes its verdicts afresh

short=(--short)
if [[ "${REVKV_CONTENTION_FULL:-0}" == 1 ]]; then short=(); fi
"$ROOT/build/bench/revkv_contention_bench" "${short[@]}" \
  --benchmark_repetitions="${REVKV_CONTENTION_REPETITIONS:-3}" \
  --benchmark_enable_random_interleaving=true \
  --benchmark_out="$OUT/contention.json" --benchmark_out_format=json
python3 "$ROOT/bench/contention_report.py" "$OUT/contention.json" \
  --markdown "$OUT/contention.md" --png "$OUT/contention.png" \
  --targets "$OUT/targets-contention.json"
echo "plot: $OUT/contention.png"

"$ROOT/build/bench/revkv_engine_bench" \
  --benchmark_out="$OUT/engine.json" --benchmark_out_format=json \
  --benchmark_min_time="${REVKV_BENCH_MIN_TIME:-0.5}" \
  --benchmark_repetitions="${REVKV_BENCH_REPETITIONS:-5}" \
  --benchmark_enable_random_interleaving=true
python3 "$ROOT/bench/report.py" "$OUT/engine.json" --markdown "$OUT/engine.md" \
  --targets "$OUT/targets-engine.json"

"$ROOT/build/bench/revkv_replication_bench" \
  --benchmark_out="$OUT/replication.json" --benchmark_out_format=json \
  --benchmark_repetitions="${REVKV_REPLICATION_REPETITIONS:-3}" \
  --benchmark_enable_random_interleaving=true
python3 "$ROOT/bench/replication_report.py" "$OUT/replication.json" \
  --markdown "$OUT/replication.md" --targets "$OUT/targets-replication.json"

"$ROOT/scripts/run_scale.sh"
"$ROOT/scripts/run_replicated_contention.sh"
"$ROOT/scripts/run_txn_contention.sh"

# One table of every DESIGN §8 target, from the reports above.
echo
echo "DESIGN §8 targets (bench/results/targets.json):"
python3 "$ROOT/bench/targets.py" "$OUT/targets.json" "$OUT"/targets-*.json \
  --markdown "$OUT/targets.md"
