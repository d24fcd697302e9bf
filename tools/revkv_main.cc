// revkv: the command-line tool over the public revkv API.
//
//   revkv --db DIR [--bucket NAME] [--json] [--history N] [--sync] COMMAND ...
//   revkv --db DIR lock NAME [--lease DUR] [--timeout DUR] -- CMD [ARGS...]
//
// Scripts depend on the exit codes and output formats below, so they are a
// contract: see Usage() and the comments on each command.

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "revkv/revkv.h"

extern char** environ;

namespace {

enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,  // usage errors and every code without its own number
  kExitNotFound = 2,
  kExitExists = 3,
  kExitConflict = 4,
  kExitTimeout = 5,
  kExitUnavailable = 6,
  kExitInvalidArgument = 7,
  kExitLockLost = 9,     // the lease was lost while CMD ran, or a fenced write's lock
  kExitCannotRun = 127,  // lock: CMD could not be started
};

constexpr std::string_view kUsage =
    "Usage: revkv --db DIR [--bucket NAME] [--json] [--history N] [--sync] COMMAND ...\n"
    "       revkv --db DIR --nats URL [NATS OPTIONS] COMMAND ...\n"
    "\n"
    "Commands:\n"
    "  put KEY VALUE                   write VALUE; prints the new revision\n"
    "  get KEY                         print the value\n"
    "  entry KEY                       print the latest entry (key, revision, operation, ...)\n"
    "  create KEY VALUE                write only if KEY is absent or deleted\n"
    "  update KEY VALUE REVISION       write only if KEY's latest revision is REVISION\n"
    "  delete KEY [--revision N]       write a delete tombstone; prints its revision\n"
    "  purge KEY [--revision N]        write a purge tombstone, dropping KEY's history\n"
    "  keys [FILTER]                   list live keys; FILTER takes '*' and '>' wildcards\n"
    "  entries [FILTER]                print KEY REVISION VALUE of every live key, all\n"
    "                                  from one snapshot\n"
    "  txn                             commit the operations on standard input at once,\n"
    "                                  one per line: put KEY VALUE, create KEY VALUE,\n"
    "                                  update KEY VALUE REVISION, delete KEY [REVISION],\n"
    "                                  purge KEY [REVISION], check KEY REVISION (0: absent\n"
    "                                  or deleted); prints the last revision. With --json,\n"
    "                                  one JSON object per line instead, e.g.\n"
    "                                  {\"op\":\"update\",\"key\":\"a\",\"value\":\"v\",\"revision\":5}\n"
    "                                  (\"value_encoding\":\"base64\" or \"key_encoding\":\n"
    "                                  \"base64\" for bytes, as entries --json prints them)\n"
    "  history KEY                     print KEY's retained revisions, oldest first\n"
    "  watch [FILTER]                  print changes as they happen, until interrupted;\n"
    "                                  with --nats it follows the local replica DIR\n"
    "  status                          print the applied revision, the stream's last\n"
    "                                  revision, the lag, whether NATS is reachable and\n"
    "                                  how many stream messages the replica skipped\n"
    "  lock NAME -- CMD [ARGS...]      run CMD while holding the lease lock NAME (see below)\n"
    "\n"
    "Options (anywhere on the command line, as --flag VALUE or --flag=VALUE):\n"
    "  --db DIR         the store's directory (required)\n"
    "  --bucket NAME    the bucket (default: default)\n"
    "  --json           print entries and key lists as JSON; txn reads JSON lines\n"
    "  --history N      revisions kept per key (1..64), applied when the bucket is created\n"
    "  --sync           fsync every write before it returns\n"
    "  --revision N     delete/purge: only if KEY's latest revision is N\n"
    "  --fence NAME:TOKEN\n"
    "                   writes: only while TOKEN is lock NAME's fencing token (in\n"
    "                   --locks-bucket); else exit 9 and nothing is written\n"
    "  --locks-bucket NAME\n"
    "                   the bucket that holds lock records (default: locks); with\n"
    "                   --nats, fencing needs the lock in the written bucket\n"
    "  --ttl DUR        put/create/update: the entry expires after DUR (whole\n"
    "                   seconds, at least 1s); put and update need history 1\n"
    "  --lease DUR      lock: the lease, renewed while CMD runs (default: 30s)\n"
    "  --timeout DUR    lock: how long to wait for the store and the lock (default: 30s)\n"
    "  -h, --help       print this help\n"
    "\n"
    "NATS replication (DIR is then one replica of the bucket's JetStream KV stream):\n"
    "  --nats URL       a server, e.g. nats://127.0.0.1:4222; repeat it or give a\n"
    "                   comma-separated list for several\n"
    "  --user U, --password P, --token T, --creds FILE\n"
    "                   credentials for the server (one kind)\n"
    "  --tls-ca F, --tls-cert F, --tls-key F\n"
    "                   TLS: a CA to trust, a client certificate and its key\n"
    "  --allow-atomic   turn on atomic batches (allow_atomic, 2.12+) in an existing\n"
    "                   bucket's stream that lacks them, keeping its other settings;\n"
    "                   txn and fenced writes need them\n"
    "  --limit-marker-ttl DUR\n"
    "                   when the bucket is created: its stream allows --ttl, and the\n"
    "                   server marks each expiry with a marker kept for DUR (2.11+)\n"
    "  --write-timeout DUR\n"
    "                   how long a write, or a read's catch-up, may wait for the\n"
    "                   server (default: 5s); connecting may take 2s\n"
    "  --local          reads answer from DIR without catching up with the server\n"
    "  --               treat every later argument as a positional one; for lock,\n"
    "                   every argument after it is CMD and its ARGS, verbatim\n"
    "\n"
    "A VALUE of '-' reads the value from standard input. DUR is a whole number with\n"
    "a unit: 500ms, 10s or 2m.\n"
    "\n"
    "With --nats, writes go through the server and reads (get, entry, keys, history)\n"
    "first catch DIR up with it. If the server cannot be reached, a read answers from\n"
    "DIR, which may be stale, with one 'revkv: warning:' line on stderr, and a write\n"
    "fails with exit 6. status prints 'unknown' (JSON null) for the stream's last\n"
    "revision and the lag when the server cannot be reached. It also counts the\n"
    "stream messages the replica skipped because they can never be applied (e.g.\n"
    "damaged headers), with the first one's revision and why.\n"
    "\n"
    "Writes take keys of the NATS KV rules: A-Z a-z 0-9 _ = / \\ . - tokens joined\n"
    "by '.', at most 1024 bytes. Reads (get, entry, history, keys, watch) take every\n"
    "key a replica can hold, as other NATS clients may store it: any length, any\n"
    "bytes but space, tab, CR, LF, form feed and NUL (e.g. non-ASCII UTF-8).\n"
    "\n"
    "lock waits until it can open the store and acquire NAME (a name follows the key\n"
    "rules), then runs CMD, searched for in PATH, with REVKV_FENCING_TOKEN set to the\n"
    "lock's fencing token (REVKV_LOCK_NAME and REVKV_LOCKS_BUCKET name the lock), and\n"
    "releases the lock when CMD exits. SIGINT, SIGTERM and SIGHUP are passed on to\n"
    "CMD. If the lease is lost while CMD runs, CMD is sent\n"
    "SIGTERM (SIGKILL 5s later) and lock exits 9. With --nats the lock lives in the\n"
    "server's locks bucket, so processes with their own DIR on any machine exclude\n"
    "each other.\n"
    "\n"
    "Exit codes: 0 ok, 1 usage or other error, 2 not found, 3 exists, 4 conflict,\n"
    "5 timeout, 6 unavailable (store held by another process, or NATS unreachable),\n"
    "7 invalid argument, 9 lock lost (a --fence whose token is stale).\n"
    "lock exits with CMD's status (128+N if CMD was killed by signal N), or 5 if the\n"
    "store or the lock was not free within --timeout, 9 if the lease was lost, 127 if\n"
    "CMD could not be started.\n";

// Error text ends up on one stderr line, so anything that could break the
// line or the terminal is escaped.
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

// Every failure goes through here so that each prints exactly one line.
int Fail(int code, std::string_view message) {
  std::string line = "revkv: " + Printable(message) + "\n";
  fwrite(line.data(), 1, line.size(), stderr);
  fflush(stderr);
  return code;
}

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

// ---- Argument parsing ----

struct Args {
  std::optional<std::string> db;
  std::optional<std::string> bucket;
  bool json = false;
  bool sync = false;
  bool help = false;
  bool local = false;             // --local: no catch-up before reads
  bool allow_atomic = false;      // --allow-atomic
  std::vector<std::string> nats;  // every --nats value, comma lists split
  std::optional<std::string> user;
  std::optional<std::string> password;
  std::optional<std::string> token;
  std::optional<std::string> creds;
  std::optional<std::string> tls_ca;
  std::optional<std::string> tls_cert;
  std::optional<std::string> tls_key;
  std::optional<std::string> write_timeout;  // raw text of --write-timeout
  std::optional<std::string> history;        // raw text; parsed after usage checks
  std::optional<std::string> revision;       // raw text of --revision
  std::optional<std::string> lease;          // raw text of --lease
  std::optional<std::string> timeout;        // raw text of --timeout
  std::optional<std::string> ttl;            // raw text of --ttl
  std::optional<std::string> limit_marker_ttl;  // raw text of --limit-marker-ttl
  std::optional<std::string> locks_bucket;      // --locks-bucket
  std::optional<std::string> fence;             // raw text of --fence NAME:TOKEN
  std::vector<std::string> positional;       // COMMAND and its arguments
  // Where the first "--" stood: the number of positional arguments before it.
  std::optional<size_t> separator;
};

// Returns the first usage error, or an empty string. Scanning goes on past an
// error so that --help anywhere still wins.
std::string ParseArgs(int argc, char** argv, Args* args) {
  std::string error;
  auto note = [&error](std::string message) {
    if (error.empty()) error = std::move(message);
  };
  bool only_positional = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (only_positional || arg.size() <= 2 || !arg.starts_with("--")) {
      if (!only_positional && arg == "-h") {
        args->help = true;
      } else if (!only_positional && arg == "--") {
        only_positional = true;
        args->separator = args->positional.size();
      } else {
        args->positional.emplace_back(arg);
      }
      continue;
    }
    const size_t eq = arg.find('=');
    const std::string_view name = arg.substr(2, eq == std::string_view::npos ? eq : eq - 2);
    std::optional<std::string_view> inline_value;
    if (eq != std::string_view::npos) inline_value = arg.substr(eq + 1);

    if (name == "help" || name == "json" || name == "sync" || name == "local" ||
        name == "allow-atomic") {
      if (inline_value) {
        note("--" + std::string(name) + " takes no value");
        continue;
      }
      if (name == "help") args->help = true;
      if (name == "json") args->json = true;
      if (name == "sync") args->sync = true;
      if (name == "local") args->local = true;
      if (name == "allow-atomic") args->allow_atomic = true;
      continue;
    }
    std::optional<std::string>* target = nullptr;
    std::optional<std::string> nats_value;
    if (name == "nats") {
      target = &nats_value;
    } else if (name == "user") {
      target = &args->user;
    } else if (name == "password") {
      target = &args->password;
    } else if (name == "token") {
      target = &args->token;
    } else if (name == "creds") {
      target = &args->creds;
    } else if (name == "tls-ca") {
      target = &args->tls_ca;
    } else if (name == "tls-cert") {
      target = &args->tls_cert;
    } else if (name == "tls-key") {
      target = &args->tls_key;
    } else if (name == "write-timeout") {
      target = &args->write_timeout;
    } else if (name == "db") {
      target = &args->db;
    } else if (name == "bucket") {
      target = &args->bucket;
    } else if (name == "history") {
      target = &args->history;
    } else if (name == "revision") {
      target = &args->revision;
    } else if (name == "lease") {
      target = &args->lease;
    } else if (name == "timeout") {
      target = &args->timeout;
    } else if (name == "ttl") {
      target = &args->ttl;
    } else if (name == "limit-marker-ttl") {
      target = &args->limit_marker_ttl;
    } else if (name == "locks-bucket") {
      target = &args->locks_bucket;
    } else if (name == "fence") {
      target = &args->fence;
    } else {
      note("unknown flag " + Quote(arg.substr(0, eq)));
      continue;
    }
    std::string value;
    if (inline_value) {
      value = *inline_value;
    } else {
      // A following "--flag" (or the "--" before lock's CMD) means the value
      // was forgotten; swallowing it as a value would only produce a
      // stranger error later.
      std::string_view next = i + 1 < argc ? std::string_view(argv[i + 1]) : std::string_view();
      if (i + 1 >= argc || next.starts_with("--")) {
        note("--" + std::string(name) + " needs a value");
        continue;
      }
      value = next;
      ++i;
    }
    *target = std::move(value);
    if (nats_value) {
      // Repeatable, and each value may be a comma-separated list.
      std::string_view list = *nats_value;
      while (true) {
        const size_t comma = list.find(',');
        const std::string_view url = list.substr(0, comma);
        if (url.empty()) {
          note("--nats needs a server URL, not an empty string");
        } else {
          args->nats.emplace_back(url);
        }
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
      }
    }
  }
  return error;
}

// A full decimal uint64: digits only, no sign, no spaces, no overflow.
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

// A duration for lock: a full decimal number with a unit, "ms", "s" or "m".
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

// The shortest exact spelling of `d` in ParseDuration's syntax.
std::string FormatDuration(std::chrono::milliseconds d) {
  const int64_t ms = d.count();
  if (ms != 0 && ms % 60000 == 0) return std::to_string(ms / 60000) + "m";
  if (ms != 0 && ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

// ---- Output formats ----

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

// Values in text output stay on one line and keep bytes >= 0x80 raw, so UTF-8
// text reads naturally while control bytes cannot corrupt the line format.
std::string EscapeText(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          static constexpr char kHex[] = "0123456789abcdef";
          out += "\\x";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

// Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF),
// because JSON readers reject or mangle anything else.
bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) {
      return false;
    }
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += len;
  }
  return true;
}

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"') {
      out += "\\\"";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
  return out;
}

std::string Base64(std::string_view s) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((s.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= s.size(); i += 3) {
    const uint32_t n = (static_cast<uint32_t>(static_cast<unsigned char>(s[i])) << 16) |
                       (static_cast<uint32_t>(static_cast<unsigned char>(s[i + 1])) << 8) |
                       static_cast<uint32_t>(static_cast<unsigned char>(s[i + 2]));
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
  }
  const size_t rest = s.size() - i;
  if (rest > 0) {
    uint32_t n = static_cast<uint32_t>(static_cast<unsigned char>(s[i])) << 16;
    if (rest == 2) n |= static_cast<uint32_t>(static_cast<unsigned char>(s[i + 1])) << 8;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += rest == 2 ? kAlphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// An entry's own TTL: "30s", or "never" (exempt from max_age too).
std::string TtlText(int64_t ttl_ns) {
  if (ttl_ns < 0) return "never";
  return std::to_string(ttl_ns / 1000000000) + "s";
}

// An entry as JSON; "ttl" only when the entry has one.
std::string EntryJson(const revkv::Entry& e) {
  std::string out = "{\"key\":";
  if (IsValidUtf8(e.key)) {
    out += JsonString(e.key);
  } else {
    out += "\"" + Base64(e.key) + "\",\"key_encoding\":\"base64\"";
  }
  out += ",\"value\":";
  if (IsValidUtf8(e.value)) {
    out += JsonString(e.value);
  } else {
    out += "\"" + Base64(e.value) + "\",\"value_encoding\":\"base64\"";
  }
  out += ",\"revision\":" + std::to_string(e.revision);
  out += ",\"operation\":" + JsonString(revkv::OperationName(e.operation));
  out += ",\"created\":" + JsonString(FormatTime(e.created_ns));
  if (e.ttl_ns != 0) out += ",\"ttl\":" + JsonString(TtlText(e.ttl_ns));
  out += "}\n";
  return out;
}

// The `history` line: REVISION OPERATION CREATED VALUE; `watch` adds the key
// after the revision, since its lines mix keys. The value field is present
// (empty) for tombstones, so every line has the same shape.
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

bool Write(std::string_view s) { return fwrite(s.data(), 1, s.size(), stdout) == s.size(); }

// Output errors (a full disk, a closed pipe) must not pass for success.
int FinishOutput() {
  if (fflush(stdout) != 0 || ferror(stdout)) {
    return Fail(kExitError, std::string("cannot write to standard output: ") + strerror(errno));
  }
  return kExitOk;
}

// ---- Input ----

// Reads all of stdin. Nothing larger than kMaxMaxValueSize can be stored in
// any bucket, so reading stops one byte past it instead of exhausting memory.
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

// The `status` output: the applied revision, the stream's last revision and
// the lag (unknown when the server could not be asked), whether NATS is
// reachable and the version of the server the connection is on (`skips`'s
// server_version; empty when unknown or local), and the messages the
// replica skipped as never applicable (their count, the first one's
// revision and why).
// (`known`: whether `stream_last` could be learned.)
std::string StatusText(bool json, uint64_t applied, bool known, uint64_t stream_last,
                       bool connected, const revkv::BucketStatus& skips) {
  const std::string& server = skips.server_version;
  const std::string last = known ? std::to_string(stream_last) : "";
  const std::string lag =
      known ? std::to_string(stream_last >= applied ? stream_last - applied : 0) : "";
  const bool skipped = skips.skipped > 0;
  if (json) {
    return "{\"applied\":" + std::to_string(applied) +
           ",\"stream_last\":" + (known ? last : "null") + ",\"lag\":" + (known ? lag : "null") +
           ",\"connected\":" + (connected ? "true" : "false") +
           ",\"server_version\":" + (server.empty() ? "null" : JsonString(server)) +
           ",\"skipped\":" + std::to_string(skips.skipped) +
           ",\"first_skipped\":" + (skipped ? std::to_string(skips.first_skipped) : "null") +
           ",\"skipped_reason\":" + (skipped ? JsonString(skips.skipped_reason) : "null") + "}\n";
  }
  std::string out =
      "applied: " + std::to_string(applied) + "\nstream_last: " + (known ? last : "unknown") +
      "\nlag: " + (known ? lag : "unknown") + "\nconnected: " + (connected ? "true" : "false") +
      (server.empty() ? "" : "\nserver_version: " + Printable(server)) +
      "\nskipped: " + std::to_string(skips.skipped) + "\n";
  if (skipped) {
    out += "first_skipped: " + std::to_string(skips.first_skipped) +
           "\nskipped_reason: " + Printable(skips.skipped_reason) + "\n";
  }
  return out;
}

// ---- Transactions ----

// Parses `txn`'s standard input: one operation per line, its tokens
// separated by whitespace, in the order of the single-key commands (put KEY
// VALUE, create KEY VALUE, update KEY VALUE REVISION, delete KEY [REVISION],
// purge KEY [REVISION], check KEY REVISION, where check KEY 0 means absent
// or tombstoned). Blank lines and lines starting with '#' are skipped.
// Returns the exit code (kExitOk, or kExitInvalidArgument after printing
// what is wrong with which line).
int ParseTxn(std::string_view text, revkv::Txn* txn) {
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    std::vector<std::string> tokens;
    size_t at = 0;
    while (at < line.size()) {
      while (at < line.size() && std::isspace(static_cast<unsigned char>(line[at]))) ++at;
      size_t end = at;
      while (end < line.size() && !std::isspace(static_cast<unsigned char>(line[end]))) ++end;
      if (end > at) tokens.emplace_back(line.substr(at, end - at));
      at = end;
    }
    if (tokens.empty() || tokens[0][0] == '#') continue;
    const std::string& op = tokens[0];
    auto bad = [&](const std::string& why) {
      return Fail(kExitInvalidArgument, "InvalidArgument: line " + std::to_string(line_no) +
                                            " of the transaction (" + Quote(std::string(line)) +
                                            "): " + why);
    };
    auto revision = [&](size_t i) { return ParseUint64(tokens[i]); };
    const size_t n = tokens.size();
    if (op == "put" || op == "create") {
      if (n != 3) return bad("give " + op + " KEY VALUE");
      txn->ops.push_back(op == "put" ? revkv::TxnOp::Put(tokens[1], tokens[2])
                                     : revkv::TxnOp::Create(tokens[1], tokens[2]));
    } else if (op == "update") {
      if (n != 4 || !revision(3)) return bad("give update KEY VALUE REVISION");
      txn->ops.push_back(revkv::TxnOp::Update(tokens[1], tokens[2], *revision(3)));
    } else if (op == "delete" || op == "purge") {
      if (n != 2 && !(n == 3 && revision(2))) return bad("give " + op + " KEY [REVISION]");
      std::optional<uint64_t> expected;
      if (n == 3) expected = revision(2);
      txn->ops.push_back(op == "delete" ? revkv::TxnOp::Delete(tokens[1], expected)
                                        : revkv::TxnOp::Purge(tokens[1], expected));
    } else if (op == "check") {
      if (n != 3 || !revision(2)) return bad("give check KEY REVISION (0: absent or deleted)");
      txn->compares.push_back(*revision(2) == 0
                                  ? revkv::TxnCompare::Absent(tokens[1])
                                  : revkv::TxnCompare::RevisionIs(tokens[1], *revision(2)));
    } else {
      return bad("unknown operation " + Quote(op) +
                 "; use put, create, update, delete, purge or check");
    }
  }
  return kExitOk;
}

// Strict base64 (RFC 4648, standard alphabet, with padding), as Base64
// writes it. nullopt if `text` is not that.
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
    const size_t pad = last ? (text[i + 3] == '=') + (text[i + 2] == '=' && text[i + 3] == '=')
                            : 0;
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

// Parses `txn --json`'s standard input: one JSON object per line, as
// {"op":"update","key":"a","value":"v","revision":5}. "op" is put, create,
// update, delete, purge or check, with the fields of the text form: "key"
// always, "value" for put, create and update, "revision" (a whole number)
// for update and check and optionally for delete and purge; check with
// revision 0 means absent or tombstoned. "key_encoding" and
// "value_encoding" may be "base64", as `entries --json` prints bytes that
// are not UTF-8. Blank lines and lines starting with '#' are skipped.
// Returns the exit code (kExitOk, or kExitInvalidArgument after printing
// what is wrong with which line).
int ParseTxnJson(std::string_view text, revkv::Txn* txn) {
  using nlohmann::json;
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    size_t first = 0;
    while (first < line.size() && std::isspace(static_cast<unsigned char>(line[first]))) ++first;
    if (first == line.size() || line[first] == '#') continue;
    auto bad = [&](const std::string& why) {
      return Fail(kExitInvalidArgument, "InvalidArgument: line " + std::to_string(line_no) +
                                            " of the transaction (" + Quote(std::string(line)) +
                                            "): " + why);
    };
    const json obj = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
    if (obj.is_discarded()) return bad("not valid JSON (or not UTF-8)");
    if (!obj.is_object()) return bad("not a JSON object; give one like {\"op\":\"put\",...}");
    const auto op_field = obj.find("op");
    if (op_field == obj.end() || !op_field->is_string()) {
      return bad("no \"op\" string; give put, create, update, delete, purge or check");
    }
    const std::string op = op_field->get<std::string>();
    const bool with_value = op == "put" || op == "create" || op == "update";
    const bool tombstone = op == "delete" || op == "purge";
    if (!with_value && !tombstone && op != "check") {
      return bad("unknown op " + Quote(op) + "; use put, create, update, delete, purge or check");
    }
    const bool needs_revision = op == "update" || op == "check";
    for (const auto& item : obj.items()) {
      const std::string& name = item.key();
      const bool known = name == "op" || name == "key" || name == "key_encoding" ||
                         ((name == "value" || name == "value_encoding") && with_value) ||
                         (name == "revision" && (needs_revision || tombstone));
      if (!known) return bad("unknown field " + Quote(name) + " for op " + Quote(op));
    }
    // A string field, decoded as its "<name>_encoding" says.
    std::string why;
    auto bytes = [&](const char* name) -> std::optional<std::string> {
      const auto field = obj.find(name);
      if (field == obj.end()) {
        why = std::string("no \"") + name + "\" for op " + Quote(op);
        return std::nullopt;
      }
      if (!field->is_string()) {
        why = std::string("\"") + name + "\" is not a string";
        return std::nullopt;
      }
      std::string value = field->get<std::string>();
      const std::string encoding_name = std::string(name) + "_encoding";
      const auto encoding = obj.find(encoding_name);
      if (encoding == obj.end()) return value;
      if (!encoding->is_string() || encoding->get<std::string>() != "base64") {
        why = "\"" + encoding_name + "\" must be \"base64\" (or absent for UTF-8 text)";
        return std::nullopt;
      }
      auto decoded = DecodeBase64(value);
      if (!decoded) why = std::string("\"") + name + "\" is not valid base64";
      return decoded;
    };
    const std::optional<std::string> key = bytes("key");
    if (!key) return bad(why);
    std::optional<std::string> value;
    if (with_value) {
      value = bytes("value");
      if (!value) return bad(why);
    }
    std::optional<uint64_t> revision;
    if (const auto field = obj.find("revision"); field != obj.end()) {
      if (!field->is_number_unsigned()) {
        return bad("\"revision\" is not a revision number (a whole number, 0 or more)");
      }
      revision = field->get<uint64_t>();
    } else if (needs_revision) {
      return bad("no \"revision\" for op " + Quote(op) +
                 (op == "check" ? " (0: absent or deleted)" : ""));
    }
    if (op == "put") {
      txn->ops.push_back(revkv::TxnOp::Put(*key, *value));
    } else if (op == "create") {
      txn->ops.push_back(revkv::TxnOp::Create(*key, *value));
    } else if (op == "update") {
      txn->ops.push_back(revkv::TxnOp::Update(*key, *value, *revision));
    } else if (op == "delete") {
      txn->ops.push_back(revkv::TxnOp::Delete(*key, revision));
    } else if (op == "purge") {
      txn->ops.push_back(revkv::TxnOp::Purge(*key, revision));
    } else {
      txn->compares.push_back(*revision == 0 ? revkv::TxnCompare::Absent(*key)
                                             : revkv::TxnCompare::RevisionIs(*key, *revision));
    }
  }
  return kExitOk;
}

// ---- Commands ----

struct CommandSpec {
  std::string_view name;
  size_t min_args;
  size_t max_args;
  std::string_view synopsis;
  bool writes;
};

constexpr CommandSpec kCommands[] = {
    {"put", 2, 2, "put KEY VALUE", true},
    {"get", 1, 1, "get KEY", false},
    {"entry", 1, 1, "entry KEY", false},
    {"create", 2, 2, "create KEY VALUE", true},
    {"update", 3, 3, "update KEY VALUE REVISION", true},
    {"delete", 1, 1, "delete KEY [--revision N]", true},
    {"purge", 1, 1, "purge KEY [--revision N]", true},
    {"keys", 0, 1, "keys [FILTER]", false},
    {"entries", 0, 1, "entries [FILTER]", false},
    {"txn", 0, 0, "txn < OPERATIONS", true},
    {"history", 1, 1, "history KEY", false},
    {"watch", 0, 1, "watch [FILTER]", false},
    {"status", 0, 0, "status", false},
    {"lock", 1, 1, "lock NAME [--lease DUR] [--timeout DUR] -- CMD [ARGS...]", true},
};

volatile sig_atomic_t g_stop = 0;

void OnStopSignal(int) { g_stop = 1; }

// Follows the store as a read-only follower: the writer holding the store's
// lock keeps writing while this prints what it committed.
int RunWatch(const Args& args, const std::string& bucket_name, const std::string& filter) {
  // The stop signals are blocked and taken with sigtimedwait, so they cannot
  // interrupt RocksDB's I/O midway; the handler only covers a thread that was
  // started before the mask was set. Exiting through main, not by the default
  // action, lets the follower remove its private directory.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGHUP);
  struct sigaction action {};
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &action, nullptr);
  // A vanished reader then shows up as a write error, and returning through
  // main still removes the follower's directory.
  signal(SIGPIPE, SIG_IGN);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  // Returns false once a stop signal has arrived.
  auto sleep_ms = [&stop_signals](long ms) {
    if (g_stop) return false;
    struct timespec ts {};
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    if (sigtimedwait(&stop_signals, nullptr, &ts) > 0) g_stop = 1;
    return g_stop == 0;
  };

  std::unique_ptr<revkv::Engine> engine;
  std::shared_ptr<revkv::Bucket> bucket;
  // A follower opening while the first writer is still creating the store
  // can see it without its meta family and report Corruption; only a
  // persisting Corruption is real.
  int corruption_retries = 0;
  while (bucket == nullptr) {
    revkv::Options options;
    options.path = *args.db;
    options.read_only_follower = true;
    auto opened = revkv::Engine::Open(options);
    revkv::Status status;
    if (opened.ok()) {
      // --history is not passed: a follower never creates the bucket, and a
      // bucket caught mid-creation would read as having the default setting.
      auto b = (*opened)->OpenBucket(bucket_name);
      if (b.ok()) {
        engine = std::move(*opened);
        bucket = std::move(*b);
        break;
      }
      status = b.status();
    } else {
      status = opened.status();
    }
    // A follower sees only the buckets that existed when it opened, so a
    // missing bucket means reopening the whole engine.
    const bool retry = status.IsNotFound() || (status.IsCorruption() && ++corruption_retries < 25);
    if (!retry) return g_stop ? kExitOk : FailStatus(status);
    if (!sleep_ms(200)) return kExitOk;
  }

  constexpr size_t kBatch = 1000;
  // A catch-up can race with the writer rotating its log files; only a
  // failure that persists is reported.
  constexpr int kMaxCatchUpFailures = 20;
  int catch_up_failures = 0;
  uint64_t last_seen = 0;
  while (!g_stop) {
    if (revkv::Status s = engine->CatchUp(); !s.ok()) {
      if (g_stop) break;
      if (++catch_up_failures >= kMaxCatchUpFailures) return FailStatus(s);
      if (!sleep_ms(100)) break;
      continue;
    }
    catch_up_failures = 0;
    while (!g_stop) {
      auto changes = bucket->ChangesSince(last_seen, kBatch);
      if (!changes.ok()) return g_stop ? kExitOk : FailStatus(changes.status());
      for (const revkv::Entry& e : *changes) {
        last_seen = e.revision;
        if (!revkv::FilterMatches(filter, e.key)) continue;
        if (!Write(EntryLine(e, args.json, /*with_key=*/true)) || fflush(stdout) != 0) {
          return Fail(kExitError,
                      std::string("cannot write to standard output: ") + strerror(errno));
        }
      }
      if (changes->size() < kBatch) break;
    }
    if (!sleep_ms(100)) break;
  }
  return kExitOk;
}

// ---- lock ----

// A file descriptor closed on scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Why the lock was lost, as reported by the engine's on_lost callback.
struct LostReport {
  std::mutex mu;
  std::string why;  // GUARDED_BY(mu)
};

constexpr std::chrono::milliseconds kStoreRetry{50};
// How long one Acquire call may wait before stop signals are checked again.
constexpr std::chrono::milliseconds kAcquireSlice{100};
// How often the lease is checked while CMD runs, besides the on_lost
// callback: a process resumed after a pause finds its renewal overdue, and
// this notices it even before the engine's timer thread runs.
constexpr int kLostCheckMs = 200;
constexpr auto kKillGrace = std::chrono::seconds(5);

// Drains the signalfd; returns the last stop signal read (SIGINT, SIGTERM,
// SIGHUP), or 0. `forward` gets each stop signal as it is read.
template <typename Forward>
int DrainSignals(int sfd, Forward forward) {
  int stop = 0;
  signalfd_siginfo si;
  while (read(sfd, &si, sizeof(si)) == static_cast<ssize_t>(sizeof(si))) {
    if (si.ssi_signo == SIGCHLD) continue;  // the wait loop reaps CMD
    stop = static_cast<int>(si.ssi_signo);
    forward(si);
  }
  return stop;
}

int DrainSignals(int sfd) {
  return DrainSignals(sfd, [](const signalfd_siginfo&) {});
}

// Waits up to `ms` for a stop signal; returns it, or 0.
int WaitForStop(int sfd, std::chrono::milliseconds ms) {
  using Clock = std::chrono::steady_clock;
  const auto until = Clock::now() + ms;
  while (true) {
    if (int sig = DrainSignals(sfd); sig != 0) return sig;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now());
    if (left.count() <= 0) return 0;
    pollfd p{sfd, POLLIN, 0};
    poll(&p, 1, static_cast<int>(left.count()));
  }
}

// `revkv lock NAME -- CMD...`: see Usage(). The exit code is CMD's, or one of
// revkv's own (5, 9, 127, ...) as documented there.
int RunLock(const Args& args, const revkv::NatsOptions& nats, const std::string& name,
            const std::vector<std::string>& cmd, std::chrono::milliseconds lease,
            std::chrono::milliseconds timeout) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline = Clock::now() + timeout;
  const std::string lock_text = "lock " + Quote(name);

  // Stop signals and SIGCHLD are blocked before any engine thread starts, so
  // every thread inherits the mask and they all arrive on the signalfd. A
  // stop signal that whoever started revkv made us ignore stays ignored, for
  // CMD too (it inherits the disposition).
  sigset_t handled;
  sigemptyset(&handled);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction old {};
    if (sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
    sigaddset(&handled, sig);
  }
  // An inherited SIG_IGN for SIGCHLD would reap CMD behind our back.
  signal(SIGCHLD, SIG_DFL);
  sigaddset(&handled, SIGCHLD);
  sigset_t original_mask;
  pthread_sigmask(SIG_BLOCK, &handled, &original_mask);
  Fd sfd(signalfd(-1, &handled, SFD_NONBLOCK | SFD_CLOEXEC));
  if (sfd.get() < 0) return Fail(kExitError, std::string("signalfd: ") + strerror(errno));

  // The store is exclusive to one process, so another revkv holding it is
  // just one more reason to wait, within the same --timeout.
  revkv::Options options;
  options.path = *args.db;
  options.sync = args.sync;
  options.create_if_missing = true;
  options.nats = nats;  // with --nats the lock is shared with every process on the server
  if (args.locks_bucket) options.locks_bucket = *args.locks_bucket;
  std::unique_ptr<revkv::Engine> engine;
  while (true) {
    auto opened = revkv::Engine::Open(options);
    if (opened.ok()) {
      engine = std::move(*opened);
      break;
    }
    if (!opened.status().IsUnavailable()) return FailStatus(opened.status());
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      return Fail(kExitTimeout, "Timeout: " + lock_text + " was not acquired within " +
                                    FormatDuration(timeout) + ": the store at " + Quote(*args.db) +
                                    " stayed held by another process");
    }
    if (int sig = WaitForStop(sfd.get(), std::min(left, kStoreRetry)); sig != 0) return 128 + sig;
  }

  // Acquire waits in slices, so that a stop signal ends the wait promptly;
  // the engine remembers when it first saw the holder's record, so slicing
  // does not delay taking over an expired lease.
  std::unique_ptr<revkv::Lock> lock;
  while (true) {
    const auto left =
        std::max(std::chrono::milliseconds(0),
                 std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()));
    const auto slice = std::min(left, kAcquireSlice);
    auto acquired = engine->Acquire(name, lease, slice);
    if (acquired.ok()) {
      lock = std::move(*acquired);
      break;
    }
    if (!acquired.status().IsTimeout()) return FailStatus(acquired.status());
    if (int sig = DrainSignals(sfd.get()); sig != 0) return 128 + sig;
    if (left <= slice) {
      return Fail(kExitTimeout, "Timeout: " + lock_text + " was not acquired within " +
                                    FormatDuration(timeout) + ": another owner holds it");
    }
  }
  // Interrupted while acquiring: CMD never starts; the lock is released.
  if (int sig = DrainSignals(sfd.get()); sig != 0) return 128 + sig;

  // The callback only wakes this thread; everything else happens here. The
  // eventfd outlives the lock handle (declared first, destroyed last).
  Fd lost_fd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (lost_fd.get() < 0) return Fail(kExitError, std::string("eventfd: ") + strerror(errno));
  auto report = std::make_shared<LostReport>();
  {
    const int efd = lost_fd.get();
    lock->on_lost([efd, report](const revkv::Status& why) {
      {
        std::lock_guard<std::mutex> guard(report->mu);
        report->why = why.ToString();
      }
      const uint64_t one = 1;
      if (write(efd, &one, sizeof(one)) < 0) {
        // Cannot fail short of a full counter; the timed check still runs.
      }
    });
  }
  auto lost_reason = [&] {
    std::lock_guard<std::mutex> guard(report->mu);
    return report->why.empty() ? "its lease of " + FormatDuration(lease) + " ran out unrenewed"
                               : report->why;
  };
  if (lock->lost()) {
    return Fail(kExitLockLost,
                "LockLost: " + lock_text + " was lost before CMD started (" + lost_reason() + ")");
  }

  // CMD's environment: ours, with REVKV_FENCING_TOKEN set (built by hand:
  // setenv is not safe with the engine's threads running).
  constexpr std::string_view kTokenVar = "REVKV_FENCING_TOKEN=";
  constexpr std::string_view kNameVar = "REVKV_LOCK_NAME=";
  constexpr std::string_view kBucketVar = "REVKV_LOCKS_BUCKET=";
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view var(*e);
    if (!var.starts_with(kTokenVar) && !var.starts_with(kNameVar) && !var.starts_with(kBucketVar)) {
      env_storage.emplace_back(*e);
    }
  }
  env_storage.push_back(std::string(kTokenVar) + std::to_string(lock->fencing_token()));
  env_storage.push_back(std::string(kNameVar) + lock->name());
  env_storage.push_back(std::string(kBucketVar) + options.locks_bucket);
  std::vector<char*> envp;
  for (std::string& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_storage = cmd;
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  // CMD starts with the signal mask revkv was started with. Handlers need no
  // reset: revkv installs none here, and exec keeps only ignored ones.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setsigmask(&attr, &original_mask);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  const int spawn_rc = posix_spawnp(&pid, argv[0], nullptr, &attr, argv.data(), envp.data());
  posix_spawnattr_destroy(&attr);
  if (spawn_rc != 0) {
    const revkv::Status released = lock->Release();
    if (!released.ok() && !released.IsLockLost()) {
      return Fail(kExitCannotRun, "cannot run " + Quote(cmd[0]) + ": " + strerror(spawn_rc) +
                                      "; releasing " + lock_text + " also failed (" +
                                      released.ToString() + ")");
    }
    return Fail(kExitCannotRun, "cannot run " + Quote(cmd[0]) + ": " + strerror(spawn_rc));
  }

  // Wait for CMD, passing stop signals on and reacting to a lost lease.
  bool lost = false;
  bool sent_kill = false;
  Clock::time_point kill_at{};
  int status = 0;
  while (true) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) {
      // Cannot happen for our own child; do not leave it running unlocked.
      const std::string error = strerror(errno);
      kill(pid, SIGKILL);
      return Fail(kExitError, "waiting for CMD failed: " + error);
    }
    int wait_ms = kLostCheckMs;
    if (lost && !sent_kill) {
      wait_ms = static_cast<int>(std::clamp<int64_t>(
          std::chrono::ceil<std::chrono::milliseconds>(kill_at - Clock::now()).count(), 0,
          kLostCheckMs));
    }
    pollfd fds[2] = {{sfd.get(), POLLIN, 0}, {lost_fd.get(), POLLIN, 0}};
    poll(fds, 2, wait_ms);
    DrainSignals(sfd.get(), [pid](const signalfd_siginfo& si) {
      // A signal from the terminal went to the whole foreground process
      // group, CMD included: sending it again would deliver it twice.
      if (si.ssi_code == SI_KERNEL) return;
      kill(pid, static_cast<int>(si.ssi_signo));
    });
    uint64_t count;
    const bool woken = read(lost_fd.get(), &count, sizeof(count)) == sizeof(count);
    if (!lost && (woken || lock->lost())) {
      lost = true;
      kill(pid, SIGTERM);
      kill_at = Clock::now() + kKillGrace;
    }
    if (lost && !sent_kill && Clock::now() >= kill_at) {
      kill(pid, SIGKILL);
      sent_kill = true;
    }
  }
  const int cmd_code = WIFEXITED(status)     ? WEXITSTATUS(status)
                       : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
                                             : kExitError;
  if (lost) {
    return Fail(kExitLockLost,
                "LockLost: " + lock_text + " was lost while CMD ran (" + lost_reason() +
                    "); CMD was sent SIGTERM" +
                    (sent_kill ? " and, " + FormatDuration(kKillGrace) + " later, SIGKILL"
                               : std::string()));
  }
  // Release fails with LockLost only if someone else took the lock over
  // while CMD ran, i.e. CMD did not run under exclusion throughout.
  const revkv::Status released = lock->Release();
  if (released.IsLockLost()) {
    return Fail(kExitLockLost,
                "LockLost: " + lock_text + " was lost while CMD ran (" + released.ToString() + ")");
  }
  if (!released.ok()) {
    // CMD ran under the lock; its status is what the caller needs. The lock
    // record expires after its lease.
    Fail(kExitError, "could not release " + lock_text + " (" + released.ToString() +
                         "); it expires after its lease of " + FormatDuration(lease));
  }
  return cmd_code;
}

int Run(int argc, char** argv) {
  Args args;
  const std::string usage_error = ParseArgs(argc, argv, &args);
  if (args.help) {
    Write(kUsage);
    return FinishOutput();
  }
  if (!usage_error.empty()) return UsageError(usage_error);
  if (!args.db) return UsageError("missing --db DIR");
  if (args.db->empty()) return UsageError("--db needs a directory, not an empty string");
  if (args.positional.empty()) return UsageError("missing COMMAND");
  const std::string bucket_name = args.bucket.value_or("default");

  const std::string& command = args.positional[0];
  std::vector<std::string> params(args.positional.begin() + 1, args.positional.end());
  // lock: the arguments after "--" are CMD. If "--" came before NAME (it
  // then only ended the options), CMD follows a second, literal "--".
  std::vector<std::string> lock_cmd;
  if (command == "lock") {
    std::optional<size_t> cmd_at;  // index in positional of CMD's first word
    size_t name_end = 0;           // NAME and any stray words: positional[1, name_end)
    if (args.separator && *args.separator >= 2) {
      cmd_at = name_end = *args.separator;
    } else if (args.separator) {
      for (size_t i = 1; i < args.positional.size(); ++i) {
        if (args.positional[i] == "--") {
          name_end = i;
          cmd_at = i + 1;
          break;
        }
      }
      // "lock -- CMD": the "--" is the separator and NAME is missing.
      if (!cmd_at && *args.separator == 1) cmd_at = name_end = 1;
    }
    const std::string synopsis =
        "; use: revkv lock NAME [--lease DUR] [--timeout DUR] -- CMD [ARGS...]";
    if (!cmd_at) return UsageError("lock needs '--' before the command" + synopsis);
    if (*cmd_at >= args.positional.size()) {
      return UsageError("lock needs a command after '--'" + synopsis);
    }
    lock_cmd.assign(args.positional.begin() + static_cast<ptrdiff_t>(*cmd_at),
                    args.positional.end());
    params.assign(args.positional.begin() + 1,
                  args.positional.begin() + static_cast<ptrdiff_t>(name_end));
  }
  const CommandSpec* spec = nullptr;
  for (const CommandSpec& c : kCommands) {
    if (c.name == command) spec = &c;
  }
  if (spec == nullptr) return UsageError("unknown command " + Quote(command));
  if (params.size() < spec->min_args || params.size() > spec->max_args) {
    return UsageError("wrong number of arguments; use: revkv " + std::string(spec->synopsis));
  }
  if (args.revision && command != "delete" && command != "purge") {
    return UsageError("--revision applies only to delete and purge");
  }
  if ((args.lease || args.timeout) && command != "lock") {
    return UsageError(std::string(args.lease ? "--lease" : "--timeout") + " applies only to lock");
  }
  if (args.ttl && command != "put" && command != "create" && command != "update") {
    return UsageError("--ttl applies only to put, create and update");
  }
  if (args.fence && !spec->writes) return UsageError("--fence applies only to writes");
  if (args.fence && command == "lock") return UsageError("--fence does not apply to lock");
  if (args.allow_atomic && (command == "lock" || command == "watch")) {
    return UsageError("--allow-atomic does not apply to " + command);
  }

  const bool replicated = !args.nats.empty();
  if (!replicated) {
    const std::pair<const char*, bool> nats_only[] = {
        {"--user", args.user.has_value()},
        {"--password", args.password.has_value()},
        {"--token", args.token.has_value()},
        {"--creds", args.creds.has_value()},
        {"--tls-ca", args.tls_ca.has_value()},
        {"--tls-cert", args.tls_cert.has_value()},
        {"--tls-key", args.tls_key.has_value()},
        {"--write-timeout", args.write_timeout.has_value()},
        {"--limit-marker-ttl", args.limit_marker_ttl.has_value()},
        {"--allow-atomic", args.allow_atomic},
        {"--local", args.local}};
    for (const auto& [flag, given] : nats_only) {
      if (given) return UsageError(std::string(flag) + " applies only with --nats");
    }
  }

  // Everything that can be checked without the store is checked first, so a
  // bad invocation neither creates a store nor takes its lock.
  revkv::NatsOptions nats_options;
  nats_options.servers = args.nats;
  nats_options.user = args.user.value_or("");
  nats_options.password = args.password.value_or("");
  nats_options.token = args.token.value_or("");
  nats_options.creds_file = args.creds.value_or("");
  nats_options.tls_ca = args.tls_ca.value_or("");
  nats_options.tls_cert = args.tls_cert.value_or("");
  nats_options.tls_key = args.tls_key.value_or("");
  if (args.write_timeout) {
    auto d = ParseDuration(*args.write_timeout);
    if (!d || d->count() == 0) {
      return Fail(kExitInvalidArgument,
                  "InvalidArgument: --write-timeout " + Quote(*args.write_timeout) +
                      " is not a duration; give a whole positive number with a unit, e.g. "
                      "500ms, 10s or 2m (at most a year)");
    }
    nats_options.write_timeout = *d;
  }
  revkv::BucketOptions bucket_options;
  bucket_options.allow_atomic_batches = args.allow_atomic;
  if (args.history) {
    auto h = ParseUint64(*args.history);
    if (!h || *h < 1 || *h > static_cast<uint64_t>(revkv::kMaxHistory)) {
      return Fail(kExitInvalidArgument, "InvalidArgument: --history " + Quote(*args.history) +
                                            " is not a number from 1 to " +
                                            std::to_string(revkv::kMaxHistory));
    }
    bucket_options.history = static_cast<int>(*h);
  }
  // A TTL in whole seconds, at least 1 s, as NATS takes it.
  auto parse_ttl = [](const std::string& text) -> std::optional<std::chrono::seconds> {
    auto d = ParseDuration(text);
    if (!d || d->count() < 1000 || d->count() % 1000 != 0) return std::nullopt;
    return std::chrono::duration_cast<std::chrono::seconds>(*d);
  };
  revkv::WriteOptions write_options;
  if (args.fence) {
    // NAME:TOKEN, the token being the last ':'-separated field.
    const size_t colon = args.fence->rfind(':');
    const auto token = colon == std::string::npos
                           ? std::nullopt
                           : ParseUint64(std::string_view(*args.fence).substr(colon + 1));
    if (!token || colon == 0 || *token == 0) {
      return Fail(kExitInvalidArgument,
                  "InvalidArgument: --fence " + Quote(*args.fence) +
                      " is not NAME:TOKEN; give the lock's name and its fencing token, e.g. "
                      "lock.jobs:42 (revkv lock passes REVKV_LOCK_NAME and REVKV_FENCING_TOKEN)");
    }
    write_options.fence = revkv::Fence{args.fence->substr(0, colon), *token};
  }
  if (args.ttl) {
    auto ttl = parse_ttl(*args.ttl);
    if (!ttl) {
      return Fail(kExitInvalidArgument, "InvalidArgument: --ttl " + Quote(*args.ttl) +
                                            " is not a TTL; give whole seconds, at least 1s, "
                                            "e.g. 30s or 5m");
    }
    write_options.ttl = *ttl;
  }
  if (args.limit_marker_ttl) {
    auto ttl = parse_ttl(*args.limit_marker_ttl);
    if (!ttl) {
      return Fail(kExitInvalidArgument,
                  "InvalidArgument: --limit-marker-ttl " + Quote(*args.limit_marker_ttl) +
                      " is not a TTL; give whole seconds, at least 1s, e.g. 5s");
    }
    bucket_options.limit_marker_ttl = *ttl;
  }
  std::optional<uint64_t> expected_revision;
  if (args.revision) {
    expected_revision = ParseUint64(*args.revision);
    if (!expected_revision) {
      return Fail(kExitInvalidArgument, "InvalidArgument: --revision " + Quote(*args.revision) +
                                            " is not a revision number (0 or more)");
    }
  }
  if (command == "update") {
    expected_revision = ParseUint64(params[2]);
    if (!expected_revision) {
      return Fail(kExitInvalidArgument, "InvalidArgument: REVISION " + Quote(params[2]) +
                                            " is not a revision number (0 or more)");
    }
  }
  if (revkv::Status s = revkv::ValidateBucketName(bucket_name); !s.ok()) return FailStatus(s);
  const bool has_filter = command == "keys" || command == "watch" || command == "entries";
  const std::string filter = has_filter && !params.empty() ? params[0] : ">";
  // Reads take every key a replica can hold, including keys other NATS
  // clients stored beyond revkv's own write rules; writes keep those rules.
  if (has_filter) {
    if (revkv::Status s = revkv::ValidateReadFilter(filter); !s.ok()) return FailStatus(s);
  } else if (command == "status" || command == "txn") {
    // No key.
  } else if (!spec->writes) {
    if (revkv::Status s = revkv::ValidateReadKey(params[0]); !s.ok()) return FailStatus(s);
  } else if (revkv::Status s = revkv::ValidateKey(params[0]); !s.ok()) {
    if (command != "lock") return FailStatus(s);
    return Fail(
        kExitInvalidArgument,
        "InvalidArgument: bad lock name (names follow the key rules): " + std::string(s.message()));
  }
  std::string value;
  if (spec->min_args >= 2) {
    if (params[1] == "-") {
      if (int rc = ReadStdin(&value); rc != kExitOk) return rc;
    } else {
      value = params[1];
    }
  }

  revkv::Txn txn;
  if (command == "txn") {
    std::string input;
    if (int rc = ReadStdin(&input); rc != kExitOk) return rc;
    if (int rc = args.json ? ParseTxnJson(input, &txn) : ParseTxn(input, &txn); rc != kExitOk) {
      return rc;
    }
    if (txn.ops.empty()) {
      return Fail(kExitInvalidArgument, "InvalidArgument: the transaction on standard input has "
                                        "no write (put, create, update, delete or purge)");
    }
  }
  if (command == "watch") return RunWatch(args, bucket_name, filter);
  if (command == "lock") {
    std::chrono::milliseconds durations[2] = {std::chrono::seconds(30), std::chrono::seconds(30)};
    const std::pair<const char*, const std::optional<std::string>*> flags[2] = {
        {"--lease", &args.lease}, {"--timeout", &args.timeout}};
    for (int i = 0; i < 2; ++i) {
      const auto& [flag, text] = flags[i];
      if (!*text) continue;
      auto d = ParseDuration(**text);
      if (!d) {
        return Fail(kExitInvalidArgument,
                    std::string("InvalidArgument: ") + flag + " " + Quote(**text) +
                        " is not a duration; give a whole number with a unit, e.g. 500ms, 10s "
                        "or 2m (at most a year)");
      }
      durations[i] = *d;
    }
    if (durations[0] < std::chrono::milliseconds(10)) {
      return Fail(kExitInvalidArgument, "InvalidArgument: --lease " + FormatDuration(durations[0]) +
                                            " is too short; give at least 10ms");
    }
    return RunLock(args, nats_options, params[0], lock_cmd, durations[0], durations[1]);
  }

  revkv::Options options;
  options.path = *args.db;
  options.sync = args.sync;
  options.nats = nats_options;
  if (args.locks_bucket) options.locks_bucket = *args.locks_bucket;
  // Reading must not leave a new store behind a mistyped --db. With --nats
  // the directory is a replica, which a read may create and fill from the
  // server.
  options.create_if_missing = spec->writes || replicated;
  // The one warning a read prints when it answers from a replica it could
  // not bring up to date.
  bool warned = false;
  auto warn_stale = [&warned](const revkv::Status& why) {
    if (warned) return;
    warned = true;
    std::string line = "revkv: warning: " +
                       Printable("cannot reach the NATS server (" + why.ToString() +
                                 "); answering from the local replica, which may be stale") +
                       "\n";
    fwrite(line.data(), 1, line.size(), stderr);
    fflush(stderr);
  };
  auto engine = revkv::Engine::Open(options);
  bool connected = replicated && engine.ok();
  if (!engine.ok() && replicated && !spec->writes &&
      engine.status().code() == revkv::Code::kUnavailable) {
    // The server is unreachable (a store held by another process is
    // Unavailable too, and stays so below). Reads fall back to the replica.
    const revkv::Status why = engine.status();
    revkv::Options local = options;
    local.nats = revkv::NatsOptions{};
    local.create_if_missing = false;
    auto fallback = revkv::Engine::Open(local);
    if (fallback.ok()) {
      warn_stale(why);
      engine = std::move(fallback);
    }
  }
  if (!engine.ok()) return FailStatus(engine.status());
  if (!spec->writes && !connected) {
    // Nor create a bucket just to find it empty.
    const std::vector<std::string> buckets = (*engine)->ListBuckets();
    if (std::find(buckets.begin(), buckets.end(), bucket_name) == buckets.end()) {
      if (command == "keys") {
        if (args.json) Write("[]\n");
        return FinishOutput();
      }
      if (command == "entries") return FinishOutput();
      if (command == "status") {
        Write(StatusText(args.json, 0, true, 0, false, {}));
        return FinishOutput();
      }
      return Fail(kExitNotFound, "NotFound: bucket " + Quote(bucket_name) +
                                     " does not exist in the store at " + Quote(*args.db));
    }
  }
  // A read does not create the bucket on the server either.
  bucket_options.create_if_missing = spec->writes;
  // A long bootstrap of a new replica shows its progress on a terminal only:
  // scripts reading stderr see no progress lines.
  bool progress_shown = false;
  if (isatty(STDERR_FILENO)) {
    bucket_options.bootstrap_progress = [&progress_shown](const revkv::BootstrapProgress& p) {
      progress_shown = true;
      std::fprintf(stderr, "\rbootstrapping: %llu entries, revision %llu of %llu (%d%%)",
                   static_cast<unsigned long long>(p.loaded),
                   static_cast<unsigned long long>(p.revision),
                   static_cast<unsigned long long>(p.target),
                   p.target == 0 ? 100 : static_cast<int>(p.revision * 100 / p.target));
      std::fflush(stderr);
    };
  }
  auto opened_bucket = (*engine)->OpenBucket(bucket_name, bucket_options);
  if (progress_shown) std::fprintf(stderr, "\n");
  if (!opened_bucket.ok() && opened_bucket.status().IsNotFound() && !spec->writes) {
    if (command == "keys") {
      if (args.json) Write("[]\n");
      return FinishOutput();
    }
    if (command == "entries") return FinishOutput();
    if (command == "status") {
      Write(StatusText(args.json, 0, true, 0, connected, {}));
      return FinishOutput();
    }
  }
  if (!opened_bucket.ok()) return FailStatus(opened_bucket.status());
  revkv::Bucket& bucket = **opened_bucket;
  const std::string& key = params.empty() ? filter : params[0];

  if (command == "status") {
    // The stream's last revision is what the replica has applied once Sync
    // has caught it up; a failed Sync leaves it unknown.
    const uint64_t applied = bucket.LastRevision();
    std::optional<uint64_t> stream_last;
    if (!replicated) stream_last = applied;  // a local-only store is its own stream
    if (connected) {
      const revkv::Status synced = bucket.Sync(nats_options.write_timeout);
      if (synced.ok()) {
        stream_last = bucket.LastRevision();
      } else {
        stream_last.reset();
        connected = false;
      }
    }
    // The messages the replica skipped are kept in its store: known even
    // when the server is not reachable.
    Write(StatusText(args.json, applied, stream_last.has_value(), stream_last.value_or(0),
                     connected, bucket.GetStatus()));
    return FinishOutput();
  }
  if (!spec->writes && connected && !args.local) {
    // Catch the replica up so that the read sees every acknowledged write.
    const revkv::Status synced = bucket.Sync(nats_options.write_timeout);
    if (!synced.ok()) {
      if (synced.code() != revkv::Code::kUnavailable && synced.code() != revkv::Code::kTimeout) {
        return FailStatus(synced);
      }
      warn_stale(synced);
    }
  }

  auto print_revision = [](const revkv::Result<uint64_t>& r) {
    if (!r.ok()) return FailStatus(r.status());
    Write(std::to_string(*r) + "\n");
    return FinishOutput();
  };

  if (command == "put") return print_revision(bucket.Put(key, value, write_options));
  if (command == "create") return print_revision(bucket.Create(key, value, write_options));
  if (command == "update") {
    return print_revision(bucket.Update(key, value, *expected_revision, write_options));
  }
  if (command == "delete") {
    return print_revision(bucket.Delete(key, expected_revision, write_options));
  }
  if (command == "purge") return print_revision(bucket.Purge(key, expected_revision, write_options));
  if (command == "get") {
    auto got = bucket.Get(key);
    if (!got.ok()) return FailStatus(got.status());
    Write(*got);
    // A shell prompt after a value without a newline is unreadable, but a
    // pipe or file must get the exact bytes.
    if (isatty(STDOUT_FILENO)) Write("\n");
    return FinishOutput();
  }
  if (command == "entry") {
    auto entry = bucket.GetEntry(key);
    if (!entry.ok()) return FailStatus(entry.status());
    Write(args.json ? EntryJson(*entry) : EntryText(*entry));
    return FinishOutput();
  }
  if (command == "keys") {
    // Page by page, so that a bucket of millions of keys is never held in
    // memory at once.
    constexpr size_t kPage = 4096;
    std::string after;
    bool first = true;
    while (true) {
      auto keys = bucket.KeysAfter(filter, after, kPage);
      if (!keys.ok()) return FailStatus(keys.status());
      std::string out;
      for (const std::string& k : *keys) {
        if (args.json) {
          out += first ? "[" : ",";
          out += JsonString(k);
        } else {
          out += k + "\n";
        }
        first = false;
      }
      if (keys->size() < kPage) {
        if (args.json) out += first ? "[]\n" : "]\n";
        Write(out);
        break;
      }
      Write(out);
      after = keys->back();
    }
    return FinishOutput();
  }
  if (command == "entries") {
    auto snapshot = bucket.Entries(filter);
    if (!snapshot.ok()) return FailStatus(snapshot.status());
    std::string out;
    for (const revkv::Entry& e : snapshot->entries) {
      out += args.json ? EntryJson(e)
                       : Printable(e.key) + " " + std::to_string(e.revision) + " " +
                             EscapeText(e.value) + "\n";
    }
    Write(out);
    return FinishOutput();
  }
  if (command == "txn") {
    auto done = bucket.Commit(txn, write_options);
    if (!done.ok()) return FailStatus(done.status());
    if (args.json) {
      std::string out = "{\"revision\":" + std::to_string(done->revision) + ",\"revisions\":{";
      for (size_t i = 0; i < txn.ops.size(); ++i) {
        if (i > 0) out += ",";
        out += JsonString(txn.ops[i].key) + ":" + std::to_string(done->revisions[i]);
      }
      Write(out + "}}\n");
    } else {
      Write(std::to_string(done->revision) + "\n");
    }
    return FinishOutput();
  }
  if (command == "history") {
    auto history = bucket.History(key);
    if (!history.ok()) return FailStatus(history.status());
    std::string out;
    for (const revkv::Entry& e : *history) out += EntryLine(e, args.json, /*with_key=*/false);
    Write(out);
    return FinishOutput();
  }
  return Fail(kExitError, "internal error: command " + Quote(command) + " has no handler");
}

}  // namespace

int main(int argc, char** argv) {
  int rc;
  try {
    rc = Run(argc, argv);
  } catch (const std::exception& e) {
    rc = Fail(kExitError, std::string("internal error: ") + e.what());
  } catch (...) {
    rc = Fail(kExitError, "internal error: unknown exception");
  }
  // Every engine was closed inside Run. Leave without running static
  // destructors: RocksDB 7.8 keeps static mutexes (its periodic task timer)
  // that its own threads may still lock while they are destroyed, which
  // aborted this process with "pthread lock: Invalid argument" once in a
  // test run after `lock ... -- false` had finished.
  std::fflush(nullptr);
  _exit(rc);
}
