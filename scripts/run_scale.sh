#!/usr/bin/env bash
# The scale curves: for buckets of 10k, 100k and 1M keys (100-byte values),
# Get p50/p99 from a local-only bucket and from a replica, the bootstrap of a
# new replica (Engine::Open + OpenBucket + Sync) from the stream, Keys(">")
# and its first page of 4,096, and the process's RSS growth and the replica
# directory's size after the bootstrap, on a nats-server the benchmark starts
# on a free loopback port. 3 randomly interleaved repetitions (medians
# reported); 65-75 s on 2 cores, most of it the 1M bucket (its setup
# alone takes about 20 s: filling the stream and a local bucket, and syncing
# a resident replica). Writes bench/results/scale.{json,md,png}.
#
# Expects a built tree (scripts/build.sh); REVKV_BUILD_DIR picks another one.
# REVKV_SCALE_SIZES picks the sizes (e.g. 10000,100000 for a run of about
# 15 s); REVKV_SCALE_REPETITIONS sets the repetitions.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${REVKV_BUILD_DIR:-$ROOT/build}"
OUT="$ROOT/bench/results"
BIN="$BUILD/bench/revkv_scale_bench"
if [[ ! -x "$BIN" ]]; then
  echo "run_scale.sh: $BIN is missing; build first (scripts/build.sh)" >&2
  exit 1
fi
mkdir -p "$OUT"

status=0
"$BIN" --sizes="${REVKV_SCALE_SIZES:-10000,100000,1000000}" \
  --benchmark_repetitions="${REVKV_SCALE_REPETITIONS:-3}" \
  --benchmark_enable_random_interleaving=true \
  --benchmark_out="$OUT/scale.json" --benchmark_out_format=json || status=$?
# Render whatever was measured, failed cases included, then report failure.
python3 "$ROOT/bench/scale_report.py" "$OUT/scale.json" \
  --markdown "$OUT/scale.md" --png "$OUT/scale.png"
echo "plot: $OUT/scale.png"
exit "$status"
