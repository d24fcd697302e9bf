#include "engine/stats.h"

#include <algorithm>

namespace revkv {

double Histogram::PercentileUs(double p) const {
  if (count == 0 || counts.empty()) return 0;
  const double want = std::clamp(p, 0.0, 1.0) * static_cast<double>(count);
  uint64_t seen = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    seen += counts[i];
    if (static_cast<double>(seen) >= want && seen > 0) {
      return i < bounds_us.size() ? bounds_us[i] : (bounds_us.empty() ? 0 : bounds_us.back());
    }
  }
  return bounds_us.empty() ? 0 : bounds_us.back();
}

namespace engine {

const char* StatOpName(StatOp op) {
  switch (op) {
    case StatOp::kPut: return "put";
    case StatOp::kCreate: return "create";
    case StatOp::kUpdate: return "update";
    case StatOp::kDelete: return "delete";
    case StatOp::kPurge: return "purge";
    case StatOp::kCommit: return "commit";
    case StatOp::kUpdateWithRetry: return "update_with_retry";
    case StatOp::kUpdateManyWithRetry: return "update_many_with_retry";
    case StatOp::kPutAsync: return "put_async";
    case StatOp::kCreateAsync: return "create_async";
    case StatOp::kUpdateAsync: return "update_async";
    case StatOp::kDeleteAsync: return "delete_async";
    case StatOp::kPurgeAsync: return "purge_async";
    case StatOp::kCount: break;
  }
  return "unknown";
}

void AtomicHistogram::Add(std::chrono::nanoseconds d) {
  const int64_t ns = std::max<int64_t>(0, d.count());
  const double us = static_cast<double>(ns) / 1e3;
  const size_t i = static_cast<size_t>(
      std::lower_bound(kBoundsUs.begin(), kBoundsUs.end(), us) - kBoundsUs.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<uint64_t>(ns), std::memory_order_relaxed);
}

Histogram AtomicHistogram::Snapshot() const {
  Histogram out;
  out.bounds_us.assign(kBoundsUs.begin(), kBoundsUs.end());
  uint64_t total = 0;
  for (const auto& c : counts_) {
    out.counts.push_back(c.load(std::memory_order_relaxed));
    total += out.counts.back();
  }
  // The buckets, not count_, which another thread may be between updating.
  out.count = total;
  out.sum_us = static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e3;
  return out;
}

void Stats::Record(StatOp op, const Status& status, std::chrono::nanoseconds d) {
  Op& o = ops_[static_cast<size_t>(op)];
  o.calls.fetch_add(1, std::memory_order_relaxed);
  if (status.ok()) {
    o.ok.fetch_add(1, std::memory_order_relaxed);
  } else if (status.IsConflict() || status.IsExists() || status.IsLockLost()) {
    o.conflicts.fetch_add(1, std::memory_order_relaxed);
  } else {
    o.errors.fetch_add(1, std::memory_order_relaxed);
  }
  o.latency.Add(d);
}

void Stats::AppliedBatch(size_t messages) {
  apply_batches_.fetch_add(1, std::memory_order_relaxed);
  applied_messages_.fetch_add(messages, std::memory_order_relaxed);
}

void Stats::LockGranted(bool waited, bool takeover, std::chrono::nanoseconds wait) {
  lock_acquires_.fetch_add(1, std::memory_order_relaxed);
  if (waited) lock_waits_.fetch_add(1, std::memory_order_relaxed);
  if (takeover) lock_takeovers_.fetch_add(1, std::memory_order_relaxed);
  lock_wait_.Add(wait);
}

Statistics Stats::Snapshot(uint64_t reconnects) const {
  Statistics out;
  for (size_t i = 0; i < ops_.size(); ++i) {
    const Op& o = ops_[i];
    const uint64_t calls = o.calls.load(std::memory_order_relaxed);
    if (calls == 0) continue;
    OperationStatistics& s = out.operations[StatOpName(static_cast<StatOp>(i))];
    s.calls = calls;
    s.ok = o.ok.load(std::memory_order_relaxed);
    s.conflicts = o.conflicts.load(std::memory_order_relaxed);
    s.errors = o.errors.load(std::memory_order_relaxed);
    s.latency = o.latency.Snapshot();
  }
  out.update_retries = update_retries_.load(std::memory_order_relaxed);
  out.apply_batches = apply_batches_.load(std::memory_order_relaxed);
  out.applied_messages = applied_messages_.load(std::memory_order_relaxed);
  out.own_writes_applied = own_applied_.load(std::memory_order_relaxed);
  out.apply_lag = apply_lag_.Snapshot();
  out.reconnects = reconnects;
  out.skipped_messages = skipped_.load(std::memory_order_relaxed);
  out.lock_acquires = lock_acquires_.load(std::memory_order_relaxed);
  out.lock_waits = lock_waits_.load(std::memory_order_relaxed);
  out.lock_takeovers = lock_takeovers_.load(std::memory_order_relaxed);
  out.lock_timeouts = lock_timeouts_.load(std::memory_order_relaxed);
  out.lock_losses = lock_losses_.load(std::memory_order_relaxed);
  out.lock_wait = lock_wait_.Snapshot();
  return out;
}

}  // namespace engine
}  // namespace revkv
