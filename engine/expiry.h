// Expiry of entries: per-key TTL (WriteOptions::ttl, or a Nats-TTL header on
// another client's message) and a replicated bucket's max_age. Pure rules,
// shared by local buckets, replicas and the replicated write path.

#ifndef REVKV_ENGINE_EXPIRY_H_
#define REVKV_ENGINE_EXPIRY_H_

#include <chrono>
#include <cstdint>
#include <string_view>

#include "revkv/entry.h"
#include "revkv/status.h"

namespace revkv::engine {

// An entry's ttl_ns of kTtlNever is exempt from expiry, max_age included
// (NATS's "Nats-TTL: never").
inline constexpr int64_t kTtlNever = -1;

// The longest TTL a write may carry: far beyond any use, and small enough
// that created + ttl never overflows.
inline constexpr std::chrono::seconds kMaxTtl = std::chrono::hours(24 * 365 * 100);

// The wall clock in nanoseconds since the epoch: entries' created times and
// TTL deadlines are on it.
inline int64_t WallClockNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// When an entry stops being readable.
struct ExpiryRules {
  int64_t max_age_ns = 0;  // the bucket's max_age; 0: none
  int64_t grace_ns = 0;    // how much longer than its expiry an entry stays readable
};

// Whether an entry created at `created_ns` with `ttl_ns` has expired at
// `now_ns` under `rules`. Entries without a TTL expire only by max_age.
inline bool IsExpired(int64_t created_ns, int64_t ttl_ns, const ExpiryRules& rules,
                      int64_t now_ns) {
  if (ttl_ns == kTtlNever) return false;
  if (ttl_ns > 0 && created_ns + ttl_ns + rules.grace_ns <= now_ns) return true;
  return rules.max_age_ns > 0 && created_ns + rules.max_age_ns + rules.grace_ns <= now_ns;
}

// Whether an entry could ever expire under `rules`: lets the read path skip
// the clock for the common entry.
inline bool MayExpire(int64_t ttl_ns, const ExpiryRules& rules) {
  return ttl_ns > 0 || (rules.max_age_ns > 0 && ttl_ns != kTtlNever);
}

// Which write a TTL is asked for.
enum class TtlWrite { kPut, kCreate, kUpdate, kDelete, kPurge };

// OK, or InvalidArgument saying why `ttl` cannot go with this write to
// bucket `bucket` of history `history`:
//  - a TTL is whole seconds, at least 1 s (0: none) and at most kMaxTtl;
//  - a Delete cannot carry one (a DEL tombstone that expires would bring
//    nothing back, NATS refuses it too);
//  - Put and Update carry one only with history 1: with more history, the
//    newest revision would expire and bring the older one back.
// Create (any history) and Purge (the tombstone removes itself) may.
Status CheckWriteTtl(std::string_view bucket, int history, TtlWrite write,
                     std::chrono::seconds ttl);

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_EXPIRY_H_
