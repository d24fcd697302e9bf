// Lease locks on a real nats-server, across engines and processes, each
// with its own replica and connection:
//  - Busy, Timeout, and fencing tokens that grow in acquisition order;
//  - `revkv lock --nats` in several processes: critical sections never
//    overlap, tokens follow the order of entry, 5 on timeout;
//  - a holder paused with SIGSTOP loses the lock to another process after
//    its lease, and on SIGCONT reports the loss (exit 9 in the CLI, on_lost
//    in an embedding process);
//  - a stale holder's release never frees the new holder's lock;
//  - a release wakes a waiter in another process at once, not at lease
//    expiry;
//  - a server restart: the holder keeps the lock or knows it lost it;
//  - a holder cut off from the server (a relay that silently drops its
//    traffic) knows it lost the lock before another engine takes it over;
//  - the locks bucket's MaxAge frees an abandoned lock;
//  - the server-version guard: locks on Debian's 2.9.10 with an R1 bucket,
//    refused on an R3 bucket.
//
// Processes are the `revkv` CLI (REVKV_CLI) and revkv_lock_child
// (REVKV_LOCK_CHILD, tests/lock_child.cc), which holds or waits for locks
// as the test tells it over a pipe. Suite names are lower-case, so that
// `ctest -R replicated_lock` selects them.

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "revkv/revkv.h"
#include "tests/nats_server.h"
#include "tests/tcp_relay.h"
#include "tests/test_util.h"

extern char** environ;

namespace revkv {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::MsSince;
using testing::NatsCluster;
using testing::NatsServer;
using testing::TempDir;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// Polls `pred` until it holds or `timeout` passes; returns its last value.
bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!pred()) {
    if (Clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> Split(const std::string& text, char sep = '\n') {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(text);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  return out;
}

// Records on_lost calls; outlives the handle it watches.
struct LostRecorder {
  std::mutex mu;
  int calls = 0;
  Code code = Code::kOk;
  std::function<void(const Status&)> Callback() {
    return [this](const Status& s) {
      std::lock_guard<std::mutex> lock(mu);
      ++calls;
      code = s.code();
    };
  }
  int Calls() {
    std::lock_guard<std::mutex> lock(mu);
    return calls;
  }
};

// ---- Child processes ----

// A child with stdin and stdout on pipes and stderr in a file. The
// destructor kills (SIGKILL, by PID) and reaps it if it still runs.
class Proc {
 public:
  Proc(const std::vector<std::string>& args, std::string stderr_path)
      : stderr_path_(std::move(stderr_path)) {
    signal(SIGPIPE, SIG_IGN);  // a dead child must fail our write, not kill us
    int in[2], out[2];
    // O_CLOEXEC: children spawned concurrently by other threads must not
    // inherit these, or EOF would never come.
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "pipe2: " << strerror(errno);
      return;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, stderr_path_.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
    // Default signal handling and an empty mask, as from a shell.
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t sigs;
    sigemptyset(&sigs);
    posix_spawnattr_setsigmask(&attr, &sigs);
    sigaddset(&sigs, SIGPIPE);
    posix_spawnattr_setsigdefault(&attr, &sigs);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    std::vector<std::string> storage = args;
    std::vector<char*> argv;
    for (std::string& a : storage) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = posix_spawn(&pid_, argv[0], &actions, &attr, argv.data(), environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    close(in[0]);
    close(out[1]);
    if (rc != 0) {
      ADD_FAILURE() << "posix_spawn " << args[0] << ": " << strerror(rc);
      pid_ = -1;
      close(in[1]);
      close(out[0]);
      return;
    }
    stdin_fd_ = in[1];
    stdout_fd_ = out[0];
  }
  ~Proc() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    CloseStdin();
    if (stdout_fd_ >= 0) close(stdout_fd_);
  }
  Proc(const Proc&) = delete;
  Proc& operator=(const Proc&) = delete;

  pid_t pid() const { return pid_; }

  bool Send(const std::string& line) {
    if (stdin_fd_ < 0) return false;
    const std::string text = line + "\n";
    size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = write(stdin_fd_, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }
  void CloseStdin() {
    if (stdin_fd_ >= 0) close(stdin_fd_);
    stdin_fd_ = -1;
  }

  // The next stdout line without its '\n'; nullopt at EOF or the deadline.
  std::optional<std::string> NextLine(Clock::time_point deadline) {
    while (true) {
      if (size_t nl = buf_.find('\n'); nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      if (eof_ || stdout_fd_ < 0) return std::nullopt;
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      if (left <= 0ms) return std::nullopt;
      pollfd p{stdout_fd_, POLLIN, 0};
      const int n = poll(&p, 1, static_cast<int>(left.count()));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return std::nullopt;
      char buf[4096];
      const ssize_t r = read(stdout_fd_, buf, sizeof(buf));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        eof_ = true;
        continue;
      }
      buf_.append(buf, static_cast<size_t>(r));
    }
  }

  // Waits for the exit; returns the exit code, 128 + N if killed by signal
  // N, or -1 if it had to be killed at the deadline.
  int Wait(Clock::time_point deadline) {
    int status = 0;
    while (true) {
      const pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) break;
      if (r < 0 && errno != EINTR) return -1;
      if (Clock::now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        pid_ = -1;
        ADD_FAILURE() << "child did not exit in time; killed. stderr: " << Stderr();
        return -1;
      }
      usleep(5 * 1000);
    }
    pid_ = -1;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
  }
  // Kills it with SIGKILL at once, as a crash would, and reaps it.
  void Crash() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  std::string Stderr() const { return ReadFile(stderr_path_); }

 private:
  pid_t pid_ = -1;
  int stdin_fd_ = -1;
  int stdout_fd_ = -1;
  std::string stderr_path_;
  std::string buf_;
  bool eof_ = false;
};

// A reply of revkv_lock_child to "acquire" or "try".
struct Acquired {
  bool ok = false;
  uint64_t token = 0;
  int64_t at_ns = 0;  // when Acquire returned, on the shared monotonic clock
  std::string line;
};

// revkv_lock_child (tests/lock_child.cc): an embedding process with its own
// engine, replica and connection, driven line by line.
class LockChild {
 public:
  LockChild(const std::string& dir, const std::string& url, const std::string& stderr_path,
            std::chrono::seconds locks_max_age = std::chrono::hours(24),
            const std::string& locks_bucket = "")
      : proc_(Args(dir, url, locks_max_age, locks_bucket), stderr_path) {}

  // Waits for the engine to open; false (with a test failure) otherwise.
  bool Ready() {
    auto line = proc_.NextLine(Clock::now() + 20s);
    if (line != "ready") {
      ADD_FAILURE() << "lock child did not start: " << line.value_or("<nothing>")
                    << "; stderr: " << proc_.Stderr();
      return false;
    }
    return true;
  }
  // Sends `command` without waiting for the reply.
  void Send(const std::string& command) { EXPECT_TRUE(proc_.Send(command)) << command; }
  // The next reply line, setting aside the on_lost lines that arrive.
  std::string Reply(Clock::time_point deadline) {
    while (auto line = proc_.NextLine(deadline)) {
      if (line->starts_with("on_lost ")) {
        on_lost_.push_back(*line);
        continue;
      }
      return *line;
    }
    return "<no reply>";
  }
  std::string Call(const std::string& command, std::chrono::milliseconds timeout = 20s) {
    Send(command);
    return Reply(Clock::now() + timeout);
  }
  Acquired ParseAcquired(const std::string& line) {
    Acquired a;
    a.line = line;
    std::istringstream in(line);
    std::string word;
    in >> word;
    if (word != "acquired") return a;
    in >> a.token >> a.at_ns;
    a.ok = !in.fail() && a.token > 0;
    return a;
  }
  Acquired Acquire(const std::string& name, int64_t lease_ms, int64_t timeout_ms,
                   bool auto_renew = true) {
    return ParseAcquired(Call("acquire " + name + " " + std::to_string(lease_ms) + " " +
                                  std::to_string(timeout_ms) + " " + (auto_renew ? "1" : "0"),
                              std::chrono::milliseconds(timeout_ms) + 20s));
  }
  // The first on_lost line, waiting for it until `deadline`; "" if none.
  std::string WaitOnLost(Clock::time_point deadline) {
    while (on_lost_.empty()) {
      auto line = proc_.NextLine(deadline);
      if (!line) return "";
      if (line->starts_with("on_lost ")) {
        on_lost_.push_back(*line);
      } else {
        ADD_FAILURE() << "unexpected line from the lock child: " << *line;
      }
    }
    return on_lost_.front();
  }
  size_t on_lost_count() const { return on_lost_.size(); }
  Proc& proc() { return proc_; }

 private:
  static std::vector<std::string> Args(const std::string& dir, const std::string& url,
                                       std::chrono::seconds locks_max_age,
                                       const std::string& locks_bucket) {
    std::vector<std::string> args = {REVKV_LOCK_CHILD, dir, url,
                                     std::to_string(locks_max_age.count())};
    if (!locks_bucket.empty()) args.push_back(locks_bucket);
    return args;
  }

  Proc proc_;
  std::vector<std::string> on_lost_;
};

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::ostream& operator<<(std::ostream& os, const CliResult& r) {
  return os << "exit " << r.exit_code << ", stdout [" << r.out << "], stderr [" << r.err << "]";
}

// The decimal number at the start of `text`, or 0.
uint64_t LeadingNumber(const std::string& text) {
  size_t n = 0;
  while (n < text.size() && n < 19 && std::isdigit(static_cast<unsigned char>(text[n]))) ++n;
  return n == 0 ? 0 : std::stoull(text.substr(0, n));
}

// A CMD for `revkv lock` that prints "PID TOKEN" once it traps SIGTERM, and
// then loops until signalled, printing "got-term" and exiting 0 on SIGTERM.
std::vector<std::string> TrappingCmd() {
  return {"sh", "-c",
          "trap 'echo got-term; exit 0' TERM; echo $$ $REVKV_FENCING_TOKEN; "
          "while true; do sleep 0.05; done"};
}
// A CMD that prints "PID TOKEN" and holds the lock until its stdin (revkv's,
// which it inherits) closes; then it exits 0.
std::vector<std::string> HoldUntilEofCmd() {
  return {"sh", "-c", "echo $$ $REVKV_FENCING_TOKEN; while read x; do :; done; echo done"};
}

// Whether process `pid` is gone (or a zombie nobody of ours must reap).
bool Gone(pid_t pid) { return kill(pid, 0) != 0 && errno == ESRCH; }

// ---- The fixture: one nats-server per test ----

class replicated_lock : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.Start()) << server_.error(); }

  void TearDown() override {
    // CMDs that a failed test may have left running (a passing test has
    // seen each one end).
    if (!HasFailure()) return;
    for (pid_t pid : cmd_pids_) {
      if (pid > 0 && !Gone(pid)) kill(pid, SIGKILL);
    }
  }

  std::unique_ptr<Engine> OpenEngine(const TempDir& dir,
                                     std::chrono::seconds locks_max_age = std::chrono::hours(24),
                                     const std::string& url = "") {
    Options o;
    o.path = dir.path();
    o.nats.servers = {url.empty() ? server_.url() : url};
    o.locks_max_age = locks_max_age;
    auto e = Engine::Open(o);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return e.ok() ? std::move(*e) : nullptr;
  }

  std::string NextStderrPath() { return dir_.Sub("stderr-" + std::to_string(++files_)); }

  // `revkv --db <dir_.Sub(replica)> --nats <url> args...`, in the background;
  // `url` defaults to the test's server.
  std::unique_ptr<Proc> StartCli(const std::string& replica, const std::vector<std::string>& args,
                                 const std::string& url = "") {
    std::vector<std::string> argv = {REVKV_CLI, "--db", dir_.Sub(replica), "--nats",
                                     url.empty() ? server_.url() : url};
    argv.insert(argv.end(), args.begin(), args.end());
    return std::make_unique<Proc>(argv, NextStderrPath());
  }
  // The same, run to completion.
  CliResult RunCli(const std::string& replica, const std::vector<std::string>& args,
                   std::chrono::seconds limit = 60s, const std::string& url = "") {
    const auto deadline = Clock::now() + limit;
    auto proc = StartCli(replica, args, url);
    CliResult r;
    if (proc->pid() <= 0) return r;
    proc->CloseStdin();
    while (auto line = proc->NextLine(deadline)) r.out += *line + "\n";
    r.exit_code = proc->Wait(deadline);
    r.err = proc->Stderr();
    return r;
  }
  // `revkv lock NAME --lease LEASE --timeout TIMEOUT -- cmd...`
  static std::vector<std::string> LockArgs(const std::string& name, const std::string& lease,
                                           const std::string& timeout,
                                           const std::vector<std::string>& cmd) {
    std::vector<std::string> args = {"lock", name, "--lease", lease, "--timeout", timeout, "--"};
    args.insert(args.end(), cmd.begin(), cmd.end());
    return args;
  }
  // Reads a "PID TOKEN" line from a lock CMD; remembers the PID for
  // cleanup. Returns the token, 0 on failure.
  uint64_t ReadCmdLine(Proc& proc, Clock::time_point deadline, pid_t* cmd_pid = nullptr) {
    auto line = proc.NextLine(deadline);
    if (!line) {
      ADD_FAILURE() << "the lock's CMD never ran; stderr: " << proc.Stderr();
      return 0;
    }
    auto words = Split(*line, ' ');
    if (words.size() != 2 || LeadingNumber(words[0]) == 0) {
      ADD_FAILURE() << "unexpected CMD output: " << *line;
      return 0;
    }
    const pid_t pid = static_cast<pid_t>(LeadingNumber(words[0]));
    cmd_pids_.push_back(pid);
    if (cmd_pid != nullptr) *cmd_pid = pid;
    return LeadingNumber(words[1]);
  }

  void RunThreeCliProcesses(int rounds, const std::function<std::string(int)>& url);

  NatsServer server_;
  TempDir dir_;
  std::atomic<int> files_{0};
  std::vector<pid_t> cmd_pids_;
};

// ---- Busy, Timeout and token order across engines ----

TEST_F(replicated_lock, BusyAndTimeoutAcrossEnginesAndTokensGrowInAcquisitionOrder) {
  TempDir da, db, dc;
  auto a = OpenEngine(da);
  auto b = OpenEngine(db);
  auto c = OpenEngine(dc);
  ASSERT_TRUE(a && b && c);

  auto held = a->Acquire("job", 10s, 5s);
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  const uint64_t t1 = (*held)->fencing_token();
  EXPECT_GT(t1, 0u);

  auto busy = b->TryAcquire("job", 10s);
  EXPECT_TRUE(busy.status().IsBusy()) << busy.status().ToString();
  const auto start = Clock::now();
  auto timed_out = b->Acquire("job", 10s, 400ms);
  const int64_t waited = MsSince(start);
  EXPECT_EQ(timed_out.status().code(), Code::kTimeout) << timed_out.status().ToString();
  EXPECT_GE(waited, 400);
  EXPECT_LT(waited, 5000) << "Timeout came long after the timeout";
  // Another lock name is independent.
  auto other = c->TryAcquire("other", 10s);
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  EXPECT_TRUE((*other)->Release().ok());

  // B waits, and gets the lock once A releases it, with a larger token.
  auto waiting = std::async(std::launch::async, [&] { return b->Acquire("job", 10s, 15s); });
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE((*held)->lost());
  ASSERT_TRUE((*held)->Release().ok());
  auto got = waiting.get();
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_GT((*got)->fencing_token(), t1);
  EXPECT_EQ(c->TryAcquire("job", 10s).status().code(), Code::kBusy);
  EXPECT_EQ(a->TryAcquire("job", 10s).status().code(), Code::kBusy);

  // Round robin over the three engines: every token exceeds the previous.
  uint64_t last = (*got)->fencing_token();
  ASSERT_TRUE((*got)->Release().ok());
  Engine* engines[] = {c.get(), a.get(), b.get()};
  for (int round = 0; round < 9; ++round) {
    auto l = engines[round % 3]->Acquire("job", 10s, 15s);
    ASSERT_TRUE(l.ok()) << "round " << round << ": " << l.status().ToString();
    EXPECT_GT((*l)->fencing_token(), last) << "round " << round;
    last = (*l)->fencing_token();
    EXPECT_TRUE((*l)->Release().ok());
  }
}

// ---- The CLI across processes ----

// Three processes, each with its own replica, run `revkv lock` 15 times
// each. Every critical section appends "enter TOKEN ID" and, 20 ms later,
// "exit TOKEN ID" to one file (O_APPEND), and holds a directory that only
// one process can create at a time.
// Three CLI processes, each with its own replica, take `rounds` turns each at
// a critical section guarded by lock "section"; process p reaches the
// server at url(p). Checks that the sections never overlapped (mkdir-guarded)
// and that fencing tokens grew in the order they were entered.
void replicated_lock::RunThreeCliProcesses(int rounds, const std::function<std::string(int)>& url) {
  constexpr int kProcs = 3;
  const std::string log = dir_.Sub("sections.log");
  const std::string script =
      "mkdir \"$1.busy\" 2>/dev/null || echo \"overlap $REVKV_FENCING_TOKEN $2\" >> \"$1\"; "
      "echo \"enter $REVKV_FENCING_TOKEN $2\" >> \"$1\"; sleep 0.02; "
      "echo \"exit $REVKV_FENCING_TOKEN $2\" >> \"$1\"; rmdir \"$1.busy\"";
  std::vector<std::vector<CliResult>> results(kProcs);
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  for (int p = 0; p < kProcs; ++p) {
    threads.emplace_back([&, p] {
      for (int round = 0; round < rounds; ++round) {
        results[static_cast<size_t>(p)].push_back(RunCli(
            "replica" + std::to_string(p),
            LockArgs("section", "10s", "60s", {"sh", "-c", script, "sh", log, std::to_string(p)}),
            60s, url(p)));
      }
    });
  }
  for (auto& t : threads) t.join();
  const int64_t took = MsSince(start);
  for (int p = 0; p < kProcs; ++p) {
    for (const CliResult& r : results[static_cast<size_t>(p)]) {
      EXPECT_EQ(r.exit_code, 0) << "process " << p << ": " << r;
      EXPECT_EQ(r.out, "") << r;
    }
  }

  const std::vector<std::string> lines = Split(ReadFile(log));
  ASSERT_EQ(lines.size(), static_cast<size_t>(2 * kProcs * rounds)) << ReadFile(log);
  uint64_t last = 0;
  std::map<std::string, int> sections_by_process;
  for (size_t i = 0; i + 1 < lines.size(); i += 2) {
    const auto enter = Split(lines[i], ' ');
    const auto exit = Split(lines[i + 1], ' ');
    ASSERT_EQ(enter.size(), 3u) << lines[i];
    ASSERT_EQ(exit.size(), 3u) << lines[i + 1];
    // Each entry is followed by the same section's exit: no interleaving.
    EXPECT_EQ(enter[0], "enter") << "line " << i << ": " << lines[i];
    EXPECT_EQ(exit[0], "exit") << "line " << i + 1 << ": " << lines[i + 1];
    EXPECT_EQ(enter[1], exit[1]) << lines[i] << " / " << lines[i + 1];
    EXPECT_EQ(enter[2], exit[2]) << lines[i] << " / " << lines[i + 1];
    // Tokens grow in the order the sections were entered.
    const uint64_t token = LeadingNumber(enter[1]);
    EXPECT_GT(token, last) << "line " << i << ": " << lines[i];
    last = token;
    ++sections_by_process[enter[2]];
  }
  for (int p = 0; p < kProcs; ++p) EXPECT_EQ(sections_by_process[std::to_string(p)], rounds);
  std::cout << "[ info     ] " << kProcs * rounds << " CLI lock runs in " << took << " ms\n";
}

TEST_F(replicated_lock, CliCriticalSectionsOfThreeProcessesNeverOverlap) {
  RunThreeCliProcesses(15, [&](int) { return server_.url(); });
}

// A second process gives up with 5 while the first holds the lock; a third
// that waits gets it as soon as the first one's CMD ends, not at the end of
// the 20 s lease, with a larger token.
TEST_F(replicated_lock, CliWaiterTimesOutWith5ThenGetsTheLockWhenTheHolderEnds) {
  auto holder = StartCli("a", LockArgs("L", "20s", "20s", HoldUntilEofCmd()));
  const uint64_t first = ReadCmdLine(*holder, Clock::now() + 20s);
  ASSERT_GT(first, 0u);

  const auto start = Clock::now();
  CliResult late = RunCli("b", LockArgs("L", "20s", "500ms", {"echo", "ran"}));
  const int64_t waited = MsSince(start);
  EXPECT_EQ(late.exit_code, 5) << late;
  EXPECT_EQ(late.out, "") << late;
  EXPECT_NE(late.err.find("'L'"), std::string::npos) << late;
  EXPECT_GE(waited, 500);

  auto waiter = StartCli("c", LockArgs("L", "20s", "30s", HoldUntilEofCmd()));
  auto early = waiter->NextLine(Clock::now() + 1s);
  EXPECT_FALSE(early.has_value()) << "CMD ran while another process held the lock: " << *early;
  const auto ended = Clock::now();
  holder->CloseStdin();  // its CMD exits 0; revkv releases the lock
  const uint64_t second = ReadCmdLine(*waiter, Clock::now() + 20s);
  const int64_t handed_ms = MsSince(ended);
  EXPECT_EQ(holder->Wait(Clock::now() + 20s), 0) << holder->Stderr();
  EXPECT_GT(second, first);
  // Whole processes ending and starting in between: bounded far below the
  // lease, which is what a waiter that was not woken would sit out.
  EXPECT_LT(handed_ms, 10000);
  waiter->CloseStdin();
  EXPECT_EQ(waiter->Wait(Clock::now() + 20s), 0) << waiter->Stderr();
}

// A `revkv lock` paused with SIGSTOP past its 1 s lease: another process
// takes the lock with a larger token; on SIGCONT the paused one terminates
// its CMD and exits 9, and the new holder's lock is untouched.
TEST_F(replicated_lock, CliHolderPausedPastItsLeaseLosesTheLockAndExits9) {
  auto old_holder = StartCli("a", LockArgs("L", "1s", "20s", TrappingCmd()));
  pid_t old_cmd = -1;
  const uint64_t old_token = ReadCmdLine(*old_holder, Clock::now() + 20s, &old_cmd);
  ASSERT_GT(old_token, 0u);
  ASSERT_EQ(kill(old_holder->pid(), SIGSTOP), 0);
  const auto stopped = Clock::now();

  auto new_holder = StartCli("b", LockArgs("L", "3s", "20s", HoldUntilEofCmd()));
  const uint64_t new_token = ReadCmdLine(*new_holder, Clock::now() + 20s);
  const int64_t after_stop = MsSince(stopped);
  EXPECT_GT(new_token, old_token);
  EXPECT_GE(after_stop, 1000) << "taken before the paused holder's lease could have run out";

  ASSERT_EQ(kill(old_holder->pid(), SIGCONT), 0);
  const auto resumed = Clock::now();
  EXPECT_EQ(old_holder->NextLine(resumed + 15s), "got-term");
  EXPECT_EQ(old_holder->Wait(resumed + 15s), 9) << old_holder->Stderr();
  EXPECT_LT(MsSince(resumed), 5000);
  EXPECT_NE(old_holder->Stderr().find("LockLost"), std::string::npos) << old_holder->Stderr();
  EXPECT_TRUE(Gone(old_cmd));

  // The new holder still holds: a process that will not wait is refused,
  // and the holder's own release succeeds (exit 0, not 9).
  CliResult third = RunCli("c", LockArgs("L", "20s", "0ms", {"true"}));
  EXPECT_EQ(third.exit_code, 5) << third;
  new_holder->CloseStdin();
  EXPECT_EQ(new_holder->Wait(Clock::now() + 20s), 0) << new_holder->Stderr();
}

// ---- Embedding processes (revkv_lock_child) ----

// The same with an embedding process: its on_lost callback fires after
// SIGCONT, lost() is true, and its Release is LockLost and frees nothing.
TEST_F(replicated_lock, PausedHolderProcessIsTakenOverAndReportsLostOnResume) {
  TempDir child_dir, mine, third_dir;
  LockChild child(child_dir.path(), server_.url(), NextStderrPath());
  ASSERT_TRUE(child.Ready());
  const Acquired held = child.Acquire("L", 1000, 5000);
  ASSERT_TRUE(held.ok) << held.line;
  ASSERT_EQ(child.Call("lost"), "lost 0");

  auto engine = OpenEngine(mine);
  auto third = OpenEngine(third_dir);
  ASSERT_TRUE(engine && third);
  ASSERT_EQ(kill(child.proc().pid(), SIGSTOP), 0);
  const auto stopped = Clock::now();
  auto taken = engine->Acquire("L", 3s, 20s);
  const int64_t after_stop = MsSince(stopped);
  ASSERT_TRUE(taken.ok()) << taken.status().ToString();
  EXPECT_GT((*taken)->fencing_token(), held.token);
  EXPECT_GE(after_stop, 1000);
  EXPECT_LT(after_stop, 15000);

  ASSERT_EQ(kill(child.proc().pid(), SIGCONT), 0);
  const auto resumed = Clock::now();
  // At once, before its lock thread may have looked: the stale release must
  // fail its compare-and-swap, not delete the new holder's record.
  const std::string released = child.Call("release");
  EXPECT_NE(released.find("LockLost"), std::string::npos) << released;
  const std::string on_lost = child.WaitOnLost(resumed + 10s);
  EXPECT_NE(on_lost.find("LockLost"), std::string::npos) << "on_lost never fired: " << on_lost;
  EXPECT_EQ(child.Call("lost"), "lost 1");
  EXPECT_EQ(child.on_lost_count(), 1u);

  EXPECT_FALSE((*taken)->lost());
  EXPECT_TRUE((*taken)->Renew().ok());
  EXPECT_EQ(third->TryAcquire("L", 10s).status().code(), Code::kBusy);
  const Acquired child_try = child.ParseAcquired(child.Call("try L 10000 1"));
  EXPECT_FALSE(child_try.ok) << child_try.line;
  EXPECT_NE(child_try.line.find("Busy"), std::string::npos) << child_try.line;
  EXPECT_TRUE((*taken)->Release().ok());
}

// The fenced recipe against the same pause (nats-server 2.12+): the lock
// lives in the data's bucket "jobs", and the paused holder, resumed after
// another process took the lock over and wrote, tries a fenced Put and a
// fenced Update that expects the key's current revision, so that only the
// fence can fail it. Its replica was frozen before the pause, so its own
// look at the lock's record still shows its token and both writes go to
// the server: the server refuses both, the holder reports LockLost, and
// the new holder's value stays with no message added.
TEST_F(replicated_lock, PausedFencedHolderWritesNothingAfterATakeover) {
  if (!NatsServer::VersionAtLeast(2, 12)) GTEST_FAIL() << "runs on 2.12+ only (CMakeLists.txt)";
  TempDir child_dir, mine;
  LockChild child(child_dir.path(), server_.url(), NextStderrPath(), std::chrono::hours(24),
                  "jobs");
  ASSERT_TRUE(child.Ready());
  const Acquired held = child.Acquire("lock.L", 1000, 5000);
  ASSERT_TRUE(held.ok) << held.line;
  const std::string frozen = child.Call("freeze jobs");
  ASSERT_TRUE(frozen.starts_with("frozen ")) << frozen;

  Options o;
  o.path = mine.path();
  o.nats.servers = {server_.url()};
  o.locks_bucket = "jobs";
  auto engine = Engine::Open(o);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  auto jobs = (*engine)->OpenBucket("jobs");
  ASSERT_TRUE(jobs.ok()) << jobs.status().ToString();
  ASSERT_EQ(kill(child.proc().pid(), SIGSTOP), 0);
  auto taken = (*engine)->Acquire("lock.L", 10s, 20s);
  ASSERT_TRUE(taken.ok()) << taken.status().ToString();
  EXPECT_GT((*taken)->fencing_token(), held.token);
  auto mine_written = (*jobs)->Put("job.1", "new holder", {.fence = (*taken)->fence()});
  ASSERT_TRUE(mine_written.ok()) << mine_written.status().ToString();
  ASSERT_TRUE((*jobs)->Sync(5s).ok());
  const uint64_t last = (*jobs)->LastRevision();

  ASSERT_EQ(kill(child.proc().pid(), SIGCONT), 0);
  const std::string fenced =
      child.Call("fenced jobs job.1 stale " + std::to_string(*mine_written));
  ASSERT_TRUE(fenced.starts_with("fenced ")) << fenced;
  const size_t bar = fenced.find(" | ");
  ASSERT_NE(bar, std::string::npos) << fenced;
  const std::string put = fenced.substr(7, bar - 7);
  const std::string update = fenced.substr(bar + 3);
  EXPECT_TRUE(put.starts_with("LockLost")) << put;
  EXPECT_TRUE(update.starts_with("LockLost")) << update;

  ASSERT_TRUE((*jobs)->Sync(5s).ok());
  auto entry = (*jobs)->GetEntry("job.1");
  ASSERT_TRUE(entry.ok()) << entry.status().ToString();
  EXPECT_EQ(entry->value, "new holder");
  EXPECT_EQ(entry->revision, *mine_written);
  EXPECT_EQ((*jobs)->LastRevision(), last) << "a refused fenced write was stored";
  EXPECT_FALSE((*taken)->lost());
  EXPECT_TRUE((*taken)->Renew().ok());
}

// A holder that stops renewing (auto_renew = false) loses the lock to a
// waiter of another engine; its late Release is LockLost and leaves the
// new holder's lock in place.
// Threads of one process hand a lock straight to each other, which a
// waiter in another process cannot be handed. Those hand-offs are bounded:
// the other engine must get the lock while two threads of the first keep
// taking it in turns, well before its timeout (without the bound every
// hand-off is a change that restarts its wait for the lease).
TEST_F(replicated_lock, WaiterOfAnotherEngineGetsItsTurnWhileThreadsOfOneEngineTakeTurns) {
  TempDir da, db;
  auto a = OpenEngine(da);
  auto b = OpenEngine(db);
  ASSERT_TRUE(a && b);
  std::atomic<bool> stop{false};
  std::atomic<int> a_turns{0}, a_errors{0};
  std::vector<std::thread> churn;
  for (int t = 0; t < 2; ++t) {
    churn.emplace_back([&] {
      while (!stop) {
        auto l = a->Acquire("fair", 5s, 10s);
        if (!l.ok()) {
          ++a_errors;
          continue;
        }
        ++a_turns;
        std::this_thread::sleep_for(5ms);
        if (!(*l)->Release().ok()) ++a_errors;
      }
    });
  }
  while (a_turns < 10) std::this_thread::sleep_for(5ms);
  const auto start = std::chrono::steady_clock::now();
  auto mine = b->Acquire("fair", 5s, 4s);  // the lease (5 s) is longer than this timeout
  const int64_t waited = MsSince(start);
  const int turns_before = a_turns.load();
  const bool released = mine.ok() && (*mine)->Release().ok();
  stop = true;
  for (auto& t : churn) t.join();
  ASSERT_TRUE(mine.ok()) << mine.status().ToString() << " after " << waited << " ms, while engine "
                         << "A took " << turns_before << " turns";
  EXPECT_TRUE(released);
  EXPECT_EQ(a_errors.load(), 0);
  EXPECT_GT(a_turns.load(), 10);
}

TEST_F(replicated_lock, StaleHoldersReleaseNeverFreesTheNewHoldersLock) {
  TempDir da, db, dc;
  auto a = OpenEngine(da);
  auto b = OpenEngine(db);
  auto c = OpenEngine(dc);
  ASSERT_TRUE(a && b && c);
  LostRecorder lost;
  const auto t0 = Clock::now();
  auto stale = a->Acquire("L", 600ms, 5s, {.auto_renew = false});
  ASSERT_TRUE(stale.ok()) << stale.status().ToString();
  (*stale)->on_lost(lost.Callback());

  auto next = b->Acquire("L", 2s, 15s);
  const int64_t waited = MsSince(t0);
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_GT((*next)->fencing_token(), (*stale)->fencing_token());
  EXPECT_GE(waited, 600) << "taken over before the holder's lease ran out";
  EXPECT_TRUE((*stale)->lost());
  EXPECT_TRUE(WaitFor([&] { return lost.Calls() == 1; }, 5s));

  Status released = (*stale)->Release();
  EXPECT_TRUE(released.IsLockLost()) << released.ToString();
  EXPECT_TRUE((*stale)->Release().IsLockLost());
  EXPECT_TRUE((*stale)->Renew().IsLockLost());

  // B still holds, on every replica.
  EXPECT_EQ(c->TryAcquire("L", 10s).status().code(), Code::kBusy);
  EXPECT_EQ(c->Acquire("L", 10s, 300ms).status().code(), Code::kTimeout);
  EXPECT_EQ(a->TryAcquire("L", 10s).status().code(), Code::kBusy);
  EXPECT_FALSE((*next)->lost());
  EXPECT_TRUE((*next)->Renew().ok());
  EXPECT_EQ(lost.Calls(), 1);

  ASSERT_TRUE((*next)->Release().ok());
  auto after = c->TryAcquire("L", 10s);
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_GT((*after)->fencing_token(), (*next)->fencing_token());
}

// A release in one process wakes the waiter in the other at once: both
// directions, three rounds each, with a 10 s lease that a waiter woken only
// by lease expiry (or a slow poll) would sit out. The clocks compared are
// both the machine's CLOCK_MONOTONIC.
TEST_F(replicated_lock, ReleaseWakesWaiterInAnotherProcessPromptly) {
  TempDir child_dir, mine;
  LockChild child(child_dir.path(), server_.url(), NextStderrPath());
  ASSERT_TRUE(child.Ready());
  auto engine = OpenEngine(mine);
  ASSERT_TRUE(engine);
  constexpr int64_t kLeaseMs = 10000;
  const std::string lease = std::to_string(kLeaseMs);
  std::vector<int64_t> wake_ms;
  uint64_t last = 0;
  for (int round = 0; round < 3; ++round) {
    // We hold; the child waits.
    auto mine_held = engine->Acquire("wake", std::chrono::milliseconds(kLeaseMs), 15s);
    ASSERT_TRUE(mine_held.ok()) << mine_held.status().ToString();
    EXPECT_GT((*mine_held)->fencing_token(), last);
    const Acquired busy = child.ParseAcquired(child.Call("try wake " + lease + " 1"));
    ASSERT_NE(busy.line.find("Busy"), std::string::npos) << busy.line;
    child.Send("acquire wake " + lease + " 30000 1");
    std::this_thread::sleep_for(300ms);  // let it go to sleep on the lock
    ASSERT_TRUE((*mine_held)->Release().ok());
    const int64_t released_ns = NowNs();
    const Acquired got = child.ParseAcquired(child.Reply(Clock::now() + 30s));
    ASSERT_TRUE(got.ok) << got.line;
    EXPECT_GT(got.token, (*mine_held)->fencing_token());
    wake_ms.push_back(std::max<int64_t>(0, got.at_ns - released_ns) / 1000000);

    // The child holds; we wait.
    auto waiting = std::async(std::launch::async, [&] {
      auto r = engine->Acquire("wake", std::chrono::milliseconds(kLeaseMs), 30s);
      return std::make_pair(std::move(r), NowNs());
    });
    std::this_thread::sleep_for(300ms);
    const std::string rel = child.Call("release");
    ASSERT_TRUE(rel.starts_with("released ") && rel.ends_with(" OK")) << rel;
    const int64_t child_released_ns = std::stoll(rel.substr(9));
    auto [mine_again, at_ns] = waiting.get();
    ASSERT_TRUE(mine_again.ok()) << mine_again.status().ToString();
    EXPECT_GT((*mine_again)->fencing_token(), got.token);
    last = (*mine_again)->fencing_token();
    wake_ms.push_back(std::max<int64_t>(0, at_ns - child_released_ns) / 1000000);
    ASSERT_TRUE((*mine_again)->Release().ok());
  }
  std::vector<int64_t> sorted = wake_ms;
  std::sort(sorted.begin(), sorted.end());
  std::string all;
  for (int64_t ms : wake_ms) all += std::to_string(ms) + " ";
  std::cout << "[ info     ] release -> waiter's Acquire returns (ms): " << all << "\n";
  // No waiter sat out the lease; typically each is a few milliseconds.
  EXPECT_LT(sorted.back(), kLeaseMs / 4) << all;
  EXPECT_LT(sorted[sorted.size() / 2], 500) << all;
}

// ---- Server restarts ----

// The server is down longer than the lease: the holder cannot renew, so it
// reports the loss; another engine takes the lock after the restart, and
// the old holder then neither renews nor releases it.
TEST_F(replicated_lock, ServerDownLongerThanTheLeaseHolderReportsLostBeforeAnotherTakesIt) {
  TempDir da, db, dc;
  auto a = OpenEngine(da);
  ASSERT_TRUE(a);
  LostRecorder lost;
  auto held = a->Acquire("L", 2s, 5s);
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  (*held)->on_lost(lost.Callback());
  const uint64_t old_token = (*held)->fencing_token();

  server_.Stop();
  const auto down = Clock::now();
  std::this_thread::sleep_for(2500ms);
  // Past lease - margin (1.6 s) since the last renewal: it knows.
  EXPECT_TRUE((*held)->lost()) << "holder still believes it holds after 2.5 s without the server";
  std::this_thread::sleep_for(3000ms - std::chrono::milliseconds(MsSince(down)));
  ASSERT_TRUE(server_.Start()) << server_.error();

  auto b = OpenEngine(db);
  ASSERT_TRUE(b);
  auto taken = b->Acquire("L", 3s, 20s);
  ASSERT_TRUE(taken.ok()) << taken.status().ToString();
  EXPECT_NE((*taken)->fencing_token(), old_token);
  EXPECT_GT((*taken)->fencing_token(), old_token);
  // Checked after the other's Acquire returned.
  EXPECT_TRUE((*held)->lost());
  EXPECT_TRUE(WaitFor([&] { return lost.Calls() == 1; }, 5s)) << "on_lost never fired";
  EXPECT_EQ(lost.code, Code::kLockLost);
  EXPECT_TRUE((*held)->Renew().IsLockLost());
  EXPECT_TRUE((*held)->Release().IsLockLost());

  auto c = OpenEngine(dc);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->TryAcquire("L", 10s).status().code(), Code::kBusy);
  EXPECT_FALSE((*taken)->lost());
  EXPECT_TRUE((*taken)->Renew().ok());
}

// A short outage (well under lease/3): the holder reconnects, keeps
// renewing, and nobody else gets the lock.
TEST_F(replicated_lock, ShortServerOutageHolderKeepsTheLock) {
  TempDir da, db;
  auto a = OpenEngine(da);
  ASSERT_TRUE(a);
  LostRecorder lost;
  auto held = a->Acquire("L", 3s, 5s);
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  (*held)->on_lost(lost.Callback());
  std::this_thread::sleep_for(1100ms);  // one automatic renewal behind it

  server_.Stop();
  std::this_thread::sleep_for(300ms);
  ASSERT_TRUE(server_.Start()) << server_.error();

  // The engine reconnects on its own within its reconnect wait; a renewal
  // made meanwhile may report Unavailable, never LockLost.
  Status renewed;
  ASSERT_TRUE(WaitFor(
      [&] {
        renewed = (*held)->Renew();
        EXPECT_FALSE(renewed.IsLockLost()) << renewed.ToString();
        return renewed.ok() || renewed.IsLockLost();
      },
      3s))
      << renewed.ToString();
  EXPECT_FALSE((*held)->lost());

  auto b = OpenEngine(db);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->TryAcquire("L", 3s).status().code(), Code::kBusy);
  // Longer than lease + margin (3.6 s): only a holder that still renews
  // keeps a waiter out that long.
  auto waited = b->Acquire("L", 3s, 4500ms);
  EXPECT_EQ(waited.status().code(), Code::kTimeout) << waited.status().ToString();
  EXPECT_FALSE((*held)->lost());
  EXPECT_EQ(lost.Calls(), 0);
  EXPECT_TRUE((*held)->Release().ok());
}


// The holders alone are cut off from the server, while another engine still
// reaches it: an embedding engine holding "L" and a `revkv lock` holding
// "M", both connected through the relay. They cannot renew, so each must
// count itself lost at lease - margin (1.6 s after its last renewal) - the
// engine firing on_lost, the CLI sending its CMD SIGTERM - before the other
// engine may take the locks over at lease + margin (2.4 s after it first
// saw the holders' last renewals).
TEST_F(replicated_lock, HoldersCutOffFromTheServerKnowTheyLostBeforeAnotherTakesOver) {
  testing::TcpRelay partition(server_.port());
  ASSERT_TRUE(partition.ok()) << partition.error();
  TempDir da, db, dc;
  auto a = OpenEngine(da, std::chrono::hours(24), partition.url());
  auto b = OpenEngine(db);
  ASSERT_TRUE(a && b);
  LostRecorder lost;
  auto held = a->Acquire("L", 2s, 5s);
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  (*held)->on_lost(lost.Callback());
  std::vector<std::string> args = {REVKV_CLI, "--db", dir_.Sub("cli"), "--nats", partition.url()};
  for (const std::string& arg : LockArgs("M", "2s", "20s", TrappingCmd())) args.push_back(arg);
  Proc cli(args, NextStderrPath());
  const uint64_t cli_token = ReadCmdLine(cli, Clock::now() + 20s);
  ASSERT_GT(cli_token, 0u);
  std::this_thread::sleep_for(800ms);  // a renewal behind each

  partition.Cut();
  const auto cut = Clock::now();
  // The CLI's lock, taken on another thread; what its CMD had printed by
  // the moment the lock was taken over.
  auto cli_side = std::async(std::launch::async, [&] {
    auto r = b->Acquire("M", 2s, 20s);
    const int64_t ms = MsSince(cut);
    std::string said = cli.NextLine(Clock::now() + 20ms).value_or("<nothing>");
    return std::make_tuple(std::move(r), ms, said);
  });
  auto taken = b->Acquire("L", 2s, 20s);
  const int64_t taken_ms = MsSince(cut);
  const int callbacks_when_taken = lost.Calls();
  const auto asked = Clock::now();
  const bool lost_when_taken = (*held)->lost();
  const int64_t lost_call_ms = MsSince(asked);
  auto [cli_taken, cli_taken_ms, cli_said] = cli_side.get();
  // The cut connections are closed; the holders reconnect in the background
  // while the checks below run.
  partition.Heal();

  ASSERT_TRUE(taken.ok()) << taken.status().ToString();
  EXPECT_GT((*taken)->fencing_token(), (*held)->fencing_token());
  EXPECT_GE(taken_ms, 1300) << "taken over before the holder's lease could have run out";
  EXPECT_EQ(callbacks_when_taken, 1)
      << "another engine took the lock " << taken_ms
      << " ms into the partition, and the cut-off holder's on_lost had not fired";
  EXPECT_TRUE(lost_when_taken);
  EXPECT_LT(lost_call_ms, 500) << "lost() blocked for " << lost_call_ms << " ms";

  ASSERT_TRUE(cli_taken.ok()) << cli_taken.status().ToString();
  EXPECT_GT((*cli_taken)->fencing_token(), cli_token);
  EXPECT_GE(cli_taken_ms, 1300);
  EXPECT_EQ(cli_said, "got-term") << "another engine took the CLI's lock " << cli_taken_ms
                                  << " ms into the partition, and its CMD was still running";
  std::cout << "[ info     ] taken " << taken_ms << " and " << cli_taken_ms
            << " ms into the partition; the cut-off engine's on_lost "
            << (callbacks_when_taken == 1 ? "had" : "had not") << " fired (its lost() took "
            << lost_call_ms << " ms); the CLI's CMD had said: " << cli_said << "\n";

  // Both do find out eventually (within the write timeout of the renewal).
  EXPECT_TRUE(WaitFor([&] { return lost.Calls() == 1; }, 10s)) << "on_lost never fired";
  if (cli_said != "got-term") {
    EXPECT_EQ(cli.NextLine(Clock::now() + 10s), "got-term");
  }
  EXPECT_EQ(cli.Wait(Clock::now() + 20s), 9) << cli.Stderr();
  EXPECT_TRUE((*held)->Release().IsLockLost());
  auto c = OpenEngine(dc);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->TryAcquire("L", 2s).status().code(), Code::kBusy);
  EXPECT_EQ(c->TryAcquire("M", 2s).status().code(), Code::kBusy);
  EXPECT_FALSE((*taken)->lost());
  EXPECT_TRUE((*taken)->Renew().ok());
  EXPECT_TRUE((*cli_taken)->Renew().ok());
}

// ---- The locks bucket's MaxAge backstop ----

// Whether the server still has a message for `key` in bucket `bucket`
// (asked with nats.c's own client). nullopt if it could not be asked.
std::optional<bool> ServerHasKey(const std::string& url, const std::string& bucket,
                                 const std::string& key) {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  std::optional<bool> has;
  if (testing::ConnectClient(url, &nc, &js) == NATS_OK) {
    natsMsg* msg = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    const std::string stream = "KV_" + bucket;
    const std::string subject = "$KV." + bucket + "." + key;
    natsStatus s = js_GetLastMsg(&msg, js, stream.c_str(), subject.c_str(), nullptr, &jerr);
    if (s == NATS_OK) {
      has = true;
      natsMsg_Destroy(msg);
    } else if (s == NATS_NOT_FOUND) {
      has = false;
    }
  }
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return has;
}

// A holder killed with SIGKILL (no renewal: auto_renew off) leaves its
// record; the waiter gets the lock after the holder's lease, with a larger
// token, whether by takeover or after MaxAge removed the record.
TEST_F(replicated_lock, LockOfKilledProcessIsTakenAfterItsLeaseWithShortMaxAge) {
  TempDir child_dir, mine;
  auto engine = OpenEngine(mine, 1s);  // creates the locks bucket with MaxAge 1 s
  ASSERT_TRUE(engine);
  auto warm = engine->TryAcquire("warm", 500ms);
  ASSERT_TRUE(warm.ok()) << warm.status().ToString();
  ASSERT_TRUE((*warm)->Release().ok());

  LockChild child(child_dir.path(), server_.url(), NextStderrPath(), 1s);
  ASSERT_TRUE(child.Ready());
  const Acquired held = child.Acquire("L", 800, 5000, /*auto_renew=*/false);
  ASSERT_TRUE(held.ok) << held.line;
  child.proc().Crash();

  auto taken = engine->Acquire("L", 800ms, 10s);
  const int64_t got_ns = NowNs();
  ASSERT_TRUE(taken.ok()) << taken.status().ToString();
  EXPECT_GT((*taken)->fencing_token(), held.token);
  EXPECT_GE((got_ns - held.at_ns) / 1000000, 750) << "taken before the dead holder's lease ran out";
  EXPECT_LT((got_ns - held.at_ns) / 1000000, 8000);
  EXPECT_FALSE((*taken)->lost());
  EXPECT_TRUE((*taken)->Release().ok());
}

// The MaxAge path itself: the waiter saw the record, then the server
// removed it (which no replica is told); the lock is free, and the waiter's
// next attempt gets it with a larger token.
TEST_F(replicated_lock, LockWhoseRecordMaxAgeRemovedIsFreeAgain) {
  TempDir child_dir, mine;
  auto engine = OpenEngine(mine, 1s);
  ASSERT_TRUE(engine);
  LockChild child(child_dir.path(), server_.url(), NextStderrPath(), 1s);
  ASSERT_TRUE(child.Ready());
  const Acquired held = child.Acquire("L", 800, 5000, /*auto_renew=*/false);
  ASSERT_TRUE(held.ok) << held.line;
  EXPECT_EQ(engine->TryAcquire("L", 800ms).status().code(), Code::kBusy);
  child.proc().Crash();

  ASSERT_TRUE(WaitFor([&] { return ServerHasKey(server_.url(), "locks", "L") == false; }, 10s))
      << "the locks bucket's MaxAge of 1 s never removed the abandoned record";
  auto taken = engine->TryAcquire("L", 800ms);
  ASSERT_TRUE(taken.ok()) << taken.status().ToString();
  EXPECT_GT((*taken)->fencing_token(), held.token);
  EXPECT_EQ(ServerHasKey(server_.url(), "locks", "L"), true);
  EXPECT_TRUE((*taken)->Release().ok());
}

// The key's last message on the server: its Nats-TTL and Nats-Marker-Reason
// headers ("" when absent), or nullopt when the server holds none.
struct LastMessage {
  std::string ttl;
  std::string marker;
};
std::optional<LastMessage> ServerLastMessage(const std::string& url, const std::string& bucket,
                                             const std::string& key) {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  std::optional<LastMessage> out;
  if (testing::ConnectClient(url, &nc, &js) == NATS_OK) {
    natsMsg* msg = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    const std::string stream = "KV_" + bucket;
    const std::string subject = "$KV." + bucket + "." + key;
    if (js_GetLastMsg(&msg, js, stream.c_str(), subject.c_str(), nullptr, &jerr) == NATS_OK) {
      LastMessage m;
      const char* v = nullptr;
      if (natsMsgHeader_Get(msg, "Nats-TTL", &v) == NATS_OK) m.ttl = v;
      v = nullptr;
      if (natsMsgHeader_Get(msg, "Nats-Marker-Reason", &v) == NATS_OK) m.marker = v;
      out = m;
      natsMsg_Destroy(msg);
    }
  }
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return out;
}

bool ServerHasTtl() { return NatsServer::VersionAtLeast(2, 11); }

// On a server with per-message TTL (2.11+), the locks bucket revkv creates
// has limit markers and each lock record carries a TTL of three leases: a
// record its holder abandoned disappears on the server, with a marker, and
// an engine that never saw it held takes the lock at once. On 2.10 the
// record stays until the locks bucket's max_age, so that engine is Busy.
TEST_F(replicated_lock, AbandonedLockRecordExpiresOnTheServerWhereItHasTtl) {
  TempDir da, dc;
  auto a = OpenEngine(da);
  ASSERT_TRUE(a);
  auto held = a->Acquire("L", 1s, 5s, {.auto_renew = false});
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  auto record = ServerLastMessage(server_.url(), "locks", "L");
  ASSERT_TRUE(record.has_value());
  const bool ttl = ServerHasTtl();
  EXPECT_EQ(record->ttl, ttl ? "3s" : "");
  // Three leases later, and the server's expiry check (about a second).
  std::this_thread::sleep_for(4500ms);
  auto after = ServerLastMessage(server_.url(), "locks", "L");
  auto fresh = OpenEngine(dc);
  ASSERT_TRUE(fresh);
  auto taken = fresh->TryAcquire("L", 1s);
  if (ttl) {
    EXPECT_TRUE(!after || after->marker == "MaxAge") << "the abandoned record is still there";
    ASSERT_TRUE(taken.ok()) << taken.status().ToString();
    EXPECT_GT((*taken)->fencing_token(), (*held)->fencing_token());
  } else {
    ASSERT_TRUE(after.has_value());
    EXPECT_EQ(after->marker, "");
    EXPECT_EQ(taken.status().code(), Code::kBusy) << taken.status().ToString();
  }
}

// ---- Server versions ----

// ---- On a three-node cluster with an R3 locks bucket ----

class replicated_lock_cluster : public replicated_lock {
 protected:
  void SetUp() override {
    replicated_lock::SetUp();
    ASSERT_TRUE(cluster_.Start()) << cluster_.error();
    // The locks bucket, created with three replicas before any lock.
    TempDir d;
    Options o;
    o.path = d.path();
    o.nats.servers = {cluster_.node(0).url()};
    auto e = Engine::Open(o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    auto locks = (*e)->OpenBucket("locks", {.replicas = 3});
    ASSERT_TRUE(locks.ok()) << locks.status().ToString();
  }
  NatsCluster cluster_;
};

TEST_F(replicated_lock_cluster, CliCriticalSectionsOfThreeProcessesOnThreeNodesNeverOverlap) {
  RunThreeCliProcesses(10, [&](int p) { return cluster_.node(p).url(); });
}

// A holder renews while plain nats.c clients keep writing stale CAS updates
// to the lock's record. The clustered stream refuses them with 10071, and
// with 10164 while a renewal is in flight; none of that costs the holder its
// lock. (lock_conflict_test steers a renewal into a 10164 itself.)
TEST_F(replicated_lock_cluster, RenewalsRacingStaleWritesToTheRecordKeepTheLock) {
  TempDir da;
  auto a = OpenEngine(da, std::chrono::hours(24), cluster_.node(0).url());
  ASSERT_TRUE(a);
  constexpr auto kLease = 900ms;  // renewed every 300 ms
  auto held = a->Acquire("L", kLease, 5s);
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  std::atomic<bool> stop{false};
  std::atomic<int> refused_in_flight{0}, refused_stale{0}, stored{0};
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&, t] {
      natsConnection* nc = nullptr;
      jsCtx* js = nullptr;
      ASSERT_EQ(testing::ConnectClient(cluster_.node(1 + t % 2).url(), &nc, &js), NATS_OK);
      jsPubOptions po;
      jsPubOptions_Init(&po);
      po.ExpectLastSubjectSeq = 1000000000;  // a revision the record never has
      po.MaxWait = 2000;
      while (!stop.load()) {
        jsPubAck* ack = nullptr;
        jsErrCode jerr = static_cast<jsErrCode>(0);
        natsStatus s = js_Publish(&ack, js, "$KV.locks.L", "x", 1, &po, &jerr);
        jsPubAck_Destroy(ack);
        if (s == NATS_OK) {
          ++stored;
        } else if (static_cast<int>(jerr) == 10164) {
          ++refused_in_flight;
        } else if (jerr == JSStreamWrongLastSequenceErr) {
          ++refused_stale;
        }
      }
      jsCtx_Destroy(js);
      natsConnection_Destroy(nc);
    });
  }
  std::this_thread::sleep_for(4s);
  stop = true;
  for (auto& t : writers) t.join();
  EXPECT_EQ(stored.load(), 0);
  EXPECT_FALSE((*held)->lost()) << "the holder lost its lock to writes that all failed";
  EXPECT_TRUE((*held)->Release().ok());
  std::cout << "[ info     ] stale writes refused: " << refused_stale.load()
            << " with 10071, " << refused_in_flight.load() << " with 10164\n";
}

// Debian 12's nats-server 2.9.10 is unsafe only for R>1 buckets: with the
// default single-replica locks bucket, locks work as anywhere.
TEST(replicated_lock_2_9, LocksWorkOnASingleReplicaBucket) {
  NatsServer old(REVKV_SYSTEM_NATS_SERVER);
  ASSERT_TRUE(old.Start()) << old.error();
  TempDir da, db;
  auto open = [&](const TempDir& dir) -> std::unique_ptr<Engine> {
    Options o;
    o.path = dir.path();
    o.nats.servers = {old.url()};
    auto e = Engine::Open(o);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return e.ok() ? std::move(*e) : nullptr;
  };
  auto a = open(da);
  auto b = open(db);
  ASSERT_TRUE(a && b);
  auto held = a->Acquire("L", 10s, 5s);
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  EXPECT_EQ(b->TryAcquire("L", 10s).status().code(), Code::kBusy);
  auto waiting = std::async(std::launch::async, [&] { return b->Acquire("L", 10s, 15s); });
  std::this_thread::sleep_for(200ms);
  ASSERT_TRUE((*held)->Release().ok());
  auto got = waiting.get();
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_GT((*got)->fencing_token(), (*held)->fencing_token());
  EXPECT_TRUE((*got)->Release().ok());
}

// On a cluster of 2.9.10 servers a three-replica locks bucket is refused
// with an error naming the fix version; a single-replica one next to it on
// the same cluster works.
TEST(replicated_lock_2_9, LocksOnThreeReplicaBucketAreRefused) {
  NatsCluster cluster(REVKV_SYSTEM_NATS_SERVER);
  ASSERT_TRUE(cluster.Start()) << cluster.error();
  TempDir da, db;
  Options o;
  o.path = da.path();
  o.nats.servers = {cluster.node(0).url()};
  auto a = Engine::Open(o);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  auto r3 = (*a)->OpenBucket("locks", {.replicas = 3});
  ASSERT_TRUE(r3.ok()) << r3.status().ToString();

  auto refused = (*a)->Acquire("L", 10s, 1s);
  EXPECT_TRUE(refused.status().IsInvalidArgument()) << refused.status().ToString();
  EXPECT_NE(refused.status().message().find("2.9.21"), std::string_view::npos)
      << refused.status().ToString();
  auto refused_try = (*a)->TryAcquire("L", 10s);
  EXPECT_TRUE(refused_try.status().IsInvalidArgument()) << refused_try.status().ToString();
  // Nothing was written to the R3 bucket.
  EXPECT_EQ((*r3)->LastRevision(), 0u);

  Options single = o;
  single.path = db.path();
  single.nats.servers = {cluster.node(1).url()};
  single.locks_bucket = "locks_r1";
  auto b = Engine::Open(single);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  auto held = (*b)->Acquire("L", 10s, 5s);
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  EXPECT_TRUE((*held)->Release().ok());
}

}  // namespace
}  // namespace revkv
