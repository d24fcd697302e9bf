// BucketRegistry: the open buckets of one store, and the column families
// behind them. Shared by the Engine and, weakly, by its buckets, so that a
// bucket's fence check can reach the locks bucket without keeping the Engine
// alive.

#ifndef REVKV_ENGINE_BUCKET_REGISTRY_H_
#define REVKV_ENGINE_BUCKET_REGISTRY_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/local_bucket.h"
#include "engine/store_core.h"
#include "revkv/options.h"

namespace revkv::engine {

class BucketRegistry : public std::enable_shared_from_this<BucketRegistry> {
 public:
  explicit BucketRegistry(std::shared_ptr<StoreCore> core) : core_(std::move(core)) {}

  // Records an existing column family found when the store was opened.
  void AddFamily(const std::string& family, rocksdb::ColumnFamilyHandle* handle);

  // As Engine::OpenBucket.
  Result<std::shared_ptr<LocalBucket>> Open(std::string_view name, const BucketOptions& options);

  // As Engine::ListBuckets.
  std::vector<std::string> List();

 private:
  Result<BucketConfigValues> LoadOrCreateConfig(const std::string& name,
                                                const BucketOptions& options);

  const std::shared_ptr<StoreCore> core_;

  // A bucket's record and log families. Either may be missing if a crash cut
  // bucket creation short; Open creates what is missing.
  struct Families {
    rocksdb::ColumnFamilyHandle* records = nullptr;
    rocksdb::ColumnFamilyHandle* log = nullptr;
  };
  std::mutex mu_;
  std::map<std::string, Families, std::less<>> families_;                   // GUARDED_BY(mu_)
  std::map<std::string, std::shared_ptr<LocalBucket>, std::less<>> buckets_;  // GUARDED_BY(mu_)
  std::shared_ptr<FenceCheck> fence_;  // GUARDED_BY(mu_): made with the first bucket
};

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_BUCKET_REGISTRY_H_
