// The UpdateWithRetry algorithm (DESIGN §7), shared by local and replicated
// buckets: it reads, mutates and writes through the Bucket interface, so the
// same code runs a local CAS or a server-arbitrated one.

#ifndef REVKV_ENGINE_UPDATE_WITH_RETRY_H_
#define REVKV_ENGINE_UPDATE_WITH_RETRY_H_

#include <string_view>

#include "engine/key_gate.h"
#include "revkv/bucket.h"

namespace revkv::engine {

// As Bucket::UpdateWithRetry. `gate` serializes this process's callers per
// key.
Result<UpdateOutcome> RunUpdateWithRetry(Bucket& bucket, KeyGate& gate, std::string_view key,
                                         const Mutator& mutate, const RetryPolicy& policy,
                                         const WriteOptions& options);

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_UPDATE_WITH_RETRY_H_
