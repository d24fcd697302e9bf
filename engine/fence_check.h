// FenceCheck: how a bucket makes a fenced write (WriteOptions::fence)
// without knowing how locks are stored. The engine injects one into every
// local bucket; the bucket hands it the commit to make, and the check runs
// the commit only while the lock's current token is the fence's, as one
// atomic step with it.

#ifndef REVKV_ENGINE_FENCE_CHECK_H_
#define REVKV_ENGINE_FENCE_CHECK_H_

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "revkv/options.h"
#include "revkv/status.h"

namespace revkv::engine {

class CommitPath;

class FenceCheck {
 public:
  virtual ~FenceCheck() = default;

  // Runs `commit` (which commits to `writer`, the commit path of bucket
  // `bucket`, and expects its mutex held) if `fence` holds, with both held
  // across the check and the commit. `keys`: the keys the commit writes.
  // LockLost if the fence does not hold; InvalidArgument for a bad fence or
  // a write to the fence's own lock record; Unavailable when the locks
  // bucket cannot be reached.
  virtual Status RunFenced(const Fence& fence, const std::string& bucket, CommitPath* writer,
                           const std::vector<std::string_view>& keys,
                           const std::function<Status()>& commit) = 0;
};

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_FENCE_CHECK_H_
