// LocalBucket: a bucket stored in the local store (layout.h). Reads take no
// lock; writes to one bucket are serialized by a mutex so that the revision
// counter, the compare-and-swap check and the WriteBatch that commits them
// act as one step. Committed entries are then handed to the bucket's commit
// listeners (watchers, lock waiters) in revision order.

#ifndef REVKV_ENGINE_LOCAL_BUCKET_H_
#define REVKV_ENGINE_LOCAL_BUCKET_H_

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <rocksdb/write_batch.h>

#include "engine/expiry.h"
#include "engine/key_gate.h"
#include "engine/record_codec.h"
#include "engine/store_core.h"
#include "revkv/bucket.h"

namespace revkv::engine {

class BucketRegistry;

class LocalBucket final : public Bucket, public std::enable_shared_from_this<LocalBucket> {
 public:
  LocalBucket(std::shared_ptr<StoreCore> core, std::weak_ptr<BucketRegistry> registry,
              std::string name, rocksdb::ColumnFamilyHandle* cf, rocksdb::ColumnFamilyHandle* log_cf,
              BucketConfigValues config, uint64_t last_revision);
  ~LocalBucket() override;

  const std::string& name() const override { return name_; }
  int history() const override { return config_.history; }
  uint32_t max_value_size() const override { return config_.max_value_size; }

  Result<std::string> Get(std::string_view key) override;
  Result<Entry> GetEntry(std::string_view key) override;
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
  Result<EntriesSnapshot> Entries(std::string_view filter = ">") override;
  Result<KeysSnapshot> GetMany(const std::vector<std::string>& keys) override;
  Result<std::vector<std::string>> Keys(std::string_view filter = ">") override;
  Result<std::vector<Entry>> History(std::string_view key) override;
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

  // ---- For the engine's own layers (watchers, locks) ----

  // Called with every committed entry, in revision order, while the
  // bucket's write lock is held: a listener must not call back into this
  // bucket's writes, and should only queue or signal.
  using CommitListener = std::function<void(const Entry&)>;
  uint64_t AddCommitListener(CommitListener listener);
  void RemoveCommitListener(uint64_t id);

  // A message of the replicated stream that can never be applied, e.g. a
  // damaged message or a key no bucket can hold: it is skipped and counted.
  struct SkippedMessage {
    uint64_t revision = 0;  // its stream sequence; 0 if even that was unreadable
    std::string reason;     // why it cannot be applied
  };
  // The messages a replica skipped since it was created or last reset.
  struct SkipSummary {
    uint64_t count = 0;
    uint64_t first_revision = 0;
    std::string first_reason;
  };

  // Applies entries committed elsewhere (the replication stream) with their
  // own revisions, times and operations, in revision order, and records
  // `applied_revision` (the stream position reached, >= the last entry's)
  // in the same WriteBatch; LastRevision() then returns it. Entries at or
  // below the last applied revision are redeliveries and are skipped; gaps
  // (revisions removed by history limits or purges) are normal. History
  // trimming and purges work as for local writes; listeners and watchers
  // see the applied entries.
  //
  // Keys are checked with ValidateReadKey, not the write rules: any key
  // another client stored is applied. An entry whose key even that refuses,
  // and the messages in `skipped` (which the caller could not turn into
  // entries), are never applicable: they are counted in the same WriteBatch
  // (see Skipped()) and the applied revision moves past them. The ones newly
  // counted (not redeliveries) are appended to `newly_skipped`, if given.
  // InvalidArgument: entries out of order. IOError, Corruption: as writes;
  // nothing is applied or counted then, so a retry loses nothing.
  Status ApplyCommitted(const std::vector<Entry>& entries, uint64_t applied_revision,
                        const std::vector<SkippedMessage>& skipped = {},
                        std::vector<SkippedMessage>* newly_skipped = nullptr);

  // What ApplyCommitted skipped, as kept in the meta family (so a read-only
  // follower sees it too). Corruption: the stored summary is damaged.
  Result<SkipSummary> Skipped();
  // Fills the skip fields of `out` from Skipped(), or notes in out->error
  // why it could not be read.
  void ReportSkips(BucketStatus* out);

  // The identity of the stream this bucket replicates (its creation time),
  // 0 when none was recorded. Kept in the meta family.
  Result<int64_t> ReplicaSource();
  // Drops every entry, the applied revision and the skip count, and records
  // `source` as the stream now replicated: one atomic batch. Used when the
  // stream the replica mirrored was deleted and recreated, or fell behind
  // the replica.
  Status ResetReplica(int64_t source);

  // How reads judge expiry: the bucket's max_age (a replica's stream's) and
  // the grace for clock skew (a replica's). A local bucket keeps the
  // default: TTLs only, on this machine's clock.
  void SetExpiry(const ExpiryRules& rules);

  // Runs `fn` with writes to this bucket held off, with the latest revision.
  void RunWithWritesHeld(const std::function<void(uint64_t last_revision)>& fn);

  // The latest entries of every key matching `filter`, tombstones included,
  // as of `snapshot` (nullptr: now), in revision order.
  Result<std::vector<Entry>> LatestEntries(std::string_view filter,
                                           const rocksdb::Snapshot* snapshot);

  bool is_follower() const { return !core_->follower_dir.empty(); }
  rocksdb::DB* db() const { return core_->db; }

  rocksdb::ColumnFamilyHandle* TEST_family() const { return cf_; }
  rocksdb::ColumnFamilyHandle* TEST_log_family() const { return log_cf_; }

 private:
  // What must hold before a write commits.
  enum class Precondition { kNone, kAbsentOrTombstone, kRevision };

  // One write of a commit: `op` on `key`, made only if `pre` holds.
  struct WriteOp {
    Operation op = Operation::kPut;
    std::string_view key;
    std::string_view value;
    Precondition pre = Precondition::kNone;
    uint64_t expected_revision = 0;
    int64_t ttl_ns = 0;  // the new entry's TTL
  };
  // A check on a key that the commit does not write.
  struct KeyCompare {
    // kAbsentOrTombstone fails as Exists (a Create's condition), kAbsent as
    // Conflict (a transaction's compare).
    enum class Kind { kRevision, kAbsentOrTombstone, kAbsent, kPresent };
    std::string_view key;
    Kind kind = Kind::kRevision;
    uint64_t revision = 0;
  };

  Result<uint64_t> CommitWrite(Operation op, std::string_view key, std::string_view value,
                               Precondition pre, uint64_t expected_revision,
                               const WriteOptions& options);
  // Runs `commit` with this bucket's write lock held, and for a fenced
  // write also the lock's bucket's, after checking the fence: the check and
  // the commit then act as one step. `keys`: the keys written, none of which
  // may be the fence's lock record.
  template <typename T>
  Result<T> WithWriteLock(const WriteOptions& options, const std::vector<std::string_view>& keys,
                          const std::function<Result<T>()>& commit);

  // The commit path of every local write (callers hold write_mu_): checks
  // each compare and each write's precondition against the latest records
  // (an expired entry counts as absent), then commits every write as one
  // WriteBatch, with consecutive revisions in the given order, and returns
  // them. A failed check is Exists or Conflict naming its key, with nothing
  // written. Keys must be distinct. `expired_index`: an expiry index key to
  // drop in the same batch (the reaper's).
  Result<std::vector<uint64_t>> CommitLocked(const std::vector<KeyCompare>& compares,
                                             const std::vector<WriteOp>& writes,
                                             const std::string* expired_index = nullptr);
  Result<uint64_t> CommitOneLocked(const WriteOp& write,
                                   const std::string* expired_index = nullptr);

  ExpiryRules Expiry() const {
    return {max_age_ns_.load(std::memory_order_relaxed), grace_ns_.load(std::memory_order_relaxed)};
  }
  // Whether a record with these times is expired now; reads the clock only
  // for records that may expire.
  bool ExpiredNow(int64_t created_ns, int64_t ttl_ns) const;
  Status ExpiredError(std::string_view key) const;

  // The reaper: turns expired TTL entries of a local bucket into Purge
  // tombstones, in the order of the expiry index (layout.h 'x' keys). It
  // runs on its own thread, started by the first TTL write or at open when
  // the index holds entries.
  void StartReaper();
  void RunReaper();
  // Handles every index entry due by `now_ns`; returns the next deadline
  // (0: none).
  int64_t ReapDue(int64_t now_ns);
  // What a write needs to know about the record it replaces.
  struct KeyHead {
    bool exists = false;
    uint64_t revision = 0;
    Operation operation = Operation::kPut;
    int64_t created_ns = 0;
    int64_t ttl_ns = 0;
    std::vector<uint64_t> older;  // retained earlier revisions
    std::string raw;              // the record's bytes; kept only when history > 1
  };
  Status ReadHeadLocked(std::string_view key, KeyHead* head);
  // OK if `compare` holds for the key's latest record `head`, else Exists
  // or Conflict naming the key and its current revision.
  Status Check(const KeyCompare& compare, const KeyHead& head) const;
  // Adds to `batch` what makes `entry` the key's latest record after `head`
  // (history moves, trims, purge, revision log, and with `index_ttl` the
  // expiry index entry of a TTL); returns the new head.
  KeyHead StageLocked(rocksdb::WriteBatch* batch, const Entry& entry, KeyHead&& head,
                      bool index_ttl = false);

  // A commit being built: one WriteBatch, the heads of the keys it already
  // staged (a later entry of the same key replaces the staged record, not
  // the stored one), and the entries it commits, in revision order.
  struct Staging {
    rocksdb::WriteBatch batch;
    std::unordered_map<std::string, KeyHead> heads;
    std::vector<Entry> entries;
    int64_t reap_at = 0;  // the first expiry it indexed for the reaper (0: none)
  };
  // The key's latest record, as staged or as stored.
  Status HeadLocked(Staging* staging, std::string_view key, KeyHead* head);
  // Stages `entry` (see StageLocked) after the key's latest record.
  Status StageEntryLocked(Staging* staging, Entry entry, bool index_ttl);
  // Commits `staging` with the bucket's revision counter at `last` (and
  // whatever else the caller put in its batch): writes it, then updates
  // LastRevision(), the write cache, the listeners and the reaper. Nothing
  // is applied if the write fails.
  Status FinishLocked(Staging* staging, uint64_t last, const std::string& what);
  // Notes a committed entry in the write cache.
  void RememberLocked(const Entry& entry);
  // With the locks bucket's write lock held: OK if `fence` names the lock's
  // current token, else LockLost.
  Status CheckFenceLocked(const Fence& fence);
  // Calls `fn` with every latest record whose key matches `filter`.
  Status ScanLatest(std::string_view filter, const rocksdb::Snapshot* snapshot, DecodeParts parts,
                    const std::function<void(std::string_view, Record&&)>& fn);
  Status ReadOnlyError() const;
  // The bucket's revision as of `snapshot` (nullptr: now).
  Result<uint64_t> RevisionAt(const rocksdb::Snapshot* snapshot);
  std::string Describe(std::string_view key) const;

  // Constant after construction.
  const std::shared_ptr<StoreCore> core_;
  const std::weak_ptr<BucketRegistry> registry_;
  const std::string name_;
  rocksdb::ColumnFamilyHandle* const cf_;      // records
  rocksdb::ColumnFamilyHandle* const log_cf_;  // revision log
  const BucketConfigValues config_;

  // The revision and operation of recently written keys, kept only for
  // history-1 buckets, where they are all a write needs to know about the
  // record it replaces. Every write goes through CommitLocked() under
  // write_mu_, so the cache never disagrees with the store.
  struct KeyState {
    uint64_t revision;
    Operation operation;
    int64_t created_ns;
    int64_t ttl_ns;
  };
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  static constexpr size_t kWriteCacheEntries = 1 << 16;

  std::mutex write_mu_;  // serializes commits; taken with the locks bucket's for fenced writes
  std::unordered_map<std::string, KeyState, StringHash, std::equal_to<>>
      write_cache_;                                 // GUARDED_BY(write_mu_)
  std::map<uint64_t, CommitListener> listeners_;    // GUARDED_BY(write_mu_)
  uint64_t next_listener_id_ = 1;                   // GUARDED_BY(write_mu_)
  std::atomic<bool> has_listeners_{false};
  std::atomic<uint64_t> last_revision_;  // written under write_mu_ after a commit

  // The skip summary as stored; loaded on the first skip.
  std::optional<SkipSummary> skips_;  // GUARDED_BY(write_mu_)

  KeyGate update_gate_;  // serializes UpdateWithRetry per key

  std::atomic<int64_t> max_age_ns_{0};
  std::atomic<int64_t> grace_ns_{0};

  std::mutex reaper_mu_;
  std::condition_variable reaper_cv_;
  bool reaper_stop_ = false;         // GUARDED_BY(reaper_mu_)
  int64_t reaper_wake_ns_ = 0;       // GUARDED_BY(reaper_mu_): an earlier deadline to wake for
  std::thread reaper_;               // GUARDED_BY(reaper_mu_) once started
};

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_LOCAL_BUCKET_H_
