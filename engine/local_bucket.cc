#include "engine/local_bucket.h"

#include <chrono>
#include <string>
#include <vector>

#include "engine/local_watcher.h"
#include "engine/txn_rules.h"
#include "engine/update_with_retry.h"
#include "revkv/validation.h"

namespace revkv::engine {

LocalBucket::LocalBucket(std::shared_ptr<StoreCore> core, std::shared_ptr<FenceCheck> fence,
                         std::string name, rocksdb::ColumnFamilyHandle* cf,
                         rocksdb::ColumnFamilyHandle* log_cf, BucketConfigValues config,
                         uint64_t last_revision)
    : store_(std::move(core), std::move(name), cf, log_cf, config),
      commits_(&store_, last_revision),
      fence_(std::move(fence)) {
  // A local bucket with TTL entries left from before resumes expiring them.
  commits_.ResumeReaper();
  // A replica's own writes that were waiting for their delivery still do.
  commits_.ResumeProvisional();
}

Status LocalBucket::ReadOnlyError() const {
  return Status::InvalidArgument("bucket '" + name() +
                                 "' was opened by a read-only follower engine; write through the "
                                 "engine that holds the store");
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
  const StatOp stat = op == Operation::kDelete                 ? StatOp::kDelete
                      : op == Operation::kPurge                ? StatOp::kPurge
                      : pre == Precondition::kAbsentOrTombstone ? StatOp::kCreate
                      : pre == Precondition::kRevision          ? StatOp::kUpdate
                                                                : StatOp::kPut;
  return store_.stats().Time(stat, [&] {
    return CommitWriteUntimed(op, key, value, pre, expected_revision, options);
  });
}

Result<uint64_t> LocalBucket::CommitWriteUntimed(Operation op, std::string_view key,
                                                 std::string_view value, Precondition pre,
                                                 uint64_t expected_revision,
                                                 const WriteOptions& options) {
  if (Status s = ValidateKey(key); !s.ok()) return s;
  const BucketConfigValues& config = store_.config();
  if (Status s = CheckValueSize(store_.Describe(key), value.size(), config.max_value_size);
      !s.ok()) {
    return s;
  }
  if (Status s = CheckIdempotencyKey(
          options, op == Operation::kPut && pre == Precondition::kNone && !options.fence);
      !s.ok()) {
    return s;
  }
  if (is_follower()) return ReadOnlyError();
  const TtlWrite ttl_write = TtlWriteOfWrite(op, pre == Precondition::kAbsentOrTombstone,
                                             pre == Precondition::kRevision);
  if (Status s = CheckWriteTtl(name(), config.history, ttl_write, options.ttl); !s.ok()) return s;
  const WriteOp write{op, key, value, pre, expected_revision,
                      std::chrono::duration_cast<std::chrono::nanoseconds>(options.ttl).count()};
  auto revisions = CommitWith(options, {}, {write});
  if (!revisions.ok()) return revisions.status();
  return revisions->front();
}

Result<std::vector<uint64_t>> LocalBucket::CommitWith(const WriteOptions& options,
                                                      const std::vector<KeyCompare>& compares,
                                                      const std::vector<WriteOp>& writes) {
  if (!options.fence) {
    std::lock_guard<std::mutex> lock(commits_.mutex());
    return commits_.CommitLocked(compares, writes);
  }
  std::vector<std::string_view> keys;
  keys.reserve(writes.size());
  for (const WriteOp& w : writes) keys.push_back(w.key);
  Result<std::vector<uint64_t>> out = std::vector<uint64_t>();  // set by the commit
  Status s = fence_->RunFenced(*options.fence, name(), &commits_, keys, [&] {
    out = commits_.CommitLocked(compares, writes);
    return out.status();
  });
  if (!s.ok()) return s;
  return out;
}

Result<TxnResult> LocalBucket::Commit(const Txn& txn, const WriteOptions& options) {
  return store_.stats().Time(StatOp::kCommit, [&] { return CommitUntimed(txn, options); });
}

Result<TxnResult> LocalBucket::CommitUntimed(const Txn& txn, const WriteOptions& options) {
  if (Status s = CheckTxn(txn, name(), history(), max_value_size(), options.ttl);
      !s.ok()) {
    return s;
  }
  if (Status s = CheckIdempotencyKey(options, false); !s.ok()) return s;
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
  }
  auto revisions = CommitWith(options, compares, writes);
  if (!revisions.ok()) return revisions.status();
  TxnResult out;
  out.revision = revisions->back();
  out.revisions = std::move(*revisions);
  return out;
}

Result<std::vector<Entry>> LocalBucket::ChangesSince(uint64_t after_revision, size_t limit) {
  // Stop at the last revision committed by now. Without a bound, an
  // iterator that reached the end of the log would go on skipping the
  // entries writers append after its snapshot, and under a steady write
  // load it could chase them indefinitely (a watcher's catch-up did).
  return store_.ChangesSince(after_revision, limit, LastRevision());
}

uint64_t LocalBucket::LastRevision() {
  // A follower sees the holder's commits only through the store.
  return is_follower() ? store_.StoredRevision() : commits_.last_revision();
}

Result<UpdateOutcome> LocalBucket::UpdateWithRetry(std::string_view key, const Mutator& mutate,
                                                   const RetryPolicy& policy,
                                                   const WriteOptions& options) {
  auto outcome = store_.stats().Time(StatOp::kUpdateWithRetry, [&] {
    return RunUpdateWithRetry(*this, update_gate_, key, mutate, policy, options);
  });
  if (outcome.ok()) store_.stats().AddRetries(static_cast<uint64_t>(outcome->attempts - 1));
  return outcome;
}

Result<ManyUpdateOutcome> LocalBucket::UpdateManyWithRetry(const std::vector<std::string>& keys,
                                                           const ManyMutator& mutate,
                                                           const RetryPolicy& policy,
                                                           const WriteOptions& options) {
  auto outcome = store_.stats().Time(StatOp::kUpdateManyWithRetry, [&] {
    return RunUpdateManyWithRetry(*this, update_gate_, keys, mutate, policy, options,
                                  /*check_kept=*/true);
  });
  if (outcome.ok()) store_.stats().AddRetries(static_cast<uint64_t>(outcome->attempts - 1));
  return outcome;
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

Status LocalBucket::ApplyCommitted(const std::vector<Entry>& entries, uint64_t applied_revision,
                                   const std::vector<SkippedMessage>& skipped,
                                   std::vector<SkippedMessage>* newly_skipped) {
  if (is_follower()) return ReadOnlyError();
  return commits_.Apply(entries, applied_revision, skipped, newly_skipped);
}

Status LocalBucket::ApplyOwnWrites(const std::vector<Entry>& entries) {
  if (is_follower()) return ReadOnlyError();
  return commits_.ApplyOwn(entries);
}

Status LocalBucket::CommitSnapshotFill(std::unique_ptr<PreparedFill> page,
                                       uint64_t applied_revision) {
  if (is_follower()) return ReadOnlyError();
  return commits_.CommitFill(std::move(page), applied_revision);
}

Status LocalBucket::ResetReplica(int64_t source) {
  if (is_follower()) return ReadOnlyError();
  return commits_.Reset(source);
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
