#include "engine/lock_queues.h"

#include <algorithm>
#include <thread>

namespace revkv::engine {
namespace {

// How long the head waiter spins for a hand-off before it sleeps.
constexpr std::chrono::microseconds kHandOffSpin{200};

}  // namespace

LockQueues::Place::Place(LockQueues* queues, std::string name, std::unique_lock<std::mutex> lock)
    : queues_(queues), name_(std::move(name)), lock_(std::move(lock)) {}

std::unique_ptr<LockQueues::Place> LockQueues::Join(const std::string& name,
                                                     const LockRecordValues* values) {
  std::unique_ptr<Place> place(new Place(this, name, std::unique_lock<std::mutex>(mu_)));
  auto [it, inserted] = queues_.try_emplace(name);
  if (inserted) it->second = std::make_unique<Queue>();
  place->queue_ = it->second.get();
  place->self_ = std::make_shared<Waiter>();
  place->self_->values = values;
  place->queue_->waiters.push_back(place->self_);
  return place;
}

bool LockQueues::Place::head() const { return queue_->waiters.front() == self_; }

uint64_t LockQueues::Place::changes() const { return queue_->changes; }

void LockQueues::Place::Leave(bool wake_next) {
  auto& waiters = queue_->waiters;
  const bool was_head = waiters.front() == self_;
  waiters.erase(std::find(waiters.begin(), waiters.end(), self_));
  if (waiters.empty()) {
    queues_->queues_.erase(name_);
  } else if (was_head && wake_next) {
    waiters.front()->signal.store(true, std::memory_order_release);
    waiters.front()->cv.notify_one();
  }
}

bool LockQueues::Place::Sleep(Clock::time_point until, const std::function<bool()>& ready) {
  Waiter& me = *self_;
  me.sleeping = true;
  me.signal.store(false, std::memory_order_relaxed);
  if (head()) {
    // A holder in this process usually releases within tens of
    // microseconds; a hand-off caught spinning saves a sleep and a wake-up
    // on the lock's critical path. Bounded; it watches memory, not the store.
    lock_.unlock();
    const Clock::time_point spin_end = std::min(Clock::now() + kHandOffSpin, until);
    while (!me.signal.load(std::memory_order_acquire) && Clock::now() < spin_end) {
      std::this_thread::yield();
    }
    lock_.lock();
  }
  me.cv.wait_until(lock_, until, [&] { return ready() || me.grant_pending || me.granted; });
  if (me.grant_pending) {
    // The releaser woke us before writing the hand-off, so that our wake-up
    // overlaps its write; the write takes microseconds: spin.
    lock_.unlock();
    const Clock::time_point spin_end = Clock::now() + kHandOffSpin;
    while (me.grant_pending.load(std::memory_order_acquire) && Clock::now() < spin_end) {
      std::this_thread::yield();
    }
    lock_.lock();
  }
  me.cv.wait(lock_, [&] { return !me.grant_pending; });  // a hand-off in flight ends either way
  me.sleeping = false;
  return me.granted;
}

LockQueues::Clock::time_point LockQueues::Place::FirstSeen(uint64_t revision) {
  Observation& seen = queues_->observed_[name_];
  if (seen.revision != revision) seen = {revision, Clock::now()};
  return seen.first_seen;
}

void LockQueues::Place::ForgetSeen() { queues_->observed_.erase(name_); }

void LockQueues::Changed(const std::string& name, bool forget_observation) {
  std::shared_ptr<Waiter> head;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A change starts a new holder revision (or frees the lock): an old
    // observation is stale, and dropping it keeps the map small.
    if (forget_observation) observed_.erase(name);
    auto it = queues_.find(name);
    if (it == queues_.end()) return;
    ++it->second->changes;
    head = it->second->waiters.front();  // only the head contends
    head->signal.store(true, std::memory_order_release);
  }
  head->cv.notify_one();
}

std::shared_ptr<LockQueues::Waiter> LockQueues::ClaimHeir(const std::string& name) {
  std::shared_ptr<Waiter> heir;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = queues_.find(name);
    if (it == queues_.end()) return nullptr;
    const std::shared_ptr<Waiter>& head = it->second->waiters.front();
    // Only a sleeping head can be handed the lock; one that is reading or
    // writing the store on its own gets it the usual way.
    if (!head->sleeping || head->grant_pending || head->granted) return nullptr;
    head->grant_pending = true;
    head->signal.store(true, std::memory_order_release);
    heir = head;
  }
  // Woken now, so that its wake-up runs alongside the hand-off's write.
  heir->cv.notify_one();
  return heir;
}

void LockQueues::Grant(const std::shared_ptr<Waiter>& heir, const Result<uint64_t>& written,
                       uint32_t handoffs, Clock::time_point sent) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (written.ok()) {
      heir->granted = true;
      heir->token = *written;
      heir->handoffs = handoffs;
      heir->granted_at = sent;
    }
    heir->signal.store(true, std::memory_order_release);
    heir->grant_pending.store(false, std::memory_order_release);  // last: the heir may go
  }
  heir->cv.notify_one();  // after dropping mu_, which the heir needs at once
}

}  // namespace revkv::engine
