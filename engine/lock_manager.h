// LockManager: lease locks kept as records in a locks bucket (lock.h has the
// contract). One per engine and locks bucket, created on first use. It ties
// together three parts:
//  - LockQueues (lock_queues.h): this process's waiters, FIFO per lock
//    name, with the hand-off from a releasing holder to the next waiter;
//  - LeaseKeeper (lease_keeper.h): the thread that renews held locks and
//    declares them lost;
//  - LockProtocol (lock_protocol.h): acquire, take over, renew and release
//    as reads and writes of the Bucket interface.

#ifndef REVKV_ENGINE_LOCK_MANAGER_H_
#define REVKV_ENGINE_LOCK_MANAGER_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "engine/lease_keeper.h"
#include "engine/lock_held.h"
#include "engine/lock_protocol.h"
#include "engine/lock_queues.h"
#include "engine/replica_sink.h"
#include "engine/stats.h"
#include "revkv/lock.h"
#include "revkv/options.h"

namespace revkv::engine {

class LockManager : public std::enable_shared_from_this<LockManager> {
 public:
  using Clock = std::chrono::steady_clock;

  // `store`, `replica`, `feed`: as LockProtocol takes them.
  // `max_handoffs`: how many times in a row a releasing holder may hand the
  // lock straight to a waiting thread of this process (0: no limit). Past
  // it, the holder releases for real, so that waiters in other processes,
  // which cannot be handed the lock, get their turn.
  // `record_ttl`: as LockProtocol takes it. `stats` (may be null, else
  // outlives the manager) counts acquires, waits, takeovers and losses.
  static std::shared_ptr<LockManager> Create(std::shared_ptr<Bucket> store,
                                             std::shared_ptr<Bucket> replica,
                                             std::shared_ptr<CommitFeed> feed,
                                             uint32_t max_handoffs = 0, bool record_ttl = false,
                                             Stats* stats = nullptr);
  ~LockManager();
  LockManager(const LockManager&) = delete;
  LockManager& operator=(const LockManager&) = delete;

  // The bucket that holds this manager's lock records.
  const std::string& bucket_name() const { return protocol_.store().name(); }

  // Acquire with `timeout`; std::nullopt makes it TryAcquire.
  Result<std::unique_ptr<Lock>> Acquire(std::string_view name, std::chrono::milliseconds lease,
                                        std::optional<std::chrono::milliseconds> timeout,
                                        const LockOptions& options);

  // The record of lock `name` now holds `token` at `revision`, written by
  // a fenced compare-and-swap sent at `sent`: if this manager holds that
  // lock with that token, the write counts as a renewal from `sent` (a
  // waiter times the lease from the new revision, which it saw later), and
  // the next renewal expects `revision`.
  void NoteRecordRewritten(const std::string& name, uint64_t token, uint64_t revision,
                           Clock::time_point sent);

 private:
  class Handle;  // the Lock handed to the caller

  // One Acquire call: its arguments, checked.
  struct Request {
    std::string name;
    std::chrono::nanoseconds lease{0};
    std::chrono::nanoseconds margin{0};
    std::optional<std::chrono::milliseconds> timeout;  // nullopt: TryAcquire
    Clock::time_point deadline;
    bool auto_renew = true;
    LockRecordValues values;   // what its record holds
    std::string first_record;  // values, encoded (no token yet)
    bool try_only() const { return !timeout.has_value(); }
  };
  // How an Acquire got the lock.
  struct Grant {
    Result<uint64_t> token = Status::Busy("not attempted");
    Clock::time_point sent;  // when the granting write was sent
    bool handed = false;     // handed over by a holder of this process
    uint32_t handoffs = 0;
  };
  // What one Acquire went through, for the statistics.
  struct AcquireNotes {
    bool waited = false;     // it slept for another holder
    bool took_over = false;  // it took over an expired lease
  };

  LockManager(std::shared_ptr<Bucket> store, std::shared_ptr<Bucket> replica,
              std::shared_ptr<CommitFeed> feed, bool record_ttl);

  Result<Request> Check(std::string_view name, std::chrono::milliseconds lease,
                        std::optional<std::chrono::milliseconds> timeout,
                        const LockOptions& options) const;
  Result<std::unique_ptr<Lock>> AcquireNoted(const Request& request, AcquireNotes* notes);
  // Waits (place locked) until the place is the head of its queue, or the
  // lock was handed to it (grant->handed).
  Status WaitTurn(const Request& request, LockQueues::Place& place, AcquireNotes* notes,
                  Grant* grant);
  // The head contends (place locked on entry and return) until it holds the
  // lock, or gives up.
  Status Contend(const Request& request, LockQueues::Place& place, AcquireNotes* notes,
                 Grant* grant);
  // Takes over the expired record at `revision`: true when it won; false to
  // contend again, with `*free_likely` set when the record is gone.
  Result<bool> TakeOver(const Request& request, LockQueues::Place& place, uint64_t revision,
                        AcquireNotes* notes, Grant* grant, bool* free_likely);
  // Makes the handle of a granted lock (place locked; it leaves the queue).
  Result<std::unique_ptr<Lock>> Finish(const Request& request, LockQueues::Place& place,
                                       Grant grant);

  // Releases `held` (callers hold held->mu): hands it to a sleeping waiter
  // of this process, or frees its record.
  Status ReleaseLocked(HeldLock* held);
  // Marks `held` lost; its callbacks then run (HeldLock::FireLost), once.
  void MarkLost(HeldLock* held, const Status& why);
  static std::string OwnerId();

  Stats* stats_ = nullptr;     // set once in Create
  uint32_t max_handoffs_ = 0;  // set once in Create
  const std::string owner_;
  LockProtocol protocol_;
  LockQueues queues_;
  LeaseKeeper keeper_;
  uint64_t listener_id_ = 0;
};

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_LOCK_MANAGER_H_
