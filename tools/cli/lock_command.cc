// lock: runs CMD while holding a lease lock, passing stop signals on.

#include <errno.h>
#include <poll.h>
#include <spawn.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <mutex>

#include "commands.h"
#include "common.h"
#include "context.h"
#include "signals.h"

extern char** environ;

namespace revkv::cli {
namespace {

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


// What to lock and run.
struct LockSpec {
  std::string name;
  std::string text;  // "lock 'NAME'", for messages
  std::chrono::milliseconds lease;
  std::chrono::milliseconds timeout;
  std::vector<std::string> cmd;
};

// Opens the store and acquires the lock, within `deadline`; a stop signal
// ends the wait with 128 + its number.
int AcquireLock(const Context& ctx, StopSignals& signals, const LockSpec& spec,
                std::unique_ptr<revkv::Engine>* engine_out, std::unique_ptr<revkv::Lock>* lock_out) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline = Clock::now() + spec.timeout;
  const std::string& name = spec.name;
  const std::string lock_text = spec.text;
  const auto timeout = spec.timeout;
  const auto lease = spec.lease;
  std::unique_ptr<revkv::Engine>& engine = *engine_out;
  std::unique_ptr<revkv::Lock>& lock = *lock_out;

  // The store is exclusive to one process, so another revkv holding it is
  // just one more reason to wait, within the same --timeout.
  // With --nats the lock is shared with every process on the server.
  revkv::Options options = EngineOptions(ctx.args, ctx.nats);
  options.create_if_missing = true;
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
                                    FormatDuration(timeout) + ": the store at " + Quote(*ctx.args.db) +
                                    " stayed held by another process");
    }
    if (int sig = signals.Wait(std::min(left, kStoreRetry)); sig != 0) return 128 + sig;
  }

  // Acquire waits in slices, so that a stop signal ends the wait promptly;
  // the engine remembers when it first saw the holder's record, so slicing
  // does not delay taking over an expired lease.
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
    if (int sig = signals.Drain(); sig != 0) return 128 + sig;
    if (left <= slice) {
      return Fail(kExitTimeout, "Timeout: " + lock_text + " was not acquired within " +
                                    FormatDuration(timeout) + ": another owner holds it");
    }
  }
  // Interrupted while acquiring: CMD never starts; the lock is released.
  if (int sig = signals.Drain(); sig != 0) return 128 + sig;
  return kExitOk;
}

// Runs CMD under `lock`, whose on_lost callback wakes `lost_fd`, and
// releases it when CMD exits.
int RunUnderLock(StopSignals& signals, const LockSpec& spec, revkv::Lock* lock, int lost_fd,
                 const std::string& locks_bucket) {
  using Clock = std::chrono::steady_clock;
  const std::string lock_text = spec.text;
  const auto lease = spec.lease;
  const std::vector<std::string>& cmd = spec.cmd;
  // The callback only wakes this thread; everything else happens here.
  auto report = std::make_shared<LostReport>();
  {
    const int efd = lost_fd;
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
  env_storage.push_back(std::string(kBucketVar) + locks_bucket);
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
  posix_spawnattr_setsigmask(&attr, &signals.original_mask());
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
    pollfd fds[2] = {{signals.fd(), POLLIN, 0}, {lost_fd, POLLIN, 0}};
    poll(fds, 2, wait_ms);
    signals.Drain([pid](const signalfd_siginfo& si) {
      // A signal from the terminal went to the whole foreground process
      // group, CMD included: sending it again would deliver it twice.
      if (si.ssi_code == SI_KERNEL) return;
      kill(pid, static_cast<int>(si.ssi_signo));
    });
    uint64_t count;
    const bool woken = read(lost_fd, &count, sizeof(count)) == sizeof(count);
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


// The --lease and --timeout durations: exit 7 if not durations.
int ParseLockDurations(const Args& args, LockSpec* spec) {
  std::chrono::milliseconds* durations[2] = {&spec->lease, &spec->timeout};
  const std::pair<const char*, const std::optional<std::string>*> flags[2] = {
      {"--lease", &args.lease}, {"--timeout", &args.timeout}};
  for (int i = 0; i < 2; ++i) {
    *durations[i] = std::chrono::seconds(30);
    const auto& [flag, text] = flags[i];
    if (!*text) continue;
    auto d = ParseDuration(**text);
    if (!d) {
      return Fail(kExitInvalidArgument,
                  std::string("InvalidArgument: ") + flag + " " + Quote(**text) +
                      " is not a duration; give a whole number with a unit, e.g. 500ms, 10s "
                      "or 2m (at most a year)");
    }
    *durations[i] = *d;
  }
  if (spec->lease < std::chrono::milliseconds(10)) {
    return Fail(kExitInvalidArgument, "InvalidArgument: --lease " + FormatDuration(spec->lease) +
                                          " is too short; give at least 10ms");
  }
  return kExitOk;
}

}  // namespace

// `revkv lock NAME -- CMD...`: the exit code is CMD's, or one of revkv's own
// (5, 9, 127, ...) as the usage text documents.
int RunLock(Context& ctx) {
  LockSpec spec{ctx.params[0], "lock " + Quote(ctx.params[0]), {}, {}, ctx.lock_cmd};
  if (int rc = ParseLockDurations(ctx.args, &spec); rc != kExitOk) return rc;
  // Before any engine thread starts, so that every thread inherits the mask.
  StopSignals signals;
  if (int rc = signals.Start(/*keep_ignored=*/true, /*with_child=*/true); rc != kExitOk) {
    return rc;
  }
  // The eventfd outlives the lock handle (declared first, destroyed last).
  Fd lost_fd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (lost_fd.get() < 0) return Fail(kExitError, std::string("eventfd: ") + strerror(errno));
  std::unique_ptr<revkv::Engine> engine;
  std::unique_ptr<revkv::Lock> lock;
  if (int rc = AcquireLock(ctx, signals, spec, &engine, &lock); rc != kExitOk) return rc;
  return RunUnderLock(signals, spec, lock.get(), lost_fd.get(),
                      EngineOptions(ctx.args, ctx.nats).locks_bucket);
}

}  // namespace revkv::cli
