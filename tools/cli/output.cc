#include "output.h"

#include <time.h>

#include <cstdio>

#include "common.h"

namespace revkv::cli {

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

bool IsValidUtf8(std::string_view s) {
  // nlohmann's strict dump validates with a full UTF-8 decoder.
  try {
    (void)Json(std::string(s)).dump();
    return true;
  } catch (const Json::type_error&) {
    return false;
  }
}

std::string Base64(std::string_view s) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((s.size() + 2) / 3 * 4);
  for (size_t i = 0; i < s.size(); i += 3) {
    const size_t n_bytes = std::min<size_t>(3, s.size() - i);
    uint32_t n = 0;
    for (size_t k = 0; k < 3; ++k) {
      n = (n << 8) | (k < n_bytes ? static_cast<unsigned char>(s[i + k]) : 0u);
    }
    for (size_t k = 0; k < 4; ++k) {
      out += k <= n_bytes ? kAlphabet[(n >> (18 - 6 * k)) & 63] : '=';
    }
  }
  return out;
}

std::optional<std::string> DecodeBase64(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  auto sextet = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    const size_t pad =
        last ? (text[i + 3] == '=') + (text[i + 2] == '=' && text[i + 3] == '=') : 0;
    uint32_t n = 0;
    for (size_t k = 0; k < 4; ++k) {
      const int v = k < 4 - pad ? sextet(text[i + k]) : 0;
      if (v < 0) return std::nullopt;
      n = (n << 6) | static_cast<uint32_t>(v);
    }
    out += static_cast<char>((n >> 16) & 0xff);
    if (pad < 2) out += static_cast<char>((n >> 8) & 0xff);
    if (pad < 1) out += static_cast<char>(n & 0xff);
  }
  return out;
}

std::string FormatTime(int64_t ns) {
  constexpr int64_t kNsPerSec = 1000000000;
  int64_t seconds = ns / kNsPerSec;
  int64_t fraction = ns % kNsPerSec;
  if (fraction < 0) {  // floor, so that times before 1970 still format
    fraction += kNsPerSec;
    --seconds;
  }
  const time_t t = static_cast<time_t>(seconds);
  struct tm tm {};
  if (gmtime_r(&t, &tm) == nullptr) return "invalid-time(" + std::to_string(ns) + ")";
  char date[64];
  strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
  char out[96];
  snprintf(out, sizeof(out), "%s.%09lldZ", date, static_cast<long long>(fraction));
  return out;
}

std::string EscapeText(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out += Printable(std::string_view(reinterpret_cast<const char*>(&c), 1));
    }
  }
  return out;
}

namespace {

// An entry's own TTL: "30s", or "never" (exempt from max_age too).
std::string TtlText(int64_t ttl_ns) {
  if (ttl_ns < 0) return "never";
  return std::to_string(ttl_ns / 1000000000) + "s";
}

// `name` as a JSON string, or in base64 with "<name>_encoding" if not UTF-8.
void AddBytes(Json* j, const std::string& name, const std::string& bytes) {
  if (IsValidUtf8(bytes)) {
    (*j)[name] = bytes;
  } else {
    (*j)[name] = Base64(bytes);
    (*j)[name + "_encoding"] = "base64";
  }
}

}  // namespace

std::string EntryJson(const revkv::Entry& e) {
  Json j = Json::object();
  AddBytes(&j, "key", e.key);
  AddBytes(&j, "value", e.value);
  j["revision"] = e.revision;
  j["operation"] = revkv::OperationName(e.operation);
  j["created"] = FormatTime(e.created_ns);
  if (e.ttl_ns != 0) j["ttl"] = TtlText(e.ttl_ns);
  return Dump(j) + "\n";
}

// The value field is present (empty) for tombstones, so every line has the
// same shape.
std::string EntryLine(const revkv::Entry& e, bool json, bool with_key) {
  if (json) return EntryJson(e);
  std::string line = std::to_string(e.revision) + " ";
  if (with_key) line += e.key + " ";
  return line + std::string(revkv::OperationName(e.operation)) + " " + FormatTime(e.created_ns) +
         " " + EscapeText(e.value) + "\n";
}

std::string EntryText(const revkv::Entry& e) {
  return "key: " + e.key + "\nrevision: " + std::to_string(e.revision) +
         "\noperation: " + std::string(revkv::OperationName(e.operation)) +
         "\ncreated: " + FormatTime(e.created_ns) +
         (e.ttl_ns != 0 ? "\nttl: " + TtlText(e.ttl_ns) : std::string()) +
         "\nvalue: " + EscapeText(e.value) + "\n";
}

std::string StatusText(bool json, const StatusReport& s) {
  const bool skipped = s.skipped > 0;
  const std::optional<uint64_t> lag =
      s.stream_last ? std::optional<uint64_t>(*s.stream_last >= s.applied ? *s.stream_last - s.applied : 0)
                    : std::nullopt;
  if (json) {
    auto number_or_null = [](std::optional<uint64_t> v) { return v ? Json(*v) : Json(nullptr); };
    Json j = Json::object();
    j["applied"] = s.applied;
    j["stream_last"] = number_or_null(s.stream_last);
    j["lag"] = number_or_null(lag);
    j["connected"] = s.connected;
    j["server_version"] = s.server_version.empty() ? Json(nullptr) : Json(s.server_version);
    j["skipped"] = s.skipped;
    j["first_skipped"] = number_or_null(skipped ? std::optional(s.first_skipped) : std::nullopt);
    j["skipped_reason"] = skipped ? Json(s.skipped_reason) : Json(nullptr);
    if (s.disk_bytes) j["disk_bytes"] = *s.disk_bytes;
    return Dump(j) + "\n";
  }
  auto text_or_unknown = [](std::optional<uint64_t> v) {
    return v ? std::to_string(*v) : std::string("unknown");
  };
  std::string out = "applied: " + std::to_string(s.applied) +
                    "\nstream_last: " + text_or_unknown(s.stream_last) +
                    "\nlag: " + text_or_unknown(lag) +
                    "\nconnected: " + (s.connected ? "true" : "false") +
                    (s.server_version.empty() ? "" : "\nserver_version: " + Printable(s.server_version)) +
                    "\nskipped: " + std::to_string(s.skipped) + "\n";
  if (skipped) {
    out += "first_skipped: " + std::to_string(s.first_skipped) +
           "\nskipped_reason: " + Printable(s.skipped_reason) + "\n";
  }
  if (s.disk_bytes) out += "disk_bytes: " + std::to_string(*s.disk_bytes) + "\n";
  return out;
}

}  // namespace revkv::cli
