// The store's info LOG, written by revkv rather than by RocksDB's own logger.
//
// RocksDB 7.8's EnvLogger asserts when it appends to a file that already
// failed a write, and Debian's librocksdb is built with assertions on: once a
// full disk makes one LOG line fail, the next line aborts the process.
// (Upstream stopped asserting there in 8.1, facebook/rocksdb#11314.) This
// logger writes each line with one write(2) and drops a line it cannot write,
// so a full disk costs LOG lines, never the process.

#ifndef REVKV_ENGINE_INFO_LOG_H_
#define REVKV_ENGINE_INFO_LOG_H_

#include <rocksdb/env.h>
#include <rocksdb/status.h>

#include <memory>
#include <string>

namespace revkv::engine {

// Starts a new info LOG in `dir`, as RocksDB does: an existing LOG becomes
// LOG.old.<micros> (RocksDB deletes all but the newest keep_log_file_num of
// those). An IOError (NoSpace on a full disk) if the LOG cannot be created.
rocksdb::Status OpenInfoLog(rocksdb::Env* env, const std::string& dir,
                            std::shared_ptr<rocksdb::Logger>* out);

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_INFO_LOG_H_
