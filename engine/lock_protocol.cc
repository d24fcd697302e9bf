#include "engine/lock_protocol.h"

#include <algorithm>
#include <thread>

#include "engine/expiry.h"

namespace revkv::engine {
namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

// How long a lock step may wait for the store to catch up after a conflict
// that named no revision.
constexpr milliseconds kCatchUpBound{2000};
// Renewals of a grant confirmed after its lease ran out (RenewLateGrant).
constexpr int kLateGrantRenewals = 2;

std::string Ms(nanoseconds d) {
  return std::to_string(duration_cast<milliseconds>(d).count()) + " ms";
}

}  // namespace

LockProtocol::LockProtocol(std::shared_ptr<Bucket> store, std::shared_ptr<Bucket> replica,
                           std::shared_ptr<CommitFeed> feed, bool record_ttl, OnLost on_lost)
    : store_(std::move(store)),
      replica_(std::move(replica)),
      feed_(std::move(feed)),
      record_ttl_(record_ttl),
      on_lost_(std::move(on_lost)) {}

WriteOptions LockProtocol::RecordWrite(nanoseconds lease, WriteOptions base) const {
  if (record_ttl_) {
    base.ttl = std::max(std::chrono::seconds(1),
                        std::chrono::ceil<std::chrono::seconds>(lease * kRecordTtlLeases));
  }
  return base;
}

Result<std::optional<LockProtocol::Holder>> LockProtocol::ReadHolder(const std::string& name) {
  auto entry = store_->GetEntry(name);
  if (entry.status().IsNotFound()) return std::optional<Holder>();
  if (!entry.ok()) return entry.status();
  auto values = DecodeLockRecord(entry->value, "lock record '" + name + "'");
  if (!values.ok()) return values.status();
  return std::optional<Holder>(Holder{entry->revision, *values});
}

Result<uint64_t> LockProtocol::Claim(const std::string& name, const std::string& record,
                                     nanoseconds lease) {
  return store_->Create(name, record, RecordWrite(lease));
}

Result<uint64_t> LockProtocol::TakeOver(const std::string& name, const std::string& record,
                                        uint64_t revision, nanoseconds lease) {
  return store_->Update(name, record, revision, RecordWrite(lease));
}

void LockProtocol::CatchUp() { store_->Sync(kCatchUpBound).ok(); }

Status LockProtocol::RenewLateGrant(const std::string& name, LockRecordValues values,
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

Status LockProtocol::Renew(HeldLock* held) {
  if (held->released) return Status::LockLost("lock '" + held->name + "' was released");
  if (held->lost.load()) return Status::LockLost("lock '" + held->name + "' was lost");
  const Clock::time_point start = Clock::now();
  const Clock::time_point lose_at = held->LoseAt();
  auto not_renewed = [&](const std::string& why) {
    Status lost = Status::LockLost("lock '" + held->name + "' was not renewed within its lease of " +
                                   Ms(held->lease) + " minus the margin of " + Ms(held->margin) +
                                   why);
    // The record is left in place: a waiter takes it over only after lease +
    // margin on its own clock, which leaves 2 x margin for this holder's
    // on_lost callbacks to stop the work the lock protected.
    on_lost_(held, lost);
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
    on_lost_(held, lost);
    return lost;
  }
  if (Clock::now() >= lose_at) return not_renewed(" (" + r.status().ToString() + ")");
  return r.status();
}

Result<uint64_t> LockProtocol::HandOver(HeldLock* held, LockRecordValues heir) {
  heir.acquired_at_ns = WallClockNs();
  heir.token = 0;
  const std::string record = EncodeLockRecord(heir);
  return CasWhileHeld(held, Clock::now() + kCatchUpBound, [&] {
    return store_->Update(held->name, record, held->revision,
                          RecordWrite(nanoseconds(heir.lease_ns)));
  });
}

Result<uint64_t> LockProtocol::Free(HeldLock* held) {
  return CasWhileHeld(held, Clock::now() + kCatchUpBound,
                      [&] { return store_->Delete(held->name, held->revision); });
}

void LockProtocol::FreeLost(HeldLock* held) {
  // A CAS: a newer holder's lock is never touched.
  store_->Delete(held->name, held->revision).ok();
}

Result<bool> LockProtocol::StillHeld(HeldLock* held, std::optional<uint64_t> at,
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

Result<uint64_t> LockProtocol::CasWhileHeld(HeldLock* held, Clock::time_point until,
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

}  // namespace revkv::engine
