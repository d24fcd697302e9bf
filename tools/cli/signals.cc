#include "signals.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>

#include <string>

#include "common.h"

namespace revkv::cli {

StopSignals::~StopSignals() {
  if (fd_ >= 0) close(fd_);
}

int StopSignals::Start(bool keep_ignored, bool with_child) {
  sigset_t handled;
  sigemptyset(&handled);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction old {};
    if (keep_ignored && sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
    sigaddset(&handled, sig);
  }
  if (with_child) {
    // An inherited SIG_IGN for SIGCHLD would reap the child behind our back.
    signal(SIGCHLD, SIG_DFL);
    sigaddset(&handled, SIGCHLD);
  }
  pthread_sigmask(SIG_BLOCK, &handled, &original_mask_);
  fd_ = signalfd(-1, &handled, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd_ < 0) return Fail(kExitError, std::string("signalfd: ") + strerror(errno));
  return kExitOk;
}

int StopSignals::Drain() {
  return Drain([](const signalfd_siginfo&) {});
}

int StopSignals::Wait(std::chrono::milliseconds ms) {
  using Clock = std::chrono::steady_clock;
  const auto until = Clock::now() + ms;
  while (true) {
    if (int sig = Drain(); sig != 0) return sig;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now());
    if (left.count() <= 0) return 0;
    pollfd p{fd_, POLLIN, 0};
    poll(&p, 1, static_cast<int>(left.count()));
  }
}

}  // namespace revkv::cli
