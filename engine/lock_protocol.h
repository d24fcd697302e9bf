// LockProtocol: the lease lock protocol over the Bucket interface (lock.h
// describes it to users).
//
// A lock is a record in a locks bucket: its owner, lease and fencing token
// (the revision that granted it). Acquire creates the record, or takes over
// one whose holder has not renewed for its lease plus a margin, with a CAS
// on the revision observed. Renewals and releases are CASes on the holder's
// own revision. A conflict is a loss only when the record, once the store
// has caught up, holds another token or none: a clustered stream's
// conflict may name no revision, and a fenced compare-and-swap rewrites the
// record with the same token.

#ifndef REVKV_ENGINE_LOCK_PROTOCOL_H_
#define REVKV_ENGINE_LOCK_PROTOCOL_H_

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "engine/lock_held.h"
#include "engine/record_codec.h"
#include "engine/replica_sink.h"
#include "revkv/bucket.h"

namespace revkv::engine {

class LockProtocol {
 public:
  using Clock = std::chrono::steady_clock;
  // Called when a renewal or release finds the lock lost, with why.
  using OnLost = std::function<void(HeldLock*, const Status&)>;

  // `store` takes the lock records' reads and writes; `replica` is the local
  // bucket whose commits show changes to them, read directly and watched
  // through `feed` (all three the same bucket in a local engine). With
  // `record_ttl`, every record written carries a TTL of kRecordTtlLeases
  // leases (at least 1 s), so that a record its holder abandoned
  // disappears by itself; for a store whose bucket allows per-key TTL.
  LockProtocol(std::shared_ptr<Bucket> store, std::shared_ptr<Bucket> replica,
               std::shared_ptr<CommitFeed> feed, bool record_ttl, OnLost on_lost);
  static constexpr int kRecordTtlLeases = 3;

  const Bucket& store() const { return *store_; }
  CommitFeed& feed() const { return *feed_; }

  // The lock's current holder: its record's revision and values.
  struct Holder {
    uint64_t revision = 0;
    LockRecordValues values;
  };
  // nullopt: no record (the lock is free).
  Result<std::optional<Holder>> ReadHolder(const std::string& name);
  // Creates the record of a free lock; Exists when it is held.
  Result<uint64_t> Claim(const std::string& name, const std::string& record,
                         std::chrono::nanoseconds lease);
  // Takes over the record at `revision`, whose holder's lease ran out.
  // Conflict when it changed since: at revision 0, there is no record left
  // (Bucket::Update), so the lock is free.
  Result<uint64_t> TakeOver(const std::string& name, const std::string& record,
                            uint64_t revision, std::chrono::nanoseconds lease);
  // Lets the store catch up after a conflict that named no revision.
  void CatchUp();

  // A grant whose write the server confirmed after lease - margin (timed
  // from `*sent`) is renewed with a CAS on `*revision` before it is handed
  // out; updates `*revision` and `*sent`. Timeout if that fails.
  Status RenewLateGrant(const std::string& name, LockRecordValues values,
                        std::chrono::nanoseconds lease, std::chrono::nanoseconds margin,
                        uint64_t token, uint64_t* revision, Clock::time_point* sent);
  // Renews `held` now (callers hold held->mu).
  Status Renew(HeldLock* held);
  // Writes the record of `held` over to a waiter of this process that would
  // write `heir` (callers hold held->mu); its new revision is the heir's token.
  Result<uint64_t> HandOver(HeldLock* held, LockRecordValues heir);
  // Deletes the record of `held` (callers hold held->mu).
  Result<uint64_t> Free(HeldLock* held);
  // Deletes the record of a lost `held`, unless it was taken over: the
  // holder has stopped the protected work, so the next waiter need not sit
  // out the lease.
  void FreeLost(HeldLock* held);

 private:
  // `base` with the TTL of a record written for `lease`, when records have one.
  WriteOptions RecordWrite(std::chrono::nanoseconds lease, WriteOptions base = {}) const;
  // Runs `write`, a CAS on the lock's record at held->revision (callers hold
  // held->mu), again while it conflicts and the record, once the store has
  // caught up by `until`, still holds our token. Only a record with another
  // token, or none, means the lock is lost.
  Result<uint64_t> CasWhileHeld(HeldLock* held, Clock::time_point until,
                                const std::function<Result<uint64_t>()>& write);
  // Whether the lock's record, once the store has caught up (bounded by
  // `until`), still holds `held`'s token; if so, held->revision becomes the
  // record's revision (a write of ours that was reported as failed may have
  // landed, or a fenced write rewrote the record). Caught up means: the
  // replica has applied revision `at`, named by the conflict; without it, a
  // Sync with the server. Callers hold held->mu.
  Result<bool> StillHeld(HeldLock* held, std::optional<uint64_t> at, Clock::time_point until);

  const std::shared_ptr<Bucket> store_;
  const std::shared_ptr<Bucket> replica_;
  const std::shared_ptr<CommitFeed> feed_;
  const bool record_ttl_;
  const OnLost on_lost_;
};

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_LOCK_PROTOCOL_H_
