#include "engine/lease_keeper.h"

#include <algorithm>

namespace revkv::engine {

LeaseKeeper::LeaseKeeper(Renew renew, KeepAlive keep_alive)
    : renew_(std::move(renew)), keep_alive_(std::move(keep_alive)) {}

LeaseKeeper::~LeaseKeeper() { Stop(); }

void LeaseKeeper::Start() { thread_ = std::thread(&LeaseKeeper::Loop, this); }

void LeaseKeeper::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (!thread_.joinable()) return;
  if (thread_.get_id() == std::this_thread::get_id()) {
    thread_.detach();
  } else {
    thread_.join();
  }
}

void LeaseKeeper::Add(const std::shared_ptr<HeldLock>& held) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    held_[held.get()] = held;
    ++generation_;
    // Wake the thread only if this lock needs it sooner than planned.
    const Clock::time_point due = held->last_renewed.load() + held->lease / 3;
    wake = due < wake_;
    if (wake) wake_ = due;
  }
  if (wake) cv_.notify_all();
}

void LeaseKeeper::Remove(HeldLock* held) {
  std::lock_guard<std::mutex> lock(mu_);
  held_.erase(held);
}

std::vector<std::shared_ptr<HeldLock>> LeaseKeeper::Find(const std::string& name,
                                                         uint64_t token) {
  std::vector<std::shared_ptr<HeldLock>> matching;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [raw, weak] : held_) {
    if (raw->name != name || raw->token != token) continue;
    if (auto h = weak.lock()) matching.push_back(std::move(h));
  }
  return matching;
}

void LeaseKeeper::Loop() {
  std::unique_lock<std::mutex> lk(mu_);
  while (!stopping_) {
    // Held for the pass: on_lost callbacks run in it and may drop the last
    // handle, and with it the last other reference to the owner.
    std::shared_ptr<const void> keep = keep_alive_();
    if (keep == nullptr) break;  // being destroyed on another thread
    const uint64_t generation = generation_;
    std::vector<std::shared_ptr<HeldLock>> live;
    for (auto it = held_.begin(); it != held_.end();) {
      if (auto h = it->second.lock()) {
        live.push_back(std::move(h));
        ++it;
      } else {
        it = held_.erase(it);
      }
    }
    lk.unlock();
    const Clock::time_point wake = Pass(live);
    live.clear();
    {
      // If ours is now the last reference, the owner's destructor runs
      // here, on this thread, and `this` is gone after it: return at once.
      std::weak_ptr<const void> weak = keep;
      keep.reset();
      if (weak.expired()) return;
    }
    lk.lock();
    if (stopping_) break;
    if (generation != generation_) continue;  // a lock arrived during the pass
    wake_ = wake;
    cv_.wait_until(lk, wake);
    wake_ = Clock::time_point::min();
  }
}

LeaseKeeper::Clock::time_point LeaseKeeper::Pass(
    const std::vector<std::shared_ptr<HeldLock>>& live) {
  Clock::time_point wake = Clock::now() + std::chrono::seconds(60);
  for (const auto& h : live) {
    // Callbacks of a lock this pass declares lost fire after its mutex is
    // released.
    struct Fire {
      HeldLock* h;
      ~Fire() { h->FireLost(); }
    } fire{h.get()};
    std::lock_guard<std::mutex> hold(h->mu);
    if (h->released || h->lost.load()) continue;
    const Clock::time_point now = Clock::now();
    Clock::time_point lose_at = h->LoseAt();
    if (h->auto_renew && now >= h->last_renewed.load() + h->lease / 3) {
      Status s = renew_(h.get());
      if (h->lost.load()) continue;
      if (!s.ok()) {
        // A failed write (not a takeover): retry soon, until lose_at.
        wake = std::min(wake, Clock::now() + std::min<std::chrono::nanoseconds>(
                                                 h->lease / 10, std::chrono::milliseconds(100)));
      }
      lose_at = h->LoseAt();
    } else if (now >= lose_at) {
      renew_(h.get()).ok();  // declares it lost
      continue;
    }
    if (h->auto_renew) wake = std::min(wake, h->last_renewed.load() + h->lease / 3);
    wake = std::min(wake, lose_at);
  }
  return wake;
}

}  // namespace revkv::engine
