// LocalBucket: the Bucket of the local store. It checks each call's
// arguments and rules (keys, sizes, TTLs, fences, transactions), reads
// through BucketStore (storage layout and reads, no locks) and writes
// through CommitPath (one WriteBatch per commit, under the bucket's write
// mutex). Replication reaches it only as a ReplicaSink (replica_sink.h);
// fenced writes check their lock through an injected FenceCheck.

#ifndef REVKV_ENGINE_LOCAL_BUCKET_H_
#define REVKV_ENGINE_LOCAL_BUCKET_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/bucket_store.h"
#include "engine/commit_path.h"
#include "engine/expiry.h"
#include "engine/fence_check.h"
#include "engine/key_gate.h"
#include "engine/replica_sink.h"
#include "engine/store_core.h"
#include "revkv/bucket.h"

namespace revkv::engine {

class LocalBucket final : public Bucket,
                          public ReplicaSink,
                          public std::enable_shared_from_this<LocalBucket> {
 public:
  // `fence`: checks the fences of fenced writes (the engine's lock layer).
  LocalBucket(std::shared_ptr<StoreCore> core, std::shared_ptr<FenceCheck> fence, std::string name,
              rocksdb::ColumnFamilyHandle* cf, rocksdb::ColumnFamilyHandle* log_cf,
              BucketConfigValues config, uint64_t last_revision);
  ~LocalBucket() override = default;

  const std::string& name() const override { return store_.name(); }
  int history() const override { return store_.config().history; }
  uint32_t max_value_size() const override { return store_.config().max_value_size; }

  Result<std::string> Get(std::string_view key) override { return store_.Get(key); }
  Result<Entry> GetEntry(std::string_view key) override { return store_.GetEntry(key); }
  // Default arguments repeat the interface's, so calls through either type agree.
  Result<uint64_t> Put(std::string_view key, std::string_view value,
                       const WriteOptions& options = {}) override;
  Result<uint64_t> Create(std::string_view key, std::string_view value,
                          const WriteOptions& options = {}) override;
  Result<uint64_t> Update(std::string_view key, std::string_view value, uint64_t expected_revision,
                          const WriteOptions& options = {}) override;
  Result<uint64_t> Delete(std::string_view key,
                          std::optional<uint64_t> expected_revision = std::nullopt,
                          const WriteOptions& options = {}) override;
  Result<uint64_t> Purge(std::string_view key,
                         std::optional<uint64_t> expected_revision = std::nullopt,
                         const WriteOptions& options = {}) override;
  Result<TxnResult> Commit(const Txn& txn, const WriteOptions& options = {}) override;
  Result<EntriesSnapshot> Entries(std::string_view filter = ">") override {
    return store_.Entries(filter);
  }
  Result<KeysSnapshot> GetMany(const std::vector<std::string>& keys) override {
    return store_.GetMany(keys);
  }
  Result<std::vector<std::string>> Keys(std::string_view filter = ">") override {
    return store_.Keys(filter);
  }
  Result<std::vector<std::string>> KeysAfter(std::string_view filter, std::string_view after,
                                             size_t limit) override {
    if (limit == 0) return Status::InvalidArgument("KeysAfter needs a limit of at least 1");
    return store_.KeysAfter(filter, after, limit);
  }
  Result<std::vector<Entry>> History(std::string_view key) override { return store_.History(key); }
  Result<std::vector<Entry>> ChangesSince(uint64_t after_revision, size_t limit) override;
  uint64_t LastRevision() override;
  Result<UpdateOutcome> UpdateWithRetry(std::string_view key, const Mutator& mutate,
                                        const RetryPolicy& policy = {},
                                        const WriteOptions& options = {}) override;
  Result<ManyUpdateOutcome> UpdateManyWithRetry(const std::vector<std::string>& keys,
                                                const ManyMutator& mutate,
                                                const RetryPolicy& policy = {},
                                                const WriteOptions& options = {}) override;
  Result<std::unique_ptr<Watcher>> Watch(std::string_view filter,
                                         const WatchOptions& options = {}) override;
  Result<std::unique_ptr<Watcher>> Watch(std::string_view filter, const WatchOptions& options,
                                         WatchCallback callback) override;
  Status Sync(std::chrono::milliseconds timeout) override;
  BucketStatus GetStatus() override;

  // ---- ReplicaSink (and CommitFeed) ----

  uint64_t AddCommitListener(CommitListener listener) override {
    return commits_.AddListener(std::move(listener));
  }
  void RemoveCommitListener(uint64_t id) override { commits_.RemoveListener(id); }
  void RunWithWritesHeld(const std::function<void(uint64_t last_revision)>& fn) override {
    commits_.RunWithWritesHeld(fn);
  }
  Status ApplyCommitted(const std::vector<Entry>& entries, uint64_t applied_revision,
                        const std::vector<SkippedMessage>& skipped = {},
                        std::vector<SkippedMessage>* newly_skipped = nullptr) override;
  std::unique_ptr<PreparedFill> PrepareSnapshotFill(std::vector<Entry> entries,
                                                    std::vector<SkippedMessage> skipped) override {
    return commits_.PrepareFill(std::move(entries), std::move(skipped));
  }
  Status ApplyOwnWrites(const std::vector<Entry>& entries) override;
  uint64_t ResumeRevision() override { return commits_.ResumeRevision(); }
  Status CommitSnapshotFill(std::unique_ptr<PreparedFill> page, uint64_t applied_revision) override;
  Result<SkipSummary> Skipped() override { return store_.Skipped(); }
  void ReportSkips(BucketStatus* out) override;
  Result<int64_t> ReplicaSource() override { return store_.ReplicaSource(); }
  Status ResetReplica(int64_t source) override;
  // A local bucket keeps the default: TTLs only, on this machine's clock.
  void SetExpiry(const ExpiryRules& rules) override { store_.SetExpiry(rules); }

  // ---- For the engine's own layers ----

  BucketStore& store() { return store_; }
  CommitPath& commit_path() { return commits_; }
  // As BucketStore::LatestEntries.
  Result<std::vector<Entry>> LatestEntries(std::string_view filter,
                                           const rocksdb::Snapshot* snapshot) {
    return store_.LatestEntries(filter, snapshot);
  }
  bool is_follower() const { return store_.is_follower(); }
  rocksdb::DB* db() const { return store_.db(); }

  rocksdb::ColumnFamilyHandle* TEST_family() const { return store_.records_family(); }
  rocksdb::ColumnFamilyHandle* TEST_log_family() const { return store_.log_family(); }

 private:
  using Precondition = CommitPath::Precondition;
  using WriteOp = CommitPath::WriteOp;
  using KeyCompare = CommitPath::KeyCompare;

  // A single-key write, counted in the engine's statistics as the kind of
  // write `op` and `pre` make.
  Result<uint64_t> CommitWrite(Operation op, std::string_view key, std::string_view value,
                               Precondition pre, uint64_t expected_revision,
                               const WriteOptions& options);
  Result<uint64_t> CommitWriteUntimed(Operation op, std::string_view key, std::string_view value,
                                      Precondition pre, uint64_t expected_revision,
                                      const WriteOptions& options);
  Result<TxnResult> CommitUntimed(const Txn& txn, const WriteOptions& options);
  // Commits `writes` after `compares` (CommitPath::CommitLocked) with this
  // bucket's write mutex held; a fenced write commits through the
  // FenceCheck, which checks the fence as one step with the commit.
  Result<std::vector<uint64_t>> CommitWith(const WriteOptions& options,
                                           const std::vector<KeyCompare>& compares,
                                           const std::vector<WriteOp>& writes);
  Status ReadOnlyError() const;

  // Constant after construction; store_ before commits_, which points to it.
  BucketStore store_;
  CommitPath commits_;
  const std::shared_ptr<FenceCheck> fence_;

  KeyGate update_gate_;  // serializes UpdateWithRetry per key
};

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_LOCAL_BUCKET_H_
