// LeaseKeeper: one thread that renews every auto-renewed lock this process
// holds at a third of its lease, and declares a lock lost when lease -
// margin passes without a successful renewal, firing its callbacks.

#ifndef REVKV_ENGINE_LEASE_KEEPER_H_
#define REVKV_ENGINE_LEASE_KEEPER_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/lock_held.h"
#include "revkv/status.h"

namespace revkv::engine {

class LeaseKeeper {
 public:
  using Clock = std::chrono::steady_clock;
  // Renews a lock now (callers hold its mu), marking it lost when its lease
  // ran out or another holder took it over.
  using Renew = std::function<Status(HeldLock*)>;
  // A reference to the keeper's owner, held for each pass: an on_lost
  // callback may drop the last other one. nullptr: the owner is being
  // destroyed on another thread.
  using KeepAlive = std::function<std::shared_ptr<const void>()>;

  LeaseKeeper(Renew renew, KeepAlive keep_alive);
  ~LeaseKeeper();
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  void Start();
  // Ends the thread. On the thread itself (the owner's last reference was
  // dropped by an on_lost callback) it is detached, and ends right after,
  // without touching the keeper again.
  void Stop();

  // Keeps `held` from now on (renewed from held->last_renewed), until
  // Remove or until its last other reference is gone.
  void Add(const std::shared_ptr<HeldLock>& held);
  void Remove(HeldLock* held);
  // The locks kept with this name and token.
  std::vector<std::shared_ptr<HeldLock>> Find(const std::string& name, uint64_t token);

 private:
  void Loop();
  // Renews or declares lost what is due among `live`; returns when the
  // next pass is due.
  Clock::time_point Pass(const std::vector<std::shared_ptr<HeldLock>>& live);

  const Renew renew_;
  const KeepAlive keep_alive_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<HeldLock*, std::weak_ptr<HeldLock>> held_;  // GUARDED_BY(mu_)
  bool stopping_ = false;                              // GUARDED_BY(mu_)
  uint64_t generation_ = 0;                            // GUARDED_BY(mu_): bumped per new lock
  // When the thread will next wake on its own; min() while it runs a pass.
  Clock::time_point wake_ = Clock::time_point::min();  // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_LEASE_KEEPER_H_
