// The `revkv` command-line contract, driven through the built binary: every
// test runs it as a child process and checks its stdout, stderr and exit code.

#include "tests/test_util.h"
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "revkv/revkv.h"
#include "tests/nats_server.h"
#include "tests/raw_publish.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr char kCli[] = REVKV_CLI;
bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// RFC 3339 in UTC with nanoseconds, e.g. 2026-11-28T09:22:36.123456789Z.
// (Hand-written: std::regex trips GCC 12's -Wmaybe-uninitialized under
// sanitizers, and -Werror is on.)
bool IsRfc3339Nanos(std::string_view s) {
  constexpr std::string_view kShape = "0000-00-00T00:00:00.000000000Z";
  if (s.size() != kShape.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (kShape[i] == '0' ? (s[i] < '0' || s[i] > '9') : s[i] != kShape[i]) return false;
  }
  return true;
}

// A history/watch line: REVISION OPERATION CREATED VALUE (VALUE may hold
// spaces or be empty).
struct HistoryLine {
  std::string revision, operation, created, value;
};

std::optional<HistoryLine> ParseHistoryLine(std::string_view line) {
  HistoryLine out;
  std::string* fields[] = {&out.revision, &out.operation, &out.created};
  for (std::string* field : fields) {
    size_t space = line.find(' ');
    if (space == std::string_view::npos) return std::nullopt;
    *field = std::string(line.substr(0, space));
    line.remove_prefix(space + 1);
  }
  out.value = std::string(line);
  if (!AllDigits(out.revision) || !IsRfc3339Nanos(out.created)) return std::nullopt;
  if (out.operation != "PUT" && out.operation != "DEL" && out.operation != "PURGE") {
    return std::nullopt;
  }
  return out;
}

using revkv::testing::TempDir;

// The bytes of a string literal, embedded NULs included.
template <size_t N>
std::string Bytes(const char (&literal)[N]) {
  return std::string(literal, N - 1);
}

// ---- Child processes ----

struct Child {
  pid_t pid = -1;
  int stdin_fd = -1;  // our ends of the child's pipes
  int stdout_fd = -1;
  int stderr_fd = -1;
};

void CloseFd(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

// Starts the CLI with `args`, its stdin, stdout and stderr on pipes.
// `extra_env` entries ("NAME=value") override the inherited environment.
Child Spawn(const std::vector<std::string>& args, const std::vector<std::string>& extra_env = {}) {
  // A child that exits without reading its stdin must fail our write, not
  // kill the test.
  signal(SIGPIPE, SIG_IGN);
  int in[2], out[2], err[2];
  // O_CLOEXEC: the child keeps only the dup2'ed copies, so EOF arrives when
  // it exits.
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << strerror(errno);
    return {};
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);

  std::vector<std::string> argv_storage = {kCli};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view entry(*e);
    bool overridden = std::any_of(extra_env.begin(), extra_env.end(), [&](const std::string& x) {
      return entry.substr(0, entry.find('=') + 1) == x.substr(0, x.find('=') + 1);
    });
    if (!overridden) env_storage.emplace_back(entry);
  }
  env_storage.insert(env_storage.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> envp;
  for (std::string& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);

  // The child starts with default signal handling and nothing blocked, as
  // from a shell, whatever this process ignores.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t sigs;
  sigemptyset(&sigs);
  posix_spawnattr_setsigmask(&attr, &sigs);
  sigaddset(&sigs, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &sigs);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  Child child;
  int rc = posix_spawn(&child.pid, kCli, &actions, &attr, argv.data(), envp.data());
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  close(in[0]);
  close(out[1]);
  close(err[1]);
  if (rc != 0) {
    ADD_FAILURE() << "posix_spawn " << kCli << ": " << strerror(rc);
    close(in[1]);
    close(out[0]);
    close(err[0]);
    return {};
  }
  child.stdin_fd = in[1];
  child.stdout_fd = out[0];
  child.stderr_fd = err[0];
  fcntl(child.stdin_fd, F_SETFL, fcntl(child.stdin_fd, F_GETFL) | O_NONBLOCK);
  return child;
}

// Waits for `pid` until `deadline`, then kills it. Returns the exit code, or
// 128 + signal number as a shell would, or -1 if it had to be killed.
int WaitChild(pid_t pid, Clock::time_point deadline) {
  int status = 0;
  while (true) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) {
      ADD_FAILURE() << "waitpid: " << strerror(errno);
      return -1;
    }
    if (Clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ADD_FAILURE() << "revkv (pid " << pid << ") did not exit in time; killed";
      return -1;
    }
    usleep(10 * 1000);
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::ostream& operator<<(std::ostream& os, const RunResult& r) {
  return os << "exit " << r.exit_code << ", stdout [" << r.out << "], stderr [" << r.err << "]";
}

// Runs the CLI to completion, feeding `input` on stdin while collecting
// stdout and stderr (all at once, so that no pipe can fill up and deadlock).
RunResult RunCli(const std::vector<std::string>& args, std::string_view input = {}) {
  const auto deadline = Clock::now() + 60s;
  Child child = Spawn(args);
  RunResult result;
  if (child.pid < 0) return result;
  size_t written = 0;
  if (input.empty()) CloseFd(&child.stdin_fd);
  while (child.stdout_fd >= 0 || child.stderr_fd >= 0) {
    std::vector<pollfd> fds;
    if (child.stdin_fd >= 0) fds.push_back({child.stdin_fd, POLLOUT, 0});
    if (child.stdout_fd >= 0) fds.push_back({child.stdout_fd, POLLIN, 0});
    if (child.stderr_fd >= 0) fds.push_back({child.stderr_fd, POLLIN, 0});
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left <= 0ms) break;
    int n = poll(fds.data(), fds.size(), static_cast<int>(left.count()));
    if (n < 0 && errno != EINTR) break;
    for (const pollfd& p : fds) {
      if (p.revents == 0) continue;
      if (p.fd == child.stdin_fd) {
        ssize_t w = write(p.fd, input.data() + written, input.size() - written);
        if (w > 0) written += static_cast<size_t>(w);
        // EPIPE: the child stopped reading; the rest of the input is moot.
        if (written == input.size() || (w < 0 && errno != EAGAIN && errno != EINTR)) {
          CloseFd(&child.stdin_fd);
        }
        continue;
      }
      char buf[65536];
      ssize_t r = read(p.fd, buf, sizeof(buf));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        CloseFd(p.fd == child.stdout_fd ? &child.stdout_fd : &child.stderr_fd);
        continue;
      }
      (p.fd == child.stdout_fd ? result.out : result.err).append(buf, static_cast<size_t>(r));
    }
  }
  CloseFd(&child.stdin_fd);
  CloseFd(&child.stdout_fd);
  CloseFd(&child.stderr_fd);
  result.exit_code = WaitChild(child.pid, deadline);
  return result;
}

// Reads a background child's output line by line, never blocking past a
// deadline.
class LineReader {
 public:
  explicit LineReader(int fd) : fd_(fd) {}

  // The next complete line without its '\n', or nullopt at the deadline or
  // at EOF.
  std::optional<std::string> Next(Clock::time_point deadline) {
    while (true) {
      if (size_t nl = buf_.find('\n'); nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      if (eof_) return std::nullopt;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left <= 0ms) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      int n = poll(&p, 1, static_cast<int>(left.count()));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return std::nullopt;
      char buf[4096];
      ssize_t r = read(fd_, buf, sizeof(buf));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        eof_ = true;
        continue;
      }
      buf_.append(buf, static_cast<size_t>(r));
    }
  }
  bool eof() const { return eof_; }

 private:
  int fd_;
  std::string buf_;
  bool eof_ = false;
};

std::string ReadAll(int fd, Clock::time_point deadline) {
  LineReader reader(fd);
  std::string out;
  while (auto line = reader.Next(deadline)) out += *line + "\n";
  return out;
}

// ---- A small JSON reader, strict enough to catch bad escaping ----

struct Json {
  enum Type { kNull, kBool, kNumber, kString, kArray, kObject } type = kNull;
  std::string text;  // string contents, or a number's literal
  bool boolean = false;
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> fields;

  const Json* Field(std::string_view name) const {
    for (const auto& [k, v] : fields) {
      if (k == name) return &v;
    }
    return nullptr;
  }
};

class JsonParser {
 public:
  explicit JsonParser(std::string_view s) : s_(s) {}

  std::optional<Json> ParseDocument() {
    Json v;
    if (!Value(&v)) return std::nullopt;
    Space();
    if (pos_ != s_.size()) return std::nullopt;
    return v;
  }

 private:
  void Space() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\t' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool Literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }
  bool Hex4(uint32_t* out) {
    if (pos_ + 4 > s_.size()) return false;
    *out = 0;
    for (int i = 0; i < 4; ++i) {
      char c = s_[pos_++];
      *out <<= 4;
      if (c >= '0' && c <= '9') {
        *out |= static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        *out |= static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        *out |= static_cast<uint32_t>(c - 'A' + 10);
      } else {
        return false;
      }
    }
    return true;
  }
  static void AppendUtf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      *out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      *out += static_cast<char>(0xc0 | (cp >> 6));
      *out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      *out += static_cast<char>(0xe0 | (cp >> 12));
      *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      *out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      *out += static_cast<char>(0xf0 | (cp >> 18));
      *out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
      *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      *out += static_cast<char>(0x80 | (cp & 0x3f));
    }
  }
  bool String(std::string* out) {
    if (pos_ >= s_.size() || s_[pos_] != '"') return false;
    ++pos_;
    while (pos_ < s_.size()) {
      unsigned char c = static_cast<unsigned char>(s_[pos_++]);
      if (c == '"') return true;
      if (c < 0x20) return false;  // JSON forbids raw control characters
      if (c != '\\') {
        *out += static_cast<char>(c);
        continue;
      }
      if (pos_ >= s_.size()) return false;
      char e = s_[pos_++];
      switch (e) {
        case '"':
          *out += '"';
          break;
        case '\\':
          *out += '\\';
          break;
        case '/':
          *out += '/';
          break;
        case 'b':
          *out += '\b';
          break;
        case 'f':
          *out += '\f';
          break;
        case 'n':
          *out += '\n';
          break;
        case 'r':
          *out += '\r';
          break;
        case 't':
          *out += '\t';
          break;
        case 'u': {
          uint32_t cp;
          if (!Hex4(&cp)) return false;
          if (cp >= 0xd800 && cp < 0xdc00) {
            uint32_t low;
            if (!Literal("\\u") || !Hex4(&low) || low < 0xdc00 || low > 0xdfff) return false;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
          }
          AppendUtf8(cp, out);
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }
  bool Value(Json* v) {
    Space();
    if (pos_ >= s_.size()) return false;
    char c = s_[pos_];
    if (c == '"') {
      v->type = Json::kString;
      return String(&v->text);
    }
    if (c == '{') {
      v->type = Json::kObject;
      ++pos_;
      Space();
      if (Literal("}")) return true;
      while (true) {
        Space();
        std::string name;
        if (!String(&name)) return false;
        Space();
        if (!Literal(":")) return false;
        Json field;
        if (!Value(&field)) return false;
        v->fields.emplace_back(std::move(name), std::move(field));
        Space();
        if (Literal("}")) return true;
        if (!Literal(",")) return false;
      }
    }
    if (c == '[') {
      v->type = Json::kArray;
      ++pos_;
      Space();
      if (Literal("]")) return true;
      while (true) {
        Json item;
        if (!Value(&item)) return false;
        v->items.push_back(std::move(item));
        Space();
        if (Literal("]")) return true;
        if (!Literal(",")) return false;
      }
    }
    if (Literal("true")) {
      v->type = Json::kBool;
      v->boolean = true;
      return true;
    }
    if (Literal("false")) {
      v->type = Json::kBool;
      return true;
    }
    if (Literal("null")) return true;
    size_t start = pos_;
    while (pos_ < s_.size() &&
           (std::isdigit(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '-' ||
            s_[pos_] == '+' || s_[pos_] == '.' || s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
    }
    if (pos_ == start) return false;
    v->type = Json::kNumber;
    v->text = std::string(s_.substr(start, pos_ - start));
    return true;
  }

  std::string_view s_;
  size_t pos_ = 0;
};

std::optional<Json> ParseJson(std::string_view s) { return JsonParser(s).ParseDocument(); }

// ---- Assertions ----

std::vector<std::string> Lines(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < s.size()) {
    size_t nl = s.find('\n', start);
    if (nl == std::string::npos) nl = s.size();
    out.push_back(s.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

// Every failure is one line on stderr, prefixed "revkv: ".
::testing::AssertionResult OneErrorLine(const RunResult& r) {
  if (r.err.rfind("revkv: ", 0) != 0) {
    return ::testing::AssertionFailure() << "stderr lacks the 'revkv: ' prefix: " << r;
  }
  if (std::count(r.err.begin(), r.err.end(), '\n') != 1 || r.err.back() != '\n') {
    return ::testing::AssertionFailure() << "stderr is not exactly one line: " << r;
  }
  return ::testing::AssertionSuccess();
}

// A failure with `code`, nothing on stdout and one line on stderr.
::testing::AssertionResult FailsWith(int code, const RunResult& r) {
  if (r.exit_code != code) {
    return ::testing::AssertionFailure() << "expected exit " << code << ", got " << r;
  }
  if (!r.out.empty()) return ::testing::AssertionFailure() << "stdout not empty: " << r;
  return OneErrorLine(r);
}

// True if `text` contains `number` as a whole number, not inside another.
bool MentionsNumber(const std::string& text, uint64_t number) {
  const std::string digits = std::to_string(number);
  auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  for (size_t at = text.find(digits); at != std::string::npos; at = text.find(digits, at + 1)) {
    const size_t end = at + digits.size();
    if ((at == 0 || !is_digit(text[at - 1])) && (end == text.size() || !is_digit(text[end]))) {
      return true;
    }
  }
  return false;
}

uint64_t ParseRevision(const RunResult& r) {
  EXPECT_EQ(r.exit_code, 0) << r;
  EXPECT_TRUE(r.err.empty()) << r;
  const std::string_view out(r.out);
  if (!out.ends_with('\n') || !AllDigits(out.substr(0, out.size() - 1))) {
    ADD_FAILURE() << "not a revision line: " << r;
    return 0;
  }
  return std::stoull(r.out);
}

// Lower-case because gtest_discover_tests names each test "suite.test" and
// `ctest -R cli` (case-sensitive) is how this suite is selected.
class cli : public ::testing::Test {
 protected:
  std::string db() const { return dir_.path() + "/db"; }

  // Runs `revkv --db <db> args...`.
  RunResult Cli(std::vector<std::string> args, std::string_view input = {}) {
    args.insert(args.begin(), {"--db", db()});
    return RunCli(args, input);
  }
  uint64_t Put(const std::string& key, const std::string& value) {
    return ParseRevision(Cli({"put", key, value}));
  }
  std::string Keys(const std::string& filter = ">") { return Cli({"keys", filter}).out; }

  TempDir dir_;
};

// ---- Reading and writing ----

TEST_F(cli, PutGetRoundTripsExactBytesWithoutNewline) {
  RunResult put = Cli({"put", "greeting", "hello world"});
  EXPECT_EQ(put.exit_code, 0) << put;
  EXPECT_EQ(put.out, "1\n");
  EXPECT_EQ(put.err, "");

  // stdout is a pipe here, so get adds no newline of its own...
  RunResult get = Cli({"get", "greeting"});
  EXPECT_EQ(get.exit_code, 0) << get;
  EXPECT_EQ(get.out, "hello world");
  EXPECT_EQ(get.err, "");

  // ...and keeps the value's own.
  EXPECT_EQ(Put("greeting", "line\n"), 2u);
  EXPECT_EQ(Cli({"get", "greeting"}).out, "line\n");
}

// txn commits the operations on stdin at once and follows the single-key
// commands' exit codes; entries prints one snapshot.
TEST_F(cli, TxnCommitsAtOnceAndEntriesPrintsOneSnapshot) {
  ASSERT_EQ(Cli({"put", "a", "1"}).exit_code, 0);
  RunResult done = Cli({"txn"}, "put b 2\n# a comment\n\ncreate c 3\ncheck a 1\ndelete gone\n");
  ASSERT_EQ(done.exit_code, 0) << done;
  EXPECT_EQ(done.out, "4\n");  // b at 2, c at 3, the tombstone of gone at 4
  RunResult json = Cli({"--json", "txn"}, "{\"op\":\"update\",\"key\":\"b\",\"value\":\"20\","
                                          "\"revision\":2}\n{\"op\":\"purge\",\"key\":\"c\",\"revision\":3}\n");
  ASSERT_EQ(json.exit_code, 0) << json;
  EXPECT_EQ(json.out, "{\"revision\":6,\"revisions\":{\"b\":5,\"c\":6}}\n");
  const struct {
    const char* input;
    int code;
  } refused[] = {
      {"update b 9 2\nput d 4\n", 4},  // stale: b is at 5
      {"check a 7\nput d 4\n", 4},     // a failed compare
      {"check a 0\nput d 4\n", 4},     // a is present, not absent
      {"create a 2\n", 3},
      {"put x 1\nput x 2\n", 7},       // a key twice
      {"check a 1\n", 7},                // no write
      {"", 7},
      {"update b 9\n", 7},               // a bad line
      {"move a b\n", 7},
      {"put bad..key 1\n", 7},
  };
  for (const auto& r : refused) {
    RunResult out = Cli({"txn"}, r.input);
    EXPECT_TRUE(FailsWith(r.code, out)) << "input: " << r.input << "\n" << out;
  }
  EXPECT_TRUE(FailsWith(2, Cli({"get", "d"})));  // none of them wrote
  RunResult entries = Cli({"entries"});
  ASSERT_EQ(entries.exit_code, 0) << entries;
  EXPECT_EQ(entries.out, "a 1 1\nb 5 20\n");
  RunResult filtered = Cli({"--json", "entries", "b"});
  ASSERT_EQ(filtered.exit_code, 0) << filtered;
  EXPECT_NE(filtered.out.find("\"key\":\"b\",\"value\":\"20\",\"revision\":5"),
            std::string::npos)
      << filtered;
  RunResult missing = Cli({"--bucket", "nothing", "entries"});
  EXPECT_EQ(missing.exit_code, 0) << missing;
  EXPECT_EQ(missing.out, "");
}

// txn --json reads one JSON object per line, with the text form's
// operations: a value with spaces as it is, bytes (a newline, a NUL, a
// non-UTF-8 byte) in a JSON string or in base64, a key in base64 as
// entries --json prints one; the output is as before.
TEST_F(cli, TxnJsonReadsOneObjectPerLine) {
  ASSERT_EQ(Put("a", "1"), 1u);
  const std::string blob = Bytes("line1\nline2\0tail\xff");
  const std::string input =
      "{\"op\":\"put\",\"key\":\"spaced\",\"value\":\"hello brave world\"}\n"
      "# a comment\n"
      "\n"
      "{\"op\":\"create\",\"key\":\"blob\",\"value\":\"bGluZTEKbGluZTIAdGFpbP8=\","
      "\"value_encoding\":\"base64\"}\n"
      "  {\"op\":\"check\",\"key\":\"a\",\"revision\":1}\r\n"
      "{\"key_encoding\":\"base64\",\"key\":\"a2V5LmI=\",\"op\":\"put\","
      "\"value\":\"tab\\tquote\\\" nul\\u0000\"}\n";
  RunResult done = Cli({"--json", "txn"}, input);
  ASSERT_EQ(done.exit_code, 0) << done;
  EXPECT_EQ(done.out, "{\"revision\":4,\"revisions\":{\"spaced\":2,\"blob\":3,\"key.b\":4}}\n");
  EXPECT_EQ(Cli({"get", "spaced"}).out, "hello brave world");
  EXPECT_EQ(Cli({"get", "blob"}).out, blob);
  EXPECT_EQ(Cli({"get", "key.b"}).out, Bytes("tab\tquote\" nul\0"));
  RunResult entry = Cli({"--json", "entry", "blob"});
  ASSERT_EQ(entry.exit_code, 0) << entry;
  EXPECT_NE(entry.out.find("\"value\":\"bGluZTEKbGluZTIAdGFpbP8=\",\"value_encoding\":\"base64\""),
            std::string::npos)
      << entry;

  // update, delete with a revision and purge without; the text output.
  RunResult more = Cli({"--json", "txn"},
                       "{\"op\":\"update\",\"key\":\"spaced\",\"value\":\"x y\",\"revision\":2}\n"
                       "{\"op\":\"delete\",\"key\":\"blob\",\"revision\":3}\n"
                       "{\"op\":\"purge\",\"key\":\"key.b\"}\n");
  ASSERT_EQ(more.exit_code, 0) << more;
  EXPECT_EQ(more.out, "{\"revision\":7,\"revisions\":{\"spaced\":5,\"blob\":6,\"key.b\":7}}\n");
  EXPECT_EQ(Cli({"get", "spaced"}).out, "x y");
  EXPECT_TRUE(FailsWith(2, Cli({"get", "blob"})));

  // The exit codes of the text form: a stale check or update 4, a create
  // on a live key 3.
  RunResult stale = Cli({"--json", "txn"}, "{\"op\":\"check\",\"key\":\"spaced\",\"revision\":2}\n"
                                           "{\"op\":\"put\",\"key\":\"z\",\"value\":\"1\"}\n");
  EXPECT_TRUE(FailsWith(4, stale)) << stale;
  EXPECT_NE(stale.err.find("spaced"), std::string::npos) << stale;
  RunResult absent = Cli({"--json", "txn"}, "{\"op\":\"check\",\"key\":\"a\",\"revision\":0}\n"
                                            "{\"op\":\"put\",\"key\":\"z\",\"value\":\"1\"}\n");
  EXPECT_TRUE(FailsWith(4, absent)) << absent;
  RunResult moved = Cli({"--json", "txn"},
                        "{\"op\":\"update\",\"key\":\"spaced\",\"value\":\"v\",\"revision\":2}\n");
  EXPECT_TRUE(FailsWith(4, moved)) << moved;
  RunResult exists =
      Cli({"--json", "txn"}, "{\"op\":\"create\",\"key\":\"a\",\"value\":\"2\"}\n");
  EXPECT_TRUE(FailsWith(3, exists)) << exists;
  EXPECT_TRUE(FailsWith(2, Cli({"get", "z"})));
  EXPECT_EQ(Cli({"get", "spaced"}).out, "x y");
}

// A bad line exits 7, naming its number and what is wrong, and nothing is
// written.
TEST_F(cli, TxnJsonBadLinesExitSeven) {
  const std::string ok = "{\"op\":\"put\",\"key\":\"x\",\"value\":\"1\"}\n";
  const struct {
    std::string input;
    std::string says;  // in the message after "line 2 "
  } refused[] = {
      {ok + "{not json}\n", "not valid JSON"},
      {ok + "{\"op\":\"put\",\"key\":\"y\",\"value\":\"1\"\n", "not valid JSON"},
      {ok + "put y 1\n", "not valid JSON"},
      {ok + "{\"op\":\"put\",\"key\":\"y\",\"value\":\"\xff\"}\n", "not valid JSON"},
      {ok + "[1,2]\n", "not a JSON object"},
      {ok + "{\"key\":\"y\",\"value\":\"1\"}\n", "no \"op\""},
      {ok + "{\"op\":\"move\",\"key\":\"y\"}\n", "unknown op 'move'"},
      {ok + "{\"op\":\"put\",\"key\":\"y\"}\n", "no \"value\""},
      {ok + "{\"op\":\"put\",\"value\":\"1\"}\n", "no \"key\""},
      {ok + "{\"op\":\"put\",\"key\":\"y\",\"value\":5}\n", "\"value\" is not a string"},
      {ok + "{\"op\":\"put\",\"key\":[\"y\"],\"value\":\"1\"}\n", "\"key\" is not a string"},
      {ok + "{\"op\":\"update\",\"key\":\"y\",\"value\":\"1\"}\n", "no \"revision\""},
      {ok + "{\"op\":\"update\",\"key\":\"y\",\"value\":\"1\",\"revision\":-1}\n",
       "\"revision\" is not a revision number"},
      {ok + "{\"op\":\"update\",\"key\":\"y\",\"value\":\"1\",\"revision\":\"5\"}\n",
       "\"revision\" is not a revision number"},
      {ok + "{\"op\":\"delete\",\"key\":\"y\",\"revision\":1.5}\n",
       "\"revision\" is not a revision number"},
      {ok + "{\"op\":\"check\",\"key\":\"y\"}\n", "no \"revision\""},
      {ok + "{\"op\":\"put\",\"key\":\"y\",\"value\":\"!!\",\"value_encoding\":\"base64\"}\n",
       "\"value\" is not valid base64"},
      {ok + "{\"op\":\"put\",\"key\":\"y\",\"value\":\"AAA\",\"value_encoding\":\"base64\"}\n",
       "\"value\" is not valid base64"},
      {ok + "{\"op\":\"put\",\"key\":\"y\",\"value\":\"AA==\",\"value_encoding\":\"hex\"}\n",
       "\"value_encoding\" must be \"base64\""},
      {ok + "{\"op\":\"put\",\"key\":\"y\",\"value\":\"1\",\"revison\":3}\n",
       "unknown field 'revison'"},
      {ok + "{\"op\":\"delete\",\"key\":\"y\",\"value\":\"1\"}\n", "unknown field 'value'"},
  };
  for (const auto& r : refused) {
    RunResult out = Cli({"--json", "txn"}, r.input);
    EXPECT_TRUE(FailsWith(7, out)) << "input: " << r.input << "\n" << out;
    EXPECT_NE(out.err.find("line 2 of the transaction"), std::string::npos)
        << "input: " << r.input << "\n" << out;
    EXPECT_NE(out.err.find(r.says), std::string::npos) << "input: " << r.input << "\n" << out;
  }
  // As in the text form: a key twice, no write, a key revkv cannot write.
  EXPECT_TRUE(FailsWith(7, Cli({"--json", "txn"}, ok + ok)));
  EXPECT_TRUE(FailsWith(7, Cli({"--json", "txn"}, "{\"op\":\"check\",\"key\":\"x\",\"revision\":0}\n")));
  EXPECT_TRUE(FailsWith(7, Cli({"--json", "txn"}, "")));
  EXPECT_TRUE(FailsWith(
      7, Cli({"--json", "txn"}, "{\"op\":\"put\",\"key\":\"bad..key\",\"value\":\"1\"}\n")));
  EXPECT_TRUE(FailsWith(2, Cli({"get", "x"})));  // none of them wrote
}

TEST_F(cli, BinaryValueFromStdinRoundTrips) {
  const std::string value = Bytes("\0\xff\x01 bin\n\r\x7f\0");
  RunResult put = Cli({"put", "blob", "-"}, value);
  EXPECT_EQ(put.exit_code, 0) << put;
  EXPECT_EQ(put.out, "1\n");
  RunResult get = Cli({"get", "blob"});
  EXPECT_EQ(get.exit_code, 0) << get;
  EXPECT_EQ(get.out, value);

  // Larger than a pipe's buffer in both directions.
  std::string big(300000, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 7919) >> 3);
  EXPECT_EQ(ParseRevision(Cli({"put", "big", "-"}, big)), 2u);
  EXPECT_EQ(Cli({"get", "big"}).out, big);

  // "-" reads stdin for create and update too.
  EXPECT_EQ(ParseRevision(Cli({"create", "c", "-"}, Bytes("x\0y"))), 3u);
  EXPECT_EQ(ParseRevision(Cli({"update", "c", "-", "3"}, Bytes("\xff"))), 4u);
  EXPECT_EQ(Cli({"get", "c"}).out, "\xff");
}

TEST_F(cli, RevisionsStrictlyIncreaseAcrossEveryWrite) {
  std::vector<uint64_t> revs;
  revs.push_back(ParseRevision(Cli({"put", "k", "v1"})));
  revs.push_back(ParseRevision(Cli({"create", "other", "v"})));
  revs.push_back(ParseRevision(Cli({"update", "k", "v2", std::to_string(revs[0])})));
  revs.push_back(ParseRevision(Cli({"delete", "k"})));
  revs.push_back(ParseRevision(Cli({"purge", "other"})));
  revs.push_back(ParseRevision(Cli({"put", "k", "v3"})));
  ASSERT_EQ(revs.size(), 6u);
  EXPECT_GT(revs[0], 0u);
  for (size_t i = 1; i < revs.size(); ++i) {
    EXPECT_GT(revs[i], revs[i - 1]) << "write " << i;
  }
  // Revisions are bucket-wide: each write takes the next one.
  EXPECT_EQ(revs.back(), revs.front() + 5);
}

TEST_F(cli, CreateOnLiveKeyIsExists) {
  EXPECT_EQ(Put("k", "original"), 1u);
  RunResult r = Cli({"create", "k", "other"});
  EXPECT_TRUE(FailsWith(3, r));
  EXPECT_NE(r.err.find("Exists"), std::string::npos) << r;
  EXPECT_EQ(Cli({"get", "k"}).out, "original");
}

TEST_F(cli, CreateAfterDeleteSucceeds) {
  EXPECT_EQ(ParseRevision(Cli({"create", "k", "one"})), 1u);
  EXPECT_EQ(ParseRevision(Cli({"delete", "k"})), 2u);
  EXPECT_EQ(ParseRevision(Cli({"create", "k", "two"})), 3u);
  EXPECT_EQ(Cli({"get", "k"}).out, "two");
}

TEST_F(cli, UpdateWithStaleRevisionConflictsAndNamesCurrent) {
  // Distinct revisions so the number in the message is unambiguous.
  Put("filler", "x");
  Put("filler", "x");
  const uint64_t stale = Put("k", "a");
  Put("filler", "x");
  const uint64_t current = Put("k", "b");
  ASSERT_EQ(current, 5u);

  RunResult r = Cli({"update", "k", "c", std::to_string(stale)});
  EXPECT_TRUE(FailsWith(4, r));
  EXPECT_NE(r.err.find("Conflict"), std::string::npos) << r;
  EXPECT_TRUE(MentionsNumber(r.err, current)) << r;
  EXPECT_EQ(Cli({"get", "k"}).out, "b");

  RunResult ok = Cli({"update", "k", "c", std::to_string(current)});
  EXPECT_EQ(ParseRevision(ok), current + 1);
  EXPECT_EQ(Cli({"get", "k"}).out, "c");

  // Revision 0 means "no entry at all", which a written key is not.
  EXPECT_TRUE(FailsWith(4, Cli({"update", "k", "d", "0"})));
  EXPECT_EQ(ParseRevision(Cli({"update", "fresh", "d", "0"})), current + 2);
}

TEST_F(cli, DeleteAndPurgeWithWrongRevisionConflict) {
  const uint64_t rev = Put("k", "v");
  RunResult del = Cli({"delete", "k", "--revision", std::to_string(rev + 10)});
  EXPECT_TRUE(FailsWith(4, del));
  EXPECT_TRUE(MentionsNumber(del.err, rev)) << del;
  RunResult purge = Cli({"purge", "k", "--revision=" + std::to_string(rev + 11)});
  EXPECT_TRUE(FailsWith(4, purge));
  EXPECT_EQ(Cli({"get", "k"}).out, "v");

  const uint64_t tombstone = ParseRevision(Cli({"delete", "k", "--revision", std::to_string(rev)}));
  EXPECT_EQ(tombstone, rev + 1);
  EXPECT_EQ(Cli({"get", "k"}).exit_code, 2);
  EXPECT_EQ(ParseRevision(Cli({"--revision", std::to_string(tombstone), "purge", "k"})),
            tombstone + 1);
}

TEST_F(cli, GetMissingKeyIsNotFound) {
  Put("present", "v");
  RunResult r = Cli({"get", "absent"});
  EXPECT_TRUE(FailsWith(2, r));
  EXPECT_NE(r.err.find("NotFound"), std::string::npos) << r;
  EXPECT_TRUE(FailsWith(2, Cli({"entry", "absent"})));
  EXPECT_TRUE(FailsWith(2, Cli({"history", "absent"})));
}

TEST_F(cli, GetDeletedOrPurgedKeyIsNotFound) {
  Put("k", "v");
  const uint64_t tombstone = ParseRevision(Cli({"delete", "k"}));
  RunResult get = Cli({"get", "k"});
  EXPECT_TRUE(FailsWith(2, get));
  EXPECT_TRUE(MentionsNumber(get.err, tombstone)) << get;
  EXPECT_TRUE(FailsWith(2, Cli({"entry", "k"})));

  Put("p", "v");
  ParseRevision(Cli({"purge", "p"}));
  EXPECT_TRUE(FailsWith(2, Cli({"get", "p"})));
  EXPECT_EQ(Keys(), "");
}

TEST_F(cli, ReadCommandsCreateNeitherStoreNorBucket) {
  EXPECT_TRUE(FailsWith(2, Cli({"get", "k"})));
  EXPECT_FALSE(std::filesystem::exists(db()));

  Put("k", "v");
  RunResult keys = Cli({"--bucket", "elsewhere", "keys"});
  EXPECT_EQ(keys.exit_code, 0) << keys;
  EXPECT_EQ(keys.out, "");
  EXPECT_TRUE(FailsWith(2, Cli({"--bucket", "elsewhere", "get", "k"})));

  auto engine = revkv::Engine::Open({.path = db()});
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  EXPECT_EQ((*engine)->ListBuckets(), std::vector<std::string>{"default"});
}

// ---- Invalid input ----

// keys pages through the bucket (4,096 keys a page): more keys than a page
// come out whole, in order, as text and as one JSON array.
TEST_F(cli, KeysListsMoreThanOnePage) {
  constexpr int kCount = 9000;
  std::string want;
  {
    auto engine = revkv::Engine::Open({.path = db()});
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    auto bucket = (*engine)->OpenBucket("default");
    ASSERT_TRUE(bucket.ok());
    for (int i = 0; i < kCount; ++i) {
      char key[16];
      std::snprintf(key, sizeof key, "k.%05d", i);
      ASSERT_TRUE((*bucket)->Put(key, "v").ok());
      want += std::string(key) + "\n";
    }
  }
  RunResult text = Cli({"keys"});
  ASSERT_EQ(text.exit_code, 0) << text;
  EXPECT_EQ(text.out, want);
  RunResult json = Cli({"--json", "keys"});
  ASSERT_EQ(json.exit_code, 0) << json;
  auto parsed = ParseJson(json.out);
  ASSERT_TRUE(parsed.has_value()) << json.out.substr(0, 200);
  ASSERT_EQ(parsed->items.size(), static_cast<size_t>(kCount));
}

TEST_F(cli, BadKeysAreInvalidAndWriteNothing) {
  const uint64_t rev = Put("good", "v");
  for (const char* key : {"a..b", ".a", "a.", "a b", "a*b", ""}) {
    RunResult r = Cli({"put", key, "v"});
    EXPECT_TRUE(FailsWith(7, r)) << "key '" << key << "'";
    EXPECT_NE(r.err.find("InvalidArgument"), std::string::npos) << r;
    EXPECT_TRUE(FailsWith(7, Cli({"create", key, "v"}))) << "key '" << key << "'";
    EXPECT_TRUE(FailsWith(7, Cli({"delete", key}))) << "key '" << key << "'";
  }
  EXPECT_EQ(Keys(), "good\n");
  // Not even a revision was used up.
  EXPECT_EQ(Put("good", "w"), rev + 1);
}

TEST_F(cli, BadBucketNameIsInvalid) {
  for (const char* name : {"a.b", "bad name", "", "x*"}) {
    RunResult r = Cli({"--bucket", name, "put", "k", "v"});
    EXPECT_TRUE(FailsWith(7, r)) << "bucket '" << name << "'";
    EXPECT_NE(r.err.find("bucket"), std::string::npos) << r;
  }
  EXPECT_FALSE(std::filesystem::exists(db()));
}

TEST_F(cli, OversizedValueFromStdinIsInvalidAndWritesNothing) {
  const size_t limit = revkv::kDefaultMaxValueSize;
  ASSERT_EQ(limit, 1047552u);
  RunResult r = Cli({"put", "big", "-"}, std::string(limit + 1, 'x'));
  EXPECT_TRUE(FailsWith(7, r));
  EXPECT_TRUE(MentionsNumber(r.err, limit)) << r;
  EXPECT_EQ(Keys(), "");
  EXPECT_TRUE(FailsWith(2, Cli({"get", "big"})));

  // The limit itself is accepted, and is the first revision.
  EXPECT_EQ(ParseRevision(Cli({"put", "big", "-"}, std::string(limit, 'y'))), 1u);
  EXPECT_EQ(Cli({"get", "big"}).out.size(), limit);
}

TEST_F(cli, BadNumbersAreInvalid) {
  const uint64_t rev = Put("k", "v");
  for (const char* text : {"12x", "-1", "", " 1", "1 ", "+1", "0x10", "18446744073709551616"}) {
    EXPECT_TRUE(FailsWith(7, Cli({"update", "k", "w", text}))) << "REVISION '" << text << "'";
    EXPECT_TRUE(FailsWith(7, Cli({"delete", "k", "--revision=" + std::string(text)})))
        << "--revision '" << text << "'";
  }
  for (const char* text : {"0", "65", "3x", "-3", ""}) {
    EXPECT_TRUE(FailsWith(7, Cli({"--history", text, "put", "h", "v"})))
        << "--history '" << text << "'";
  }
  EXPECT_EQ(Cli({"get", "k"}).out, "v");
  EXPECT_EQ(Keys(), "k\n");
  // The largest revision parses, and only conflicts.
  EXPECT_TRUE(FailsWith(4, Cli({"update", "k", "w", "18446744073709551615"})));
  EXPECT_EQ(Put("k", "x"), rev + 1);
}

TEST_F(cli, UsageErrorsExitOne) {
  EXPECT_TRUE(FailsWith(1, Cli({"frobnicate", "k"})));
  EXPECT_TRUE(FailsWith(1, Cli({"--frobnicate", "put", "k", "v"})));
  EXPECT_TRUE(FailsWith(1, Cli({"put", "k", "v", "--frobnicate=1"})));
  EXPECT_TRUE(FailsWith(1, RunCli({"put", "k", "v"})));          // no --db
  EXPECT_TRUE(FailsWith(1, RunCli({"put", "k", "v", "--db"})));  // --db without a value
  EXPECT_TRUE(FailsWith(1, Cli({})));                            // no command
  EXPECT_TRUE(FailsWith(1, Cli({"put", "k"})));
  EXPECT_TRUE(FailsWith(1, Cli({"put", "k", "v", "extra"})));
  EXPECT_TRUE(FailsWith(1, Cli({"get"})));
  EXPECT_TRUE(FailsWith(1, Cli({"update", "k", "v"})));
  EXPECT_TRUE(FailsWith(1, Cli({"keys", "a", "b"})));
  EXPECT_TRUE(FailsWith(1, Cli({"put", "k", "v", "--revision", "1"})));
  EXPECT_TRUE(FailsWith(1, Cli({"--json=yes", "keys"})));
  EXPECT_FALSE(std::filesystem::exists(db()));

  for (const char* flag : {"--help", "-h"}) {
    RunResult help = RunCli({flag});
    EXPECT_EQ(help.exit_code, 0) << help;
    EXPECT_NE(help.out.find("Usage: revkv"), std::string::npos) << help;
    EXPECT_EQ(help.err, "");
  }
  // Help wins over everything else on the line.
  EXPECT_EQ(RunCli({"--bogus", "put", "--help"}).exit_code, 0);
}

TEST_F(cli, FlagsMayComeAnywhereInEitherForm) {
  EXPECT_EQ(ParseRevision(RunCli({"put", "k", "v1", "--db=" + db(), "--bucket=b2"})), 1u);
  EXPECT_EQ(
      ParseRevision(RunCli({"--bucket", "b2", "put", "--db", db(), "k", "-", "--sync"}, "v2")), 2u);
  EXPECT_EQ(RunCli({"get", "--db", db(), "k", "--bucket", "b2"}).out, "v2");
  // The default bucket is a separate keyspace.
  EXPECT_EQ(RunCli({"--db", db(), "keys"}).out, "");
  // After "--" everything is positional, so a value may look like a flag.
  EXPECT_EQ(ParseRevision(RunCli({"--db", db(), "--bucket=b2", "put", "--", "k", "--json"})), 3u);
  EXPECT_EQ(RunCli({"--db", db(), "--bucket=b2", "get", "k"}).out, "--json");
}

// ---- Listing ----

TEST_F(cli, KeysHonourWildcards) {
  EXPECT_EQ(Keys(), "");
  for (const char* key : {"a.b", "x", "a.b.c", "a.c"}) Put(key, "v");
  EXPECT_EQ(Keys(), "a.b\na.b.c\na.c\nx\n");
  EXPECT_EQ(Cli({"keys"}).out, "a.b\na.b.c\na.c\nx\n");
  EXPECT_EQ(Keys("a.*"), "a.b\na.c\n");
  EXPECT_EQ(Keys("a.>"), "a.b\na.b.c\na.c\n");
  EXPECT_EQ(Keys("*"), "x\n");
  EXPECT_EQ(Keys("*.b.*"), "a.b.c\n");
  RunResult none = Cli({"keys", "nothing.>"});
  EXPECT_EQ(none.exit_code, 0) << none;
  EXPECT_EQ(none.out, "");
  EXPECT_EQ(none.err, "");
  EXPECT_TRUE(FailsWith(7, Cli({"keys", "a.>.b"})));

  RunResult json = Cli({"--json", "keys", "a.>"});
  EXPECT_EQ(json.exit_code, 0) << json;
  EXPECT_EQ(json.out, "[\"a.b\",\"a.b.c\",\"a.c\"]\n");
  auto parsed = ParseJson(json.out);
  ASSERT_TRUE(parsed.has_value()) << json.out;
  EXPECT_EQ(parsed->type, Json::kArray);
  EXPECT_EQ(parsed->items.size(), 3u);
  EXPECT_EQ(Cli({"--json", "keys", "nothing"}).out, "[]\n");

  // Deleted keys are not live.
  Cli({"delete", "a.b"});
  EXPECT_EQ(Keys("a.*"), "a.c\n");
}

TEST_F(cli, HistoryKeepsLastNAndShowsDelete) {
  const std::vector<uint64_t> revs = {ParseRevision(Cli({"--history", "3", "put", "k", "v1"})),
                                      Put("k", "v2"), Put("k", "v3"), Put("k", "v4"),
                                      ParseRevision(Cli({"delete", "k"}))};
  RunResult r = Cli({"history", "k"});
  EXPECT_EQ(r.exit_code, 0) << r;
  const std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.out;
  const std::vector<std::pair<std::string, std::string>> want = {
      {"PUT", "v3"}, {"PUT", "v4"}, {"DEL", ""}};
  for (size_t i = 0; i < 3; ++i) {
    auto parsed = ParseHistoryLine(lines[i]);
    ASSERT_TRUE(parsed.has_value()) << lines[i];
    EXPECT_EQ(parsed->revision, std::to_string(revs[i + 2])) << lines[i];
    EXPECT_EQ(parsed->operation, want[i].first) << lines[i];
    EXPECT_EQ(parsed->value, want[i].second) << lines[i];
  }

  // The setting applies at creation and sticks: a different one is refused.
  EXPECT_TRUE(FailsWith(7, Cli({"--history", "5", "put", "k", "v"})));
  EXPECT_EQ(ParseRevision(Cli({"--history", "3", "put", "k", "v5"})), revs.back() + 1);

  RunResult json = Cli({"--json", "history", "k"});
  const std::vector<std::string> json_lines = Lines(json.out);
  ASSERT_EQ(json_lines.size(), 3u) << json.out;
  auto last = ParseJson(json_lines[2]);
  ASSERT_TRUE(last.has_value()) << json_lines[2];
  ASSERT_NE(last->Field("value"), nullptr);
  EXPECT_EQ(last->Field("value")->text, "v5");
  auto del = ParseJson(json_lines[1]);
  ASSERT_TRUE(del.has_value()) << json_lines[1];
  ASSERT_NE(del->Field("operation"), nullptr);
  EXPECT_EQ(del->Field("operation")->text, "DEL");
}

TEST_F(cli, HistoryEscapesControlBytes) {
  ParseRevision(Cli({"put", "k", "-"}, Bytes("a\tb\\c\x01\n\r\x7f\xc3\xa9\0z")));
  RunResult r = Cli({"history", "k"});
  EXPECT_EQ(r.exit_code, 0) << r;
  ASSERT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  auto parsed = ParseHistoryLine(r.out.substr(0, r.out.size() - 1));
  ASSERT_TRUE(parsed.has_value()) << r.out;
  EXPECT_EQ(parsed->revision, "1");
  EXPECT_EQ(parsed->value, "a\\tb\\\\c\\x01\\n\\r\\x7f\xc3\xa9\\x00z");
}

TEST_F(cli, PurgeLeavesOnlyThePurgeInHistory) {
  Cli({"--history", "5", "put", "k", "v1"});
  Put("k", "v2");
  const uint64_t purge = ParseRevision(Cli({"purge", "k"}));
  RunResult r = Cli({"history", "k"});
  const std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 1u) << r;
  EXPECT_EQ(lines[0].rfind(std::to_string(purge) + " PURGE ", 0), 0u) << lines[0];
}

// ---- Entries and JSON ----

TEST_F(cli, TtlExpiresTheEntryAndTtlsItCannotTakeExitSeven) {
  RunResult put = Cli({"put", "k", "v", "--ttl", "1s"});
  ASSERT_EQ(put.exit_code, 0) << put;
  const auto written = std::chrono::steady_clock::now();
  RunResult entry = Cli({"entry", "k"});
  EXPECT_NE(entry.out.find("\nttl: 1s\n"), std::string::npos) << entry;
  EXPECT_NE(Cli({"--json", "entry", "k"}).out.find(",\"ttl\":\"1s\"}"), std::string::npos);
  std::this_thread::sleep_until(written + std::chrono::milliseconds(1100));
  EXPECT_TRUE(FailsWith(2, Cli({"get", "k"})));
  EXPECT_EQ(Cli({"create", "k", "again", "--ttl", "60s"}).exit_code, 0);

  for (const char* bad : {"500ms", "1500ms", "0s"}) {
    RunResult r = Cli({"put", "x", "v", "--ttl", bad});
    EXPECT_TRUE(FailsWith(7, r)) << bad << ": " << r;
    EXPECT_NE(r.err.find("whole seconds"), std::string::npos) << r;
  }
  RunResult h3 = Cli({"--bucket", "h3", "--history", "3", "put", "k", "v", "--ttl", "5s"});
  EXPECT_TRUE(FailsWith(7, h3)) << h3;
  EXPECT_NE(h3.err.find("history 1"), std::string::npos) << h3;
  EXPECT_EQ(Cli({"--bucket", "h3", "create", "j", "v", "--ttl", "5s"}).exit_code, 0);
  EXPECT_TRUE(FailsWith(1, Cli({"get", "k", "--ttl", "5s"})));
  EXPECT_TRUE(FailsWith(1, Cli({"put", "k", "v", "--limit-marker-ttl", "5s"})));
  EXPECT_TRUE(FailsWith(2, Cli({"get", "x"}))) << "a refused write wrote something";
}

TEST_F(cli, BadFencesAreRefusedAndAStaleOneExitsNine) {
  for (const char* bad : {"L", "L:", ":5", "L:x", "L:0"}) {
    RunResult r = Cli({"put", "k", "v", "--fence", bad});
    EXPECT_TRUE(FailsWith(7, r)) << bad << ": " << r;
  }
  EXPECT_TRUE(FailsWith(1, Cli({"get", "k", "--fence", "L:5"})));
  // No lock L was ever taken: its token 5 is stale.
  RunResult stale = Cli({"put", "k", "v", "--fence", "L:5"});
  EXPECT_TRUE(FailsWith(9, stale)) << stale;
  EXPECT_TRUE(FailsWith(2, Cli({"get", "k"})));
}

TEST_F(cli, EntryPrintsTextAndJson) {
  Put("other", "x");
  const uint64_t rev = Put("k", "hello");
  RunResult text = Cli({"entry", "k"});
  EXPECT_EQ(text.exit_code, 0) << text;
  const std::vector<std::string> lines = Lines(text.out);
  ASSERT_EQ(lines.size(), 5u) << text.out;
  EXPECT_EQ(lines[0], "key: k");
  EXPECT_EQ(lines[1], "revision: " + std::to_string(rev));
  EXPECT_EQ(lines[2], "operation: PUT");
  ASSERT_EQ(lines[3].rfind("created: ", 0), 0u) << lines[3];
  const std::string created = lines[3].substr(9);
  EXPECT_TRUE(IsRfc3339Nanos(created)) << created;
  EXPECT_EQ(lines[4], "value: hello");

  RunResult json = Cli({"entry", "k", "--json"});
  EXPECT_EQ(json.exit_code, 0) << json;
  EXPECT_EQ(std::count(json.out.begin(), json.out.end(), '\n'), 1) << json.out;
  auto parsed = ParseJson(json.out);
  ASSERT_TRUE(parsed.has_value()) << json.out;
  ASSERT_EQ(parsed->type, Json::kObject);
  for (const char* field : {"key", "value", "revision", "operation", "created"}) {
    EXPECT_NE(parsed->Field(field), nullptr) << field << " missing from " << json.out;
  }
  if (::testing::Test::HasFailure()) return;
  EXPECT_EQ(parsed->Field("key")->text, "k");
  EXPECT_EQ(parsed->Field("value")->text, "hello");
  EXPECT_EQ(parsed->Field("revision")->type, Json::kNumber);
  EXPECT_EQ(parsed->Field("revision")->text, std::to_string(rev));
  EXPECT_EQ(parsed->Field("operation")->text, "PUT");
  EXPECT_EQ(parsed->Field("created")->text, created);
  EXPECT_EQ(parsed->Field("value_encoding"), nullptr);
}

TEST_F(cli, JsonEscapesStringsAndBase64EncodesNonUtf8) {
  // Valid UTF-8 with every character JSON must escape survives a round trip.
  const std::string tricky = Bytes("q\"b\\n\nt\tc\x01\x1f\x7f caf\xc3\xa9 \0end");
  ParseRevision(Cli({"put", "text", "-"}, tricky));
  RunResult text = Cli({"--json", "entry", "text"});
  auto parsed = ParseJson(text.out);
  ASSERT_TRUE(parsed.has_value()) << text.out;
  ASSERT_NE(parsed->Field("value"), nullptr) << text.out;
  EXPECT_EQ(parsed->Field("value")->text, tricky);
  EXPECT_EQ(parsed->Field("value_encoding"), nullptr) << text.out;

  // 0xff can never appear in UTF-8.
  ParseRevision(Cli({"put", "bin", "-"}, Bytes("a\0b\xff")));
  RunResult bin = Cli({"--json", "entry", "bin"});
  parsed = ParseJson(bin.out);
  ASSERT_TRUE(parsed.has_value()) << bin.out;
  ASSERT_NE(parsed->Field("value"), nullptr) << bin.out;
  ASSERT_NE(parsed->Field("value_encoding"), nullptr) << bin.out;
  EXPECT_EQ(parsed->Field("value")->text, "YQBi/w==");
  EXPECT_EQ(parsed->Field("value_encoding")->text, "base64");

  // Overlong forms and lone surrogates are not UTF-8 either.
  for (const std::string& bad : {std::string("\xc0\xaf"), std::string("\xed\xa0\x80")}) {
    ParseRevision(Cli({"put", "bad", "-"}, bad));
    parsed = ParseJson(Cli({"--json", "entry", "bad"}).out);
    ASSERT_TRUE(parsed.has_value());
    EXPECT_NE(parsed->Field("value_encoding"), nullptr);
  }
}

// ---- Concurrency with other processes ----

TEST_F(cli, StoreHeldByAnotherProcessIsUnavailable) {
  Put("k", "v");
  {
    auto holder = revkv::Engine::Open({.path = db()});
    ASSERT_TRUE(holder.ok()) << holder.status().ToString();
    RunResult put = Cli({"put", "k", "w"});
    EXPECT_TRUE(FailsWith(6, put));
    EXPECT_NE(put.err.find("Unavailable"), std::string::npos) << put;
    EXPECT_TRUE(FailsWith(6, Cli({"get", "k"})));
  }
  EXPECT_EQ(Put("k", "w"), 2u);
}

// A `revkv watch` running in the background, stopped and reaped by the test.
class Watcher {
 public:
  Watcher(const std::vector<std::string>& args, const std::string& tmpdir)
      : child_(Spawn(args, {"TMPDIR=" + tmpdir})), reader_(child_.stdout_fd) {
    CloseFd(&child_.stdin_fd);
  }
  ~Watcher() {
    if (child_.pid > 0) {
      kill(child_.pid, SIGKILL);
      waitpid(child_.pid, nullptr, 0);
    }
    CloseFd(&child_.stdout_fd);
    CloseFd(&child_.stderr_fd);
  }
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  bool started() const { return child_.pid > 0; }
  std::optional<std::string> NextLine(Clock::time_point deadline) { return reader_.Next(deadline); }
  // Sends `sig` and returns the exit code; stderr is then in err().
  int Stop(int sig) {
    kill(child_.pid, sig);
    const auto deadline = Clock::now() + 15s;
    err_ = ReadAll(child_.stderr_fd, deadline);
    int code = WaitChild(child_.pid, deadline);
    child_.pid = -1;
    return code;
  }
  // Whatever the watcher said on stderr, for failure messages while running.
  std::string DrainErr() { return ReadAll(child_.stderr_fd, Clock::now() + 100ms); }
  const std::string& err() const { return err_; }

 private:
  Child child_;
  LineReader reader_;
  std::string err_;
};

TEST_F(cli, WatchWaitsForStoreThenStreamsMatchingChanges) {
  const std::string tmp = dir_.path() + "/tmp";
  ASSERT_TRUE(std::filesystem::create_directory(tmp));
  // Started before the store exists: it must wait for it, not fail.
  Watcher watcher({"--db", db(), "watch", "a.>"}, tmp);
  ASSERT_TRUE(watcher.started());
  usleep(300 * 1000);

  // Each write is its own process, which takes the lock the watcher leaves.
  // A matching write must show up before the next one is made, so this also
  // checks that output is flushed promptly rather than at exit.
  const auto deadline = Clock::now() + 30s;
  struct Step {
    std::vector<std::string> args;
    std::string key;
    std::string shown;  // OPERATION and VALUE as printed; empty: not matched
  };
  const std::vector<Step> steps = {
      {{"put", "a.one", "1"}, "a.one", "PUT 1"},
      {{"put", "b.skip", "hidden"}, "b.skip", ""},
      {{"put", "a.two", "two words"}, "a.two", "PUT two words"},
      {{"put", "a", "not under a."}, "a", ""},
      {{"put", "a.x.y", "tab\there"}, "a.x.y", "PUT tab\\there"},
      {{"delete", "a.one"}, "a.one", "DEL "},
  };
  for (const Step& step : steps) {
    const uint64_t revision = ParseRevision(Cli(step.args));
    if (step.shown.empty()) continue;
    auto line = watcher.NextLine(deadline);
    ASSERT_TRUE(line.has_value()) << "watcher printed nothing for revision " << revision
                                  << "; stderr: " << watcher.DrainErr();
    // REVISION KEY OPERATION CREATED VALUE, in revision order: a skipped
    // non-matching key would show up here instead.
    const size_t rev_end = line->find(' ');
    ASSERT_NE(rev_end, std::string::npos) << *line;
    const size_t key_end = line->find(' ', rev_end + 1);
    ASSERT_NE(key_end, std::string::npos) << *line;
    EXPECT_EQ(line->substr(rev_end + 1, key_end - rev_end - 1), step.key) << *line;
    auto parsed = ParseHistoryLine(line->substr(0, rev_end) + line->substr(key_end));
    ASSERT_TRUE(parsed.has_value()) << *line;
    EXPECT_EQ(parsed->revision, std::to_string(revision)) << *line;
    EXPECT_EQ(parsed->operation + " " + parsed->value, step.shown) << *line;
  }

  EXPECT_EQ(watcher.Stop(SIGTERM), 0);
  EXPECT_EQ(watcher.err(), "");
  // A clean exit removed the follower's private directory.
  EXPECT_TRUE(std::filesystem::is_empty(tmp));
}

TEST_F(cli, WatchPrintsCurrentStateFirstAsJson) {
  const std::string tmp = dir_.path() + "/tmp";
  ASSERT_TRUE(std::filesystem::create_directory(tmp));
  const uint64_t first = Put("a.1", "before");
  Put("b.1", "other");
  Watcher watcher({"watch", "--json", "a.*", "--db=" + db()}, tmp);
  ASSERT_TRUE(watcher.started());
  const auto deadline = Clock::now() + 20s;

  auto expect_entry = [&](const std::string& key, const std::string& value, uint64_t revision) {
    auto line = watcher.NextLine(deadline);
    ASSERT_TRUE(line.has_value()) << "watcher printed nothing more; waiting for " << key
                                  << "; stderr: " << watcher.DrainErr();
    auto parsed = ParseJson(*line);
    ASSERT_TRUE(parsed.has_value()) << *line;
    ASSERT_NE(parsed->Field("key"), nullptr) << *line;
    ASSERT_NE(parsed->Field("value"), nullptr) << *line;
    ASSERT_NE(parsed->Field("revision"), nullptr) << *line;
    EXPECT_EQ(parsed->Field("key")->text, key) << *line;
    EXPECT_EQ(parsed->Field("value")->text, value) << *line;
    EXPECT_EQ(parsed->Field("revision")->text, std::to_string(revision)) << *line;
  };
  expect_entry("a.1", "before", first);
  if (HasFatalFailure()) return;
  const uint64_t second = Put("a.2", "after");
  expect_entry("a.2", "after", second);
  if (HasFatalFailure()) return;
  Put("a.2.deep", "not one token");
  const uint64_t third = Put("a.3", "q\"uote");
  // The next line is a.3's: a.2.deep does not match "a.*".
  expect_entry("a.3", "q\"uote", third);

  EXPECT_EQ(watcher.Stop(SIGINT), 0);
  EXPECT_EQ(watcher.err(), "");
  EXPECT_TRUE(std::filesystem::is_empty(tmp));
}

// ---- lock ----

// The decimal number on the first line of `out`, or 0.
uint64_t FirstNumber(const std::string& out) {
  const std::string line = out.substr(0, out.find('\n'));
  return AllDigits(line) && line.size() < 20 ? std::stoull(line) : 0;
}

int64_t MsSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

// A `revkv lock` running in the background. Its CMD reports its own PID on
// the first stdout line, so that the test can reap what revkv may leave.
class LockRunner {
 public:
  explicit LockRunner(const std::vector<std::string>& args)
      : child_(Spawn(args)), reader_(child_.stdout_fd) {
    CloseFd(&child_.stdin_fd);
  }
  ~LockRunner() {
    if (child_.pid > 0) {
      kill(child_.pid, SIGKILL);
      waitpid(child_.pid, nullptr, 0);
    }
    if (cmd_pid_ > 0) kill(cmd_pid_, SIGKILL);
    CloseFd(&child_.stdout_fd);
    CloseFd(&child_.stderr_fd);
  }
  LockRunner(const LockRunner&) = delete;
  LockRunner& operator=(const LockRunner&) = delete;

  pid_t pid() const { return child_.pid; }
  // Reads CMD's PID line: CMD runs, so revkv holds the lock. 0 on failure.
  pid_t ReadCmdPid(Clock::time_point deadline) {
    auto line = reader_.Next(deadline);
    if (!line || !AllDigits(*line) || line->size() > 9) return 0;
    cmd_pid_ = static_cast<pid_t>(std::stol(*line));
    return cmd_pid_;
  }
  std::optional<std::string> NextLine(Clock::time_point deadline) { return reader_.Next(deadline); }
  // Waits for revkv to exit; returns its exit code. stderr is then in err().
  int Wait(Clock::time_point deadline) {
    err_ = ReadAll(child_.stderr_fd, deadline);
    const int code = WaitChild(child_.pid, deadline);
    child_.pid = -1;
    return code;
  }
  // Kills revkv with SIGKILL, as a crash would.
  void Crash() {
    kill(child_.pid, SIGKILL);
    waitpid(child_.pid, nullptr, 0);
    child_.pid = -1;
  }
  // CMD is known to be gone: nothing to kill at the end.
  void ForgetCmd() { cmd_pid_ = -1; }
  const std::string& err() const { return err_; }

 private:
  Child child_;
  LineReader reader_;
  pid_t cmd_pid_ = -1;
  std::string err_;
};

// A lock's CMD that prints its PID once it traps SIGTERM, then waits to be
// signalled, saying so on SIGTERM and exiting with `term_exit`.
std::vector<std::string> TrappingCmd(int term_exit) {
  return {"sh", "-c",
          "trap 'echo got-term; exit " + std::to_string(term_exit) +
              "' TERM; echo $$; while true; do sleep 0.1; done"};
}

// Whether process `pid` (a reaped child of a revkv) is gone.
bool Gone(pid_t pid) { return kill(pid, 0) != 0 && errno == ESRCH; }

TEST_F(cli, LockPassesIncreasingFencingTokenToCommand) {
  RunResult first = Cli({"lock", "L", "--", "sh", "-c", "echo $REVKV_FENCING_TOKEN"});
  ASSERT_EQ(first.exit_code, 0) << first;
  EXPECT_EQ(first.err, "");
  const uint64_t t1 = FirstNumber(first.out);
  EXPECT_GT(t1, 0u) << first;
  EXPECT_EQ(first.out, std::to_string(t1) + "\n");
  RunResult second = Cli({"lock", "L", "--", "sh", "-c", "echo $REVKV_FENCING_TOKEN"});
  ASSERT_EQ(second.exit_code, 0) << second;
  EXPECT_GT(FirstNumber(second.out), t1) << second;

  // A token already in the environment (here: an outer revkv lock's, on
  // another store) is replaced, not duplicated.
  const std::string other = dir_.path() + "/other";
  uint64_t inner_before = 0;
  for (int i = 0; i < 3; ++i) {
    inner_before = FirstNumber(
        RunCli({"--db", other, "lock", "M", "--", "sh", "-c", "echo $REVKV_FENCING_TOKEN"}).out);
  }
  ASSERT_GE(inner_before, 3u);
  // `env` prints its environment exactly as received (a shell would
  // de-duplicate it).
  RunResult nested = Cli({"lock", "L", "--", kCli, "--db", other, "lock", "M", "--", "env"});
  ASSERT_EQ(nested.exit_code, 0) << nested;
  std::vector<std::string> tokens;
  for (const std::string& line : Lines(nested.out)) {
    if (line.starts_with("REVKV_FENCING_TOKEN=")) tokens.push_back(line.substr(20));
  }
  ASSERT_EQ(tokens.size(), 1u) << nested;
  EXPECT_GT(FirstNumber(tokens[0]), inner_before) << nested;
}

TEST_F(cli, LockExitsWithCommandStatusAndPassesArgumentsVerbatim) {
  RunResult three = Cli({"lock", "L", "--", "sh", "-c", "exit 3"});
  EXPECT_EQ(three.exit_code, 3) << three;
  EXPECT_EQ(three.err, "");
  RunResult ok = Cli({"lock", "L", "--", "true"});
  EXPECT_EQ(ok.exit_code, 0) << ok;
  EXPECT_EQ(ok.out + ok.err, "");
  // Killed by a signal: 128 + its number, as a shell reports it.
  EXPECT_EQ(Cli({"lock", "L", "--", "sh", "-c", "kill -TERM $$"}).exit_code, 128 + SIGTERM);
  // After "--", flag-like words (another "--" too) belong to CMD.
  RunResult args =
      Cli({"lock", "L", "--", "printf", "%s|", "--json", "-h", "--help", "--", "--lease=1"});
  EXPECT_EQ(args.exit_code, 0) << args;
  EXPECT_EQ(args.out, "--json|-h|--help|--|--lease=1|");
  // Options may precede NAME, in either form.
  RunResult flags = Cli({"lock", "--lease=2s", "--timeout", "1m", "L", "--", "echo", "x"});
  EXPECT_EQ(flags.exit_code, 0) << flags;
  EXPECT_EQ(flags.out, "x\n");
}

TEST_F(cli, LockCommandNotFoundIs127AndReleasesTheLock) {
  for (const char* cmd : {"revkv-no-such-command-7f3a", "/nonexistent/bin/cmd"}) {
    RunResult r = Cli({"lock", "L", "--lease", "20s", "--", cmd, "arg"});
    EXPECT_TRUE(FailsWith(127, r)) << cmd;
    EXPECT_NE(r.err.find(cmd), std::string::npos) << r;
  }
  // Released: a caller that will not wait at all still gets it.
  RunResult next = Cli({"lock", "L", "--timeout", "0ms", "--", "true"});
  EXPECT_EQ(next.exit_code, 0) << next;
}

TEST_F(cli, LockUsageAndDurationErrors) {
  EXPECT_TRUE(FailsWith(1, Cli({"lock", "L", "true"})));   // no "--"
  EXPECT_TRUE(FailsWith(1, Cli({"lock", "L", "--"})));     // no CMD
  EXPECT_TRUE(FailsWith(1, Cli({"lock", "--", "true"})));  // no NAME
  EXPECT_TRUE(FailsWith(1, Cli({"lock", "L", "M", "--", "true"})));
  EXPECT_TRUE(FailsWith(1, Cli({"lock", "L", "--timeout", "--", "true"})));  // value forgotten
  EXPECT_TRUE(FailsWith(1, Cli({"put", "k", "v", "--lease", "1s"})));
  EXPECT_TRUE(FailsWith(1, Cli({"get", "k", "--timeout=1s"})));
  for (const char* text : {"10", "abc", "-1s", "", "1.5s", "1h", "s", "10 s", "1000000m"}) {
    EXPECT_TRUE(FailsWith(7, Cli({"lock", "L", "--lease", text, "--", "true"})))
        << "--lease '" << text << "'";
    EXPECT_TRUE(FailsWith(7, Cli({"lock", "L", "--timeout=" + std::string(text), "--", "true"})))
        << "--timeout '" << text << "'";
  }
  // Under the engine's minimum lease.
  EXPECT_TRUE(FailsWith(7, Cli({"lock", "L", "--lease", "9ms", "--", "true"})));
  EXPECT_TRUE(FailsWith(7, Cli({"lock", "a b", "--", "true"})));  // NAME follows the key rules
  // None of these ran CMD or created the store.
  EXPECT_FALSE(std::filesystem::exists(db()));
  RunResult help = RunCli({"--help"});
  EXPECT_NE(help.out.find("lock NAME"), std::string::npos) << help;
  EXPECT_NE(help.out.find("--lease DUR"), std::string::npos) << help;
}

TEST_F(cli, LockWaitsForHeldStoreThenTimesOut) {
  Put("k", "v");
  {
    auto holder = revkv::Engine::Open({.path = db()});
    ASSERT_TRUE(holder.ok()) << holder.status().ToString();
    const auto start = Clock::now();
    RunResult r = Cli({"lock", "L", "--timeout", "300ms", "--", "echo", "ran"});
    const int64_t ms = MsSince(start);
    EXPECT_TRUE(FailsWith(5, r));
    EXPECT_NE(r.err.find("'L'"), std::string::npos) << r;
    EXPECT_GE(ms, 300);
    EXPECT_LT(ms, 5000);

    // A waiter with time to spare gets the store once the holder lets go.
    LockRunner waiter(
        {"--db", db(), "lock", "L", "--timeout", "20s", "--", "sh", "-c", "echo $$; echo ran"});
    ASSERT_GT(waiter.pid(), 0);
    auto early = waiter.NextLine(Clock::now() + 300ms);
    EXPECT_FALSE(early.has_value()) << "CMD ran while the store was held: " << *early;
    holder->reset();
    const auto deadline = Clock::now() + 15s;
    EXPECT_GT(waiter.ReadCmdPid(deadline), 0);
    EXPECT_EQ(waiter.NextLine(deadline), "ran");
    EXPECT_EQ(waiter.Wait(deadline), 0) << waiter.err();
    waiter.ForgetCmd();
  }
}

TEST_F(cli, LockLeftByKilledHolderBlocksUntilItsLeaseExpires) {
  LockRunner holder(
      {"--db", db(), "lock", "L", "--lease", "20s", "--", "sh", "-c", "echo $$; exec sleep 30"});
  ASSERT_GT(holder.pid(), 0);
  const pid_t sleeper = holder.ReadCmdPid(Clock::now() + 15s);
  ASSERT_GT(sleeper, 0) << "the holder's CMD never ran";
  holder.Crash();  // the lock record stays behind, as after a crash
  kill(sleeper, SIGKILL);

  const auto start = Clock::now();
  RunResult r = Cli({"lock", "L", "--timeout", "500ms", "--", "echo", "ran"});
  const int64_t ms = MsSince(start);
  EXPECT_TRUE(FailsWith(5, r));
  EXPECT_NE(r.err.find("'L'"), std::string::npos) << r;
  EXPECT_GE(ms, 500);
  EXPECT_LT(ms, 5000);
  // Other locks are unaffected.
  EXPECT_EQ(Cli({"lock", "M", "--timeout", "0ms", "--", "true"}).exit_code, 0);
}

TEST_F(cli, LockLostLeaseTerminatesCommandAndExits9) {
  std::vector<std::string> args = {"--db", db(), "lock", "L", "--lease", "1s", "--"};
  for (const std::string& a : TrappingCmd(0)) args.push_back(a);
  LockRunner runner(args);
  ASSERT_GT(runner.pid(), 0);
  const pid_t shell = runner.ReadCmdPid(Clock::now() + 15s);
  ASSERT_GT(shell, 0) << "CMD never ran";
  // Pause revkv, not CMD, past its lease: it cannot renew, and on waking
  // finds the lease gone.
  ASSERT_EQ(kill(runner.pid(), SIGSTOP), 0);
  usleep(2000 * 1000);
  ASSERT_EQ(kill(runner.pid(), SIGCONT), 0);
  const auto resumed = Clock::now();
  const auto deadline = resumed + 15s;
  EXPECT_EQ(runner.NextLine(deadline), "got-term");
  EXPECT_EQ(runner.Wait(deadline), 9);
  EXPECT_LT(MsSince(resumed), 3000);
  EXPECT_NE(runner.err().find("LockLost"), std::string::npos) << runner.err();
  EXPECT_NE(runner.err().find("'L'"), std::string::npos) << runner.err();
  EXPECT_EQ(std::count(runner.err().begin(), runner.err().end(), '\n'), 1) << runner.err();
  // revkv reaped CMD before exiting.
  EXPECT_TRUE(Gone(shell));
  runner.ForgetCmd();
  // The lost lock was freed: the next caller need not wait out a lease.
  EXPECT_EQ(Cli({"lock", "L", "--timeout", "0ms", "--", "true"}).exit_code, 0);
}

TEST_F(cli, LockForwardsStopSignalsToCommand) {
  {
    std::vector<std::string> args = {"--db", db(), "lock", "L", "--lease", "20s", "--"};
    for (const std::string& a : TrappingCmd(7)) args.push_back(a);
    LockRunner runner(args);
    ASSERT_GT(runner.pid(), 0);
    const pid_t shell = runner.ReadCmdPid(Clock::now() + 15s);
    ASSERT_GT(shell, 0) << "CMD never ran";
    ASSERT_EQ(kill(runner.pid(), SIGTERM), 0);
    const auto deadline = Clock::now() + 15s;
    EXPECT_EQ(runner.NextLine(deadline), "got-term");
    EXPECT_EQ(runner.Wait(deadline), 7) << runner.err();  // CMD's own status
    EXPECT_EQ(runner.err(), "");
    EXPECT_TRUE(Gone(shell));
    runner.ForgetCmd();
  }
  {
    LockRunner runner(
        {"--db", db(), "lock", "L", "--lease", "20s", "--", "sh", "-c", "echo $$; exec sleep 30"});
    ASSERT_GT(runner.pid(), 0);
    const pid_t sleeper = runner.ReadCmdPid(Clock::now() + 15s);
    ASSERT_GT(sleeper, 0) << "CMD never ran";
    ASSERT_EQ(kill(runner.pid(), SIGINT), 0);
    EXPECT_EQ(runner.Wait(Clock::now() + 15s), 128 + SIGINT) << runner.err();
    EXPECT_TRUE(Gone(sleeper));
    runner.ForgetCmd();
  }
  // Both runs released the lock (its 20 s lease would otherwise block).
  EXPECT_EQ(Cli({"lock", "L", "--timeout", "0ms", "--", "true"}).exit_code, 0);
}

TEST_F(cli, LockIsReleasedWhenCommandExits) {
  const auto start = Clock::now();
  for (const char* cmd : {"true", "false", "true"}) {
    // With no wait allowed, any lock left behind fails the next run with 5.
    RunResult r = Cli({"lock", "L", "--lease", "20s", "--timeout", "0ms", "--", cmd});
    EXPECT_EQ(r.exit_code, std::string_view(cmd) == "true" ? 0 : 1) << cmd << ": " << r;
    EXPECT_EQ(r.err, "") << r;
  }
  EXPECT_LT(MsSince(start), 5000);
}

// ---- NATS replication: each --db is one replica ----

// The end of `status --json` for a replica that skipped nothing.
const std::string kNoneSkipped = ",\"skipped\":0,\"first_skipped\":null,\"skipped_reason\":null";

// The version of the test's nats-server ("2.15.1"), as `status` reports it.
std::string TestServerVersion() {
  const std::string line = revkv::testing::NatsServer::Version();
  const size_t v = line.find(" v");
  return v == std::string::npos ? line : line.substr(v + 2);
}
// `status --json`'s server_version field for a connected replica.
std::string ServerVersionJson() { return ",\"server_version\":\"" + TestServerVersion() + "\""; }

class cli_nats : public cli {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.Start()) << server_.error(); }
  // Runs `revkv --db <replica> --nats <url> args...`.
  RunResult On(const std::string& replica, std::vector<std::string> args,
               std::string_view input = {}) {
    args.insert(args.begin(), {"--db", dir_.Sub(replica), "--nats", server_.url()});
    return RunCli(args, input);
  }
  size_t WarningLines(const RunResult& r) {
    size_t n = 0;
    for (const std::string& line : Lines(r.err)) n += line.starts_with("revkv: warning:");
    return n;
  }

  revkv::testing::NatsServer server_;
};

// Gives the name "cli_nats.*", which `ctest -R cli` selects too.
TEST_F(cli_nats, TwoReplicasConverge) {
  const uint64_t r1 = ParseRevision(On("a", {"put", "greeting", "hello"}));
  const uint64_t r2 = ParseRevision(On("a", {"put", "other", "x"}));
  EXPECT_LT(r1, r2);

  // B has never seen the bucket: its read catches up first.
  RunResult get = On("b", {"get", "greeting"});
  EXPECT_EQ(get.exit_code, 0) << get;
  EXPECT_EQ(get.out, "hello");
  EXPECT_EQ(get.err, "");

  RunResult entry = On("b", {"--json", "entry", "greeting"});
  EXPECT_EQ(entry.exit_code, 0) << entry;
  EXPECT_NE(entry.out.find("\"revision\":" + std::to_string(r1) + ","), std::string::npos) << entry;

  // A write through B is seen by A's next read.
  const uint64_t r3 = ParseRevision(On("b", {"put", "greeting", "from b"}));
  EXPECT_GT(r3, r2);
  RunResult get_a = On("a", {"get", "greeting"});
  EXPECT_EQ(get_a.exit_code, 0) << get_a;
  EXPECT_EQ(get_a.out, "from b");

  RunResult keys = On("b", {"keys"});
  EXPECT_EQ(keys.exit_code, 0) << keys;
  EXPECT_EQ(keys.out, "greeting\nother\n");
}

// A new replica bootstrapping from a snapshot (2.11+) shows a progress line
// on a terminal (here a pseudo-terminal from script(1)), and nothing of it
// when stderr is a pipe.
TEST_F(cli_nats, BootstrapProgressLineOnlyOnATerminal) {
  if (!revkv::testing::NatsServer::VersionAtLeast(2, 11)) GTEST_SKIP() << "no batched direct get";
  ASSERT_EQ(On("a", {"put", "k", "v"}).exit_code, 0);
  RunResult piped = On("b", {"get", "k"});
  EXPECT_EQ(piped.exit_code, 0) << piped;
  EXPECT_EQ(piped.out, "v");
  EXPECT_EQ(piped.err, "") << piped;

  const std::string command = "script -qec '" + std::string(kCli) + " --db " + dir_.Sub("c") +
                              " --nats " + server_.url() + " get k' /dev/null";
  FILE* p = popen(command.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string tty;
  char buf[4096];
  size_t n = 0;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) tty.append(buf, n);
  EXPECT_EQ(pclose(p), 0) << tty;
  EXPECT_NE(tty.find("bootstrapping: 1 entries, revision 1 of 1 (100%)"), std::string::npos)
      << tty;
}

TEST_F(cli_nats, TtlNeedsABucketCreatedWithLimitMarkers) {
  RunResult plain = On("a", {"put", "k", "v", "--ttl", "5s"});
  EXPECT_TRUE(FailsWith(7, plain)) << plain;
  EXPECT_NE(plain.err.find("limit_marker_ttl"), std::string::npos) << plain;

  RunResult put =
      On("a", {"--bucket", "m", "put", "k", "v", "--ttl", "1s", "--limit-marker-ttl", "1s"});
  ASSERT_EQ(put.exit_code, 0) << put;
  const auto written = std::chrono::steady_clock::now();
  RunResult got = On("b", {"--bucket", "m", "get", "k"});
  EXPECT_EQ(got.out, "v") << got;
  std::this_thread::sleep_until(written + std::chrono::milliseconds(1500));
  EXPECT_TRUE(FailsWith(2, On("b", {"--bucket", "m", "get", "k"})));
  // The bucket exists without markers: asking for them is refused.
  RunResult asked = On("a", {"put", "j", "v", "--limit-marker-ttl", "5s"});
  EXPECT_TRUE(FailsWith(7, asked)) << asked;
}

// A lock kept in the data's bucket fences the writes of its CMD: the CMD
// gets the lock's name, bucket and token, and its fenced put, update (one
// atomic batch with the lock's record, which the holding process keeps
// renewing) and create are stored; the same fence after the lock was
// released exits 9 with nothing written.
TEST_F(cli_nats, FenceFromLockEnvironmentWritesAndAStaleOneExitsNine) {
  const std::string url = server_.url();
  // The bucket exists first, so that the lock does not create it.
  ASSERT_EQ(On("b", {"--bucket", "jobs", "put", "seed", "x"}).exit_code, 0);
  const std::string cli = "\"$0\" --db " + dir_.Sub("b") + " --nats " + url +
                          " --bucket jobs --locks-bucket \"$REVKV_LOCKS_BUCKET\" ";
  const std::string fence = " --fence \"$REVKV_LOCK_NAME:$REVKV_FENCING_TOKEN\"";
  const std::string write =
      "rev=$(" + cli + "put job.1 mine" + fence + ") && " + cli + "update job.1 mine2 \"$rev\"" +
      fence + " >/dev/null && sleep 1 && " + cli + "create job.2 new" + fence +
      " >/dev/null && echo \"$REVKV_LOCK_NAME $REVKV_LOCKS_BUCKET $REVKV_FENCING_TOKEN\"";
  RunResult locked = On("a", {"--locks-bucket", "jobs", "lock", "lock.L", "--lease", "1500ms",
                              "--timeout", "5s", "--", "sh", "-c", write, kCli});
  ASSERT_EQ(locked.exit_code, 0) << locked;
  const auto words = Lines(locked.out);
  ASSERT_EQ(words.size(), 1u) << locked;  // the environment
  const std::string env = words[0];
  ASSERT_TRUE(env.starts_with("lock.L jobs ")) << env;
  const std::string token = env.substr(std::string("lock.L jobs ").size());
  EXPECT_EQ(On("b", {"--bucket", "jobs", "get", "job.1"}).out, "mine2");
  EXPECT_EQ(On("b", {"--bucket", "jobs", "get", "job.2"}).out, "new");

  RunResult stale = On("b", {"--bucket", "jobs", "--locks-bucket", "jobs", "put", "job.1",
                             "late", "--fence", "lock.L:" + token});
  EXPECT_TRUE(FailsWith(9, stale)) << stale;
  EXPECT_NE(stale.err.find("LockLost"), std::string::npos) << stale;
  RunResult stale_create = On("b", {"--bucket", "jobs", "--locks-bucket", "jobs", "create",
                                    "job.3", "late", "--fence", "lock.L:" + token});
  EXPECT_TRUE(FailsWith(9, stale_create)) << stale_create;
  EXPECT_EQ(On("b", {"--bucket", "jobs", "get", "job.1"}).out, "mine2");
  EXPECT_TRUE(FailsWith(2, On("b", {"--bucket", "jobs", "get", "job.3"})));
  // In another bucket than its lock's, a fence is refused.
  RunResult elsewhere = On("b", {"put", "job.1", "x", "--fence", "lock.L:" + token});
  EXPECT_TRUE(FailsWith(7, elsewhere)) << elsewhere;
}

// txn over NATS is one atomic batch: another replica's entries shows all of
// it, and a stale one from a replica that has not caught up exits 4.
TEST_F(cli_nats, TxnCommitsAsOneBatchAndAnotherReplicaSeesItWhole) {
  const uint64_t r1 = ParseRevision(On("a", {"put", "acct.a", "10"}));
  ASSERT_GT(r1, 0u);
  RunResult moved = On("a", {"txn"}, "update acct.a 7 " + std::to_string(r1) +
                                         "\ncreate acct.b 3\n");
  ASSERT_EQ(moved.exit_code, 0) << moved;
  RunResult seen = On("b", {"entries", "acct.>"});
  ASSERT_EQ(seen.exit_code, 0) << seen;
  EXPECT_EQ(seen.out, "acct.a " + std::to_string(r1 + 1) + " 7\nacct.b " +
                          std::to_string(r1 + 2) + " 3\n");
  RunResult stale = On("b", {"txn"}, "update acct.a 0 " + std::to_string(r1) + "\n");
  EXPECT_TRUE(FailsWith(4, stale)) << stale;
  EXPECT_NE(stale.err.find("acct.a"), std::string::npos) << stale;
  EXPECT_EQ(On("a", {"get", "acct.a"}).out, "7");
}

// A bucket another client created without atomic batches: txn exits 7
// naming --allow-atomic, which turns them on.
TEST_F(cli_nats, AllowAtomicTurnsOnTransactionsInAForeignBucket) {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  ASSERT_EQ(revkv::testing::ConnectClient(server_.url(), &nc, &js), NATS_OK);
  kvConfig cfg;
  kvConfig_Init(&cfg);
  cfg.Bucket = "foreign";
  cfg.History = 3;
  kvStore* kv = nullptr;
  ASSERT_EQ(js_CreateKeyValue(&kv, js, &cfg), NATS_OK);
  kvStore_Destroy(kv);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);

  const std::string txn = "put a 1\nput b 2\n";
  RunResult refused = On("a", {"--bucket", "foreign", "txn"}, txn);
  EXPECT_TRUE(FailsWith(7, refused)) << refused;
  EXPECT_NE(refused.err.find("--allow-atomic"), std::string::npos) << refused;
  RunResult done = On("a", {"--bucket", "foreign", "--allow-atomic", "txn"}, txn);
  ASSERT_EQ(done.exit_code, 0) << done;
  // Now on for every client, without the flag.
  RunResult again = On("b", {"--bucket", "foreign", "txn"}, "put c 3\nput d 4\n");
  ASSERT_EQ(again.exit_code, 0) << again;
  EXPECT_EQ(On("b", {"--bucket", "foreign", "get", "b"}).out, "2");
  EXPECT_TRUE(FailsWith(1, Cli({"--allow-atomic", "put", "k", "v"})));  // needs --nats
}

TEST_F(cli_nats, StaleUpdateAcrossReplicasConflicts) {
  const uint64_t r1 = ParseRevision(On("a", {"put", "k", "v1"}));
  // B learns r1, then A moves on.
  EXPECT_EQ(On("b", {"get", "k"}).out, "v1");
  const uint64_t r2 = ParseRevision(On("a", {"update", "k", "v2", std::to_string(r1)}));
  EXPECT_GT(r2, r1);

  RunResult stale = On("b", {"update", "k", "v3", std::to_string(r1)});
  EXPECT_TRUE(FailsWith(4, stale)) << stale;
  EXPECT_EQ(On("a", {"get", "k"}).out, "v2");
  EXPECT_EQ(On("b", {"get", "k"}).out, "v2");
}

TEST_F(cli_nats, ServerDownWritesFailReadsAnswerFromReplicaWithWarning) {
  const uint64_t r1 = ParseRevision(On("a", {"put", "k", "kept"}));
  EXPECT_EQ(On("b", {"get", "k"}).out, "kept");
  server_.Stop();

  const auto start = Clock::now();
  RunResult put = On("a", {"--write-timeout", "500ms", "put", "k", "lost"});
  const auto took = Clock::now() - start;
  EXPECT_TRUE(FailsWith(6, put)) << put;
  EXPECT_LT(took, 6s);

  RunResult get = On("b", {"get", "k"});
  EXPECT_EQ(get.exit_code, 0) << get;
  EXPECT_EQ(get.out, "kept");
  EXPECT_EQ(WarningLines(get), 1u) << get;
  EXPECT_EQ(Lines(get.err).size(), 1u) << get;

  RunResult entry = On("a", {"--json", "entry", "k"});
  EXPECT_EQ(entry.exit_code, 0) << entry;
  EXPECT_NE(entry.out.find("\"revision\":" + std::to_string(r1) + ","), std::string::npos) << entry;
  EXPECT_EQ(WarningLines(entry), 1u) << entry;

  RunResult status = On("b", {"--json", "status"});
  EXPECT_EQ(status.exit_code, 0) << status;
  EXPECT_EQ(status.out, "{\"applied\":" + std::to_string(r1) +
                            ",\"stream_last\":null,\"lag\":null,\"connected\":false,\"server_version\":null" +
                            kNoneSkipped + "}\n");
}

TEST_F(cli_nats, StatusAfterWritesShowsNoLag) {
  ParseRevision(On("a", {"put", "k1", "v"}));
  const uint64_t last = ParseRevision(On("a", {"put", "k2", "v"}));
  RunResult on_a = On("a", {"--json", "status"});
  EXPECT_EQ(on_a.exit_code, 0) << on_a;
  EXPECT_EQ(on_a.out, "{\"applied\":" + std::to_string(last) +
                          ",\"stream_last\":" + std::to_string(last) +
                          ",\"lag\":0,\"connected\":true" + ServerVersionJson() + kNoneSkipped + "}\n");
  EXPECT_EQ(On("b", {"get", "k2"}).out, "v");
  // B caught up while answering its read: no lag either.
  RunResult status = On("b", {"--json", "status"});
  EXPECT_EQ(status.out, "{\"applied\":" + std::to_string(last) +
                            ",\"stream_last\":" + std::to_string(last) +
                            ",\"lag\":0,\"connected\":true" + ServerVersionJson() + kNoneSkipped + "}\n")
      << status;
  RunResult text = On("b", {"status"});
  EXPECT_EQ(text.out, "applied: " + std::to_string(last) + "\nstream_last: " +
                          std::to_string(last) + "\nlag: 0\nconnected: true\nserver_version: " +
                          TestServerVersion() + "\nskipped: 0\n")
      << text;
}

// Keys another NATS client stored, beyond revkv's own write rules (longer
// than 1,024 bytes, non-ASCII), are readable with every read command.
TEST_F(cli_nats, ReadsTakeEveryKeyAReplicaCanHold) {
  ParseRevision(On("a", {"put", "mine", "x"}));  // creates the bucket
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  ASSERT_EQ(revkv::testing::ConnectClient(server_.url(), &nc, &js), NATS_OK);
  const std::string long_key = "long." + std::string(1995, 'k');
  const std::string utf8_key = "caf\xc3\xa9.\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87";  // café.ключ
  std::map<std::string, uint64_t> revisions;
  for (const std::string& key : {long_key, utf8_key}) {
    const std::string subject = "$KV.default." + key;
    jsPubAck* ack = nullptr;
    ASSERT_EQ(js_Publish(&ack, js, subject.c_str(), "foreign", 7, nullptr, nullptr), NATS_OK);
    revisions[key] = ack->Sequence;
    jsPubAck_Destroy(ack);
  }
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);

  for (const char* replica : {"a", "b"}) {  // one that existed before, one new
    for (const auto& [key, rev] : revisions) {
      RunResult get = On(replica, {"get", key});
      EXPECT_EQ(get.exit_code, 0) << get;
      EXPECT_EQ(get.out, "foreign");
      RunResult entry = On(replica, {"--json", "entry", key});
      EXPECT_EQ(entry.exit_code, 0) << entry;
      auto parsed = ParseJson(entry.out);
      ASSERT_TRUE(parsed.has_value()) << entry.out;
      ASSERT_NE(parsed->Field("key"), nullptr) << entry.out;
      EXPECT_EQ(parsed->Field("key")->text, key);
      EXPECT_EQ(parsed->Field("revision")->text, std::to_string(rev));
      RunResult history = On(replica, {"history", key});
      EXPECT_EQ(history.exit_code, 0) << history;
      EXPECT_EQ(Lines(history.out).size(), 1u) << history;
    }
    RunResult keys = On(replica, {"keys"});
    EXPECT_EQ(keys.exit_code, 0) << keys;
    EXPECT_EQ(keys.out, utf8_key + "\n" + long_key + "\nmine\n");
    RunResult utf8 = On(replica, {"keys", "caf\xc3\xa9.*"});
    EXPECT_EQ(utf8.exit_code, 0) << utf8;
    EXPECT_EQ(utf8.out, utf8_key + "\n");
  }
  // Writes keep revkv's own rules.
  EXPECT_TRUE(FailsWith(7, On("a", {"put", long_key, "v"})));
  EXPECT_TRUE(FailsWith(7, On("a", {"put", utf8_key, "v"})));
  // A key no replica can hold is still refused, before anything is opened.
  for (const char* bad : {"", "a..b", ".a", "a.", "a b", "tab\tkey"}) {
    RunResult r = On("a", {"get", bad});
    EXPECT_TRUE(FailsWith(7, r)) << "key '" << bad << "': " << r;
  }
}

// A message another client stored damaged (a header block no client can
// parse) is skipped, never applied or stalled on: status counts and names it,
// in text and JSON, in a replica that existed before it and in a new one,
// and each logs one warning line, however many messages it skipped.
TEST_F(cli_nats, StatusCountsAndNamesSkippedMessages) {
  ParseRevision(On("a", {"put", "k", "v"}));
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  ASSERT_EQ(revkv::testing::ConnectClient(server_.url(), &nc, &js), NATS_OK);
  auto stream_last = [&] {
    jsStreamInfo* si = nullptr;
    EXPECT_EQ(js_GetStreamInfo(&si, js, "KV_default", nullptr, nullptr), NATS_OK);
    const uint64_t last = si != nullptr ? si->State.LastSeq : 0;
    jsStreamInfo_Destroy(si);
    return last;
  };
  std::vector<uint64_t> damaged;
  for (const char* key : {"bad.1", "bad.2"}) {
    const uint64_t before = stream_last();
    ASSERT_EQ(revkv::testing::RawPublish(server_.port(), std::string("$KV.default.") + key,
                                         "NATS/1.0\r\nno colon here\r\n\r\n", "v"),
              "");
    const auto deadline = Clock::now() + 5s;
    while (stream_last() == before && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
    damaged.push_back(stream_last());
    ASSERT_EQ(damaged.back(), before + 1);
  }
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  const std::string warning = "revkv: warning: the replica of bucket 'default' skipped revision " +
                              std::to_string(damaged[0]) + ", which it can never apply";
  auto warnings = [](const RunResult& r) {
    size_t n = 0;
    for (const std::string& line : Lines(r.err)) n += line.starts_with("revkv: warning:");
    return n;
  };
  const std::string json_tail = ",\"skipped\":2,\"first_skipped\":" + std::to_string(damaged[0]) +
                                ",\"skipped_reason\":\"its headers cannot be parsed (Protocol "
                                "Error), so whether it is a Put or a tombstone is unknown\"}\n";
  const uint64_t last = damaged[1];
  // "a" existed before the damaged messages, "b" bootstraps over them.
  for (const char* replica : {"a", "b"}) {
    // The read catches the replica up past both: one warning line.
    RunResult get = On(replica, {"get", "k"});
    EXPECT_EQ(get.exit_code, 0) << get;
    EXPECT_EQ(get.out, "v");
    EXPECT_EQ(warnings(get), 1u) << get;
    EXPECT_EQ(Lines(get.err).size(), 1u) << get;
    EXPECT_EQ(get.err.rfind(warning, 0), 0u) << get;

    // Kept in the replica: counted once, not again, and nothing new to log.
    RunResult json = On(replica, {"--json", "status"});
    EXPECT_EQ(json.exit_code, 0) << json;
    EXPECT_EQ(json.out, "{\"applied\":" + std::to_string(last) + ",\"stream_last\":" +
                            std::to_string(last) + ",\"lag\":0,\"connected\":true" +
                            ServerVersionJson() + json_tail)
        << json;
    EXPECT_EQ(json.err, "") << json;
    auto parsed = ParseJson(json.out);
    ASSERT_TRUE(parsed.has_value()) << json.out;
    RunResult text = On(replica, {"status"});
    EXPECT_EQ(text.exit_code, 0) << text;
    EXPECT_EQ(
        text.out,
        "applied: " + std::to_string(last) + "\nstream_last: " + std::to_string(last) +
            "\nlag: 0\nconnected: true\nserver_version: " + TestServerVersion() +
            "\nskipped: 2\nfirst_skipped: " + std::to_string(damaged[0]) +
            "\nskipped_reason: its headers cannot be parsed (Protocol Error), so "
            "whether it is a Put or a tombstone is unknown\n")
        << text;
    EXPECT_EQ(text.err, "") << text;
  }
  // Both go on: a write through one is read by the other.
  const uint64_t rev = ParseRevision(On("b", {"put", "after", "x"}));
  EXPECT_GT(rev, last);
  EXPECT_EQ(On("a", {"get", "after"}).out, "x");
  EXPECT_TRUE(FailsWith(2, On("a", {"get", "bad.1"})));
}

TEST_F(cli, StatusWithoutNatsIsLocalOnly) {
  const uint64_t last = Put("k", "v");
  RunResult status = Cli({"--json", "status"});
  EXPECT_EQ(status.exit_code, 0) << status;
  EXPECT_EQ(status.out, "{\"applied\":" + std::to_string(last) +
                            ",\"stream_last\":" + std::to_string(last) +
                            ",\"lag\":0,\"connected\":false,\"server_version\":null" + kNoneSkipped + "}\n");
  EXPECT_TRUE(FailsWith(1, Cli({"--user", "u", "get", "k"})));
}

}  // namespace
