// LocalEngine: the Engine of a local-only store, one RocksDB instance with a
// column family per bucket plus "meta".

#ifndef REVKV_ENGINE_LOCAL_ENGINE_H_
#define REVKV_ENGINE_LOCAL_ENGINE_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "engine/local_bucket.h"
#include "engine/store_core.h"
#include "revkv/engine.h"

namespace revkv::engine {

class LocalEngine final : public Engine {
 public:
  static Result<std::unique_ptr<LocalEngine>> Open(const Options& options);

  Result<std::shared_ptr<Bucket>> OpenBucket(std::string_view name,
                                             const BucketOptions& options) override;
  std::vector<std::string> ListBuckets() override;
  Status CatchUp() override;

  // The store, for tests that inspect or damage it directly.
  rocksdb::DB* TEST_db() const { return core_->db; }

 private:
  explicit LocalEngine(std::shared_ptr<StoreCore> core) : core_(std::move(core)) {}

  Result<BucketConfigValues> LoadOrCreateConfig(const std::string& name,
                                                const BucketOptions& options);

  const std::shared_ptr<StoreCore> core_;

  std::mutex mu_;
  // A bucket's record and log families. Either may be missing if a crash cut
  // bucket creation short; OpenBucket creates what is missing.
  struct Families {
    rocksdb::ColumnFamilyHandle* records = nullptr;
    rocksdb::ColumnFamilyHandle* log = nullptr;
  };
  std::map<std::string, Families, std::less<>> families_;                    // GUARDED_BY(mu_)
  std::map<std::string, std::shared_ptr<LocalBucket>, std::less<>> buckets_;   // GUARDED_BY(mu_)
};

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_LOCAL_ENGINE_H_
