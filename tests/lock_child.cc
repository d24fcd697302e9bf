// revkv_lock_child: one process holding or waiting for lease locks through
// its own replicated engine, driven line by line by replicated_lock_test.
//
//   revkv_lock_child DIR NATS_URL LOCKS_MAX_AGE_S
//
// Commands on stdin, one per line; one reply line each on stdout:
//   acquire NAME LEASE_MS TIMEOUT_MS RENEW  -> "acquired TOKEN T" | "error STATUS"
//   try NAME LEASE_MS RENEW                 -> "acquired TOKEN T" | "error STATUS"
//   lost                                    -> "lost 0" | "lost 1"
//   renew                                   -> "renewed STATUS"
//   release                                 -> "released T STATUS"
// T is the steady clock (CLOCK_MONOTONIC, shared by every process of the
// machine) in nanoseconds when the call returned. RENEW is 1 for
// LockOptions::auto_renew, 0 without. The held lock's on_lost callback
// prints "on_lost STATUS" whenever it fires. EOF on stdin ends the process.

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>

#include "revkv/revkv.h"

namespace {

std::mutex out_mu;

void Say(const std::string& line) {
  std::lock_guard<std::mutex> lock(out_mu);
  std::string text = line + "\n";
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = write(STDOUT_FILENO, text.data() + done, text.size() - done);
    if (n <= 0) _exit(3);  // the test went away
    done += static_cast<size_t>(n);
  }
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The status on one line (messages have no newlines, but be sure).
std::string OneLine(const revkv::Status& s) {
  std::string text = s.ToString();
  for (char& c : text) {
    if (c == '\n') c = ' ';
  }
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s DIR NATS_URL LOCKS_MAX_AGE_S\n", argv[0]);
    return 1;
  }
  revkv::Options options;
  options.path = argv[1];
  options.nats.servers = {argv[2]};
  options.locks_max_age = std::chrono::seconds(std::stoll(argv[3]));
  auto engine = revkv::Engine::Open(options);
  if (!engine.ok()) {
    Say("error " + OneLine(engine.status()));
    return 2;
  }
  Say("ready");

  std::unique_ptr<revkv::Lock> lock;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string cmd;
    in >> cmd;
    if (cmd == "acquire" || cmd == "try") {
      std::string name;
      int64_t lease_ms = 0, timeout_ms = 0;
      int renew = 1;
      in >> name >> lease_ms;
      if (cmd == "acquire") in >> timeout_ms;
      in >> renew;
      if (lock) lock->Release().ok();
      lock.reset();
      const revkv::LockOptions lock_options{.auto_renew = renew != 0};
      auto r = cmd == "acquire"
                   ? (*engine)->Acquire(name, std::chrono::milliseconds(lease_ms),
                                        std::chrono::milliseconds(timeout_ms), lock_options)
                   : (*engine)->TryAcquire(name, std::chrono::milliseconds(lease_ms), lock_options);
      const int64_t t = NowNs();
      if (!r.ok()) {
        Say("error " + OneLine(r.status()));
        continue;
      }
      lock = std::move(*r);
      lock->on_lost([](const revkv::Status& why) { Say("on_lost " + OneLine(why)); });
      Say("acquired " + std::to_string(lock->fencing_token()) + " " + std::to_string(t));
    } else if (cmd == "lost") {
      Say(std::string("lost ") + (lock && lock->lost() ? "1" : "0"));
    } else if (cmd == "renew") {
      Say("renewed " + (lock ? OneLine(lock->Renew()) : std::string("no-lock")));
    } else if (cmd == "release") {
      const revkv::Status s = lock ? lock->Release() : revkv::Status::InvalidArgument("no lock");
      const int64_t t = NowNs();
      Say("released " + std::to_string(t) + " " + OneLine(s));
    } else {
      Say("error unknown command '" + cmd + "'");
    }
  }
  return 0;
}
