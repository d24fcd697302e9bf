// Pieces of the campaign's JSON-lines history shared by the runner and the
// workers: the clocks every line carries, string quoting, and the op id a
// written value carries ("id=<W>-<inc>-<seq>;token=<T>").

#ifndef REVKV_TESTS_CAMPAIGN_HISTORY_LINE_H_
#define REVKV_TESTS_CAMPAIGN_HISTORY_LINE_H_

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace revkv::campaign {

// CLOCK_MONOTONIC: comparable across the processes of one machine.
inline int64_t MonoNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
inline int64_t WallNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// `s` as a JSON string.
inline std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// The op id and token a value carries; both empty if it carries none, the
// token empty when it is 0 (a write made without a lock).
inline void ParseValue(std::string_view v, std::string* id, std::string* token) {
  if (v.substr(0, 3) != "id=") return;
  const size_t semi = v.find(';');
  *id = std::string(v.substr(3, semi == std::string_view::npos ? semi : semi - 3));
  const size_t t = v.find("token=");
  if (t != std::string_view::npos && token != nullptr) {
    *token = std::string(v.substr(t + 6));
    if (*token == "0") token->clear();
  }
}

}  // namespace revkv::campaign

#endif  // REVKV_TESTS_CAMPAIGN_HISTORY_LINE_H_
