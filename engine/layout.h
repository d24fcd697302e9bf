// The local store's key layout. Each bucket has two RocksDB column families:
// its records ("b:<name>") and its revision log ("l:<name>"), kept apart so
// that the family Get reads holds nothing but records. Settings and revision
// counters live in the "meta" family.
//
// In a bucket's record family:
//   'k' key                    -> latest Record of the key (Get is one lookup)
//   'h' key '\0' BE64(rev)     -> an earlier Record still retained by history
//   'x' BE64(expiry ns) key    -> BE64(rev): a local bucket's expiry index, one
//                                 per TTL write, in expiry order. Stale ones
//                                 (the key was written again) are dropped when
//                                 due.
// Keys never contain '\0' (both key validators refuse it, and a replicated
// entry with such a key is skipped, not applied), so the 'h' prefix of one
// key never runs into another's. Keys have no length limit here: a replica
// holds keys of any length that another client stored.
//
// In a bucket's log family:
//   BE64(rev)                  -> key, for every retained revision. Big-endian
//                                 revisions sort numerically. From format 2
//                                 the key may be followed by '\0' and the BE64
//                                 revisions whose log records this commit
//                                 replaced (its "trims"): a local commit does
//                                 not delete them itself (see "rev/" below).
//                                 Until they are deleted, readers skip a log
//                                 record whose revision is no longer retained.
//
// In the meta family:
//   "format"                   -> store format version (BE64)
//   "cfg/" name                -> BucketConfig
//   "rev/" name                -> BE64 "floor": the bucket's last revision is
//                                 the larger of this and the last log key, and
//                                 every log record at or below it has had its
//                                 trims deleted. A replica writes it (its
//                                 applied revision, which moves across gaps
//                                 and skips) with every batch it applies; a
//                                 local bucket every CommitPath::kFloorCommits
//                                 commits, with the deferred trims in the
//                                 same batch.
//                                 Opening the store deletes the trims of log
//                                 records above it (a crash left them) and
//                                 writes it again. In format 1 it was written
//                                 by every commit and log values had no trims,
//                                 which format 2 reads as they are: moving a
//                                 store from 1 to 2 rewrites only "format".
//   "own/" name                -> BE64: while a replica holds its own writes
//                                 applied ahead of its consumer (provisional
//                                 times, ReplicaSink::ApplyOwnWrites), the
//                                 stream position the consumer reached. Every
//                                 log record above it is such a write; the
//                                 consumer resumes after it, so that a
//                                 restart still corrects their times. Absent
//                                 otherwise (a revkv that does not know it
//                                 only keeps the provisional times).
//   "src/" name                -> BE64 creation time of the stream a replica mirrors
//   "skip/" name               -> the stream messages a replica skipped (never
//                                 applicable): BE64 count, BE64 revision of the
//                                 first, then why the first was skipped

#ifndef REVKV_ENGINE_LAYOUT_H_
#define REVKV_ENGINE_LAYOUT_H_

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace revkv::engine {

inline constexpr char kLatestPrefix = 'k';
inline constexpr char kHistoryPrefix = 'h';
inline constexpr const char* kMetaFamily = "meta";
inline constexpr const char* kBucketFamilyPrefix = "b:";
inline constexpr const char* kLogFamilyPrefix = "l:";
inline constexpr uint64_t kStoreFormatVersion = 2;
// The oldest format this revkv opens; older stores are upgraded at open
// (local_engine.cc).
inline constexpr uint64_t kOldestStoreFormatVersion = 1;

inline void AppendBE64(std::string* out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out->push_back(static_cast<char>(v >> shift));
}

inline uint64_t DecodeBE64(std::string_view s) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8 && i < s.size(); ++i) v = (v << 8) | static_cast<unsigned char>(s[i]);
  return v;
}

inline std::string LatestKey(std::string_view key) {
  std::string out;
  out.reserve(key.size() + 1);
  out.push_back(kLatestPrefix);
  out.append(key);
  return out;
}

inline std::string HistoryKey(std::string_view key, uint64_t rev) {
  std::string out;
  out.reserve(key.size() + 10);
  out.push_back(kHistoryPrefix);
  out.append(key);
  out.push_back('\0');
  AppendBE64(&out, rev);
  return out;
}

inline constexpr char kExpiryPrefix = 'x';

inline std::string ExpiryKey(int64_t expires_ns, std::string_view key) {
  std::string out;
  out.reserve(key.size() + 9);
  out.push_back(kExpiryPrefix);
  AppendBE64(&out, static_cast<uint64_t>(expires_ns));
  out.append(key);
  return out;
}

inline std::string RevisionKey(uint64_t rev) {
  std::string out;
  out.reserve(8);
  AppendBE64(&out, rev);
  return out;
}

// A log record's value: the key, then the revisions it trims (layout above).
inline std::string LogValue(std::string_view key, const std::vector<uint64_t>& trims) {
  std::string out;
  out.reserve(key.size() + (trims.empty() ? 0 : 1 + 8 * trims.size()));
  out.append(key);
  if (!trims.empty()) {
    out.push_back('\0');
    for (uint64_t r : trims) AppendBE64(&out, r);
  }
  return out;
}
// The key of a log record's value.
inline std::string_view LogValueKey(std::string_view value) {
  return value.substr(0, std::min(value.find('\0'), value.size()));
}
// Appends the revisions a log record's value trims to `out`.
inline void LogValueTrims(std::string_view value, std::vector<uint64_t>* out) {
  size_t nul = value.find('\0');
  if (nul == std::string_view::npos) return;
  for (size_t i = nul + 1; i + 8 <= value.size(); i += 8) out->push_back(DecodeBE64(value.substr(i, 8)));
}

inline std::string BucketFamily(std::string_view bucket) {
  return std::string(kBucketFamilyPrefix) + std::string(bucket);
}
inline std::string LogFamily(std::string_view bucket) {
  return std::string(kLogFamilyPrefix) + std::string(bucket);
}
inline std::string ConfigKey(std::string_view bucket) { return "cfg/" + std::string(bucket); }
inline std::string CounterKey(std::string_view bucket) { return "rev/" + std::string(bucket); }
inline std::string OwnKey(std::string_view bucket) { return "own/" + std::string(bucket); }
inline std::string SourceKey(std::string_view bucket) { return "src/" + std::string(bucket); }
inline std::string SkipKey(std::string_view bucket) { return "skip/" + std::string(bucket); }

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_LAYOUT_H_
