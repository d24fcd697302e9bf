#include "engine/expiry.h"

#include <string>

namespace revkv::engine {

Status CheckWriteTtl(std::string_view bucket, int history, TtlWrite write,
                     std::chrono::seconds ttl) {
  if (ttl.count() == 0) return Status::OK();
  const std::string b(bucket);
  if (ttl.count() < 0) {
    return Status::InvalidArgument("WriteOptions::ttl is " + std::to_string(ttl.count()) +
                                   " s; give at least 1 s, or 0 for no TTL");
  }
  if (ttl > kMaxTtl) {
    return Status::InvalidArgument("WriteOptions::ttl of " + std::to_string(ttl.count()) +
                                   " s is more than 100 years; give a shorter TTL, or 0 for none");
  }
  switch (write) {
    case TtlWrite::kCreate:
    case TtlWrite::kPurge:
      return Status::OK();
    case TtlWrite::kDelete:
      return Status::InvalidArgument(
          "a Delete cannot carry a TTL (bucket '" + b +
          "'): its tombstone keeps the key's history; use Purge with a TTL for a tombstone that "
          "removes itself");
    case TtlWrite::kPut:
    case TtlWrite::kUpdate:
      if (history == 1) return Status::OK();
      return Status::InvalidArgument(
          std::string(write == TtlWrite::kPut ? "Put" : "Update") + " with a TTL needs a bucket "
          "with history 1, and bucket '" + b + "' keeps " + std::to_string(history) +
          " revisions: when the newest expired, the older one would come back; use Create with "
          "a TTL, or a bucket with history 1");
  }
  return Status::OK();
}

}  // namespace revkv::engine
