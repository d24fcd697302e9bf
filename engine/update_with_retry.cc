#include "engine/update_with_retry.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <string>
#include <thread>

#include "revkv/validation.h"

namespace revkv::engine {

Result<UpdateOutcome> RunUpdateWithRetry(Bucket& bucket, KeyGate& gate, std::string_view key,
                                         const Mutator& mutate, const RetryPolicy& policy,
                                         const WriteOptions& options, const CatchUp& catch_up) {
  if (Status s = ValidateKey(key); !s.ok()) return s;
  if (policy.max_attempts < 1) {
    return Status::InvalidArgument("RetryPolicy::max_attempts is " +
                                   std::to_string(policy.max_attempts) + "; give at least 1");
  }
  if (!mutate) return Status::InvalidArgument("UpdateWithRetry needs a mutate function");
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const bool has_deadline = policy.deadline.count() > 0;
  const auto deadline = start + policy.deadline;
  thread_local std::minstd_rand rng(std::random_device{}());
  auto backoff = std::max(policy.initial_backoff, std::chrono::microseconds(1));

  // Threads of this process queue here per key, so that only writers
  // elsewhere can make an attempt conflict.
  KeyGate::Pass pass(&gate, key);
  uint64_t seen = 0;
  // A revision the store said the key no longer has (a Conflict naming
  // revision 0): for up to NatsOptions::max_clock_skew, a replica may still
  // show an entry that the server's max_age or a TTL removed, and only a
  // Create can write the key then.
  uint64_t vanished = 0;
  for (int attempt = 1;; ++attempt) {
    std::optional<std::string> current;
    auto entry = bucket.GetEntry(key);
    if (entry.ok() && entry->revision == vanished) {
      seen = 0;  // absent on the server
    } else if (entry.ok()) {
      seen = entry->revision;
      current = std::move(entry->value);
    } else if (entry.status().IsNotFound()) {
      seen = entry.status().revision();  // the tombstone's, or 0
    } else {
      return entry.status();
    }
    std::optional<std::string> next = mutate(current);
    if (!next) return UpdateOutcome{seen, attempt, false};
    // Create when absent or tombstoned (a CAS on the tombstone), never a
    // blind Put: a concurrent creator must make this attempt fail.
    auto written =
        current ? bucket.Update(key, *next, seen, options) : bucket.Create(key, *next, options);
    if (written.ok()) return UpdateOutcome{*written, attempt, true};
    const Status& st = written.status();
    if (!st.IsConflict() && !st.IsExists()) return st;
    const bool out_of_time = has_deadline && Clock::now() >= deadline;
    if (attempt >= policy.max_attempts || out_of_time) {
      return Status::Conflict("gave up updating key '" + std::string(key) + "' of bucket '" +
                                  bucket.name() + "' after " +
                                  std::to_string(attempt) + " attempts" +
                                  (out_of_time ? " (deadline passed)" : "") +
                                  ": other writers kept changing it; last seen at revision " +
                                  (st.revision_known() ? std::to_string(st.revision())
                                                       : std::string("unknown")),
                              st.revision());
    }
    const bool known = st.revision_known();
    if (st.IsConflict() && known && st.revision() == 0 && current) vanished = seen;
    if (catch_up && (!known || st.revision() > seen)) {
      catch_up(known ? std::optional<uint64_t>(st.revision()) : std::nullopt,
               has_deadline ? deadline : Clock::time_point::max());
    }
    // Full jitter: a uniform wait in [0, backoff] spreads retrying writers.
    auto wait = std::chrono::microseconds(
        std::uniform_int_distribution<int64_t>(0, backoff.count())(rng));
    if (has_deadline) {
      wait = std::min(wait, std::chrono::duration_cast<std::chrono::microseconds>(
                                deadline - Clock::now()));
    }
    if (wait.count() > 0) std::this_thread::sleep_for(wait);
    backoff = std::min(backoff * 2, std::max(policy.max_backoff, policy.initial_backoff));
  }
}

}  // namespace revkv::engine
