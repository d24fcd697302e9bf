// StoreCore: the open RocksDB instance behind an Engine, shared by the Engine
// and every Bucket it handed out, so that the store closes only when the last
// of them is destroyed.

#ifndef REVKV_ENGINE_STORE_CORE_H_
#define REVKV_ENGINE_STORE_CORE_H_

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <string>
#include <vector>

#include "engine/log.h"
#include "engine/stats.h"
#include "revkv/options.h"

namespace revkv::engine {

struct StoreCore {
  StoreCore() = default;
  StoreCore(const StoreCore&) = delete;
  StoreCore& operator=(const StoreCore&) = delete;
  ~StoreCore();

  // Commits `batch` with write_options. When a full disk has stopped the
  // store, resumes it and retries once (see the definition). Every write of
  // the store goes through here.
  rocksdb::Status Write(rocksdb::WriteBatch* batch);

  // Constant after construction.
  Options options;
  Log log;  // options.logger at options.log_level
  Stats stats;  // Engine::GetStatistics
  rocksdb::DB* db = nullptr;                           // owned
  rocksdb::ColumnFamilyHandle* meta = nullptr;         // owned via `handles`
  std::vector<rocksdb::ColumnFamilyHandle*> handles;   // owned; appended under the engine mutex
  rocksdb::WriteOptions write_options;
  std::string follower_dir;  // a follower's private directory, removed on close
};

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_STORE_CORE_H_
