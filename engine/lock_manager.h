// LockManager: lease locks kept as records in a locks bucket (lock.h has the
// protocol). One per engine, created on first use.
//
// Waiting: a waiter sleeps on a condition variable that the locks bucket's
// commit listener signals whenever the lock's key changes, with a deadline
// only for the holder's lease expiry or the caller's timeout. Waiters of one
// process queue FIFO per lock name; only the head reads and writes the
// store.
//
// Holding: a single timer thread renews every auto-renewed lock at lease/3
// and declares a lock lost when lease - margin passes without a successful
// renewal, firing its callbacks.

#ifndef REVKV_ENGINE_LOCK_MANAGER_H_
#define REVKV_ENGINE_LOCK_MANAGER_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "engine/record_codec.h"
#include "engine/replica_sink.h"
#include "engine/stats.h"
#include "revkv/lock.h"
#include "revkv/options.h"

namespace revkv::engine {

class LockManager : public std::enable_shared_from_this<LockManager> {
 public:
  using Clock = std::chrono::steady_clock;

  // `store` takes the lock records' reads and writes; `replica` is the local
  // bucket whose commits show changes to them, read directly and watched
  // through `feed` (all three the same bucket in a local engine; the
  // replica, fed by its apply loop, when `store` is replicated).
  // `max_handoffs`: how many times in a row a releasing holder may hand the
  // lock straight to a waiting thread of this process (0: no limit). Past
  // it, the holder releases for real, so that waiters in other processes,
  // which cannot be handed the lock, get their turn.
  // `record_ttl`: every write of a lock record carries a TTL of
  // kRecordTtlLeases leases (at least 1 s), so that a record its holder
  // abandoned disappears by itself (and, with limit markers, a marker wakes
  // the waiters); for a store whose bucket allows per-key TTL.
  static std::shared_ptr<LockManager> Create(std::shared_ptr<Bucket> store,
                                             std::shared_ptr<Bucket> replica,
                                             std::shared_ptr<CommitFeed> feed,
                                             uint32_t max_handoffs = 0, bool record_ttl = false,
                                             Stats* stats = nullptr);
  static constexpr int kRecordTtlLeases = 3;
  ~LockManager();
  // The bucket that holds this manager's lock records.
  const std::string& bucket_name() const { return store_->name(); }
  LockManager(const LockManager&) = delete;
  LockManager& operator=(const LockManager&) = delete;

  // Acquire with `timeout`; std::nullopt makes it TryAcquire.
  Result<std::unique_ptr<Lock>> Acquire(std::string_view name, std::chrono::milliseconds lease,
                                        std::optional<std::chrono::milliseconds> timeout,
                                        const LockOptions& options);

  // Shared by a Lock handle and the timer thread.
  struct Held {
    std::string name;
    uint64_t token = 0;
    std::chrono::nanoseconds lease{0};
    std::chrono::nanoseconds margin{0};
    bool auto_renew = true;
    uint32_t handoffs = 0;  // consecutive hand-offs within this process that led here
    std::string record;  // the value renewals write (carries the token)

    std::mutex mu;                     // serializes renew/release
    uint64_t revision = 0;             // GUARDED_BY(mu): the lock entry's current revision
    // Start of the last successful write, and whether Release() ran: written
    // under mu, read without it, so that lost() never waits for a renewal
    // in flight.
    std::atomic<Clock::time_point> last_renewed{};
    std::atomic<bool> released{false};
    Status release_status;             // GUARDED_BY(mu)
    std::atomic<bool> lost{false};
    std::mutex callbacks_mu;
    std::vector<std::function<void(const Status&)>> callbacks;  // GUARDED_BY(callbacks_mu)
    bool fired = false;                                         // GUARDED_BY(callbacks_mu)
    Status lost_status;                                         // GUARDED_BY(callbacks_mu)
  };

  // The record of lock `name` now holds `token` at `revision`, written by
  // a fenced compare-and-swap sent at `sent`: if this manager holds that
  // lock with that token, the write counts as a renewal from `sent` (a
  // waiter times the lease from the new revision, which it saw later), and
  // the next renewal expects `revision`.
  void NoteRecordRewritten(const std::string& name, uint64_t token, uint64_t revision,
                           Clock::time_point sent);

  // Renews `held` now (callers hold held->mu).
  Status RenewLocked(Held* held);
  // A grant whose write the server confirmed after lease - margin (timed
  // from `*sent`) is renewed with a CAS on `*revision` before it is handed
  // out; updates `*revision` and `*sent`. Timeout if that fails.
  Status RenewLateGrant(const std::string& name, LockRecordValues values,
                        std::chrono::nanoseconds lease, std::chrono::nanoseconds margin,
                        uint64_t token, uint64_t* revision, Clock::time_point* sent);
  // Marks `held` lost; FireLost then runs its callbacks, once.
  void MarkLost(Held* held, const Status& why);
  static void FireLost(Held* held);
  // Releases `held` (callers hold held->mu).
  Status ReleaseLocked(Held* held);
  void Forget(Held* held);

  // Runs `write`, a CAS on the lock's record at held->revision (callers hold
  // held->mu), again while it conflicts and the record, once the store has
  // caught up by `until`, still holds our token: a clustered stream's 10164
  // names no revision, and a fenced compare-and-swap on a replicated bucket
  // rewrites the record with the same token. Only a record with another
  // token, or none, means the lock is lost.
  Result<uint64_t> CasWhileHeld(Held* held, Clock::time_point until,
                                const std::function<Result<uint64_t>()>& write);

 private:
  LockManager(std::shared_ptr<Bucket> store, std::shared_ptr<Bucket> replica,
              std::shared_ptr<CommitFeed> feed);

  // One Acquire call waiting in a queue. Each has its own condition
  // variable so that a commit or a departure wakes exactly the one waiter it
  // concerns, not the whole queue.
  struct Waiter {
    std::condition_variable cv;
    const LockRecordValues* values = nullptr;  // what this waiter would write
    // Hand-off from a releasing holder of this process (see ReleaseLocked).
    bool sleeping = false;       // waiting on the holder: a hand-off may start
    std::atomic<bool> signal{false};  // set (under mu_) before each notify of cv
    std::atomic<bool> grant_pending{false};  // a releaser is writing the hand-off now
    bool granted = false;        // the lock is ours, at revision `token`
    uint64_t token = 0;
    uint32_t handoffs = 0;  // the granted lock's count of consecutive hand-offs
    Clock::time_point granted_at;
  };
  struct Queue {
    // FIFO of waiting Acquire calls; the front contends. Shared so that a
    // notifier can signal a waiter after dropping mu_ (a waiter woken while
    // mu_ is still held would only block again on it).
    std::deque<std::shared_ptr<Waiter>> waiters;
    uint64_t changes = 0;         // bumped on every commit to the lock's key
  };
  struct Observation {
    uint64_t revision = 0;
    Clock::time_point first_seen;
  };

  // Whether the lock's record, once the store has caught up (bounded by
  // `until`), still holds `held`'s token; if so, held->revision becomes the
  // record's revision (a write of ours that was reported as failed may have
  // landed, or a fenced write rewrote the record). Caught up means: the
  // replica has applied revision `at`, named by the conflict; without it, a
  // Sync with the server. Callers hold held->mu.
  Result<bool> StillHeld(Held* held, std::optional<uint64_t> at, Clock::time_point until);

  // What one Acquire went through, for the statistics.
  struct AcquireNotes {
    bool waited = false;     // it slept for another holder
    bool took_over = false;  // it took over an expired lease
  };
  Result<std::unique_ptr<Lock>> AcquireNoted(std::string_view name,
                                             std::chrono::milliseconds lease,
                                             std::optional<std::chrono::milliseconds> timeout,
                                             const LockOptions& options, AcquireNotes* notes);

  void OnCommit(const Entry& entry);
  // Wakes the head waiter of lock `name` in this process, if any, to
  // re-read the lock's record.
  void WakeHead(const std::string& name);
  void TimerLoop();
  std::string OwnerId() const;

  Stats* stats_ = nullptr;  // the engine's, which outlives the manager
  const std::shared_ptr<Bucket> store_;
  const std::shared_ptr<Bucket> replica_;
  const std::shared_ptr<CommitFeed> feed_;
  uint32_t max_handoffs_ = 0;  // set once in Create
  bool record_ttl_ = false;    // set once in Create
  // `base` with the TTL of a record written for `lease`, when records have one.
  WriteOptions RecordWrite(std::chrono::nanoseconds lease, WriteOptions base = {}) const;
  const std::string owner_;
  uint64_t listener_id_ = 0;

  std::mutex mu_;
  std::map<std::string, std::unique_ptr<Queue>, std::less<>> queues_;  // GUARDED_BY(mu_)
  // When each lock's current holder revision was first seen here: expiry is
  // judged from it on this process's monotonic clock.
  std::map<std::string, Observation, std::less<>> observed_;    // GUARDED_BY(mu_)

  std::mutex timer_mu_;
  std::condition_variable timer_cv_;
  std::map<Held*, std::weak_ptr<Held>> held_;  // GUARDED_BY(timer_mu_)
  bool stopping_ = false;                      // GUARDED_BY(timer_mu_)
  uint64_t held_generation_ = 0;               // GUARDED_BY(timer_mu_): bumped per new lock
  // When the timer thread will next wake on its own; min() while it runs.
  Clock::time_point timer_wake_ = Clock::time_point::min();  // GUARDED_BY(timer_mu_)
  std::thread timer_;
};

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_LOCK_MANAGER_H_
