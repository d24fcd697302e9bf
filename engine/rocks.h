// The RocksDB side of the local store: the options every store (and the
// benchmark baselines) use, and the one place rocksdb::Status becomes a
// revkv Status.

#ifndef REVKV_ENGINE_ROCKS_H_
#define REVKV_ENGINE_ROCKS_H_

#include <rocksdb/listener.h>
#include <rocksdb/options.h>
#include <rocksdb/status.h>

#include <memory>
#include <string_view>

#include "revkv/options.h"
#include "revkv/status.h"

namespace revkv::engine {

// DB-wide options for a store opened with `options`.
rocksdb::Options MakeDBOptions(const Options& options);
// Options of the column family named `family` (a bucket's records or log,
// or meta; layout.h) of such a store.
rocksdb::ColumnFamilyOptions MakeFamilyOptions(const Options& options,
                                               std::string_view family = {});

// Whether `s` says the disk is full (ENOSPC), or the store is over the space
// limit of its SstFileManager.
bool IsNoSpace(const rocksdb::Status& s);

// A listener that stops RocksDB's own recovery from a full disk, for an
// engine that calls DB::Resume() itself (StoreCore::Write).
std::shared_ptr<rocksdb::EventListener> NewManualNoSpaceRecovery();

// Converts `s`; `context` says what was being done ("writing key 'k' of
// bucket 'b'") and leads the message.
Status FromRocks(const rocksdb::Status& s, std::string_view context);

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_ROCKS_H_
