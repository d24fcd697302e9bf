// HeldLock: the state of one lock this process holds, shared by its handle,
// the lease keeper's thread and the lock protocol (lock_manager.h).

#ifndef REVKV_ENGINE_LOCK_HELD_H_
#define REVKV_ENGINE_LOCK_HELD_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "revkv/status.h"

namespace revkv::engine {

struct HeldLock {
  using Clock = std::chrono::steady_clock;

  std::string name;
  uint64_t token = 0;
  std::chrono::nanoseconds lease{0};
  std::chrono::nanoseconds margin{0};
  bool auto_renew = true;
  uint32_t handoffs = 0;  // consecutive hand-offs within this process that led here
  std::string record;     // the value renewals write (carries the token)

  std::mutex mu;          // serializes renew/release
  uint64_t revision = 0;  // GUARDED_BY(mu): the lock entry's current revision
  // Start of the last successful write, and whether Release() ran: written
  // under mu, read without it, so that lost() never waits for a renewal in
  // flight.
  std::atomic<Clock::time_point> last_renewed{};
  std::atomic<bool> released{false};
  Status release_status;  // GUARDED_BY(mu)
  std::atomic<bool> lost{false};
  std::mutex callbacks_mu;
  std::vector<std::function<void(const Status&)>> callbacks;  // GUARDED_BY(callbacks_mu)
  bool fired = false;                                         // GUARDED_BY(callbacks_mu)
  Status lost_status;                                         // GUARDED_BY(callbacks_mu)

  // When the lease runs out on this process's clock unless renewed.
  Clock::time_point LoseAt() const { return last_renewed.load() + lease - margin; }

  // Marks the lock lost for `why`; false if it already was. FireLost then
  // runs the callbacks.
  bool MarkLost(const Status& why) {
    if (lost.exchange(true)) return false;
    std::lock_guard<std::mutex> lock(callbacks_mu);
    fired = true;
    lost_status = why;
    return true;
  }

  // Runs the on_lost callbacks once the lock is lost, each once. Callers
  // hold no lock of the lock's, so that a callback may use the handle.
  void FireLost() {
    std::vector<std::function<void(const Status&)>> run;
    Status why;
    {
      std::lock_guard<std::mutex> lock(callbacks_mu);
      if (!fired) return;
      run.swap(callbacks);
      why = lost_status;
    }
    for (auto& cb : run) cb(why);
  }
};

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_LOCK_HELD_H_
