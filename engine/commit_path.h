// CommitPath: the one way anything is written to a bucket. Every commit
// (a single-key write, a transaction, a fenced write, an entry applied from
// the replication stream, a replica reset, an expiry tombstone) is a set of
// checks and entries that become one WriteBatch under the bucket's write
// mutex, with the revision bookkeeping in the same batch (a replica's
// applied revision; a local bucket's revision floor and deferred log trims
// every kFloorCommits commits, layout.h). Committed
// entries then reach the commit listeners (watchers, lock waiters) in
// revision order.
//
// The layout of what is written is BucketStore's; CommitPath keeps what
// changes with commits: the mutex, the latest revision, a cache of recent
// keys' heads, the listeners, the replica's skip count and the reaper that
// turns expired TTL entries into tombstones.

#ifndef REVKV_ENGINE_COMMIT_PATH_H_
#define REVKV_ENGINE_COMMIT_PATH_H_

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include <rocksdb/write_batch.h>

#include "engine/bucket_store.h"
#include "engine/replica_sink.h"

namespace revkv::engine {

class CommitPath {
 public:
  CommitPath(BucketStore* store, uint64_t last_revision);
  ~CommitPath();
  CommitPath(const CommitPath&) = delete;
  CommitPath& operator=(const CommitPath&) = delete;

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

  // The write mutex. Held by the caller of every *Locked method; a fenced
  // write holds it (and the lock bucket's) across the fence check too.
  std::mutex& mutex() { return write_mu_; }

  // Checks each compare and each write's precondition against the latest
  // records (an expired entry counts as absent), then commits every write
  // as one WriteBatch, with consecutive revisions in the given order, and
  // returns them. A failed check is Exists or Conflict naming its key, with
  // nothing written. Keys must be distinct. `expired_index`: an expiry
  // index key to drop in the same batch (the reaper's).
  Result<std::vector<uint64_t>> CommitLocked(const std::vector<KeyCompare>& compares,
                                             const std::vector<WriteOp>& writes,
                                             const std::string* expired_index = nullptr);

  // ReplicaSink::ApplyCommitted and ResetReplica; they take the mutex.
  Status Apply(const std::vector<Entry>& entries, uint64_t applied_revision,
               const std::vector<ReplicaSink::SkippedMessage>& skipped,
               std::vector<ReplicaSink::SkippedMessage>* newly_skipped);
  // ReplicaSink::ApplyOwnWrites and ResumeRevision; they take the mutex.
  Status ApplyOwn(const std::vector<Entry>& entries);
  uint64_t ResumeRevision();
  // Reloads the own writes a replica held with provisional times (layout.h
  // "own/"), at open.
  void ResumeProvisional();
  // ReplicaSink::PrepareSnapshotFill (no lock, any thread) and
  // CommitSnapshotFill (takes the mutex).
  std::unique_ptr<ReplicaSink::PreparedFill> PrepareFill(
      std::vector<Entry> entries, std::vector<ReplicaSink::SkippedMessage> skipped);
  Status CommitFill(std::unique_ptr<ReplicaSink::PreparedFill> fill, uint64_t applied_revision);
  Status Reset(int64_t source);

  uint64_t AddListener(CommitFeed::CommitListener listener);
  void RemoveListener(uint64_t id);
  // The latest revision committed by this process.
  uint64_t last_revision() const { return last_revision_.load(std::memory_order_acquire); }
  void RunWithWritesHeld(const std::function<void(uint64_t last_revision)>& fn);

  // Starts the reaper if the expiry index holds entries (at open).
  void ResumeReaper();

  // A local commit writes the revision floor (layout.h "rev/"), with the
  // log trims deferred since the last one, once in this many commits: the
  // floor is rebuilt from the log at open, and a deleted log record costs
  // RocksDB a full memtable search, cheaper in sorted batches than one per
  // commit. A replica writes its floor (its applied revision) every time.
  static constexpr uint64_t kFloorCommits = 256;

 private:
  using KeyHead = BucketStore::KeyHead;

  // The key's latest record: from the write cache, else the store.
  Status ReadHeadLocked(std::string_view key, KeyHead* head);
  // OK if `compare` holds for the key's latest record `head`, else Exists
  // or Conflict naming the key and its current revision.
  Status Check(const KeyCompare& compare, const KeyHead& head) const;

  // A commit being built: one WriteBatch, the heads of the keys it already
  // staged (a later entry of the same key replaces the staged record, not
  // the stored one), and the entries it commits, in revision order.
  struct Staging {
    // Room for a small commit's records without regrowing.
    rocksdb::WriteBatch batch{512};
    std::unordered_map<std::string, KeyHead> heads;
    std::vector<Entry> entries;
    int64_t reap_at = 0;  // the first expiry it indexed for the reaper (0: none)
    bool clears = false;  // it empties the bucket: every cached entry goes
    // A snapshot fill (PrepareFill): keys are new and distinct, so nothing
    // was read, and the write cache is left alone (the reset emptied it).
    bool fill = false;
    // A local commit defers the deletion of the log records it replaces
    // (BucketStore::Stage) and collects their revisions here.
    bool defer_trims = false;
    std::vector<uint64_t> trims;
    // Entries rewritten at their own revision (a provisional time
    // corrected): the caches take them, listeners do not.
    std::vector<Entry> rewritten;
  };
  // The key's latest record, as staged or as stored.
  Status HeadLocked(Staging* staging, std::string_view key, KeyHead* head);
  // Stages `entry` (BucketStore::Stage) after the key's latest record.
  Status StageEntryLocked(Staging* staging, Entry entry, bool index_ttl);
  // Stages the rewrite of `entry`'s record at its own revision
  // (BucketStore::StageRewrite).
  Status StageRewriteLocked(Staging* staging, const Entry& entry);
  // The end of an apply: counts `skips` (they move the applied revision
  // too) and commits `staging` with the counter at `new_last` or past it.
  Status FinishApplyLocked(Staging* staging, uint64_t new_last,
                           std::vector<ReplicaSink::SkippedMessage> skips,
                           std::vector<ReplicaSink::SkippedMessage>* newly_skipped);
  struct Fill;
  // Stages `entry` after `head`, its key's latest record, for a commit that
  // stages no other entry of the key.
  void StageOnlyEntryLocked(Staging* staging, Entry entry, KeyHead&& head, bool index_ttl);
  // Commits `staging` at revision `last` (and whatever else the caller put
  // in its batch): writes it, with the revision floor and the deferred log
  // trims when `floor` is set or kFloorCommits have passed, then updates
  // last_revision(), the write cache, the listeners and the reaper. Nothing
  // is applied if the write fails; `what` names the write in its error.
  Status FinishLocked(Staging* staging, uint64_t last, bool floor,
                      const std::function<std::string()>& what);
  // Adds the deferred log trims and the floor at `last` to `batch`; call
  // FlooredLocked() once it is written.
  void StageFloorLocked(rocksdb::WriteBatch* batch, uint64_t last,
                        std::vector<uint64_t>&& more_trims);
  void FlooredLocked();
  // Notes a committed entry in the write cache.
  void RememberLocked(const Entry& entry);

  // The reaper: turns expired TTL entries of a local bucket into Purge
  // tombstones, in the order of the expiry index (layout.h 'x' keys). It
  // runs on its own thread, started by the first TTL write or at open when
  // the index holds entries.
  void StartReaper();
  void RunReaper();
  // Handles every index entry due by `now_ns`; returns the next deadline
  // (0: none).
  int64_t ReapDue(int64_t now_ns);

  BucketStore* const store_;

  // The revision and operation of recently written keys, kept only for
  // history-1 buckets, where they are all a write needs to know about the
  // record it replaces. Every write goes through CommitLocked() or Apply()
  // under write_mu_, so the cache never disagrees with the store.
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

  std::mutex write_mu_;
  std::unordered_map<std::string, KeyState, StringHash, std::equal_to<>>
      write_cache_;                                         // GUARDED_BY(write_mu_)
  std::map<uint64_t, CommitFeed::CommitListener> listeners_;  // GUARDED_BY(write_mu_)
  uint64_t next_listener_id_ = 1;                           // GUARDED_BY(write_mu_)
  std::atomic<bool> has_listeners_{false};
  std::atomic<uint64_t> last_revision_;  // written under write_mu_ after a commit

  // Log records replaced by local commits since the last floor, still to
  // delete (layout.h), and how many commits wrote no floor.
  std::vector<uint64_t> trims_;     // GUARDED_BY(write_mu_)
  uint64_t unfloored_commits_ = 0;  // GUARDED_BY(write_mu_)

  // Revisions a replica applied ahead of its consumer (ApplyOwn), whose
  // provisional time the consumer's delivery corrects. Bounded: the oldest
  // go first (they keep their provisional time).
  static constexpr size_t kMaxProvisional = 1 << 16;
  std::set<uint64_t> provisional_;  // GUARDED_BY(write_mu_)
  // While provisional_ is not empty: the consumer's position ("own/").
  uint64_t delivered_ = 0;          // GUARDED_BY(write_mu_)

  // The skip summary as stored; loaded on the first skip.
  std::optional<ReplicaSink::SkipSummary> skips_;  // GUARDED_BY(write_mu_)

  std::mutex reaper_mu_;
  std::condition_variable reaper_cv_;
  bool reaper_stop_ = false;    // GUARDED_BY(reaper_mu_)
  int64_t reaper_wake_ns_ = 0;  // GUARDED_BY(reaper_mu_): an earlier deadline to wake for
  std::thread reaper_;          // GUARDED_BY(reaper_mu_) once started
};

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_COMMIT_PATH_H_
