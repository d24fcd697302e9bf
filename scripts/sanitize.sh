#!/usr/bin/env bash
# Builds revkv with sanitizers into its own folder and runs tests there:
#
#   scripts/sanitize.sh asan   AddressSanitizer + UndefinedBehaviorSanitizer
#                              (with LeakSanitizer), the whole test suite,
#                              in build-asan/.
#   scripts/sanitize.sh tsan   ThreadSanitizer, the concurrency suites (locks,
#                              fenced writes, transactions, watch, TTL expiry,
#                              UpdateWithRetry, the apply loop and the fault
#                              campaign's short mode), in build-tsan/.
#
# Any sanitizer report fails the test that made it. Prints ctest's summary.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
kind="${1:-}"
case "$kind" in
  asan) sanitize="address,undefined" ;;
  tsan) sanitize="thread" ;;
  *) echo "usage: $0 asan|tsan" >&2; exit 2 ;;
esac
"$ROOT/scripts/bootstrap.sh"
build="$ROOT/build-$kind"
# Optimized with debug info: sanitized code at -O0 would slow the timing-
# sensitive suites (leases, failover) far more than the sanitizers do.
cmake -S "$ROOT" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DREVKV_WERROR=ON \
  -DREVKV_SANITIZE="$sanitize" -DREVKV_BUILD_BENCH=OFF -DREVKV_BUILD_EXAMPLES=OFF >/dev/null
if [[ "$kind" == asan ]]; then
  cmake --build "$build" -j "$(nproc)"
else
  cmake --build "$build" -j "$(nproc)" --target lock_test lock_conflict_test watch_test \
    update_with_retry_test ttl_test txn_test entry_cache_test apply_loop_test replicated_lock_test \
    replicated_fence_test replicated_txn_test replicated_async_test replica_bootstrap_test \
    statistics_test \
    revkv_campaign
fi
supp="$ROOT/tests/sanitizers"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=1"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
export TSAN_OPTIONS="suppressions=$supp/tsan.supp:halt_on_error=1:second_deadlock_stack=1"
cd "$build"
if [[ "$kind" == asan ]]; then
  ctest --output-on-failure -j "$(nproc)" --timeout 600
else
  # The concurrency suites, on the newest server (only they are built).
  ctest --output-on-failure -j "$(nproc)" --timeout 600 -LE 'nats-2\.10' \
    -R '^(lock_|watch_test\.|ttl_test\.|update_with_retry_test\.|ApplyLoopTest\.|replicated_lock|replicated_fence\.|txn_test\.|EntryCache|replicated_txn\.|replicated_async\.|ReplicaBootstrapTest\.|StatisticsTest\.|ReplicatedStatisticsTest\.|campaign\.)'
fi
