// Statistics: what an Engine has done since it was opened, for an embedder
// to export (Engine::GetStatistics). Counters only grow; a snapshot is
// exact for each counter, but counters are read one after another, not at
// one instant.

#ifndef REVKV_STATISTICS_H_
#define REVKV_STATISTICS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace revkv {

// A latency histogram: counts[i] samples were at most bounds_us[i] (and
// above bounds_us[i - 1]); the last count, counts[bounds_us.size()], holds
// the samples above the last bound.
struct Histogram {
  std::vector<double> bounds_us;
  std::vector<uint64_t> counts;
  uint64_t count = 0;   // samples in all
  double sum_us = 0;    // their sum

  // An upper estimate of the p-quantile (0 < p <= 1): the bound of the
  // bucket it falls in. 0 with no samples; the last bound when it falls
  // above it.
  double PercentileUs(double p) const;
};

// The calls of one operation, whatever their outcome.
struct OperationStatistics {
  uint64_t calls = 0;
  uint64_t ok = 0;
  // Calls refused by a failed compare-and-swap or check: Conflict, Exists,
  // ConflictRevisionUnknown, LockLost.
  uint64_t conflicts = 0;
  // Calls that failed otherwise (bad arguments, Timeout, Unavailable, ...).
  uint64_t errors = 0;
  Histogram latency;  // of every call, from its start to its result
};

struct Statistics {
  // Bucket writes by operation: "put", "create", "update", "delete",
  // "purge", "commit" (transactions), "update_with_retry" and
  // "update_many_with_retry" (one call each, whatever its attempts), and
  // the asynchronous forms "put_async", ... (timed until the future is
  // ready). Operations never called are absent.
  std::map<std::string, OperationStatistics> operations;
  // Attempts UpdateWithRetry and UpdateManyWithRetry made again after a
  // Conflict.
  uint64_t update_retries = 0;

  // Replication; all 0 on a local-only engine.
  uint64_t apply_batches = 0;       // commits of the replicas' apply loops
  uint64_t applied_messages = 0;    // stream messages those commits applied
  uint64_t own_writes_applied = 0;  // own writes applied ahead of the consumer
  // From a message's server time to its apply (includes clock skew).
  Histogram apply_lag;
  uint64_t reconnects = 0;         // of the NATS connection
  uint64_t skipped_messages = 0;   // never applicable, skipped since open

  // Locks (Engine::Acquire and TryAcquire).
  uint64_t lock_acquires = 0;   // locks granted
  uint64_t lock_waits = 0;      // grants that had to wait for another holder
  uint64_t lock_takeovers = 0;  // grants that took over an expired lease
  uint64_t lock_timeouts = 0;   // acquires that gave up (Timeout, Busy)
  uint64_t lock_losses = 0;     // held locks lost before their release
  Histogram lock_wait;          // from Acquire to the grant, of granted locks
};

}  // namespace revkv

#endif  // REVKV_STATISTICS_H_
