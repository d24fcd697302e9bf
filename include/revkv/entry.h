// Entry: one stored revision of a key, as NATS KV defines it.

#ifndef REVKV_ENTRY_H_
#define REVKV_ENTRY_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace revkv {

// What a revision did to its key. Delete and Purge revisions are tombstones:
// Get reads them as NotFound.
enum class Operation : uint8_t {
  kPut = 0,
  kDelete = 1,  // NATS "DEL": a tombstone that keeps earlier history.
  kPurge = 2,   // NATS "PURGE": a tombstone that drops earlier history.
};

// "PUT", "DEL" or "PURGE", the names the NATS tools print.
std::string_view OperationName(Operation op);

struct Entry {
  std::string key;
  std::string value;      // Empty for tombstones.
  uint64_t revision = 0;  // Bucket-wide, strictly increasing, never 0.
  int64_t created_ns = 0; // Commit time, nanoseconds since the Unix epoch, UTC.
  Operation operation = Operation::kPut;
  // The entry's own time to live, from a write with WriteOptions::ttl (or,
  // in a replicated bucket, a message with a Nats-TTL header); 0 for none.
  // The entry expires at created_ns + ttl_ns.
  int64_t ttl_ns = 0;

  bool is_tombstone() const { return operation != Operation::kPut; }
};

}  // namespace revkv

#endif  // REVKV_ENTRY_H_
