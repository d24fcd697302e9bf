// Stats: the counters and histograms behind Engine::GetStatistics
// (revkv/statistics.h). One per engine, shared by its buckets, apply loops
// and lock managers; every method is lock-free and may be called from any
// thread.

#ifndef REVKV_ENGINE_STATS_H_
#define REVKV_ENGINE_STATS_H_

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "revkv/result.h"
#include "revkv/statistics.h"
#include "revkv/status.h"

namespace revkv::engine {

// The operations Statistics::operations names.
enum class StatOp {
  kPut, kCreate, kUpdate, kDelete, kPurge, kCommit, kUpdateWithRetry, kUpdateManyWithRetry,
  kPutAsync, kCreateAsync, kUpdateAsync, kDeleteAsync, kPurgeAsync,
  kCount
};
const char* StatOpName(StatOp op);

// A histogram of durations over fixed bounds (1 µs .. 1 s, 1-2-5 steps).
class AtomicHistogram {
 public:
  static constexpr std::array<double, 19> kBoundsUs = {
      1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6};
  void Add(std::chrono::nanoseconds d);
  Histogram Snapshot() const;

 private:
  std::array<std::atomic<uint64_t>, kBoundsUs.size() + 1> counts_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_ns_{0};
};

class Stats {
 public:
  using Clock = std::chrono::steady_clock;

  // One call of `op` that ended with `status` after `d`.
  void Record(StatOp op, const Status& status, std::chrono::nanoseconds d);
  // Runs `fn` (returning a Result or a Status) and records it as `op`.
  template <typename Fn>
  auto Time(StatOp op, Fn&& fn) {
    const auto start = Clock::now();
    auto result = fn();
    Record(op, StatusOf(result), Clock::now() - start);
    return result;
  }

  void AddRetries(uint64_t n) { update_retries_.fetch_add(n, std::memory_order_relaxed); }
  void AppliedBatch(size_t messages);
  void ApplyLag(std::chrono::nanoseconds lag) { apply_lag_.Add(lag); }
  void OwnWritesApplied(size_t n) { own_applied_.fetch_add(n, std::memory_order_relaxed); }
  void Skipped(size_t n) { skipped_.fetch_add(n, std::memory_order_relaxed); }
  void LockGranted(bool waited, bool takeover, std::chrono::nanoseconds wait);
  void LockGaveUp() { lock_timeouts_.fetch_add(1, std::memory_order_relaxed); }
  void LockLost() { lock_losses_.fetch_add(1, std::memory_order_relaxed); }

  // Everything so far; `reconnects` comes from the connection.
  Statistics Snapshot(uint64_t reconnects) const;

 private:
  static const Status& StatusOf(const Status& s) { return s; }
  template <typename T>
  static const Status& StatusOf(const Result<T>& r) {
    static const Status kOk = Status::OK();
    return r.ok() ? kOk : r.status();
  }

  struct Op {
    std::atomic<uint64_t> calls{0}, ok{0}, conflicts{0}, errors{0};
    AtomicHistogram latency;
  };
  std::array<Op, static_cast<size_t>(StatOp::kCount)> ops_;
  std::atomic<uint64_t> update_retries_{0};
  std::atomic<uint64_t> apply_batches_{0}, applied_messages_{0}, own_applied_{0}, skipped_{0};
  AtomicHistogram apply_lag_;
  std::atomic<uint64_t> lock_acquires_{0}, lock_waits_{0}, lock_takeovers_{0};
  std::atomic<uint64_t> lock_timeouts_{0}, lock_losses_{0};
  AtomicHistogram lock_wait_;
};

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_STATS_H_
