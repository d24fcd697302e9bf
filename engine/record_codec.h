// Encoding and decoding of records (record.capnp). Every kj exception thrown
// by Cap'n Proto is caught here and becomes Status::Corruption.

#ifndef REVKV_ENGINE_RECORD_CODEC_H_
#define REVKV_ENGINE_RECORD_CODEC_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "revkv/entry.h"
#include "revkv/options.h"
#include "revkv/result.h"

namespace revkv::engine {

inline constexpr uint16_t kRecordSchemaVersion = 1;

// A decoded record: the entry plus, for a key's latest record, the earlier
// revisions still retained.
struct Record {
  Entry entry;
  std::vector<uint64_t> older_revisions;
};

// What a caller needs from a record; decoding less is faster.
enum class DecodeParts {
  kValueOnly,   // entry.operation, revision, created_ns, ttl_ns and value
  kHeader,      // everything but value and key
  kAll,
};

// Names a record in a Corruption message. The text is built only when a
// record turns out to be damaged, so that reads stay allocation-light.
struct RecordName {
  std::string_view bucket;
  std::string_view key;
  uint64_t revision = 0;  // 0: the key's latest record
  std::string ToString() const;
};

std::string EncodeRecord(const Entry& entry, const std::vector<uint64_t>& older_revisions);

// Decodes `bytes`; Corruption if they are not a valid record.
Result<Record> DecodeRecord(std::string_view bytes, DecodeParts parts, const RecordName& name);

// When a record was written and how long it lives (record.capnp ttlNs).
struct RecordTimes {
  int64_t created_ns = 0;
  int64_t ttl_ns = 0;
};

// Like DecodeRecord(kValueOnly) but writes into `out` to spare allocations;
// also fills `times` when given.
Status DecodeValueInto(std::string_view bytes, const RecordName& name, Operation* op,
                       uint64_t* revision, std::string* value, RecordTimes* times = nullptr);

struct BucketConfigValues {
  int history = 1;
  uint32_t max_value_size = 0;
};
std::string EncodeBucketConfig(const BucketConfigValues& cfg);
Result<BucketConfigValues> DecodeBucketConfig(std::string_view bytes, std::string_view what);

// The value of a lock entry (record.capnp LockRecord).
struct LockRecordValues {
  std::string owner;
  int64_t lease_ns = 0;
  int64_t acquired_at_ns = 0;
  uint64_t token = 0;  // 0: the entry's own revision is the token
};
std::string EncodeLockRecord(const LockRecordValues& lock);
Result<LockRecordValues> DecodeLockRecord(std::string_view bytes, std::string_view what);

// OK if `fence` names the current token of its lock, whose latest entry is
// `live` (a Put, not a tombstone or absent) at `revision` with `value`;
// else LockLost (Corruption: a damaged lock record).
Status CheckFenceRecord(const Fence& fence, bool live, uint64_t revision, std::string_view value);

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_RECORD_CODEC_H_
