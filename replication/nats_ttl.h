// The Nats-TTL header (nats-server 2.11+, ADR-43): a message's own time to
// live. The server takes a Go duration ("30s", "1h0m0s", "1.5s" truncated
// to whole seconds), a bare number of seconds ("30"), or "never" (any case;
// the message is exempt from the stream's max_age too). Anything below 1 s
// is refused.

#ifndef REVKV_REPLICATION_NATS_TTL_H_
#define REVKV_REPLICATION_NATS_TTL_H_

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "revkv/result.h"

namespace revkv::replication {

inline constexpr char kNatsTtlHeader[] = "Nats-TTL";

// The TTL a header value gives, in nanoseconds of whole seconds, as the
// server reads it; engine::kTtlNever for "never". InvalidArgument for a
// value the server would refuse (below 1 s, negative, not a duration).
Result<int64_t> ParseNatsTtl(std::string_view value);

// The header value for a TTL of whole seconds: "<n>s".
std::string FormatNatsTtl(std::chrono::seconds ttl);

}  // namespace revkv::replication

#endif  // REVKV_REPLICATION_NATS_TTL_H_
