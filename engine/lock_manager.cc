#include "engine/lock_manager.h"

#include <unistd.h>

#include <random>
#include <thread>

#include "engine/expiry.h"
#include "engine/record_codec.h"
#include "revkv/validation.h"

namespace revkv::engine {
namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

// How long the head waiter spins for a hand-off before it sleeps.
constexpr std::chrono::microseconds kHandOffSpin{200};


// How long a lock step may wait for the store to catch up after a conflict
// that named no revision.
constexpr milliseconds kCatchUpBound{2000};
// Renewals of a grant confirmed after its lease ran out (RenewLateGrant).
constexpr int kLateGrantRenewals = 2;

std::string Ms(nanoseconds d) { return std::to_string(duration_cast<milliseconds>(d).count()) + " ms"; }

class LocalLock final : public Lock {
 public:
  LocalLock(std::shared_ptr<LockManager> manager, std::shared_ptr<LockManager::Held> held)
      : manager_(std::move(manager)), held_(std::move(held)) {}
  ~LocalLock() override { Release().ok(); }

  const std::string& name() const override { return held_->name; }
  uint64_t fencing_token() const override { return held_->token; }
  Fence fence() const override {
    return Fence{held_->name, held_->token, manager_->bucket_name()};
  }

  bool lost() const override {
    if (held_->lost.load()) return true;
    if (held_->released.load()) return true;  // lock.h: true once Release() ran
    // The timer thread may not have run yet (the process may just have been
    // paused, or a renewal may be waiting for an unreachable server): judge
    // the lease here too, without waiting for that renewal.
    return LockManager::Clock::now() >= held_->last_renewed.load() + held_->lease - held_->margin;
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
      s = manager_->RenewLocked(held_.get());
    }
    LockManager::FireLost(held_.get());
    return s;
  }

  Status Release() override {
    Status s;
    {
      std::lock_guard<std::mutex> lock(held_->mu);
      s = manager_->ReleaseLocked(held_.get());
    }
    LockManager::FireLost(held_.get());
    manager_->Forget(held_.get());
    return s;
  }

 private:
  const std::shared_ptr<LockManager> manager_;
  const std::shared_ptr<LockManager::Held> held_;
};

}  // namespace

std::shared_ptr<LockManager> LockManager::Create(std::shared_ptr<Bucket> store,
                                                 std::shared_ptr<Bucket> replica,
                                                 std::shared_ptr<CommitFeed> feed,
                                                 uint32_t max_handoffs, bool record_ttl,
                                                 Stats* stats) {
  std::shared_ptr<LockManager> m(
      new LockManager(std::move(store), std::move(replica), std::move(feed)));
  m->stats_ = stats;
  m->max_handoffs_ = max_handoffs;
  m->record_ttl_ = record_ttl;
  std::weak_ptr<LockManager> weak = m;
  LockManager* raw = m.get();
  m->listener_id_ = m->feed_->AddCommitListener([raw](const Entry& e) { raw->OnCommit(e); });
  m->timer_ = std::thread(&LockManager::TimerLoop, raw);
  return m;
}

LockManager::LockManager(std::shared_ptr<Bucket> store, std::shared_ptr<Bucket> replica,
                         std::shared_ptr<CommitFeed> feed)
    : store_(std::move(store)),
      replica_(std::move(replica)),
      feed_(std::move(feed)),
      owner_(OwnerId()) {}

LockManager::~LockManager() {
  feed_->RemoveCommitListener(listener_id_);
  {
    std::lock_guard<std::mutex> lock(timer_mu_);
    stopping_ = true;
  }
  timer_cv_.notify_all();
  if (timer_.joinable()) {
    // The last handle may be dropped by an on_lost callback, which runs on
    // the timer thread: that thread then ends right after this destructor
    // (see TimerLoop) and cannot join itself.
    if (timer_.get_id() == std::this_thread::get_id()) {
      timer_.detach();
    } else {
      timer_.join();
    }
  }
}

std::string LockManager::OwnerId() const {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  std::random_device rd;
  char suffix[17];
  std::snprintf(suffix, sizeof(suffix), "%08x%08x", rd(), rd());
  return std::string(host) + "/" + std::to_string(getpid()) + "/" + suffix;
}

void LockManager::OnCommit(const Entry& entry) {
  std::shared_ptr<Waiter> head;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Any change starts a new holder revision (or frees the lock): an old
    // observation is stale, and dropping it keeps the map small.
    observed_.erase(entry.key);
    auto it = queues_.find(entry.key);
    if (it == queues_.end()) return;
    ++it->second->changes;
    head = it->second->waiters.front();  // only the head contends
    head->signal.store(true, std::memory_order_release);
  }
  head->cv.notify_one();
}

Result<std::unique_ptr<Lock>> LockManager::Acquire(std::string_view name,
                                                   std::chrono::milliseconds lease,
                                                   std::optional<std::chrono::milliseconds> timeout,
                                                   const LockOptions& options) {
  const Clock::time_point start = Clock::now();
  AcquireNotes notes;
  auto lock = AcquireNoted(name, lease, timeout, options, &notes);
  if (stats_ != nullptr) {
    if (lock.ok()) {
      stats_->LockGranted(notes.waited, notes.took_over, Clock::now() - start);
    } else if (lock.status().IsTimeout() || lock.status().IsBusy()) {
      stats_->LockGaveUp();
    }
  }
  return lock;
}

Result<std::unique_ptr<Lock>> LockManager::AcquireNoted(
    std::string_view name_view, std::chrono::milliseconds lease,
    std::optional<std::chrono::milliseconds> timeout, const LockOptions& options,
    AcquireNotes* notes) {
  if (Status s = ValidateKey(name_view); !s.ok()) {
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
  const std::string name(name_view);
  const nanoseconds lease_ns = lease;
  const nanoseconds margin = options.margin.count() > 0 ? nanoseconds(options.margin) : lease_ns / 5;
  LockRecordValues values{owner_, lease_ns.count(), WallClockNs(), 0};
  const std::string first_record = EncodeLockRecord(values);
  const bool try_only = !timeout.has_value();
  const Clock::time_point deadline = Clock::now() + timeout.value_or(milliseconds(0));

  std::unique_lock<std::mutex> lk(mu_);
  auto [qit, inserted] = queues_.try_emplace(name);
  if (inserted) qit->second = std::make_unique<Queue>();
  Queue& q = *qit->second;
  auto self = std::make_shared<Waiter>();
  Waiter& me = *self;
  me.values = &values;
  q.waiters.push_back(self);
  // Leaves the queue (with lk held). A waiter that gives up wakes the next
  // one, since the lock may be free. One that got the lock does not: the
  // next waiter sleeps until the lock is handed to it or its key changes.
  auto leave = [&](bool wake_next) {
    const bool was_head = q.waiters.front() == self;
    q.waiters.erase(std::find(q.waiters.begin(), q.waiters.end(), self));
    if (q.waiters.empty()) {
      queues_.erase(name);
    } else if (was_head && wake_next) {
      q.waiters.front()->signal.store(true, std::memory_order_release);
      q.waiters.front()->cv.notify_one();
    }
  };
  // Sleeps (with lk held) until `until` or `ready()`, spinning briefly
  // first. While it sleeps at the head of the queue, a releasing holder of
  // this process may hand the lock over; returns true if it did.
  auto sleep = [&](Clock::time_point until, const std::function<bool()>& ready) {
    me.sleeping = true;
    me.signal.store(false, std::memory_order_relaxed);
    if (q.waiters.front() == self) {
      // A holder in this process usually releases within tens of
      // microseconds; a hand-off caught spinning saves a sleep and a wake-up
      // on the lock's critical path. Bounded; it watches memory, not the store.
      lk.unlock();
      const Clock::time_point spin_end = std::min(Clock::now() + kHandOffSpin, until);
      while (!me.signal.load(std::memory_order_acquire) && Clock::now() < spin_end) {
        std::this_thread::yield();
      }
      lk.lock();
    }
    me.cv.wait_until(lk, until, [&] { return ready() || me.grant_pending || me.granted; });
    if (me.grant_pending) {
      // The releaser woke us before writing the hand-off, so that our
      // wake-up overlaps its write; the write takes microseconds: spin.
      lk.unlock();
      const Clock::time_point spin_end = Clock::now() + kHandOffSpin;
      while (me.grant_pending.load(std::memory_order_acquire) && Clock::now() < spin_end) {
        std::this_thread::yield();
      }
      lk.lock();
    }
    me.cv.wait(lk, [&] { return !me.grant_pending; });  // a hand-off in flight ends either way
    me.sleeping = false;
    return me.granted;
  };

  Result<uint64_t> won = Status::Busy("not attempted");
  Clock::time_point attempt_start;
  bool handed = false;
  uint32_t handoffs = 0;  // of the lock we get: nonzero only for a hand-off

  // FIFO within the process: only the head of the queue contends.
  while (q.waiters.front() != self) {
    if (try_only) {
      leave(true);
      return Status::Busy("lock '" + name + "' is being acquired by another thread of this process");
    }
    if (Clock::now() >= deadline) {
      leave(true);
      return Status::Timeout("lock '" + name + "' was not acquired within " +
                             std::to_string(timeout->count()) +
                             " ms (queued behind this process's other waiters)");
    }
    notes->waited = true;
    if (sleep(deadline, [&] { return q.waiters.front() == self; })) {
      handed = true;
      break;
    }
  }

  // A free lock is the common case: try to create it straight away, and read
  // the holder's record only when that fails.
  bool free_likely = true;
  while (!handed) {
    const uint64_t seen_changes = q.changes;
    lk.unlock();
    attempt_start = Clock::now();
    if (free_likely) {
      won = store_->Create(name, first_record, RecordWrite(lease_ns));
      if (won.ok()) break;
      if (!won.status().IsExists()) {
        lk.lock();
        leave(true);
        return won.status();
      }
    }
    free_likely = false;
    auto entry = store_->GetEntry(name);
    if (entry.status().IsNotFound()) {
      free_likely = true;  // released since: try again
      lk.lock();
      continue;
    }
    if (!entry.ok()) {
      lk.lock();
      leave(true);
      return entry.status();
    }
    auto holder = DecodeLockRecord(entry->value, "lock record '" + name + "'");
    if (!holder.ok()) {
      lk.lock();
      leave(true);
      return holder.status();
    }
    lk.lock();
    Observation& seen = observed_[name];
    if (seen.revision != entry->revision) seen = {entry->revision, Clock::now()};
    const Clock::time_point expiry = seen.first_seen + nanoseconds(holder->lease_ns) + margin;
    if (Clock::now() >= expiry) {
      // The holder has not renewed for its lease plus our margin, as timed on
      // our own clock: take the lock over with a CAS on what we observed.
      lk.unlock();
      attempt_start = Clock::now();
      won = store_->Update(name, first_record, entry->revision, RecordWrite(lease_ns));
      if (won.ok()) {
        notes->took_over = true;
        break;
      }
      lk.lock();
      if (won.status().IsConflict()) {
        // Revision 0: the key has no message left on the server (the
        // bucket's MaxAge or the record's TTL removed an abandoned record,
        // and the replica has not judged it expired yet): the lock is free,
        // so Create it.
        free_likely = won.status().revision_known() && won.status().revision() == 0;
        if (!won.status().revision_known()) {
          // Another takeover (or the holder's renewal) was in flight: let the
          // store catch up before the record is read again.
          lk.unlock();
          store_->Sync(kCatchUpBound).ok();
          lk.lock();
        }
        continue;
      }
      leave(true);
      return won.status();
    }
    if (try_only) {
      leave(true);
      return Status::Busy("lock '" + name + "' is held by " + holder->owner + " (revision " +
                          std::to_string(entry->revision) + ")");
    }
    if (Clock::now() >= deadline) {
      leave(true);
      return Status::Timeout("lock '" + name + "' is still held by " + holder->owner +
                             " after " + std::to_string(timeout->count()) + " ms");
    }
    // Sleep until the lock's key changes (release, renewal, takeover) or the
    // holder's lease could have run out; no polling.
    notes->waited = true;
    if (sleep(std::min(expiry, deadline), [&] { return q.changes != seen_changes; })) {
      handed = true;
      break;
    }
    free_likely = q.changes != seen_changes;
  }
  if (handed) {
    won = me.token;
    handoffs = me.handoffs;
    attempt_start = me.granted_at;
  }
  uint64_t revision = *won;
  if (Clock::now() >= attempt_start + lease_ns - margin) {
    // Rare: the grant was confirmed late (RenewLateGrant), which writes with
    // mu_ released.
    if (handed) lk.unlock();
    Status timely =
        RenewLateGrant(name, values, lease_ns, margin, *won, &revision, &attempt_start);
    lk.lock();
    if (!timely.ok()) {
      leave(true);
      if (try_only) return Status::Busy(timely.message());
      return timely;
    }
  } else if (!handed) {
    lk.lock();
  }

  auto held = std::make_shared<Held>();
  held->name = name;
  held->token = *won;
  held->handoffs = handoffs;
  held->lease = lease_ns;
  held->margin = margin;
  held->auto_renew = options.auto_renew;
  values.token = *won;
  held->record = EncodeLockRecord(values);
  held->revision = revision;
  held->last_renewed = attempt_start;
  observed_.erase(name);
  leave(false);
  lk.unlock();
  bool wake_timer;
  {
    std::lock_guard<std::mutex> lock(timer_mu_);
    held_[held.get()] = held;
    ++held_generation_;
    // Wake the timer thread only if this lock needs it sooner than planned.
    const Clock::time_point due = attempt_start + held->lease / 3;
    wake_timer = due < timer_wake_;
    if (wake_timer) timer_wake_ = due;
  }
  if (wake_timer) timer_cv_.notify_all();
  return std::unique_ptr<Lock>(new LocalLock(shared_from_this(), std::move(held)));
}

WriteOptions LockManager::RecordWrite(nanoseconds lease, WriteOptions base) const {
  if (record_ttl_) {
    base.ttl = std::max(std::chrono::seconds(1),
                        std::chrono::ceil<std::chrono::seconds>(lease * kRecordTtlLeases));
  }
  return base;
}

Status LockManager::RenewLateGrant(const std::string& name, LockRecordValues values,
                                   nanoseconds lease, nanoseconds margin, uint64_t token,
                                   uint64_t* revision, Clock::time_point* sent) {
  // The server can confirm a grant late: a leader election, resends of a
  // publish it did not store, a catch-up after 10164. If lease - margin has
  // passed since the write was sent, the grant is already lost by this
  // holder's own clock, and a waiter may take the record over at any moment:
  // it is never handed out like that. A CAS on the granted revision renews it
  // first; if it lands, nobody has taken the lock over since the grant, and
  // the lease runs from the renewal.
  values.token = token;
  const std::string record = EncodeLockRecord(values);
  for (int renewals = 0; Clock::now() >= *sent + lease - margin; ++renewals) {
    const std::string late = "lock '" + name + "' was granted (fencing token " +
                             std::to_string(token) + ") only " + Ms(Clock::now() - *sent) +
                             " after the request was sent, past its lease of " + Ms(lease) +
                             " minus the margin of " + Ms(margin);
    if (renewals == kLateGrantRenewals) {
      return Status::Timeout(late + ", and renewing it was as slow; it expires by itself; "
                             "try again");
    }
    const Clock::time_point start = Clock::now();
    WriteOptions bounded;
    bounded.timeout = std::chrono::ceil<milliseconds>(lease - margin);
    auto r = store_->Update(name, record, *revision, RecordWrite(lease, bounded));
    if (!r.ok()) {
      return Status::Timeout(late + ", and renewing it failed (" + r.status().ToString() +
                             "); it was taken over or expires by itself; try again");
    }
    *revision = *r;
    *sent = start;
  }
  return Status::OK();
}

Status LockManager::RenewLocked(Held* held) {
  if (held->released) return Status::LockLost("lock '" + held->name + "' was released");
  if (held->lost.load()) return Status::LockLost("lock '" + held->name + "' was lost");
  const Clock::time_point start = Clock::now();
  const Clock::time_point lose_at = held->last_renewed.load() + held->lease - held->margin;
  auto not_renewed = [&](const std::string& why) {
    Status lost = Status::LockLost("lock '" + held->name + "' was not renewed within its lease of " +
                                   Ms(held->lease) + " minus the margin of " + Ms(held->margin) +
                                   why);
    // The record is left in place: a waiter takes it over only after lease +
    // margin on its own clock, which leaves 2 x margin for this holder's
    // on_lost callbacks to stop the work the lock protected.
    MarkLost(held, lost);
    return lost;
  };
  if (start >= lose_at) return not_renewed("");
  // No write may outlast the lease, a retry after a catch-up included: a
  // server that does not answer must not keep this holder believing in a
  // lock that a waiter may take.
  auto r = CasWhileHeld(held, lose_at, [&]() -> Result<uint64_t> {
    const auto left = std::chrono::ceil<milliseconds>(lose_at - Clock::now());
    if (left.count() <= 0) {
      return Status::Timeout("the lease of lock '" + held->name + "' ran out during renewal");
    }
    WriteOptions bounded;
    bounded.timeout = left;
    return store_->Update(held->name, held->record, held->revision,
                          RecordWrite(held->lease, bounded));
  });
  if (r.ok()) {
    held->revision = *r;
    held->last_renewed = start;
    return Status::OK();
  }
  if (r.status().IsConflict()) {
    Status lost = Status::LockLost("lock '" + held->name + "' was taken over (its entry is at revision " +
                                   (r.status().revision_known()
                                        ? std::to_string(r.status().revision())
                                        : std::string("unknown")) + ")");
    MarkLost(held, lost);
    return lost;
  }
  if (Clock::now() >= lose_at) return not_renewed(" (" + r.status().ToString() + ")");
  return r.status();
}

Status LockManager::ReleaseLocked(Held* held) {
  if (held->released) return held->release_status;
  held->released = true;
  if (held->lost.load()) {
    // The caller has stopped the protected work by now, so free our stale
    // record if nobody has taken it over (a CAS: a newer holder's lock is
    // never touched) rather than make the next waiter sit out the lease.
    store_->Delete(held->name, held->revision).ok();
    held->release_status = Status::LockLost("lock '" + held->name + "' had been lost before release");
    return held->release_status;
  }
  // Hand-off: if a thread of this process sleeps at the head of this lock's
  // queue, pass the lock to it with one CAS instead of a delete and a create,
  // and without making it wake up to write: the lock moves at the speed of
  // one write. The new revision is its fencing token, larger than ours.
  std::shared_ptr<Waiter> heir;
  const bool may_hand_off = max_handoffs_ == 0 || held->handoffs < max_handoffs_;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = may_hand_off ? queues_.find(held->name) : queues_.end();
    if (it != queues_.end()) {
      const std::shared_ptr<Waiter>& head = it->second->waiters.front();
      // Only a sleeping head can be handed the lock; one that is reading or
      // writing the store on its own gets it the usual way.
      if (head->sleeping && !head->grant_pending && !head->granted) {
        head->grant_pending = true;
        head->signal.store(true, std::memory_order_release);
        heir = head;
      }
    }
  }
  // Wake the heir now, so that its wake-up runs alongside the write below.
  if (heir != nullptr) heir->cv.notify_one();
  Result<uint64_t> r = Status::Busy("not attempted");
  if (heir != nullptr) {
    LockRecordValues v = *heir->values;
    v.acquired_at_ns = WallClockNs();
    v.token = 0;
    const Clock::time_point start = Clock::now();
    const std::string record = EncodeLockRecord(v);
    r = CasWhileHeld(held, Clock::now() + kCatchUpBound,
                     [&] {
                       return store_->Update(held->name, record, held->revision,
                                             RecordWrite(nanoseconds(v.lease_ns)));
                     });
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (r.ok()) {
        heir->granted = true;
        heir->token = *r;
        heir->handoffs = held->handoffs + 1;
        heir->granted_at = start;
      }
      heir->signal.store(true, std::memory_order_release);
      heir->grant_pending.store(false, std::memory_order_release);  // last: the heir may go
    }
    heir->cv.notify_one();  // after dropping mu_, which the heir needs at once
  } else {
    r = CasWhileHeld(held, Clock::now() + kCatchUpBound,
                     [&] { return store_->Delete(held->name, held->revision); });
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
    WakeHead(held->name);
  }
  return held->release_status;
}

Result<bool> LockManager::StillHeld(Held* held, std::optional<uint64_t> at,
                                    Clock::time_point until) {
  if (at) {
    // The conflict named the record's revision: wait for the replica to
    // apply it, which it usually has, rather than ask the server where the
    // stream ends. A renewal racing a stream of fenced writes from another
    // process must not be slower than they are.
    while (feed_->LastRevision() < *at) {
      if (Clock::now() >= until) return false;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  } else {
    const auto left = std::chrono::ceil<milliseconds>(until - Clock::now());
    if (left.count() <= 0) return false;
    if (Status s = store_->Sync(left); !s.ok()) return s;
  }
  auto entry = replica_->GetEntry(held->name);
  if (entry.status().IsNotFound()) return false;
  if (!entry.ok()) return entry.status();
  auto record = DecodeLockRecord(entry->value, "lock record '" + held->name + "'");
  if (!record.ok()) return record.status();
  // A record's token is its own revision until a renewal writes it down.
  const uint64_t token = record->token != 0 ? record->token : entry->revision;
  if (token != held->token) return false;
  held->revision = entry->revision;
  return true;
}

Result<uint64_t> LockManager::CasWhileHeld(Held* held, Clock::time_point until,
                                           const std::function<Result<uint64_t>()>& write) {
  constexpr int kMaxRetries = 64;  // each bounded by `until` too
  auto r = write();
  for (int i = 0; i < kMaxRetries && !r.ok() && r.status().IsConflict(); ++i) {
    auto ours = StillHeld(held,
                          r.status().revision_known() ? std::optional(r.status().revision())
                                                      : std::nullopt,
                          until);
    if (!ours.ok()) return ours.status();
    if (!*ours) return r;
    r = write();
  }
  return r;
}

void LockManager::NoteRecordRewritten(const std::string& name, uint64_t token,
                                      uint64_t revision, Clock::time_point sent) {
  std::vector<std::shared_ptr<Held>> matching;
  {
    std::lock_guard<std::mutex> lock(timer_mu_);
    for (const auto& [raw, weak] : held_) {
      if (raw->name != name || raw->token != token) continue;
      if (auto h = weak.lock()) matching.push_back(std::move(h));
    }
  }
  for (const auto& h : matching) {
    std::lock_guard<std::mutex> lock(h->mu);
    // A lost or released lock stays so; a renewal that has already moved
    // the record further keeps its revision.
    if (h->released || h->lost.load() || revision <= h->revision) continue;
    // Nor is a lease that lost() may already have reported run out brought
    // back (the timer thread declares it lost).
    if (Clock::now() >= h->last_renewed.load() + h->lease - h->margin) continue;
    h->revision = revision;
    if (sent > h->last_renewed.load()) h->last_renewed = sent;
  }
}

void LockManager::MarkLost(Held* held, const Status& why) {
  if (held->lost.exchange(true)) return;
  if (stats_ != nullptr) stats_->LockLost();
  {
    std::lock_guard<std::mutex> lock(held->callbacks_mu);
    held->fired = true;
    held->lost_status = why;
  }
  // A waiter of this process may be queued behind this holder with no
  // timer of its own: it must now time the stale record and take it over.
  WakeHead(held->name);
}

void LockManager::WakeHead(const std::string& name) {
  std::shared_ptr<Waiter> head;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = queues_.find(name);
    if (it == queues_.end()) return;
    ++it->second->changes;
    head = it->second->waiters.front();
    head->signal.store(true, std::memory_order_release);
  }
  head->cv.notify_one();
}

void LockManager::FireLost(Held* held) {
  // Runs without held->mu, so a callback may use the handle freely.
  std::vector<std::function<void(const Status&)>> callbacks;
  Status why;
  {
    std::lock_guard<std::mutex> lock(held->callbacks_mu);
    if (!held->fired) return;
    callbacks.swap(held->callbacks);
    why = held->lost_status;
  }
  for (auto& cb : callbacks) cb(why);
}

void LockManager::Forget(Held* held) {
  std::lock_guard<std::mutex> lock(timer_mu_);
  held_.erase(held);
}

void LockManager::TimerLoop() {
  std::unique_lock<std::mutex> lk(timer_mu_);
  while (!stopping_) {
    // Held for the pass: on_lost callbacks run in it and may drop the last
    // handle, and with it the last other reference to this manager.
    std::shared_ptr<LockManager> keep = weak_from_this().lock();
    if (keep == nullptr) break;  // being destroyed on another thread
    const uint64_t generation = held_generation_;
    std::vector<std::shared_ptr<Held>> live;
    for (auto it = held_.begin(); it != held_.end();) {
      if (auto h = it->second.lock()) {
        live.push_back(std::move(h));
        ++it;
      } else {
        it = held_.erase(it);
      }
    }
    lk.unlock();
    Clock::time_point wake = Clock::now() + std::chrono::seconds(60);
    for (const auto& h : live) {
      // Callbacks of a lock this pass declares lost fire after its mutex is
      // released.
      struct Fire {
        Held* h;
        ~Fire() { FireLost(h); }
      } fire{h.get()};
      std::lock_guard<std::mutex> hold(h->mu);
      if (h->released || h->lost.load()) continue;
      Clock::time_point now = Clock::now();
      Clock::time_point lose_at = h->last_renewed.load() + h->lease - h->margin;
      if (h->auto_renew && now >= h->last_renewed.load() + h->lease / 3) {
        Status s = RenewLocked(h.get());
        if (h->lost.load()) continue;
        if (!s.ok()) {
          // A failed write (not a takeover): retry soon, until lose_at.
          wake = std::min(wake, Clock::now() + std::min<nanoseconds>(h->lease / 10,
                                                                     std::chrono::milliseconds(100)));
        }
        lose_at = h->last_renewed.load() + h->lease - h->margin;
      } else if (now >= lose_at) {
        RenewLocked(h.get()).ok();  // declares it lost
        continue;
      }
      if (h->auto_renew) wake = std::min(wake, h->last_renewed.load() + h->lease / 3);
      wake = std::min(wake, lose_at);
    }
    live.clear();
    {
      // If ours is now the last reference, the destructor runs here, on
      // this thread, and `this` is gone after it: return at once.
      std::weak_ptr<LockManager> weak = keep;
      keep.reset();
      if (weak.expired()) return;
    }
    lk.lock();
    if (stopping_) break;
    if (generation != held_generation_) continue;  // a lock arrived during the pass
    timer_wake_ = wake;
    timer_cv_.wait_until(lk, wake);
    timer_wake_ = Clock::time_point::min();
  }
}

}  // namespace revkv::engine
