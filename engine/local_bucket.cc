#include "engine/local_bucket.h"

#include <rocksdb/snapshot.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <thread>
#include <string>
#include <vector>

#include "engine/bucket_registry.h"
#include "engine/layout.h"
#include "engine/local_watcher.h"
#include "engine/txn_rules.h"
#include "engine/update_with_retry.h"
#include "engine/rocks.h"
#include "revkv/validation.h"

namespace revkv::engine {
namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The literal part of a filter before its first wildcard token, so that Keys
// can seek instead of scanning the whole bucket. "a.b.*" -> "a.b.".
std::string LiteralPrefix(std::string_view filter) {
  std::string out;
  size_t start = 0;
  while (start < filter.size()) {
    size_t end = filter.find('.', start);
    if (end == std::string_view::npos) end = filter.size();
    std::string_view token = filter.substr(start, end - start);
    if (token == "*" || token == ">") return out;
    if (end == filter.size()) {
      out.append(token);  // whole filter is literal: exact key
      return out;
    }
    out.append(filter.substr(start, end - start + 1));
    start = end + 1;
  }
  return out;
}

// The skip summary's bytes in the meta family (layout.h).
std::string EncodeSkips(const LocalBucket::SkipSummary& skips) {
  std::string out;
  AppendBE64(&out, skips.count);
  AppendBE64(&out, skips.first_revision);
  out += skips.first_reason;
  return out;
}

}  // namespace

LocalBucket::LocalBucket(std::shared_ptr<StoreCore> core, std::weak_ptr<BucketRegistry> registry,
                         std::string name,
                         rocksdb::ColumnFamilyHandle* cf, rocksdb::ColumnFamilyHandle* log_cf,
                         BucketConfigValues config, uint64_t last_revision)
    : core_(std::move(core)),
      registry_(std::move(registry)),
      name_(std::move(name)),
      cf_(cf),
      log_cf_(log_cf),
      config_(config),
      last_revision_(last_revision) {
  // A local bucket with TTL entries left from before resumes expiring them.
  if (!is_follower()) {
    rocksdb::ReadOptions ro;
    std::unique_ptr<rocksdb::Iterator> it(core_->db->NewIterator(ro, cf_));
    it->Seek(std::string(1, kExpiryPrefix));
    if (it->Valid() && !it->key().empty() && it->key()[0] == kExpiryPrefix) StartReaper();
  }
}

LocalBucket::~LocalBucket() {
  {
    std::lock_guard<std::mutex> lock(reaper_mu_);
    reaper_stop_ = true;
  }
  reaper_cv_.notify_all();
  if (reaper_.joinable()) reaper_.join();
}

void LocalBucket::SetExpiry(const ExpiryRules& rules) {
  max_age_ns_.store(rules.max_age_ns, std::memory_order_relaxed);
  grace_ns_.store(rules.grace_ns, std::memory_order_relaxed);
}

bool LocalBucket::ExpiredNow(int64_t created_ns, int64_t ttl_ns) const {
  const ExpiryRules rules = Expiry();
  return MayExpire(ttl_ns, rules) && IsExpired(created_ns, ttl_ns, rules, NowNs());
}

Status LocalBucket::ExpiredError(std::string_view key) const {
  // The server holds no message of the key any more (or only a limit
  // marker, which the replica applies as a tombstone when it arrives).
  return Status::NotFound(Describe(key) + " not found: it expired");
}

std::string LocalBucket::Describe(std::string_view key) const {
  return "key '" + std::string(key) + "' of bucket '" + name_ + "'";
}

Status LocalBucket::ReadOnlyError() const {
  return Status::InvalidArgument("bucket '" + name_ +
                                 "' was opened by a read-only follower engine; write through the "
                                 "engine that holds the store");
}

Result<std::string> LocalBucket::Get(std::string_view key) {
  if (Status s = ValidateReadKey(key); !s.ok()) return s;
  rocksdb::PinnableSlice slice;
  rocksdb::Status rs = core_->db->Get(rocksdb::ReadOptions(), cf_, LatestKey(key), &slice);
  if (rs.IsNotFound()) return Status::NotFound(Describe(key) + " not found");
  if (!rs.ok()) return FromRocks(rs, "reading " + Describe(key));
  Operation op;
  uint64_t revision;
  std::string value;
  RecordTimes times;
  if (Status s = DecodeValueInto(slice.ToStringView(), RecordName{name_, key}, &op,
                                 &revision, &value, &times);
      !s.ok()) {
    return s;
  }
  if (ExpiredNow(times.created_ns, times.ttl_ns)) return ExpiredError(key);
  if (op != Operation::kPut) {
    return Status::NotFound(Describe(key) + " not found: " +
                                (op == Operation::kDelete ? "deleted" : "purged") +
                                " at revision " + std::to_string(revision),
                            revision);
  }
  return value;
}

Result<Entry> LocalBucket::GetEntry(std::string_view key) {
  if (Status s = ValidateReadKey(key); !s.ok()) return s;
  rocksdb::PinnableSlice slice;
  rocksdb::Status rs = core_->db->Get(rocksdb::ReadOptions(), cf_, LatestKey(key), &slice);
  if (rs.IsNotFound()) return Status::NotFound(Describe(key) + " not found");
  if (!rs.ok()) return FromRocks(rs, "reading " + Describe(key));
  auto rec = DecodeRecord(slice.ToStringView(), DecodeParts::kAll, RecordName{name_, key});
  if (!rec.ok()) return rec.status();
  Entry& e = rec->entry;
  if (ExpiredNow(e.created_ns, e.ttl_ns)) return ExpiredError(key);
  if (e.operation != Operation::kPut) {
    return Status::NotFound(Describe(key) + " not found: " +
                                (e.operation == Operation::kDelete ? "deleted" : "purged") +
                                " at revision " + std::to_string(e.revision),
                            e.revision);
  }
  if (e.key != key) {
    return Status::Corruption(RecordName{name_, key}.ToString() + " names key '" + e.key +
                              "'; restore the store from a backup or replica");
  }
  return std::move(e);
}

Result<uint64_t> LocalBucket::Put(std::string_view key, std::string_view value,
                                  const WriteOptions& options) {
  return CommitWrite(Operation::kPut, key, value, Precondition::kNone, 0, options);
}

Result<uint64_t> LocalBucket::Create(std::string_view key, std::string_view value,
                                     const WriteOptions& options) {
  return CommitWrite(Operation::kPut, key, value, Precondition::kAbsentOrTombstone, 0, options);
}

Result<uint64_t> LocalBucket::Update(std::string_view key, std::string_view value,
                                     uint64_t expected_revision, const WriteOptions& options) {
  return CommitWrite(Operation::kPut, key, value, Precondition::kRevision, expected_revision,
                     options);
}

Result<uint64_t> LocalBucket::Delete(std::string_view key,
                                     std::optional<uint64_t> expected_revision,
                                     const WriteOptions& options) {
  return CommitWrite(Operation::kDelete, key, {},
                expected_revision ? Precondition::kRevision : Precondition::kNone,
                expected_revision.value_or(0), options);
}

Result<uint64_t> LocalBucket::Purge(std::string_view key,
                                    std::optional<uint64_t> expected_revision,
                                    const WriteOptions& options) {
  return CommitWrite(Operation::kPurge, key, {},
                expected_revision ? Precondition::kRevision : Precondition::kNone,
                expected_revision.value_or(0), options);
}

namespace {

// The TtlWrite rules of a single-key write (expiry.h).
TtlWrite TtlWriteOfWrite(Operation op, bool create, bool update) {
  if (op == Operation::kDelete) return TtlWrite::kDelete;
  if (op == Operation::kPurge) return TtlWrite::kPurge;
  if (create) return TtlWrite::kCreate;
  if (update) return TtlWrite::kUpdate;
  return TtlWrite::kPut;
}

}  // namespace

Result<uint64_t> LocalBucket::CommitWrite(Operation op, std::string_view key,
                                          std::string_view value, Precondition pre,
                                          uint64_t expected_revision,
                                          const WriteOptions& options) {
  if (Status s = ValidateKey(key); !s.ok()) return s;
  if (value.size() > config_.max_value_size) {
    return Status::InvalidArgument("value for " + Describe(key) + " is " +
                                   std::to_string(value.size()) + " bytes; the bucket's limit is " +
                                   std::to_string(config_.max_value_size) +
                                   " (BucketOptions::max_value_size)");
  }
  if (is_follower()) return ReadOnlyError();
  const TtlWrite ttl_write = TtlWriteOfWrite(op, pre == Precondition::kAbsentOrTombstone,
                                             pre == Precondition::kRevision);
  if (Status s = CheckWriteTtl(name_, config_.history, ttl_write, options.ttl); !s.ok()) return s;
  const WriteOp write{op, key, value, pre, expected_revision,
                      std::chrono::duration_cast<std::chrono::nanoseconds>(options.ttl).count()};
  return WithWriteLock<uint64_t>(options, {key}, [&] { return CommitOneLocked(write); });
}

template <typename T>
Result<T> LocalBucket::WithWriteLock(const WriteOptions& options,
                                     const std::vector<std::string_view>& keys,
                                     const std::function<Result<T>()>& commit) {
  if (!options.fence) {
    std::lock_guard<std::mutex> lock(write_mu_);
    return commit();
  }
  // A fenced write holds the locks bucket's write lock across the check and
  // its own commit, so no takeover can slip in between: the two act as one
  // atomic step. Both mutexes are taken together (std::scoped_lock avoids
  // deadlock): with locks in several buckets, two buckets may fence each
  // other's writes.
  const std::string& locks_bucket = options.fence->locks_bucket.empty()
                                        ? core_->options.locks_bucket
                                        : options.fence->locks_bucket;
  if (name_ == locks_bucket) {
    // The lock lives in this very bucket (data and locks share a key space,
    // e.g. under a "lock." prefix): one mutex covers check and commit.
    for (std::string_view key : keys) {
      if (key == options.fence->lock) {
        return Status::InvalidArgument("a fenced write cannot target its own lock's record '" +
                                       options.fence->lock +
                                       "'; locks change only through Acquire and Release");
      }
    }
    std::lock_guard<std::mutex> lock(write_mu_);
    if (Status s = CheckFenceLocked(*options.fence); !s.ok()) return s;
    return commit();
  }
  auto registry = registry_.lock();
  if (!registry) {
    return Status::Unavailable("the engine of bucket '" + name_ +
                               "' is closed; fenced writes need its locks bucket");
  }
  auto locks = registry->Open(locks_bucket, {});
  if (!locks.ok()) return locks.status();
  std::scoped_lock both((*locks)->write_mu_, write_mu_);
  if (Status s = (*locks)->CheckFenceLocked(*options.fence); !s.ok()) return s;
  return commit();
}

Result<TxnResult> LocalBucket::Commit(const Txn& txn, const WriteOptions& options) {
  if (Status s = CheckTxn(txn, name_, config_.history, config_.max_value_size, options.ttl);
      !s.ok()) {
    return s;
  }
  if (is_follower()) return ReadOnlyError();
  std::vector<KeyCompare> compares;
  for (const TxnCompare& c : txn.compares) {
    const KeyCompare::Kind kind = c.kind == TxnCompare::Kind::kAbsent    ? KeyCompare::Kind::kAbsent
                                  : c.kind == TxnCompare::Kind::kPresent ? KeyCompare::Kind::kPresent
                                                                         : KeyCompare::Kind::kRevision;
    compares.push_back({c.key, kind, c.revision});
  }
  const int64_t ttl_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(options.ttl).count();
  std::vector<WriteOp> writes;
  std::vector<std::string_view> keys;
  for (const TxnOp& o : txn.ops) {
    WriteOp w;
    w.op = OperationOf(o);
    w.key = o.key;
    if (o.kind == TxnOp::Kind::kCreate) {
      w.pre = Precondition::kAbsentOrTombstone;
    } else if (o.expected_revision) {
      w.pre = Precondition::kRevision;
      w.expected_revision = *o.expected_revision;
    }
    if (w.op == Operation::kPut) {
      w.value = o.value;
      w.ttl_ns = ttl_ns;
    }
    writes.push_back(w);
    keys.push_back(o.key);
  }
  auto revisions = WithWriteLock<std::vector<uint64_t>>(
      options, keys, [&] { return CommitLocked(compares, writes); });
  if (!revisions.ok()) return revisions.status();
  TxnResult out;
  out.revision = revisions->back();
  out.revisions = std::move(*revisions);
  return out;
}

Status LocalBucket::CheckFenceLocked(const Fence& fence) {
  if (Status s = ValidateKey(fence.lock); !s.ok()) {
    return Status::InvalidArgument("fence names a bad lock: " + std::string(s.message()));
  }
  rocksdb::PinnableSlice slice;
  rocksdb::Status rs = core_->db->Get(rocksdb::ReadOptions(), cf_, LatestKey(fence.lock), &slice);
  if (!rs.ok() && !rs.IsNotFound()) return FromRocks(rs, "reading lock '" + fence.lock + "'");
  Operation op = Operation::kDelete;
  uint64_t revision = 0;
  std::string value;
  if (rs.ok()) {
    if (Status s = DecodeValueInto(slice.ToStringView(), RecordName{name_, fence.lock}, &op,
                                   &revision, &value);
        !s.ok()) {
      return s;
    }
  }
  return CheckFenceRecord(fence, op == Operation::kPut, revision, value);
}

Status LocalBucket::ReadHeadLocked(std::string_view key, KeyHead* head) {
  // With history 1 a write needs only the revision and operation of the
  // record it replaces, which the cache usually holds.
  if (auto cached = write_cache_.find(key); cached != write_cache_.end()) {
    head->exists = true;
    head->revision = cached->second.revision;
    head->operation = cached->second.operation;
    head->created_ns = cached->second.created_ns;
    head->ttl_ns = cached->second.ttl_ns;
    return Status::OK();
  }
  rocksdb::PinnableSlice current;
  rocksdb::Status rs = core_->db->Get(rocksdb::ReadOptions(), cf_, LatestKey(key), &current);
  if (rs.IsNotFound()) return Status::OK();
  if (!rs.ok()) return FromRocks(rs, "reading " + Describe(key));
  auto decoded = DecodeRecord(current.ToStringView(), DecodeParts::kHeader, RecordName{name_, key});
  if (!decoded.ok()) return decoded.status();
  head->exists = true;
  head->revision = decoded->entry.revision;
  head->operation = decoded->entry.operation;
  head->created_ns = decoded->entry.created_ns;
  head->ttl_ns = decoded->entry.ttl_ns;
  head->older = std::move(decoded->older_revisions);
  if (config_.history > 1) head->raw.assign(current.data(), current.size());
  return Status::OK();
}

LocalBucket::KeyHead LocalBucket::StageLocked(rocksdb::WriteBatch* batch, const Entry& entry,
                                              KeyHead&& head, bool index_ttl) {
  // Decide which earlier revisions stay retained under the history setting.
  std::vector<uint64_t> older;
  std::vector<uint64_t> dropped_history;  // have an 'h' record to delete
  std::vector<uint64_t> dropped_log;      // have a log record to delete
  if (head.exists) {
    older = std::move(head.older);
    if (entry.operation == Operation::kPurge) {
      dropped_history = older;
      dropped_log = older;
      dropped_log.push_back(head.revision);
      older.clear();
    } else {
      older.push_back(head.revision);
      size_t keep = static_cast<size_t>(config_.history - 1);
      size_t drop = older.size() > keep ? older.size() - keep : 0;
      for (size_t i = 0; i < drop; ++i) {
        if (older[i] != head.revision) dropped_history.push_back(older[i]);
        dropped_log.push_back(older[i]);
      }
      older.erase(older.begin(), older.begin() + static_cast<std::ptrdiff_t>(drop));
      if (!older.empty() && older.back() == head.revision) {
        // The replaced record becomes history. Its bytes carry its own older
        // list, which readers of history records ignore.
        batch->Put(cf_, HistoryKey(entry.key, head.revision), head.raw);
      }
    }
  }
  for (uint64_t r : dropped_history) batch->Delete(cf_, HistoryKey(entry.key, r));
  for (uint64_t r : dropped_log) batch->Delete(log_cf_, RevisionKey(r));

  KeyHead next;
  next.exists = true;
  next.revision = entry.revision;
  next.operation = entry.operation;
  next.created_ns = entry.created_ns;
  next.ttl_ns = entry.ttl_ns;
  std::string record = EncodeRecord(entry, older);
  batch->Put(cf_, LatestKey(entry.key), record);
  batch->Put(log_cf_, RevisionKey(entry.revision), entry.key);
  if (index_ttl && entry.ttl_ns > 0) {
    std::string rev;
    AppendBE64(&rev, entry.revision);
    batch->Put(cf_, ExpiryKey(entry.created_ns + entry.ttl_ns, entry.key), rev);
  }
  next.older = std::move(older);
  if (config_.history > 1) next.raw = std::move(record);
  return next;
}

void LocalBucket::RememberLocked(const Entry& entry) {
  if (config_.history != 1) return;
  const KeyState state{entry.revision, entry.operation, entry.created_ns, entry.ttl_ns};
  if (auto it = write_cache_.find(entry.key); it != write_cache_.end()) {
    it->second = state;
    return;
  }
  // A full cache is dropped whole: cheaper than tracking recency, and a miss
  // only costs the read the cache saves.
  if (write_cache_.size() >= kWriteCacheEntries) write_cache_.clear();
  write_cache_.emplace(entry.key, state);
}

Status LocalBucket::Check(const KeyCompare& compare, const KeyHead& head) const {
  // An expired entry is no entry: reads say NotFound, and the checks agree
  // with them until the reaper writes its tombstone.
  const bool live = head.exists && !ExpiredNow(head.created_ns, head.ttl_ns);
  const uint64_t current = live ? head.revision : 0;
  const bool present = live && head.operation == Operation::kPut;
  switch (compare.kind) {
    case KeyCompare::Kind::kAbsentOrTombstone:
      // After a tombstone this is a compare-and-swap on the tombstone's
      // revision: the check and the write happen under write_mu_.
      if (!present) return Status::OK();
      return Status::Exists(Describe(compare.key) + " exists at revision " +
                                std::to_string(current) +
                                "; use Update with that revision to change it",
                            current);
    case KeyCompare::Kind::kAbsent:
      if (!present) return Status::OK();
      return Status::Conflict(Describe(compare.key) + " is present at revision " +
                                  std::to_string(current) + "; re-read the key and retry",
                              current);
    case KeyCompare::Kind::kPresent:
      if (present) return Status::OK();
      return Status::Conflict(Describe(compare.key) + " is not present (" +
                                  (current == 0 ? std::string("no entry")
                                                : "a tombstone at revision " +
                                                      std::to_string(current)) +
                                  "); re-read the key and retry",
                              current);
    case KeyCompare::Kind::kRevision:
      if (current == compare.revision) return Status::OK();
      return Status::Conflict("wrong last revision for " + Describe(compare.key) +
                                  ": expected " + std::to_string(compare.revision) +
                                  ", current is " + std::to_string(current) +
                                  "; re-read the key and retry",
                              current);
  }
  return Status::OK();
}

Status LocalBucket::HeadLocked(Staging* staging, std::string_view key, KeyHead* head) {
  if (auto it = staging->heads.find(std::string(key)); it != staging->heads.end()) {
    *head = std::move(it->second);
    return Status::OK();
  }
  return ReadHeadLocked(key, head);
}

Status LocalBucket::StageEntryLocked(Staging* staging, Entry entry, bool index_ttl) {
  KeyHead head;
  if (Status s = HeadLocked(staging, entry.key, &head); !s.ok()) return s;
  if (index_ttl && entry.ttl_ns > 0 &&
      (staging->reap_at == 0 || entry.created_ns + entry.ttl_ns < staging->reap_at)) {
    staging->reap_at = entry.created_ns + entry.ttl_ns;
  }
  staging->heads[entry.key] = StageLocked(&staging->batch, entry, std::move(head), index_ttl);
  staging->entries.push_back(std::move(entry));
  return Status::OK();
}

Status LocalBucket::FinishLocked(Staging* staging, uint64_t last, const std::string& what) {
  std::string counter;
  AppendBE64(&counter, last);
  staging->batch.Put(core_->meta, CounterKey(name_), counter);
  rocksdb::Status rs = core_->Write(&staging->batch);
  if (!rs.ok()) {
    for (const auto& [key, head] : staging->heads) write_cache_.erase(key);
    return FromRocks(rs, what);
  }
  last_revision_.store(last, std::memory_order_release);
  for (const Entry& e : staging->entries) RememberLocked(e);
  if (has_listeners_.load(std::memory_order_relaxed)) {
    for (const Entry& e : staging->entries) {
      for (const auto& [id, listener] : listeners_) listener(e);
    }
  }
  if (staging->reap_at != 0) {
    StartReaper();
    std::lock_guard<std::mutex> lock(reaper_mu_);
    if (reaper_wake_ns_ == 0 || staging->reap_at < reaper_wake_ns_) {
      reaper_wake_ns_ = staging->reap_at;
    }
    reaper_cv_.notify_all();
  }
  return Status::OK();
}

Result<std::vector<uint64_t>> LocalBucket::CommitLocked(const std::vector<KeyCompare>& compares,
                                                        const std::vector<WriteOp>& writes,
                                                        const std::string* expired_index) {
  Staging staging;
  // Every check runs against the state before the commit.
  std::vector<KeyHead> heads(writes.size());
  for (const KeyCompare& compare : compares) {
    KeyHead head;
    if (Status s = ReadHeadLocked(compare.key, &head); !s.ok()) return s;
    if (Status s = Check(compare, head); !s.ok()) return s;
  }
  for (size_t i = 0; i < writes.size(); ++i) {
    const WriteOp& w = writes[i];
    if (Status s = ReadHeadLocked(w.key, &heads[i]); !s.ok()) return s;
    switch (w.pre) {
      case Precondition::kNone: break;
      case Precondition::kAbsentOrTombstone:
        if (Status s = Check({w.key, KeyCompare::Kind::kAbsentOrTombstone, 0}, heads[i]); !s.ok()) {
          return s;
        }
        break;
      case Precondition::kRevision:
        if (Status s = Check({w.key, KeyCompare::Kind::kRevision, w.expected_revision}, heads[i]);
            !s.ok()) {
          return s;
        }
        break;
    }
  }
  const uint64_t first = last_revision_.load(std::memory_order_relaxed) + 1;
  const int64_t now = NowNs();
  std::vector<uint64_t> revisions;
  revisions.reserve(writes.size());
  for (size_t i = 0; i < writes.size(); ++i) {
    const WriteOp& w = writes[i];
    Entry entry;
    entry.key.assign(w.key);
    if (w.op == Operation::kPut) entry.value.assign(w.value);
    entry.revision = first + i;
    entry.created_ns = now;
    entry.operation = w.op;
    entry.ttl_ns = w.ttl_ns;
    // The head read for the checks is the one to stage on.
    staging.heads[entry.key] = std::move(heads[i]);
    if (Status s = StageEntryLocked(&staging, std::move(entry), /*index_ttl=*/true); !s.ok()) {
      return s;
    }
    revisions.push_back(first + i);
  }
  if (expired_index != nullptr) staging.batch.Delete(cf_, *expired_index);
  const uint64_t last = revisions.empty() ? first - 1 : revisions.back();
  if (Status s = FinishLocked(&staging, last,
                              writes.size() == 1 ? "writing " + Describe(writes[0].key)
                                                 : "committing " + std::to_string(writes.size()) +
                                                       " writes to bucket '" + name_ + "'");
      !s.ok()) {
    return s;
  }
  return revisions;
}

Result<uint64_t> LocalBucket::CommitOneLocked(const WriteOp& write,
                                              const std::string* expired_index) {
  auto revisions = CommitLocked({}, {write}, expired_index);
  if (!revisions.ok()) return revisions.status();
  return revisions->front();
}

Status LocalBucket::ApplyCommitted(const std::vector<Entry>& entries, uint64_t applied_revision,
                                   const std::vector<SkippedMessage>& skipped,
                                   std::vector<SkippedMessage>* newly_skipped) {
  if (is_follower()) return ReadOnlyError();
  std::lock_guard<std::mutex> lock(write_mu_);
  const uint64_t last = last_revision_.load(std::memory_order_relaxed);
  Staging staging;
  // What can never be applied. A message whose revision was unreadable (0)
  // cannot be told from a redelivery, so it always counts.
  std::vector<SkippedMessage> skips;
  for (const SkippedMessage& m : skipped) {
    if (m.revision == 0 || m.revision > last) skips.push_back(m);
  }
  uint64_t prev = last;
  for (const Entry& e : entries) {
    if (e.revision <= prev) {
      if (e.revision > last) {
        return Status::InvalidArgument("entries to apply to bucket '" + name_ +
                                       "' are out of order at revision " +
                                       std::to_string(e.revision));
      }
      continue;  // already applied: a redelivery
    }
    prev = e.revision;
    // Another client's key need not follow revkv's write rules; only a key
    // that no bucket can hold (one the store's layout cannot take) is left
    // out.
    if (Status s = ValidateReadKey(e.key); !s.ok()) {
      skips.push_back({e.revision, "its key cannot be stored: " + std::string(s.message())});
      continue;
    }
    if (Status s = StageEntryLocked(&staging, e, /*index_ttl=*/false); !s.ok()) return s;
  }
  uint64_t new_last = std::max(prev, applied_revision);
  for (const SkippedMessage& m : skips) new_last = std::max(new_last, m.revision);
  if (new_last == last && skips.empty()) return Status::OK();
  std::optional<SkipSummary> counted;
  if (!skips.empty()) {
    std::stable_sort(
        skips.begin(), skips.end(),
        [](const SkippedMessage& a, const SkippedMessage& b) { return a.revision < b.revision; });
    if (!skips_) {
      auto stored = Skipped();
      if (!stored.ok()) return stored.status();
      skips_ = std::move(*stored);
    }
    counted = *skips_;
    if (counted->count == 0) {
      counted->first_revision = skips.front().revision;
      counted->first_reason = skips.front().reason;
    }
    counted->count += skips.size();
    staging.batch.Put(core_->meta, SkipKey(name_), EncodeSkips(*counted));
  }
  if (Status s = FinishLocked(&staging, new_last,
                              "applying revisions up to " + std::to_string(new_last) +
                                  " to bucket '" + name_ + "'");
      !s.ok()) {
    return s;
  }
  if (counted) skips_ = std::move(counted);
  if (newly_skipped != nullptr) {
    newly_skipped->insert(newly_skipped->end(), skips.begin(), skips.end());
  }
  return Status::OK();
}

Result<LocalBucket::SkipSummary> LocalBucket::Skipped() {
  std::string raw;
  rocksdb::Status rs = core_->db->Get(rocksdb::ReadOptions(), core_->meta, SkipKey(name_), &raw);
  SkipSummary out;
  if (rs.IsNotFound()) return out;
  if (!rs.ok()) return FromRocks(rs, "reading the skipped messages of bucket '" + name_ + "'");
  if (raw.size() < 16) {
    return Status::Corruption("the count of skipped messages of bucket '" + name_ + "' is " +
                              std::to_string(raw.size()) +
                              " bytes, fewer than 16; restore the store from a backup or replica");
  }
  out.count = DecodeBE64(raw);
  out.first_revision = DecodeBE64(std::string_view(raw).substr(8));
  out.first_reason = raw.substr(16);
  return out;
}

void LocalBucket::ReportSkips(BucketStatus* out) {
  auto skips = Skipped();
  if (!skips.ok()) {
    if (!out->error.empty()) out->error += "; ";
    out->error += skips.status().ToString();
    return;
  }
  out->skipped = skips->count;
  out->first_skipped = skips->first_revision;
  out->skipped_reason = std::move(skips->first_reason);
}

Result<int64_t> LocalBucket::ReplicaSource() {
  std::string raw;
  rocksdb::Status rs = core_->db->Get(rocksdb::ReadOptions(), core_->meta, SourceKey(name_), &raw);
  if (rs.IsNotFound()) return int64_t{0};
  if (!rs.ok()) return FromRocks(rs, "reading the replica source of bucket '" + name_ + "'");
  return static_cast<int64_t>(DecodeBE64(raw));
}

Status LocalBucket::ResetReplica(int64_t source) {
  if (is_follower()) return ReadOnlyError();
  std::lock_guard<std::mutex> lock(write_mu_);
  Staging staging;
  // Every record key starts with 'h', 'k' or 'x', and every log key is 8
  // bytes.
  staging.batch.DeleteRange(cf_, std::string(1, '\0'), std::string(1, '\xff'));
  staging.batch.DeleteRange(log_cf_, std::string(8, '\0'), std::string(9, '\xff'));
  std::string src;
  AppendBE64(&src, static_cast<uint64_t>(source));
  staging.batch.Put(core_->meta, SourceKey(name_), src);
  staging.batch.Delete(core_->meta, SkipKey(name_));
  write_cache_.clear();
  if (Status s = FinishLocked(&staging, 0, "resetting the replica of bucket '" + name_ + "'");
      !s.ok()) {
    return s;
  }
  skips_ = SkipSummary{};
  return Status::OK();
}

uint64_t LocalBucket::AddCommitListener(CommitListener listener) {
  std::lock_guard<std::mutex> lock(write_mu_);
  uint64_t id = next_listener_id_++;
  listeners_.emplace(id, std::move(listener));
  has_listeners_.store(true, std::memory_order_relaxed);
  return id;
}

void LocalBucket::RemoveCommitListener(uint64_t id) {
  std::lock_guard<std::mutex> lock(write_mu_);
  listeners_.erase(id);
  has_listeners_.store(!listeners_.empty(), std::memory_order_relaxed);
}

void LocalBucket::RunWithWritesHeld(const std::function<void(uint64_t last_revision)>& fn) {
  std::lock_guard<std::mutex> lock(write_mu_);
  fn(last_revision_.load(std::memory_order_acquire));
}

Status LocalBucket::ScanLatest(std::string_view filter, const rocksdb::Snapshot* snapshot,
                               DecodeParts parts,
                               const std::function<void(std::string_view, Record&&)>& fn) {
  if (Status s = ValidateReadFilter(filter); !s.ok()) return s;
  std::string prefix = LatestKey(LiteralPrefix(filter));
  std::string upper(1, static_cast<char>(kLatestPrefix + 1));
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  ro.snapshot = snapshot;
  std::unique_ptr<rocksdb::Iterator> it(core_->db->NewIterator(ro, cf_));
  for (it->Seek(prefix); it->Valid(); it->Next()) {
    std::string_view raw = it->key().ToStringView();
    if (raw.substr(0, prefix.size()) != prefix) break;
    std::string_view key = raw.substr(1);
    if (!FilterMatches(filter, key)) continue;
    auto rec = DecodeRecord(it->value().ToStringView(), parts, RecordName{name_, key});
    if (!rec.ok()) return rec.status();
    fn(key, std::move(*rec));
  }
  if (!it->status().ok()) return FromRocks(it->status(), "listing keys of bucket '" + name_ + "'");
  return Status::OK();
}

Result<std::vector<std::string>> LocalBucket::Keys(std::string_view filter) {
  std::vector<std::string> keys;
  Status s = ScanLatest(filter, nullptr, DecodeParts::kHeader, [&](std::string_view key, Record&& rec) {
    if (rec.entry.operation == Operation::kPut &&
        !ExpiredNow(rec.entry.created_ns, rec.entry.ttl_ns)) {
      keys.emplace_back(key);
    }
  });
  if (!s.ok()) return s;
  return keys;
}

Result<std::vector<Entry>> LocalBucket::LatestEntries(std::string_view filter,
                                                      const rocksdb::Snapshot* snapshot) {
  std::vector<Entry> entries;
  Status s = ScanLatest(filter, snapshot, DecodeParts::kAll, [&](std::string_view key, Record&& rec) {
    if (ExpiredNow(rec.entry.created_ns, rec.entry.ttl_ns)) return;
    rec.entry.key.assign(key);
    entries.push_back(std::move(rec.entry));
  });
  if (!s.ok()) return s;
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.revision < b.revision; });
  return entries;
}

Result<std::vector<Entry>> LocalBucket::History(std::string_view key) {
  if (Status s = ValidateReadKey(key); !s.ok()) return s;
  // A snapshot keeps the latest record and its history consistent with each
  // other while writers go on.
  rocksdb::ManagedSnapshot snap(core_->db);
  rocksdb::ReadOptions ro;
  ro.snapshot = snap.snapshot();

  rocksdb::PinnableSlice slice;
  rocksdb::Status rs = core_->db->Get(ro, cf_, LatestKey(key), &slice);
  if (rs.IsNotFound()) return Status::NotFound(Describe(key) + " has no history");
  if (!rs.ok()) return FromRocks(rs, "reading " + Describe(key));
  auto latest = DecodeRecord(slice.ToStringView(), DecodeParts::kAll, RecordName{name_, key});
  if (!latest.ok()) return latest.status();

  std::vector<Entry> out;
  out.reserve(latest->older_revisions.size() + 1);
  for (uint64_t r : latest->older_revisions) {
    rocksdb::PinnableSlice h;
    rs = core_->db->Get(ro, cf_, HistoryKey(key, r), &h);
    const RecordName what{name_, key, r};
    if (rs.IsNotFound()) {
      return Status::Corruption(what.ToString() +
                                " is missing; restore the store from a backup or replica");
    }
    if (!rs.ok()) return FromRocks(rs, "reading " + what.ToString());
    auto rec = DecodeRecord(h.ToStringView(), DecodeParts::kAll, what);
    if (!rec.ok()) return rec.status();
    if (ExpiredNow(rec->entry.created_ns, rec->entry.ttl_ns)) continue;
    out.push_back(std::move(rec->entry));
  }
  if (!ExpiredNow(latest->entry.created_ns, latest->entry.ttl_ns)) {
    out.push_back(std::move(latest->entry));
  }
  if (out.empty()) return Status::NotFound(Describe(key) + " has no history: it expired");
  return out;
}

Result<std::vector<Entry>> LocalBucket::ChangesSince(uint64_t after_revision, size_t limit) {
  if (limit == 0) return Status::InvalidArgument("ChangesSince needs a limit of at least 1");
  rocksdb::ManagedSnapshot snap(core_->db);
  rocksdb::ReadOptions ro;
  // RocksDB refuses snapshots on a secondary instance; a follower's view only
  // moves on CatchUp(), so it is already stable.
  if (core_->follower_dir.empty()) ro.snapshot = snap.snapshot();
  // Stop at the last revision committed by now. Without a bound, an
  // iterator that reached the end of the log would go on skipping the
  // entries writers append after its snapshot, and under a steady write
  // load it could chase them indefinitely (a watcher's catch-up did).
  const std::string upper = RevisionKey(LastRevision() + 1);
  rocksdb::Slice upper_slice(upper);
  ro.iterate_upper_bound = &upper_slice;

  std::vector<Entry> out;
  std::unique_ptr<rocksdb::Iterator> it(core_->db->NewIterator(ro, log_cf_));
  for (it->Seek(RevisionKey(after_revision + 1)); it->Valid() && out.size() < limit; it->Next()) {
    uint64_t r = DecodeBE64(it->key().ToStringView());
    std::string key = it->value().ToString();
    const RecordName what{name_, key, r};
    rocksdb::PinnableSlice slice;
    rocksdb::Status rs = core_->db->Get(ro, cf_, LatestKey(key), &slice);
    if (!rs.ok() && !rs.IsNotFound()) return FromRocks(rs, "reading " + what.ToString());
    Result<Record> rec = Status::NotFound(what.ToString());
    if (rs.ok()) rec = DecodeRecord(slice.ToStringView(), DecodeParts::kAll, what);
    if (rec.ok() && rec->entry.revision != r) {
      slice.Reset();
      rs = core_->db->Get(ro, cf_, HistoryKey(key, r), &slice);
      if (!rs.ok() && !rs.IsNotFound()) return FromRocks(rs, "reading " + what.ToString());
      rec = rs.ok() ? DecodeRecord(slice.ToStringView(), DecodeParts::kAll, what)
                    : Result<Record>(Status::NotFound(what.ToString()));
    }
    if (!rec.ok()) {
      if (rec.status().IsNotFound()) {
        return Status::Corruption(what.ToString() + " is in the revision log but its record is missing; "
                                  "restore the store from a backup or replica");
      }
      return rec.status();
    }
    if (ExpiredNow(rec->entry.created_ns, rec->entry.ttl_ns)) continue;  // as if removed
    rec->entry.key = std::move(key);
    out.push_back(std::move(rec->entry));
  }
  if (!it->status().ok()) {
    return FromRocks(it->status(), "reading the revision log of bucket '" + name_ + "'");
  }
  return out;
}

Result<uint64_t> LocalBucket::RevisionAt(const rocksdb::Snapshot* snapshot) {
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  std::string counter;
  rocksdb::Status rs = core_->db->Get(ro, core_->meta, CounterKey(name_), &counter);
  if (rs.IsNotFound()) return uint64_t{0};
  if (!rs.ok()) return FromRocks(rs, "reading the revision of bucket '" + name_ + "'");
  return DecodeBE64(counter);
}

namespace {

// A RocksDB snapshot, released when it goes out of scope.
class HeldSnapshot {
 public:
  explicit HeldSnapshot(rocksdb::DB* db) : db_(db), snapshot_(db->GetSnapshot()) {}
  ~HeldSnapshot() { db_->ReleaseSnapshot(snapshot_); }
  HeldSnapshot(const HeldSnapshot&) = delete;
  HeldSnapshot& operator=(const HeldSnapshot&) = delete;
  const rocksdb::Snapshot* get() const { return snapshot_; }

 private:
  rocksdb::DB* const db_;
  const rocksdb::Snapshot* const snapshot_;
};

}  // namespace

Result<EntriesSnapshot> LocalBucket::Entries(std::string_view filter) {
  HeldSnapshot snapshot(core_->db);
  EntriesSnapshot out;
  auto revision = RevisionAt(snapshot.get());
  if (!revision.ok()) return revision.status();
  out.revision = *revision;
  Status s = ScanLatest(filter, snapshot.get(), DecodeParts::kAll,
                        [&](std::string_view key, Record&& rec) {
                          if (rec.entry.operation != Operation::kPut ||
                              ExpiredNow(rec.entry.created_ns, rec.entry.ttl_ns)) {
                            return;
                          }
                          rec.entry.key.assign(key);
                          out.entries.push_back(std::move(rec.entry));
                        });
  if (!s.ok()) return s;
  return out;  // ScanLatest walks the keys in order
}

Result<KeysSnapshot> LocalBucket::GetMany(const std::vector<std::string>& keys) {
  for (const std::string& key : keys) {
    if (Status s = ValidateReadKey(key); !s.ok()) return s;
  }
  HeldSnapshot snapshot(core_->db);
  KeysSnapshot out;
  auto revision = RevisionAt(snapshot.get());
  if (!revision.ok()) return revision.status();
  out.revision = *revision;
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot.get();
  for (const std::string& key : keys) {
    KeyRead read;
    read.key = key;
    rocksdb::PinnableSlice raw;
    rocksdb::Status rs = core_->db->Get(ro, cf_, LatestKey(key), &raw);
    if (!rs.ok() && !rs.IsNotFound()) return FromRocks(rs, "reading " + Describe(key));
    if (rs.ok()) {
      auto rec = DecodeRecord(raw.ToStringView(), DecodeParts::kAll, RecordName{name_, key});
      if (!rec.ok()) return rec.status();
      if (rec->entry.key != key) {
        return Status::Corruption(RecordName{name_, key}.ToString() + " names key '" +
                                  rec->entry.key +
                                  "'; restore the store from a backup or replica");
      }
      // An expired entry is no entry (revision 0), as Get says.
      if (!ExpiredNow(rec->entry.created_ns, rec->entry.ttl_ns)) {
        read.revision = rec->entry.revision;
        if (rec->entry.operation == Operation::kPut) {
          rec->entry.key = key;
          read.entry = std::move(rec->entry);
        }
      }
    }
    out.keys.push_back(std::move(read));
  }
  return out;
}

uint64_t LocalBucket::LastRevision() {
  if (core_->follower_dir.empty()) return last_revision_.load(std::memory_order_acquire);
  // A follower sees the holder's commits only through the store.
  std::string counter;
  rocksdb::Status rs = core_->db->Get(rocksdb::ReadOptions(), core_->meta, CounterKey(name_), &counter);
  return rs.ok() ? DecodeBE64(counter) : 0;
}

Result<UpdateOutcome> LocalBucket::UpdateWithRetry(std::string_view key, const Mutator& mutate,
                                                   const RetryPolicy& policy,
                                                   const WriteOptions& options) {
  return RunUpdateWithRetry(*this, update_gate_, key, mutate, policy, options);
}

Result<ManyUpdateOutcome> LocalBucket::UpdateManyWithRetry(const std::vector<std::string>& keys,
                                                           const ManyMutator& mutate,
                                                           const RetryPolicy& policy,
                                                           const WriteOptions& options) {
  return RunUpdateManyWithRetry(*this, update_gate_, keys, mutate, policy, options,
                                /*check_kept=*/true);
}

Status LocalBucket::Sync(std::chrono::milliseconds) { return Status::OK(); }

BucketStatus LocalBucket::GetStatus() {
  BucketStatus out;
  out.applied = LastRevision();
  out.stream_last = out.applied;
  out.lag = 0;
  out.lag_time = std::chrono::nanoseconds(0);
  ReportSkips(&out);
  return out;
}

void LocalBucket::StartReaper() {
  std::lock_guard<std::mutex> lock(reaper_mu_);
  if (reaper_.joinable() || reaper_stop_ || is_follower()) return;
  reaper_ = std::thread(&LocalBucket::RunReaper, this);
}

void LocalBucket::RunReaper() {
  // Waits are capped, so that a jump of the wall clock (which deadlines are
  // in) delays an expiry tombstone by at most this much. Reads never wait
  // for the reaper: they treat an expired entry as gone on their own.
  constexpr auto kMaxWait = std::chrono::seconds(1);
  std::unique_lock<std::mutex> lock(reaper_mu_);
  while (!reaper_stop_) {
    reaper_wake_ns_ = 0;
    lock.unlock();
    const int64_t next = ReapDue(NowNs());
    lock.lock();
    if (reaper_stop_) break;
    if (reaper_wake_ns_ != 0 && (next == 0 || reaper_wake_ns_ < next)) continue;
    auto wait = std::chrono::nanoseconds(next == 0 ? kMaxWait.count() * 1000000000LL
                                                   : std::max<int64_t>(0, next - NowNs()));
    wait = std::min<std::chrono::nanoseconds>(wait, kMaxWait);
    reaper_cv_.wait_for(lock, wait, [&] {
      return reaper_stop_ || (reaper_wake_ns_ != 0 && (next == 0 || reaper_wake_ns_ < next));
    });
  }
}

int64_t LocalBucket::ReapDue(int64_t now_ns) {
  constexpr int kBatch = 256;  // then look at the clock again
  const std::string upper(1, static_cast<char>(kExpiryPrefix + 1));
  for (int handled = 0; handled < kBatch; ++handled) {
    std::string index, key;
    uint64_t revision = 0;
    {
      rocksdb::Slice upper_slice(upper);
      rocksdb::ReadOptions ro;
      ro.iterate_upper_bound = &upper_slice;
      std::unique_ptr<rocksdb::Iterator> it(core_->db->NewIterator(ro, cf_));
      it->Seek(std::string(1, kExpiryPrefix));
      if (!it->Valid()) return 0;
      std::string_view raw = it->key().ToStringView();
      if (raw.size() < 9) return 0;
      const auto due = static_cast<int64_t>(DecodeBE64(raw.substr(1, 8)));
      if (due > now_ns) return due;
      index.assign(raw);
      key.assign(raw.substr(9));
      revision = DecodeBE64(it->value().ToStringView());
    }
    std::lock_guard<std::mutex> lock(write_mu_);
    KeyHead head;
    Status s = ReadHeadLocked(key, &head);
    const bool current = s.ok() && head.exists && head.revision == revision;
    if (current && head.operation == Operation::kPut) {
      // The entry expired: a Purge tombstone with its own revision, as the
      // server's limit marker, so that watchers and ChangesSince see it.
      s = CommitOneLocked({Operation::kPurge, key, {}, Precondition::kNone, 0, 0}, &index)
              .status();
    } else {
      rocksdb::WriteBatch batch;
      batch.Delete(cf_, index);
      if (current && head.operation == Operation::kPurge) {
        // A Purge tombstone with a TTL removes itself and leaves nothing
        // (Purge already dropped the key's older revisions).
        batch.Delete(cf_, LatestKey(key));
        batch.Delete(log_cf_, RevisionKey(revision));
      }
      s = FromRocks(core_->Write(&batch), "expiring " + Describe(key));
      write_cache_.erase(key);
    }
    if (!s.ok()) {
      // A full disk, say: try again later; reads already treat it as gone.
      std::fprintf(stderr, "revkv: %s; retrying in 1 s\n", s.ToString().c_str());
      return now_ns + 1000000000LL;
    }
  }
  return now_ns;  // more may be due
}

Result<std::unique_ptr<Watcher>> LocalBucket::Watch(std::string_view filter,
                                                    const WatchOptions& options) {
  return LocalWatcher::Start(shared_from_this(), filter, options, nullptr);
}

Result<std::unique_ptr<Watcher>> LocalBucket::Watch(std::string_view filter,
                                                    const WatchOptions& options,
                                                    WatchCallback callback) {
  if (!callback) return Status::InvalidArgument("Watch needs a callback; use the other overload");
  return LocalWatcher::Start(shared_from_this(), filter, options, std::move(callback));
}

}  // namespace revkv::engine
