#include "engine/update_with_retry.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "revkv/validation.h"

namespace revkv::engine {
namespace {

// The wait between attempts: full jitter, a uniform wait in [0, bound],
// which spreads retrying writers, with the bound doubling up to the
// policy's maximum, and never past the deadline.
class Backoff {
 public:
  using Clock = std::chrono::steady_clock;
  Backoff(const RetryPolicy& policy, bool has_deadline, Clock::time_point deadline)
      : policy_(policy),
        has_deadline_(has_deadline),
        deadline_(deadline),
        bound_(std::max(policy.initial_backoff, std::chrono::microseconds(1))) {}

  void Wait() {
    thread_local std::minstd_rand rng(std::random_device{}());
    auto wait = std::chrono::microseconds(
        std::uniform_int_distribution<int64_t>(0, bound_.count())(rng));
    if (has_deadline_) {
      wait = std::min(wait, std::chrono::duration_cast<std::chrono::microseconds>(
                                deadline_ - Clock::now()));
    }
    if (wait.count() > 0) std::this_thread::sleep_for(wait);
    bound_ = std::min(bound_ * 2, std::max(policy_.max_backoff, policy_.initial_backoff));
  }

 private:
  const RetryPolicy& policy_;
  const bool has_deadline_;
  const Clock::time_point deadline_;
  std::chrono::microseconds bound_;
};

}  // namespace

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
  Backoff backoff(policy, has_deadline, deadline);

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
    backoff.Wait();
  }
}

Result<ManyUpdateOutcome> RunUpdateManyWithRetry(Bucket& bucket, KeyGate& gate,
                                                 const std::vector<std::string>& keys,
                                                 const ManyMutator& mutate,
                                                 const RetryPolicy& policy,
                                                 const WriteOptions& options, bool check_kept,
                                                 const CatchUp& catch_up) {
  if (keys.empty()) return Status::InvalidArgument("UpdateManyWithRetry needs at least one key");
  if (keys.size() > kMaxTxnOps) {
    return Status::InvalidArgument("UpdateManyWithRetry got " + std::to_string(keys.size()) +
                                   " keys; at most " + std::to_string(kMaxTxnOps) +
                                   " fit in one transaction");
  }
  std::vector<std::string> sorted = keys;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (Status s = ValidateKey(sorted[i]); !s.ok()) return s;
    if (i > 0 && sorted[i] == sorted[i - 1]) {
      return Status::InvalidArgument("key '" + sorted[i] + "' is given twice to "
                                     "UpdateManyWithRetry; give each key once");
    }
  }
  if (policy.max_attempts < 1) {
    return Status::InvalidArgument("RetryPolicy::max_attempts is " +
                                   std::to_string(policy.max_attempts) + "; give at least 1");
  }
  if (!mutate) return Status::InvalidArgument("UpdateManyWithRetry needs a mutate function");
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const bool has_deadline = policy.deadline.count() > 0;
  const auto deadline = start + policy.deadline;
  Backoff backoff(policy, has_deadline, deadline);

  // Threads of this process queue per key, as UpdateWithRetry's do; the
  // gates are taken in key order, so two callers never wait on each other.
  std::vector<std::unique_ptr<KeyGate::Pass>> passes;
  for (const std::string& key : sorted) passes.push_back(std::make_unique<KeyGate::Pass>(&gate, key));

  for (int attempt = 1;; ++attempt) {
    auto read = bucket.GetMany(keys);
    if (!read.ok()) return read.status();
    std::vector<std::optional<std::string>> current;
    for (KeyRead& k : read->keys) {
      current.push_back(k.entry ? std::optional<std::string>(std::move(k.entry->value))
                                : std::nullopt);
    }
    ManyUpdateOutcome out;
    out.attempts = attempt;
    for (const KeyRead& k : read->keys) out.revisions.push_back(k.revision);
    out.revision = read->revision;
    std::optional<std::vector<KeyChange>> changes = mutate(current);
    if (!changes) return out;
    if (changes->size() != keys.size()) {
      return Status::InvalidArgument("UpdateManyWithRetry's mutate returned " +
                                     std::to_string(changes->size()) + " changes for " +
                                     std::to_string(keys.size()) + " keys; return one per key, "
                                     "in the order of the keys (KeyChange::Keep() for none)");
    }
    Txn txn;
    std::vector<size_t> op_of_key(keys.size(), SIZE_MAX);
    for (size_t i = 0; i < keys.size(); ++i) {
      const KeyChange& c = (*changes)[i];
      const uint64_t seen = read->keys[i].revision;
      const bool present = read->keys[i].entry.has_value();
      if (c.kind == KeyChange::Kind::kPut) {
        // A compare-and-swap on what was read, a tombstone's revision or
        // "no entry" (0) included: never a blind Put.
        op_of_key[i] = txn.ops.size();
        txn.ops.push_back(TxnOp::Update(keys[i], c.value, seen));
      } else if (c.kind == KeyChange::Kind::kDelete && present) {
        op_of_key[i] = txn.ops.size();
        txn.ops.push_back(TxnOp::Delete(keys[i], seen));
      } else if (check_kept) {
        txn.compares.push_back(TxnCompare::RevisionIs(keys[i], seen));
      }
    }
    if (txn.ops.empty()) return out;  // nothing to write: the snapshot was consistent
    auto committed = bucket.Commit(txn, options);
    if (committed.ok()) {
      for (size_t i = 0; i < keys.size(); ++i) {
        if (op_of_key[i] != SIZE_MAX) out.revisions[i] = committed->revisions[op_of_key[i]];
      }
      out.revision = committed->revision;
      out.written = true;
      return out;
    }
    const Status& st = committed.status();
    if (!st.IsConflict() && !st.IsExists()) return st;
    const bool out_of_time = has_deadline && Clock::now() >= deadline;
    if (attempt >= policy.max_attempts || out_of_time) {
      return Status::Conflict("gave up updating " + std::to_string(keys.size()) +
                                  " keys of bucket '" + bucket.name() + "' after " +
                                  std::to_string(attempt) + " attempts" +
                                  (out_of_time ? " (deadline passed)" : "") +
                                  ": other writers kept changing them; last: " +
                                  std::string(st.message()),
                              st.revision());
    }
    if (catch_up) {
      catch_up(st.revision_known() ? std::optional<uint64_t>(st.revision()) : std::nullopt,
               has_deadline ? deadline : Clock::time_point::max());
    }
    backoff.Wait();
  }
}

}  // namespace revkv::engine
