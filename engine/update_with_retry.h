// The UpdateWithRetry algorithm (read, mutate, compare-and-swap, retry on
// Conflict with backoff; see Bucket::UpdateWithRetry), shared by local and
// replicated buckets: it reads, mutates and writes through the Bucket interface, so the
// same code runs a local CAS or a server-arbitrated one.

#ifndef REVKV_ENGINE_UPDATE_WITH_RETRY_H_
#define REVKV_ENGINE_UPDATE_WITH_RETRY_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/key_gate.h"
#include "revkv/bucket.h"

namespace revkv::engine {

// As Bucket::UpdateWithRetry. `gate` serializes this process's callers per
// key. `catch_up`, if given, runs after a conflict with the revision the
// store reported (std::nullopt when the store did not name one, see
// Status::ConflictRevisionUnknown) and the policy's deadline
// (time_point::max() if none), so that a bucket whose reads may lag (a
// replica) can wait to see it: the next read then sees the winner's value,
// instead of conflicting again on a stale one.
using CatchUp = std::function<void(std::optional<uint64_t> revision,
                                   std::chrono::steady_clock::time_point until)>;
Result<UpdateOutcome> RunUpdateWithRetry(Bucket& bucket, KeyGate& gate, std::string_view key,
                                         const Mutator& mutate, const RetryPolicy& policy,
                                         const WriteOptions& options, const CatchUp& catch_up = {});

// As Bucket::UpdateManyWithRetry. `check_kept`: compare the kept keys at
// commit (a replicated bucket cannot carry those compares). `catch_up` as
// above; the revision is the one a conflict named, of whichever key.
Result<ManyUpdateOutcome> RunUpdateManyWithRetry(Bucket& bucket, KeyGate& gate,
                                                 const std::vector<std::string>& keys,
                                                 const ManyMutator& mutate,
                                                 const RetryPolicy& policy,
                                                 const WriteOptions& options, bool check_kept,
                                                 const CatchUp& catch_up = {});

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_UPDATE_WITH_RETRY_H_
