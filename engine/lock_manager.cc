#include "engine/lock_manager.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <random>

#include "engine/expiry.h"
#include "engine/record_codec.h"
#include "revkv/validation.h"

namespace revkv::engine {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;

// The Lock handed to a caller: a view of the HeldLock the keeper renews.
class LockManager::Handle final : public Lock {
 public:
  Handle(std::shared_ptr<LockManager> manager, std::shared_ptr<HeldLock> held)
      : manager_(std::move(manager)), held_(std::move(held)) {}
  ~Handle() override { Release().ok(); }

  const std::string& name() const override { return held_->name; }
  uint64_t fencing_token() const override { return held_->token; }
  Fence fence() const override {
    return Fence{held_->name, held_->token, manager_->bucket_name()};
  }

  bool lost() const override {
    if (held_->lost.load()) return true;
    if (held_->released.load()) return true;  // lock.h: true once Release() ran
    // The keeper may not have run yet (the process may just have been
    // paused, or a renewal may be waiting for an unreachable server): judge
    // the lease here too, without waiting for that renewal.
    return Clock::now() >= held_->LoseAt();
  }

  void on_lost(std::function<void(const Status&)> callback) override {
    if (!callback) return;
    {
      std::lock_guard<std::mutex> lock(held_->callbacks_mu);
      if (!held_->fired) {
        held_->callbacks.push_back(std::move(callback));
        return;
      }
    }
    callback(Status::LockLost("lock '" + held_->name + "' was already lost"));
  }

  Status Renew() override {
    Status s;
    {
      std::lock_guard<std::mutex> lock(held_->mu);
      s = manager_->protocol_.Renew(held_.get());
    }
    held_->FireLost();
    return s;
  }

  Status Release() override {
    Status s;
    {
      std::lock_guard<std::mutex> lock(held_->mu);
      s = manager_->ReleaseLocked(held_.get());
    }
    held_->FireLost();
    manager_->keeper_.Remove(held_.get());
    return s;
  }

 private:
  const std::shared_ptr<LockManager> manager_;
  const std::shared_ptr<HeldLock> held_;
};

std::shared_ptr<LockManager> LockManager::Create(std::shared_ptr<Bucket> store,
                                                 std::shared_ptr<Bucket> replica,
                                                 std::shared_ptr<CommitFeed> feed,
                                                 uint32_t max_handoffs, bool record_ttl,
                                                 Stats* stats) {
  std::shared_ptr<LockManager> m(
      new LockManager(std::move(store), std::move(replica), std::move(feed), record_ttl));
  m->stats_ = stats;
  m->max_handoffs_ = max_handoffs;
  LockManager* raw = m.get();
  // Any change of a lock's key wakes the head waiter of that lock.
  m->listener_id_ = m->protocol_.feed().AddCommitListener(
      [raw](const Entry& e) { raw->queues_.Changed(e.key, /*forget_observation=*/true); });
  m->keeper_.Start();
  return m;
}

LockManager::LockManager(std::shared_ptr<Bucket> store, std::shared_ptr<Bucket> replica,
                         std::shared_ptr<CommitFeed> feed, bool record_ttl)
    : owner_(OwnerId()),
      protocol_(std::move(store), std::move(replica), std::move(feed), record_ttl,
                [this](HeldLock* held, const Status& why) { MarkLost(held, why); }),
      keeper_([this](HeldLock* held) { return protocol_.Renew(held); },
              [this]() -> std::shared_ptr<const void> { return weak_from_this().lock(); }) {}

LockManager::~LockManager() {
  protocol_.feed().RemoveCommitListener(listener_id_);
  // The last handle may be dropped by an on_lost callback, which runs on the
  // keeper's thread: Stop then detaches it, and it ends right after this.
  keeper_.Stop();
}

std::string LockManager::OwnerId() {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  std::random_device rd;
  char suffix[17];
  std::snprintf(suffix, sizeof(suffix), "%08x%08x", rd(), rd());
  return std::string(host) + "/" + std::to_string(getpid()) + "/" + suffix;
}

Result<std::unique_ptr<Lock>> LockManager::Acquire(std::string_view name,
                                                   std::chrono::milliseconds lease,
                                                   std::optional<std::chrono::milliseconds> timeout,
                                                   const LockOptions& options) {
  const Clock::time_point start = Clock::now();
  auto request = Check(name, lease, timeout, options);
  if (!request.ok()) return request.status();
  AcquireNotes notes;
  auto lock = AcquireNoted(*request, &notes);
  if (stats_ != nullptr) {
    if (lock.ok()) {
      stats_->LockGranted(notes.waited, notes.took_over, Clock::now() - start);
    } else if (lock.status().IsTimeout() || lock.status().IsBusy()) {
      stats_->LockGaveUp();
    }
  }
  return lock;
}

Result<LockManager::Request> LockManager::Check(std::string_view name,
                                                std::chrono::milliseconds lease,
                                                std::optional<std::chrono::milliseconds> timeout,
                                                const LockOptions& options) const {
  if (Status s = ValidateKey(name); !s.ok()) {
    return Status::InvalidArgument("bad lock name: " + std::string(s.message()));
  }
  if (lease < milliseconds(10)) {
    return Status::InvalidArgument("lease " + std::to_string(lease.count()) +
                                   " ms is too short; give at least 10 ms");
  }
  if (timeout && timeout->count() < 0) {
    return Status::InvalidArgument("timeout is negative; give 0 or more");
  }
  if (options.margin.count() < 0 || options.margin >= lease / 2) {
    return Status::InvalidArgument("LockOptions::margin must be >= 0 and under half the lease");
  }
  Request r;
  r.name = std::string(name);
  r.lease = lease;
  r.margin = options.margin.count() > 0 ? nanoseconds(options.margin) : r.lease / 5;
  r.timeout = timeout;
  r.deadline = Clock::now() + timeout.value_or(milliseconds(0));
  r.auto_renew = options.auto_renew;
  r.values = LockRecordValues{owner_, r.lease.count(), WallClockNs(), 0};
  r.first_record = EncodeLockRecord(r.values);
  return r;
}

Result<std::unique_ptr<Lock>> LockManager::AcquireNoted(const Request& request,
                                                        AcquireNotes* notes) {
  auto place = queues_.Join(request.name, &request.values);
  Grant grant;
  Status s = WaitTurn(request, *place, notes, &grant);
  if (s.ok() && !grant.handed) s = Contend(request, *place, notes, &grant);
  if (!s.ok()) {
    place->Leave(/*wake_next=*/true);
    return s;
  }
  return Finish(request, *place, std::move(grant));
}

Status LockManager::WaitTurn(const Request& request, LockQueues::Place& place,
                             AcquireNotes* notes, Grant* grant) {
  // FIFO within the process: only the head of the queue contends.
  while (!place.head()) {
    if (request.try_only()) {
      return Status::Busy("lock '" + request.name +
                          "' is being acquired by another thread of this process");
    }
    if (Clock::now() >= request.deadline) {
      return Status::Timeout("lock '" + request.name + "' was not acquired within " +
                             std::to_string(request.timeout->count()) +
                             " ms (queued behind this process's other waiters)");
    }
    notes->waited = true;
    if (place.Sleep(request.deadline, [&] { return place.head(); })) {
      grant->handed = true;
      return Status::OK();
    }
  }
  return Status::OK();
}

Status LockManager::Contend(const Request& request, LockQueues::Place& place,
                            AcquireNotes* notes, Grant* grant) {
  // A free lock is the common case: try to create it straight away, and read
  // the holder's record only when that fails.
  bool free_likely = true;
  while (true) {
    const uint64_t seen_changes = place.changes();
    place.Unlock();
    if (free_likely) {
      grant->sent = Clock::now();
      grant->token = protocol_.Claim(request.name, request.first_record, request.lease);
      if (grant->token.ok() || !grant->token.status().IsExists()) {
        place.Lock();
        return grant->token.status();
      }
    }
    free_likely = false;
    auto holder = protocol_.ReadHolder(request.name);
    place.Lock();
    if (!holder.ok()) return holder.status();
    if (!holder->has_value()) {
      free_likely = true;  // released since: try again
      continue;
    }
    const LockProtocol::Holder& h = **holder;
    const Clock::time_point expiry =
        place.FirstSeen(h.revision) + nanoseconds(h.values.lease_ns) + request.margin;
    if (Clock::now() >= expiry) {
      // The holder has not renewed for its lease plus our margin, as timed
      // on our own clock: take the lock over with a CAS on what we observed.
      auto won = TakeOver(request, place, h.revision, notes, grant, &free_likely);
      if (!won.ok()) return won.status();
      if (*won) return Status::OK();
      continue;
    }
    if (request.try_only()) {
      return Status::Busy("lock '" + request.name + "' is held by " + h.values.owner +
                          " (revision " + std::to_string(h.revision) + ")");
    }
    if (Clock::now() >= request.deadline) {
      return Status::Timeout("lock '" + request.name + "' is still held by " + h.values.owner +
                             " after " + std::to_string(request.timeout->count()) + " ms");
    }
    // Sleep until the lock's key changes (release, renewal, takeover) or the
    // holder's lease could have run out; no polling.
    notes->waited = true;
    if (place.Sleep(std::min(expiry, request.deadline),
                    [&] { return place.changes() != seen_changes; })) {
      grant->handed = true;
      return Status::OK();
    }
    free_likely = place.changes() != seen_changes;
  }
}

Result<bool> LockManager::TakeOver(const Request& request, LockQueues::Place& place,
                                   uint64_t revision, AcquireNotes* notes, Grant* grant,
                                   bool* free_likely) {
  place.Unlock();
  grant->sent = Clock::now();
  grant->token = protocol_.TakeOver(request.name, request.first_record, revision, request.lease);
  place.Lock();
  if (grant->token.ok()) {
    notes->took_over = true;
    return true;
  }
  const Status& s = grant->token.status();
  if (!s.IsConflict()) return s;
  // At revision 0 the record is gone, whatever removed it (Bucket::Update):
  // the lock is free, so Create it.
  *free_likely = s.revision_known() && s.revision() == 0;
  if (!s.revision_known()) {
    // Another takeover (or the holder's renewal) was in flight: let the
    // store catch up before the record is read again.
    place.Unlock();
    protocol_.CatchUp();
    place.Lock();
  }
  return false;
}

Result<std::unique_ptr<Lock>> LockManager::Finish(const Request& request,
                                                  LockQueues::Place& place, Grant grant) {
  if (grant.handed) {
    const LockQueues::Waiter& handed = place.granted();
    grant.token = handed.token;
    grant.handoffs = handed.handoffs;
    grant.sent = handed.granted_at;
  }
  uint64_t revision = *grant.token;
  if (Clock::now() >= grant.sent + request.lease - request.margin) {
    // Rare: the grant was confirmed late. Renewing it writes, so without the
    // queue's mutex.
    place.Unlock();
    Status timely = protocol_.RenewLateGrant(request.name, request.values, request.lease,
                                             request.margin, *grant.token, &revision, &grant.sent);
    place.Lock();
    if (!timely.ok()) {
      place.Leave(/*wake_next=*/true);
      if (request.try_only()) return Status::Busy(timely.message());
      return timely;
    }
  }
  auto held = std::make_shared<HeldLock>();
  held->name = request.name;
  held->token = *grant.token;
  held->handoffs = grant.handoffs;
  held->lease = request.lease;
  held->margin = request.margin;
  held->auto_renew = request.auto_renew;
  LockRecordValues values = request.values;
  values.token = *grant.token;
  held->record = EncodeLockRecord(values);
  held->revision = revision;
  held->last_renewed = grant.sent;
  place.ForgetSeen();
  place.Leave(/*wake_next=*/false);
  place.Unlock();
  keeper_.Add(held);
  return std::unique_ptr<Lock>(new Handle(shared_from_this(), std::move(held)));
}

Status LockManager::ReleaseLocked(HeldLock* held) {
  if (held->released) return held->release_status;
  held->released = true;
  if (held->lost.load()) {
    protocol_.FreeLost(held);
    held->release_status =
        Status::LockLost("lock '" + held->name + "' had been lost before release");
    return held->release_status;
  }
  // Hand-off: if a thread of this process sleeps at the head of this lock's
  // queue, pass the lock to it with one CAS instead of a delete and a create,
  // and without making it wake up to write: the lock moves at the speed of
  // one write. The new revision is its fencing token, larger than ours.
  const bool may_hand_off = max_handoffs_ == 0 || held->handoffs < max_handoffs_;
  std::shared_ptr<LockQueues::Waiter> heir =
      may_hand_off ? queues_.ClaimHeir(held->name) : nullptr;
  Result<uint64_t> r = Status::Busy("not attempted");
  if (heir != nullptr) {
    const Clock::time_point start = Clock::now();
    r = protocol_.HandOver(held, *heir->values);
    queues_.Grant(heir, r, held->handoffs + 1, start);
  } else {
    r = protocol_.Free(held);
  }
  if (r.ok()) {
    held->release_status = Status::OK();
  } else if (r.status().IsConflict()) {
    held->release_status =
        Status::LockLost("lock '" + held->name + "' had been taken over; nothing was released");
    MarkLost(held, held->release_status);
  } else {
    // Nothing was released (e.g. the server is unreachable): the record
    // stays until its lease runs out, and a waiter of this process must
    // time it.
    held->release_status = r.status();
    queues_.Changed(held->name, /*forget_observation=*/false);
  }
  return held->release_status;
}

void LockManager::NoteRecordRewritten(const std::string& name, uint64_t token,
                                      uint64_t revision, Clock::time_point sent) {
  for (const auto& h : keeper_.Find(name, token)) {
    std::lock_guard<std::mutex> lock(h->mu);
    // A lost or released lock stays so; a renewal that has already moved
    // the record further keeps its revision.
    if (h->released || h->lost.load() || revision <= h->revision) continue;
    // Nor is a lease that lost() may already have reported run out brought
    // back (the keeper declares it lost).
    if (Clock::now() >= h->LoseAt()) continue;
    h->revision = revision;
    if (sent > h->last_renewed.load()) h->last_renewed = sent;
  }
}

void LockManager::MarkLost(HeldLock* held, const Status& why) {
  if (!held->MarkLost(why)) return;
  if (stats_ != nullptr) stats_->LockLost();
  // A waiter of this process may be queued behind this holder with no
  // timer of its own: it must now time the stale record and take it over.
  queues_.Changed(held->name, /*forget_observation=*/false);
}

}  // namespace revkv::engine
