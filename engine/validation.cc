#include "revkv/validation.h"

#include <array>
#include <string>

#include "revkv/bucket.h"

namespace revkv {
namespace {

constexpr bool IsKeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '=' || c == '/' || c == '.' || c == '-' || c == '\\';
}

// Quotes user input for an error message, cut short and with non-printable
// bytes escaped so the message stays one readable line.
std::string Quote(std::string_view s) {
  std::string out = "'";
  size_t n = 0;
  for (unsigned char c : s) {
    if (++n > 64) {
      out += "...";
      break;
    }
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  out += "'";
  return out;
}

// The bytes no NATS subject can hold: the server takes a subject token with
// any of "\t\n\f\r " as invalid, and the protocol splits on them; NUL ends
// a subject in every C client and would also break the store's key layout.
constexpr bool BreaksSubject(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r' || c == '\0';
}

// Which rules a key or filter is checked against.
enum class Rules {
  kWrite,  // revkv's own writes: the NATS KV key rules
  kRead,   // every key a replica can hold: any valid NATS subject suffix
};

// Shared by keys and filters: `wildcards` allows "*" and a final ">".
Status ValidateTokens(std::string_view s, bool wildcards, const char* what, Rules rules) {
  if (s.empty()) return Status::InvalidArgument(std::string(what) + " is empty; give 1 or more characters");
  if (rules == Rules::kWrite && s.size() > kMaxKeyLength) {
    return Status::InvalidArgument(std::string(what) + " is " + std::to_string(s.size()) +
                                   " bytes; the limit is " + std::to_string(kMaxKeyLength));
  }
  if (s.front() == '.' || s.back() == '.') {
    return Status::InvalidArgument(std::string(what) + " " + Quote(s) +
                                   " starts or ends with '.'; remove it");
  }
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find('.', start);
    if (end == std::string_view::npos) end = s.size();
    std::string_view token = s.substr(start, end - start);
    if (token.empty()) {
      return Status::InvalidArgument(std::string(what) + " " + Quote(s) +
                                     " has an empty token (\"..\"); remove the extra '.'");
    }
    bool last = end == s.size();
    if (wildcards && (token == "*" || token == ">")) {
      if (token == ">" && !last) {
        return Status::InvalidArgument("filter " + Quote(s) +
                                       " uses '>' before its last token; '>' may only end a filter");
      }
    } else {
      for (char c : token) {
        if (rules == Rules::kRead) {
          if (BreaksSubject(c)) {
            return Status::InvalidArgument(
                std::string(what) + " " + Quote(s) + " contains " + Quote({&c, 1}) +
                "; no NATS subject, and so no stored key, holds a space, tab, line break, form "
                "feed or NUL");
          }
        } else if (!IsKeyChar(c)) {
          std::string msg = std::string(what) + " " + Quote(s) + " contains " + Quote({&c, 1}) +
                            "; keys use only A-Z a-z 0-9 _ = / \\ . -";
          if (wildcards && (c == '*' || c == '>')) msg += ", and wildcards must be whole tokens";
          return Status::InvalidArgument(msg);
        }
      }
    }
    start = end + 1;
  }
  return Status::OK();
}

// One pass over a lookup table: every read and write validates its key, so
// a valid key must be cheap; only a bad key pays for finding out why.
template <bool (*kAllowed)(unsigned char)>
bool FastKeyCheck(std::string_view key, size_t max_length) {
  static constexpr auto kTable = [] {
    std::array<bool, 256> t{};
    for (int c = 0; c < 256; ++c) t[c] = kAllowed(static_cast<unsigned char>(c));
    return t;
  }();
  if (key.empty() || key.size() > max_length || key.front() == '.' || key.back() == '.') {
    return false;
  }
  unsigned char prev = 0;
  for (unsigned char c : key) {
    if (!kTable[c] || (c == '.' && prev == '.')) return false;
    prev = c;
  }
  return true;
}

constexpr bool WriteKeyByte(unsigned char c) { return IsKeyChar(static_cast<char>(c)); }
constexpr bool ReadKeyByte(unsigned char c) { return !BreaksSubject(static_cast<char>(c)); }

}  // namespace

Status ValidateKey(std::string_view key) {
  if (FastKeyCheck<WriteKeyByte>(key, kMaxKeyLength)) return Status::OK();
  return ValidateTokens(key, false, "key", Rules::kWrite);
}

Status ValidateReadKey(std::string_view key) {
  if (FastKeyCheck<ReadKeyByte>(key, std::string_view::npos)) return Status::OK();
  return ValidateTokens(key, false, "key", Rules::kRead);
}

Status ValidateFilter(std::string_view filter) {
  if (filter.empty()) return Status::OK();
  return ValidateTokens(filter, true, "filter", Rules::kWrite);
}

Status ValidateReadFilter(std::string_view filter) {
  if (filter.empty()) return Status::OK();
  return ValidateTokens(filter, true, "filter", Rules::kRead);
}

Status ValidateBucketName(std::string_view name) {
  if (name.empty()) return Status::InvalidArgument("bucket name is empty; use [A-Za-z0-9_-]");
  if (name.size() > 128) {
    return Status::InvalidArgument("bucket name is " + std::to_string(name.size()) +
                                   " bytes; the limit is 128");
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-';
    if (!ok) {
      return Status::InvalidArgument("bucket name " + Quote(name) + " contains " +
                                     Quote({&c, 1}) + "; bucket names use only A-Z a-z 0-9 _ -");
    }
  }
  return Status::OK();
}

bool FilterMatches(std::string_view filter, std::string_view key) {
  if (filter.empty() || filter == ">") return true;
  size_t fpos = 0, kpos = 0;
  while (true) {
    size_t fend = filter.find('.', fpos);
    if (fend == std::string_view::npos) fend = filter.size();
    std::string_view ftok = filter.substr(fpos, fend - fpos);
    if (kpos > key.size()) return false;  // key ran out of tokens
    if (ftok == ">") return true;         // matches one or more remaining tokens
    size_t kend = key.find('.', kpos);
    if (kend == std::string_view::npos) kend = key.size();
    std::string_view ktok = key.substr(kpos, kend - kpos);
    if (ftok != "*" && ftok != ktok) return false;
    bool flast = fend == filter.size();
    bool klast = kend == key.size();
    if (flast || klast) return flast && klast;
    fpos = fend + 1;
    kpos = kend + 1;
  }
}

}  // namespace revkv
