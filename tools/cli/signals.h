// The stop signals (SIGINT, SIGTERM, SIGHUP) of watch and lock, taken on a
// signalfd: blocked in every thread, so that they cannot interrupt RocksDB's
// I/O midway, and read where the command can act on them.

#ifndef REVKV_TOOLS_CLI_SIGNALS_H_
#define REVKV_TOOLS_CLI_SIGNALS_H_

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <chrono>

namespace revkv::cli {

class StopSignals {
 public:
  StopSignals() = default;
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // Blocks the stop signals, and SIGCHLD with `with_child`, and opens the
  // signalfd. Call it before any thread starts, so that every thread
  // inherits the mask. With `keep_ignored`, a stop signal that whoever
  // started revkv made us ignore stays ignored (and so for a child). Returns
  // the exit code: kExitOk, or an error already reported.
  int Start(bool keep_ignored, bool with_child);

  // Reads every pending signal; returns the last stop signal, or 0.
  // `forward` gets each stop signal as it is read.
  template <typename Forward>
  int Drain(Forward forward) {
    int stop = 0;
    signalfd_siginfo si;
    while (read(fd_, &si, sizeof(si)) == static_cast<ssize_t>(sizeof(si))) {
      if (si.ssi_signo == SIGCHLD) continue;  // the waiter reaps its child
      stop = static_cast<int>(si.ssi_signo);
      forward(si);
    }
    if (stop != 0) stopped_ = stop;
    return stop;
  }
  int Drain();
  // Waits up to `ms` for a stop signal; returns it, or 0.
  int Wait(std::chrono::milliseconds ms);

  int fd() const { return fd_; }
  // The first stop signal read, or 0.
  int stopped() const { return stopped_; }
  // The mask revkv was started with, for a child.
  const sigset_t& original_mask() const { return original_mask_; }

 private:
  int fd_ = -1;
  int stopped_ = 0;
  sigset_t original_mask_{};
};

}  // namespace revkv::cli

#endif  // REVKV_TOOLS_CLI_SIGNALS_H_
