#include "engine/lock_fence.h"

#include <mutex>

#include "engine/bucket_registry.h"
#include "engine/record_codec.h"
#include "revkv/validation.h"

namespace revkv::engine {

Status LockRecordFence::RunFenced(const Fence& fence, const std::string& bucket,
                                  CommitPath* writer, const std::vector<std::string_view>& keys,
                                  const std::function<Status()>& commit) {
  const std::string& locks_bucket =
      fence.locks_bucket.empty() ? default_locks_bucket_ : fence.locks_bucket;
  if (locks_bucket == bucket) {
    for (std::string_view key : keys) {
      if (key == fence.lock) {
        return Status::InvalidArgument("a fenced write cannot target its own lock's record '" +
                                       fence.lock +
                                       "'; locks change only through Acquire and Release");
      }
    }
  }
  if (Status s = ValidateKey(fence.lock); !s.ok()) {
    return Status::InvalidArgument("fence names a bad lock: " + std::string(s.message()));
  }
  auto registry = registry_.lock();
  if (!registry) {
    return Status::Unavailable("the engine of bucket '" + bucket +
                               "' is closed; fenced writes need its locks bucket");
  }
  auto locks = registry->Open(locks_bucket, {});
  if (!locks.ok()) return locks.status();
  CommitPath* lock_path = &(*locks)->commit_path();
  std::unique_lock<std::mutex> own(writer->mutex(), std::defer_lock);
  std::unique_lock<std::mutex> other(lock_path->mutex(), std::defer_lock);
  if (lock_path == writer) {
    own.lock();
  } else {
    std::lock(own, other);
  }
  auto record = (*locks)->store().ReadLatest(fence.lock);
  if (!record.ok()) return record.status();
  const bool live = record->has_value() && (*record)->operation == Operation::kPut;
  if (Status s = CheckFenceRecord(fence, live, live ? (*record)->revision : 0,
                                  live ? std::string_view((*record)->value) : std::string_view());
      !s.ok()) {
    return s;
  }
  return commit();
}

}  // namespace revkv::engine
