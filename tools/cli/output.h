// The CLI's output formats: text lines, JSON (through nlohmann-json), and
// base64 for bytes that are not UTF-8.

#ifndef REVKV_TOOLS_CLI_OUTPUT_H_
#define REVKV_TOOLS_CLI_OUTPUT_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "revkv/revkv.h"

namespace revkv::cli {

// JSON objects keep their fields in the order they are written.
using Json = nlohmann::ordered_json;

// Compact JSON; bytes that are not UTF-8 become U+FFFD.
std::string Dump(const Json& j);
// Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF),
// because JSON readers reject or mangle anything else.
bool IsValidUtf8(std::string_view s);

// RFC 4648 base64, standard alphabet, with padding.
std::string Base64(std::string_view s);
// Strict: nullopt for anything Base64 would not write.
std::optional<std::string> DecodeBase64(std::string_view text);

// RFC 3339 UTC with nanoseconds, e.g. 2026-11-28T09:22:36.123456789Z.
std::string FormatTime(int64_t ns);
// Values in text output stay on one line; bytes >= 0x80 stay raw.
std::string EscapeText(std::string_view s);

// An entry as one JSON line; "ttl" only when the entry has one.
std::string EntryJson(const revkv::Entry& e);
// `history`'s line: REVISION OPERATION CREATED VALUE; `with_key` (watch) adds
// the key after the revision.
std::string EntryLine(const revkv::Entry& e, bool json, bool with_key);
// `entry`'s text form.
std::string EntryText(const revkv::Entry& e);

// `status`: the applied revision, the stream's last revision and the lag
// (unknown: nullopt), whether NATS is reachable, the server's version, the
// messages the replica skipped, and with `disk_bytes` the store's size.
struct StatusReport {
  uint64_t applied = 0;
  std::optional<uint64_t> stream_last;
  bool connected = false;
  std::string server_version;  // empty: unknown or local
  uint64_t skipped = 0;
  uint64_t first_skipped = 0;
  std::string skipped_reason;
  std::optional<uint64_t> disk_bytes;  // only with --disk-usage
};
std::string StatusText(bool json, const StatusReport& s);

}  // namespace revkv::cli

#endif  // REVKV_TOOLS_CLI_OUTPUT_H_
