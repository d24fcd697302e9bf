// ReplicatedEngine: an Engine whose buckets mirror JetStream KV buckets,
// over one NATS connection, with a local store holding the replicas.

#ifndef REVKV_REPLICATION_REPLICATED_ENGINE_H_
#define REVKV_REPLICATION_REPLICATED_ENGINE_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "engine/local_engine.h"
#include "engine/lock_manager.h"
#include "replication/nats_connection.h"
#include "replication/replicated_bucket.h"
#include "revkv/engine.h"

namespace revkv::replication {

class ReplicatedEngine final : public Engine {
 public:
  static Result<std::unique_ptr<Engine>> Open(const Options& options);
  // Completes every bucket's asynchronous writes in flight first.
  ~ReplicatedEngine() override;

  Result<std::shared_ptr<Bucket>> OpenBucket(std::string_view name,
                                             const BucketOptions& options) override;
  std::vector<std::string> ListBuckets() override { return local_->ListBuckets(); }
  Result<std::unique_ptr<Lock>> Acquire(std::string_view name, std::chrono::milliseconds lease,
                                        std::chrono::milliseconds timeout,
                                        const LockOptions& options) override;
  Result<std::unique_ptr<Lock>> TryAcquire(std::string_view name, std::chrono::milliseconds lease,
                                           const LockOptions& options) override;
  Status CatchUp() override { return local_->CatchUp(); }
  Statistics GetStatistics() override;
  Result<std::string> ServerVersion() override;

 private:
  ReplicatedEngine(std::unique_ptr<engine::LocalEngine> local,
                   std::shared_ptr<NatsConnection> conn, const Options& options)
      : local_(std::move(local)),
        conn_(std::move(conn)),
        locks_bucket_(options.locks_bucket),
        locks_max_age_(options.locks_max_age),
        log_(engine::Log::From(options)) {}

  // OpenBucket for a replicated bucket; callers hold mu_. A missing bucket
  // is created with `max_age_if_created`, and with limit markers of
  // `markers_if_created` where the server has them (0: none).
  Result<std::shared_ptr<ReplicatedBucket>> OpenReplicatedLocked(
      const std::string& name, const BucketOptions& options,
      std::chrono::nanoseconds max_age_if_created,
      std::chrono::seconds markers_if_created = std::chrono::seconds(0));
  // The lock manager over replicated locks bucket `bucket` (empty:
  // Options::locks_bucket), made on first use.
  Result<std::shared_ptr<engine::LockManager>> Locks(std::chrono::milliseconds lease,
                                                     const std::string& bucket);

  // Constant after construction. The connection outlives the buckets it
  // serves: buckets hold it too.
  const std::unique_ptr<engine::LocalEngine> local_;
  const std::shared_ptr<NatsConnection> conn_;

  const std::string locks_bucket_;
  const std::chrono::seconds locks_max_age_;
  const engine::Log log_;

  std::mutex mu_;
  std::map<std::string, std::shared_ptr<ReplicatedBucket>, std::less<>> buckets_;  // GUARDED_BY(mu_)
  struct Locking {
    std::shared_ptr<engine::LockManager> manager;
    std::chrono::nanoseconds max_age{0};  // the bucket's, when bound
  };
  std::map<std::string, Locking, std::less<>> locks_;  // GUARDED_BY(mu_), by bucket
};

}  // namespace revkv::replication

#endif  // REVKV_REPLICATION_REPLICATED_ENGINE_H_
