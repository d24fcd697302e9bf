// BucketStore: how one bucket lives in the local store (layout.h), and every
// read of it. It knows the record and log column families and the bucket's
// keys in the meta family; it holds no lock and no state that changes with
// commits (CommitPath has those). Reads take no lock: RocksDB's own
// snapshots keep multi-key reads consistent.
//
// It also lays out what a commit writes (Stage*), so that the commit path
// never names a column family itself.

#ifndef REVKV_ENGINE_BUCKET_STORE_H_
#define REVKV_ENGINE_BUCKET_STORE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <rocksdb/write_batch.h>

#include "engine/entry_cache.h"
#include "engine/expiry.h"
#include "engine/record_codec.h"
#include "engine/replica_sink.h"
#include "engine/store_core.h"
#include "revkv/bucket.h"

namespace revkv::engine {

// The last revision of bucket `name` as stored, at open: the larger of its
// revision floor and its last log key (layout.h "rev/"). An engine that
// holds the store also deletes the deferred trims of the log records above
// the floor (a crash left them undone) and writes the floor again.
Result<uint64_t> RecoverLastRevision(StoreCore& core, const std::string& name,
                                     rocksdb::ColumnFamilyHandle* log_cf);

class BucketStore {
 public:
  BucketStore(std::shared_ptr<StoreCore> core, std::string name, rocksdb::ColumnFamilyHandle* cf,
              rocksdb::ColumnFamilyHandle* log_cf, BucketConfigValues config);

  const std::string& name() const { return name_; }
  const BucketConfigValues& config() const { return config_; }
  bool is_follower() const { return !core_->follower_dir.empty(); }
  // The engine's log (Options::logger).
  const Log& log() const { return core_->log; }
  // The engine's statistics.
  Stats& stats() const { return core_->stats; }
  rocksdb::DB* db() const { return core_->db; }
  rocksdb::ColumnFamilyHandle* records_family() const { return cf_; }
  rocksdb::ColumnFamilyHandle* log_family() const { return log_cf_; }

  // ---- Expiry ----

  // How reads judge expiry (see LocalBucket::SetExpiry).
  void SetExpiry(const ExpiryRules& rules);
  ExpiryRules Expiry() const {
    return {max_age_ns_.load(std::memory_order_relaxed), grace_ns_.load(std::memory_order_relaxed)};
  }
  // Whether a record with these times is expired now; reads the clock only
  // for records that may expire.
  bool ExpiredNow(int64_t created_ns, int64_t ttl_ns) const;
  Status ExpiredError(std::string_view key) const;
  std::string Describe(std::string_view key) const;

  // The cache of latest entries (Options::entry_cache_bytes), nullptr when
  // off. The commit path keeps it exact.
  EntryCache* cache() const { return cache_.get(); }

  // ---- Reads, as the Bucket interface's ----

  Result<std::string> Get(std::string_view key);
  Result<Entry> GetEntry(std::string_view key);
  Result<std::vector<std::string>> Keys(std::string_view filter);
  Result<std::vector<std::string>> KeysAfter(std::string_view filter, std::string_view after,
                                             size_t limit);
  Result<std::vector<Entry>> History(std::string_view key);
  // Entries of the revision log after `after_revision`, up to `last`.
  Result<std::vector<Entry>> ChangesSince(uint64_t after_revision, size_t limit, uint64_t last);
  Result<EntriesSnapshot> Entries(std::string_view filter);
  Result<KeysSnapshot> GetMany(const std::vector<std::string>& keys);
  // The latest entries of every key matching `filter`, tombstones included,
  // as of `snapshot` (nullptr: now), in revision order.
  Result<std::vector<Entry>> LatestEntries(std::string_view filter,
                                           const rocksdb::Snapshot* snapshot);
  // The last revision as stored (a follower's view of LastRevision): the
  // larger of the revision floor and the last log key.
  uint64_t StoredRevision();
  // The key's latest record as stored, decoded (tombstones included;
  // expiry not judged): std::nullopt when there is none. Corruption: the
  // record is damaged or names another key.
  Result<std::optional<Entry>> ReadLatest(std::string_view key);

  // ---- The replica's bookkeeping in the meta family ----

  Result<ReplicaSink::SkipSummary> Skipped();
  Result<int64_t> ReplicaSource();
  // The consumer position kept while own writes wait for their delivery
  // (layout.h "own/"); nullopt when none wait.
  Result<std::optional<uint64_t>> OwnDelivered();
  // The revisions of the log above `after`, in order.
  Status LogRevisionsAfter(uint64_t after, std::vector<uint64_t>* out);

  // ---- What a commit writes ----

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
  // The key's latest record as stored.
  Status ReadHead(std::string_view key, KeyHead* head);
  // Adds to `batch` what makes `entry` the key's latest record after `head`
  // (history moves, trims, purge, revision log, and with `index_ttl` the
  // expiry index entry of a TTL); returns the new head. The log records of
  // revisions no longer retained are deleted in `batch`, or with
  // `deferred_trims` appended there and named in the new log record instead
  // (layout.h), for a later StageTrims.
  KeyHead Stage(rocksdb::WriteBatch* batch, const Entry& entry, KeyHead&& head, bool index_ttl,
                std::vector<uint64_t>* deferred_trims = nullptr) const;
  // Adds to `batch` the rewrite of `entry`'s own record: the key's latest
  // record when `head` is at entry.revision (returns the head as rewritten),
  // else its history record if `head` still retains that revision (returns
  // `head`). Nothing else changes: the same revision, with what `entry`
  // says (a provisional time corrected, ReplicaSink::ApplyOwnWrites).
  KeyHead StageRewrite(rocksdb::WriteBatch* batch, const Entry& entry, KeyHead&& head) const;
  // Deletes the log records of `revisions` (deferred trims).
  void StageTrims(rocksdb::WriteBatch* batch, const std::vector<uint64_t>& revisions) const;
  // The bucket's revision floor at `last` (layout.h "rev/"); every deferred
  // trim of the log records up to `last` must be in `batch` or written.
  void StageCounter(rocksdb::WriteBatch* batch, uint64_t last) const;
  void StageSkips(rocksdb::WriteBatch* batch, const ReplicaSink::SkipSummary& skips) const;
  // Writes (or with nullopt deletes) the "own/" consumer position.
  void StageOwnDelivered(rocksdb::WriteBatch* batch, std::optional<uint64_t> delivered) const;
  // Drops every entry and the skip count, and records `source`.
  void StageReset(rocksdb::WriteBatch* batch, int64_t source) const;
  // Removes an expiry index entry; with `revision`, also the key's Purge
  // tombstone at that revision (a tombstone with a TTL leaves nothing).
  void StageExpired(rocksdb::WriteBatch* batch, std::string_view index, std::string_view key,
                    std::optional<uint64_t> tombstone_revision) const;
  // The first entry of the expiry index: its index key, key, revision and
  // deadline. false when the index is empty.
  struct DueExpiry {
    std::string index;
    std::string key;
    uint64_t revision = 0;
    int64_t due_ns = 0;
  };
  bool FirstExpiry(DueExpiry* out);
  // Commits `batch` (StoreCore::Write); `what` names it in an error.
  Status Write(rocksdb::WriteBatch* batch, const std::function<std::string()>& what);

 private:
  // Calls `fn` with every latest record whose key matches `filter` (and
  // sorts after `after`, when given), in key order, until it returns false.
  Status ScanLatest(std::string_view filter, const rocksdb::Snapshot* snapshot, DecodeParts parts,
                    const std::function<bool(std::string_view, Record&&)>& fn,
                    std::string_view after = {});
  // The bucket's revision as of `snapshot` (nullptr: now).
  Result<uint64_t> RevisionAt(const rocksdb::Snapshot* snapshot);
  // NotFound (deleted, purged or expired) unless a record with these
  // fields is a live entry.
  Status Unreadable(std::string_view key, Operation op, uint64_t revision, int64_t created_ns,
                    int64_t ttl_ns) const;
  // The key's latest record through the cache (a miss reads the store and
  // fills it); false: the store has none.
  Result<bool> CachedLatest(std::string_view key, Entry* e);

  const std::shared_ptr<StoreCore> core_;
  const std::string name_;
  rocksdb::ColumnFamilyHandle* const cf_;      // records
  rocksdb::ColumnFamilyHandle* const log_cf_;  // revision log
  const BucketConfigValues config_;

  std::atomic<int64_t> max_age_ns_{0};
  std::atomic<int64_t> grace_ns_{0};

  std::unique_ptr<EntryCache> cache_;  // constant after construction
};

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_BUCKET_STORE_H_
