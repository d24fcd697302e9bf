// LocalEngine: the Engine of a local-only store, one RocksDB instance with a
// record and a log column family per bucket, plus "meta".

#ifndef REVKV_ENGINE_LOCAL_ENGINE_H_
#define REVKV_ENGINE_LOCAL_ENGINE_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "engine/lock_manager.h"
#include "revkv/engine.h"

namespace rocksdb {
class DB;
}  // namespace rocksdb

namespace revkv::engine {

class BucketRegistry;
struct StoreCore;

class LocalEngine final : public Engine {
 public:
  static Result<std::unique_ptr<LocalEngine>> Open(const Options& options);
  ~LocalEngine() override;

  Result<std::shared_ptr<Bucket>> OpenBucket(std::string_view name,
                                             const BucketOptions& options) override;
  std::vector<std::string> ListBuckets() override;
  Statistics GetStatistics() override;
  Result<std::string> ServerVersion() override;
  // The counters every bucket, apply loop and lock manager of the engine
  // adds to.
  Stats& stats();
  Result<std::unique_ptr<Lock>> Acquire(std::string_view name, std::chrono::milliseconds lease,
                                        std::chrono::milliseconds timeout,
                                        const LockOptions& options) override;
  Result<std::unique_ptr<Lock>> TryAcquire(std::string_view name, std::chrono::milliseconds lease,
                                           const LockOptions& options) override;
  Status CatchUp() override;

  // The store, for tests that inspect or damage it directly.
  rocksdb::DB* TEST_db() const;

 private:
  LocalEngine(std::shared_ptr<StoreCore> core, std::shared_ptr<BucketRegistry> registry);

  // The lock manager of locks bucket `bucket` (empty: Options::locks_bucket),
  // created with the bucket on first use.
  Result<std::shared_ptr<LockManager>> Locks(const std::string& bucket);

  const std::shared_ptr<StoreCore> core_;
  const std::shared_ptr<BucketRegistry> registry_;

  std::mutex locks_mu_;
  std::map<std::string, std::shared_ptr<LockManager>> locks_;  // GUARDED_BY(locks_mu_)
};

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_LOCAL_ENGINE_H_
