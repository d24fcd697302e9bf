// LockRecordFence: the FenceCheck of a local store, where a lock is a
// record of its locks bucket (lock_manager.h) and a fence holds while that
// record carries the fence's token.

#ifndef REVKV_ENGINE_LOCK_FENCE_H_
#define REVKV_ENGINE_LOCK_FENCE_H_

#include <memory>
#include <string>

#include "engine/fence_check.h"

namespace revkv::engine {

class BucketRegistry;

class LockRecordFence final : public FenceCheck {
 public:
  // `default_locks_bucket`: Options::locks_bucket, for fences that name none.
  LockRecordFence(std::weak_ptr<BucketRegistry> registry, std::string default_locks_bucket)
      : registry_(std::move(registry)), default_locks_bucket_(std::move(default_locks_bucket)) {}

  // Holds the locks bucket's write mutex and the writer's together
  // (std::scoped_lock avoids deadlock: with locks in several buckets, two
  // buckets may fence each other's writes), so that no takeover can slip in
  // between the check and the commit. When the lock lives in the written
  // bucket itself (data and locks sharing a key space), one mutex covers
  // both.
  Status RunFenced(const Fence& fence, const std::string& bucket, CommitPath* writer,
                   const std::vector<std::string_view>& keys,
                   const std::function<Status()>& commit) override;

 private:
  const std::weak_ptr<BucketRegistry> registry_;
  const std::string default_locks_bucket_;
};

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_LOCK_FENCE_H_
