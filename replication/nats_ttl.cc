#include "replication/nats_ttl.h"

#include <cctype>
#include <charconv>
#include <cmath>

#include "engine/expiry.h"

namespace revkv::replication {
namespace {

Status Bad(std::string_view value, std::string_view why) {
  return Status::InvalidArgument("Nats-TTL '" + std::string(value) + "' " + std::string(why) +
                                 "; give whole seconds (\"30\"), a duration (\"30s\", \"1h0m0s\") "
                                 "or \"never\"");
}

// Go's time.ParseDuration, to nanoseconds as a double: a sequence of
// decimal numbers, each with a unit (ns, us, µs, ms, s, m, h), with an
// optional sign; "0" alone is zero.
bool ParseGoDuration(std::string_view s, double* out) {
  double total = 0;
  bool negative = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s == "0") {
    *out = 0;
    return true;
  }
  if (s.empty()) return false;
  while (!s.empty()) {
    size_t i = 0;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
    if (i == 0) return false;
    const std::string number(s.substr(0, i));
    if (number == "." || number.find('.') != number.rfind('.')) return false;
    const double n = std::strtod(number.c_str(), nullptr);
    s.remove_prefix(i);
    size_t u = 0;
    while (u < s.size() && !std::isdigit(static_cast<unsigned char>(s[u])) && s[u] != '.') ++u;
    const std::string_view unit = s.substr(0, u);
    s.remove_prefix(u);
    double scale;
    if (unit == "ns") {
      scale = 1;
    } else if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs") {
      scale = 1e3;
    } else if (unit == "ms") {
      scale = 1e6;
    } else if (unit == "s") {
      scale = 1e9;
    } else if (unit == "m") {
      scale = 60e9;
    } else if (unit == "h") {
      scale = 3600e9;
    } else {
      return false;
    }
    total += n * scale;
  }
  *out = negative ? -total : total;
  return true;
}

}  // namespace

Result<int64_t> ParseNatsTtl(std::string_view value) {
  std::string lower(value);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "never") return engine::kTtlNever;
  constexpr double kMaxNs = static_cast<double>(engine::kMaxTtl.count()) * 1e9;
  double ns = 0;
  if (ParseGoDuration(value, &ns)) {
    if (ns < 1e9) return Bad(value, "is below 1 s");
    // Whole seconds, as the server counts them; a TTL beyond a century is
    // read as one (the entry outlives any replica that reads it).
    return static_cast<int64_t>(std::floor(std::min(ns, kMaxNs) / 1e9)) * 1'000'000'000;
  }
  int64_t seconds = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (ec != std::errc() || end != value.data() + value.size()) {
    return Bad(value, "is not a duration");
  }
  if (seconds < 1) return Bad(value, "is below 1 s");
  return std::min<int64_t>(seconds, engine::kMaxTtl.count()) * 1'000'000'000;
}

std::string FormatNatsTtl(std::chrono::seconds ttl) { return std::to_string(ttl.count()) + "s"; }

}  // namespace revkv::replication
