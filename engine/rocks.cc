#include "engine/rocks.h"

#include <rocksdb/cache.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>

#include <memory>
#include <mutex>
#include <string>

#include "engine/layout.h"

namespace revkv::engine {

namespace {

// One memtable insert hint for all revision keys (layout.h: 8 bytes) of a
// log family, and none for any other key. RocksDB 7.8 keeps one hint per
// prefix for a memtable's point entries and range tombstones alike, and a
// hint that moves between the two tables breaks its skiplist (an assertion
// in InlineSkipList::FindSpliceForLevel). So a range deletion in a log
// family must start at a key out of this domain: BucketStore::StageReset
// starts at the empty key, and format 1's resets, which a write-ahead log
// may still replay, started at revision 0, which no log record has.
class RevisionKeyHint final : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "revkv.RevisionKeyHint"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    return rocksdb::Slice(key.data(), 0);
  }
  bool InDomain(const rocksdb::Slice& key) const override {
    return key.size() == 8 && DecodeBE64(key.ToStringView()) != 0;
  }
};

}  // namespace

rocksdb::ColumnFamilyOptions MakeFamilyOptions(const Options& options, std::string_view family) {
  // One cache per process for every store opened with the same size keeps
  // memory bounded when many column families exist.
  static std::shared_ptr<rocksdb::Cache> shared_cache;
  static size_t shared_cache_bytes = 0;
  static std::mutex mu;
  std::shared_ptr<rocksdb::Cache> cache;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!shared_cache || shared_cache_bytes != options.block_cache_bytes) {
      shared_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
      shared_cache_bytes = options.block_cache_bytes;
    }
    cache = shared_cache;
  }
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.whole_key_filtering = true;
  rocksdb::ColumnFamilyOptions cf;
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  if (family.substr(0, std::string_view(kLogFamilyPrefix).size()) == kLogFamilyPrefix) {
    // A commit appends to the revision log, and every kFloorCommits commits
    // deletes older revisions in it. Without a hint, each memtable insert
    // that does not directly follow the previous one searches the skiplist
    // from its top; with one it resumes from the levels that still bracket
    // the key.
    static const std::shared_ptr<const rocksdb::SliceTransform> hint =
        std::make_shared<RevisionKeyHint>();
    cf.memtable_insert_with_hint_prefix_extractor = hint;
  }
  return cf;
}

rocksdb::Options MakeDBOptions(const Options& options) {
  rocksdb::Options db(rocksdb::DBOptions(), MakeFamilyOptions(options));
  db.create_if_missing = options.create_if_missing;
  db.create_missing_column_families = true;
  db.max_open_files = 512;
  db.keep_log_file_num = 4;
  // A WAL file can go only once every family with data in it has flushed,
  // and the small meta family (a replica's applied revision, written with
  // every batch) rarely fills its memtable: without a bound the WAL grew to
  // 215 MiB beside 115 MiB of tables for a 1M-key replica. Past this, RocksDB
  // flushes the families that hold the oldest WAL file.
  db.max_total_wal_size = 128ULL << 20;
  return db;
}

bool IsNoSpace(const rocksdb::Status& s) {
  if (!s.IsIOError()) return false;
  if (s.subcode() == rocksdb::Status::kNoSpace || s.subcode() == rocksdb::Status::kSpaceLimit) {
    return true;
  }
  // Some paths report ENOSPC without the subcode, by its errno text only.
  return s.ToString().find("No space left on device") != std::string::npos;
}

namespace {

// RocksDB recovers from a full disk on its own only once as much space is
// free as its largest memtable (64 MiB by default), polling every 5 s; with
// less free than that, the store would stay read-only until reopened. And
// while that recovery is pending, DB::Resume() refuses with Busy. So the
// engine turns it off and calls Resume itself (StoreCore::Write), which
// needs only the space its flush takes.
class ManualNoSpaceRecovery final : public rocksdb::EventListener {
 public:
  const char* Name() const override { return "revkv.ManualNoSpaceRecovery"; }
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason /*reason*/, rocksdb::Status bg_error,
                            bool* auto_recovery) override {
    if (IsNoSpace(bg_error)) *auto_recovery = false;
  }
};

}  // namespace

std::shared_ptr<rocksdb::EventListener> NewManualNoSpaceRecovery() {
  return std::make_shared<ManualNoSpaceRecovery>();
}

Status FromRocks(const rocksdb::Status& s, std::string_view context) {
  if (s.ok()) return Status::OK();
  std::string msg(context);
  msg += ": ";
  msg += s.ToString();
  switch (s.code()) {
    case rocksdb::Status::kNotFound: return Status::NotFound(msg);
    case rocksdb::Status::kCorruption:
      return Status::Corruption(msg + "; restore the store from a backup or replica");
    case rocksdb::Status::kInvalidArgument: return Status::InvalidArgument(msg);
    case rocksdb::Status::kBusy:
    case rocksdb::Status::kTryAgain: return Status::Busy(msg);
    case rocksdb::Status::kTimedOut: return Status::Timeout(msg);
    case rocksdb::Status::kIOError:
      // A store held by someone else is also an IOError (on its LOCK file);
      // only the code that opens the store can tell it apart, so it does.
      if (IsNoSpace(s)) {
        return Status::IOError(msg + "; the disk is full: free disk space, then retry (the engine "
                                     "takes writes again without a reopen)");
      }
      return Status::IOError(msg);
    default: return Status::IOError(msg);
  }
}

}  // namespace revkv::engine
