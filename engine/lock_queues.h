// LockQueues: this process's Acquire calls, queued FIFO per lock name.
//
// Only the head of a lock's queue reads and writes the store. A waiter
// sleeps on a condition variable of its own, signalled when the lock's key
// changes (Changed, from the locks bucket's commits) or when a waiter ahead
// of it leaves. A releasing holder of this process may hand the lock straight
// to the sleeping head (ClaimHeir, then Grant): the lock then moves with one
// write and without the heir waking up to write.
//
// The queue also keeps, per lock, when its current holder revision was first
// seen here: expiry is judged from it on this process's monotonic clock.

#ifndef REVKV_ENGINE_LOCK_QUEUES_H_
#define REVKV_ENGINE_LOCK_QUEUES_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "engine/record_codec.h"
#include "revkv/result.h"

namespace revkv::engine {

class LockQueues {
  struct Queue;  // below

 public:
  using Clock = std::chrono::steady_clock;

  // One Acquire call waiting in a queue. Each has its own condition
  // variable so that a commit or a departure wakes exactly the one waiter it
  // concerns, not the whole queue.
  struct Waiter {
    std::condition_variable cv;
    const LockRecordValues* values = nullptr;  // what this waiter would write
    // Hand-off from a releasing holder of this process (ClaimHeir, Grant).
    bool sleeping = false;                   // waiting on the holder: a hand-off may start
    std::atomic<bool> signal{false};         // set (under the mutex) before each notify of cv
    std::atomic<bool> grant_pending{false};  // a releaser is writing the hand-off now
    bool granted = false;                    // the lock is ours, at revision `token`
    uint64_t token = 0;
    uint32_t handoffs = 0;  // the granted lock's count of consecutive hand-offs
    Clock::time_point granted_at;
  };

  // One Acquire call's place in the queue of its lock. It holds the queues'
  // mutex from Join on, except between Unlock and Lock, which bracket the
  // store's reads and writes. Leave before it is destroyed.
  class Place {
   public:
    Place(const Place&) = delete;
    Place& operator=(const Place&) = delete;

    const std::string& name() const { return name_; }
    bool head() const;
    // Changes to the lock's key seen so far (bumped by Changed).
    uint64_t changes() const;
    void Unlock() { lock_.unlock(); }
    void Lock() { lock_.lock(); }

    // Leaves the queue. A waiter that gives up wakes the next one, since the
    // lock may be free (`wake_next`); one that got the lock does not: the
    // next one sleeps until the lock is handed to it or its key changes.
    void Leave(bool wake_next);
    // Sleeps until `until` or `ready()`, spinning briefly first. While it
    // sleeps at the head of the queue, a releasing holder of this process
    // may hand the lock over: returns true if it did (see granted()).
    bool Sleep(Clock::time_point until, const std::function<bool()>& ready);
    // The hand-off Sleep reported.
    const Waiter& granted() const { return *self_; }

    // When the holder revision `revision` of the lock was first seen here.
    Clock::time_point FirstSeen(uint64_t revision);
    // Drops that observation (the lock is ours now).
    void ForgetSeen();

   private:
    friend class LockQueues;
    Place(LockQueues* queues, std::string name, std::unique_lock<std::mutex> lock);
    LockQueues* const queues_;
    const std::string name_;
    std::unique_lock<std::mutex> lock_;
    Queue* queue_ = nullptr;
    std::shared_ptr<Waiter> self_;
  };

  // Queues an Acquire of lock `name` that would write `values`.
  std::unique_ptr<Place> Join(const std::string& name, const LockRecordValues* values);

  // The lock's key changed (a release, renewal or takeover; or, with
  // `forget_observation` false, a holder of this process lost the lock or
  // failed to release it): the head waiter re-reads it.
  void Changed(const std::string& name, bool forget_observation);

  // The sleeping head waiter of lock `name`, now woken and expecting a
  // hand-off, or nullptr (no waiter, or one busy with the store on its own).
  // Grant must follow.
  std::shared_ptr<Waiter> ClaimHeir(const std::string& name);
  // Ends a hand-off: the heir holds the lock at revision `*written` (with
  // `handoffs` and timed from `sent`), or, if the write failed, goes on
  // contending.
  void Grant(const std::shared_ptr<Waiter>& heir, const Result<uint64_t>& written,
             uint32_t handoffs, Clock::time_point sent);

 private:
  struct Queue {
    // FIFO of waiting Acquire calls; the front contends. Shared so that a
    // notifier can signal a waiter after dropping mu_ (a waiter woken while
    // mu_ is still held would only block again on it).
    std::deque<std::shared_ptr<Waiter>> waiters;
    uint64_t changes = 0;  // bumped on every change to the lock's key
  };
  struct Observation {
    uint64_t revision = 0;
    Clock::time_point first_seen;
  };

  std::mutex mu_;
  std::map<std::string, std::unique_ptr<Queue>, std::less<>> queues_;  // GUARDED_BY(mu_)
  std::map<std::string, Observation, std::less<>> observed_;  // GUARDED_BY(mu_)
};

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_LOCK_QUEUES_H_
