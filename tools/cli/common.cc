#include "common.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <cstdio>

namespace revkv::cli {

std::string Printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (c >= 0x20 && c != 0x7f) {
      out += static_cast<char>(c);
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string Quote(std::string_view s) {
  // Built by appending: GCC 12 raises a false -Wrestrict on "'" + string.
  std::string out(1, '\'');
  out.append(Printable(s));
  out.push_back('\'');
  return out;
}

namespace {

void ErrorLine(std::string_view prefix, std::string_view message) {
  std::string line(prefix);
  line += Printable(message);
  line += '\n';
  fwrite(line.data(), 1, line.size(), stderr);
  fflush(stderr);
}

}  // namespace

int Fail(int code, std::string_view message) {
  ErrorLine("revkv: ", message);
  return code;
}

void Warn(std::string_view message) { ErrorLine("revkv: warning: ", message); }

int UsageError(std::string_view message) {
  return Fail(kExitError, std::string(message) + "; run 'revkv --help' for usage");
}

int ExitCodeFor(revkv::Code code) {
  switch (code) {
    case revkv::Code::kOk:
      return kExitOk;
    case revkv::Code::kNotFound:
      return kExitNotFound;
    case revkv::Code::kExists:
      return kExitExists;
    case revkv::Code::kConflict:
      return kExitConflict;
    case revkv::Code::kTimeout:
      return kExitTimeout;
    case revkv::Code::kUnavailable:
      return kExitUnavailable;
    case revkv::Code::kInvalidArgument:
      return kExitInvalidArgument;
    case revkv::Code::kLockLost:
      return kExitLockLost;
    default:
      return kExitError;
  }
}

int FailStatus(const revkv::Status& status) {
  return Fail(ExitCodeFor(status.code()), status.ToString());
}

bool Write(std::string_view s) { return fwrite(s.data(), 1, s.size(), stdout) == s.size(); }

int FinishOutput() {
  if (fflush(stdout) != 0 || ferror(stdout)) {
    return Fail(kExitError, std::string("cannot write to standard output: ") + strerror(errno));
  }
  return kExitOk;
}

// Nothing larger than kMaxMaxValueSize can be stored in any bucket, so
// reading stops one byte past it instead of exhausting memory.
int ReadStdin(std::string* out) {
  constexpr size_t kLimit = revkv::kMaxMaxValueSize;
  out->clear();
  char buf[1 << 16];
  while (out->size() <= kLimit) {
    const ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
    if (n == 0) return kExitOk;
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(kExitError, std::string("cannot read standard input: ") + strerror(errno));
    }
    out->append(buf, static_cast<size_t>(n));
  }
  return Fail(kExitInvalidArgument, "InvalidArgument: value from standard input is larger than " +
                                        std::to_string(kLimit) +
                                        " bytes, more than any bucket accepts");
}

std::optional<uint64_t> ParseUint64(std::string_view text) {
  if (text.empty()) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

// A bare number is refused: "--lease 30" could mean seconds or milliseconds.
// Capped at a year so that deadlines cannot overflow the clock.
std::optional<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  constexpr uint64_t kMaxMs = 365ULL * 24 * 60 * 60 * 1000;
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  const std::string_view unit = text.substr(digits);
  uint64_t scale;
  if (unit == "ms") {
    scale = 1;
  } else if (unit == "s") {
    scale = 1000;
  } else if (unit == "m") {
    scale = 60 * 1000;
  } else {
    return std::nullopt;
  }
  const std::optional<uint64_t> n = ParseUint64(text.substr(0, digits));
  if (!n || *n > kMaxMs / scale) return std::nullopt;
  return std::chrono::milliseconds(static_cast<int64_t>(*n * scale));
}

std::string FormatDuration(std::chrono::milliseconds d) {
  const int64_t ms = d.count();
  if (ms != 0 && ms % 60000 == 0) return std::to_string(ms / 60000) + "m";
  if (ms != 0 && ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

}  // namespace revkv::cli
