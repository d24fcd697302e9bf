#include "engine/rocks.h"

#include <rocksdb/cache.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>

#include <memory>
#include <mutex>
#include <string>

namespace revkv::engine {

rocksdb::ColumnFamilyOptions MakeFamilyOptions(const Options& options) {
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
  return cf;
}

rocksdb::Options MakeDBOptions(const Options& options) {
  rocksdb::Options db(rocksdb::DBOptions(), MakeFamilyOptions(options));
  db.create_if_missing = options.create_if_missing;
  db.create_missing_column_families = true;
  db.max_open_files = 512;
  db.keep_log_file_num = 4;
  return db;
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
    case rocksdb::Status::kIOError: {
      // RocksDB reports a store held by someone else as an IOError on its
      // LOCK file.
      std::string text = s.ToString();
      if (text.find("lock") != std::string::npos || text.find("LOCK") != std::string::npos) {
        return Status::Unavailable(std::string(context) +
                                   ": the store is held by another process or another Engine in "
                                   "this process; close that one first (" + text + ")");
      }
      if (s.subcode() == rocksdb::Status::kNoSpace) {
        return Status::IOError(msg + "; free disk space and retry");
      }
      return Status::IOError(msg);
    }
    default: return Status::IOError(msg);
  }
}

}  // namespace revkv::engine
